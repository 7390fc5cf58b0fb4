"""The layer contract in pyproject.toml holds, and it would catch a layer importing upward."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")
pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (extra 'test')")


def _lint(src: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([str(LINT), "--no-cache", "--config", str(cwd / "pyproject.toml")], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_layer_contract_holds():
    res = _lint(ROOT / "src", ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "1 kept, 0 broken" in res.stdout


def test_the_contract_fails_when_a_layer_imports_upward(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "ocrconvert", src / "ocrconvert",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    errors = src / "ocrconvert" / "errors.py"  # the bottom layer reaching for the spine
    errors.write_text(errors.read_text() + "\n\ndef _upward():\n    from . import pipeline  # noqa\n")
    res = _lint(src, tmp_path)
    assert res.returncode != 0
    assert "ocrconvert.errors is not allowed to import ocrconvert.pipeline" in res.stdout
