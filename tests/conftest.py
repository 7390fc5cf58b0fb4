"""Shared fixtures: real zoo models (downloaded once into $OCRCONVERT_CACHE), markers that skip
with the reason when an optional stack is absent."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

# OpenMP threads that spin while waiting burn the other core when two processes share 2 cores (a trainable
# native rec verify: 30.7 s spinning vs 3.0 s passive); must be set before torch is imported
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
warnings.filterwarnings("ignore", message=".*ccache.*")

_NEEDS = {
    "paddle": ("paddle", "paddlepaddle is not installed (pip install 'ocrconvert[paddle]')"),
    "torch": ("onnx2torch", "torch/onnx2torch are not installed (pip install 'ocrconvert[torch]')"),
    "native": ("transformers", "transformers is not installed (pip install 'ocrconvert[native]')"),
    "tensorrt": ("tensorrt", "TensorRT is not installed on this machine"),
}


def _required() -> set[str]:
    """Stacks CI demands (``OCRCONVERT_REQUIRE=paddle,torch,native,zoo``): missing, they fail instead of skipping."""
    return {s.strip() for s in os.environ.get("OCRCONVERT_REQUIRE", "").split(",") if s.strip()}


def pytest_collection_modifyitems(config, items):
    have_gpu = None
    required = _required()
    for item in items:
        for mark, (module, why) in _NEEDS.items():
            if mark in item.keywords and importlib.util.find_spec(module) is None:
                _skip_or_fail(item, mark, why, required)
        if "gpu" in item.keywords:
            if have_gpu is None:
                try:
                    import torch

                    have_gpu = torch.cuda.is_available()
                except ImportError:
                    have_gpu = False
            if not have_gpu:
                _skip_or_fail(item, "gpu", "no CUDA GPU on this machine", required)


def _skip_or_fail(item, mark: str, why: str, required: set[str]) -> None:
    if mark in required:
        item.ocrconvert_required_missing = f"OCRCONVERT_REQUIRE demands {mark!r}: {why}"
    else:
        item.add_marker(pytest.mark.skip(reason=why))


def pytest_runtest_setup(item):
    missing = getattr(item, "ocrconvert_required_missing", None)
    if missing:
        pytest.fail(missing, pytrace=False)


@pytest.fixture(scope="session")
def zoo():
    """``zoo(name) -> Path``: a real model folder from the pinned zoo (cached across runs)."""
    from ocrconvert.zoo import pull

    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = pull(name)
        return cache[name]

    return get


@pytest.fixture
def cli(tmp_path):
    """Run the real CLI in a child process; returns CompletedProcess (exit code + both streams)."""

    def run(*args, check=None, timeout=600):
        env = dict(os.environ, PYTHONWARNINGS="ignore", COLUMNS="200")
        proc = subprocess.run([sys.executable, "-m", "ocrconvert", *map(str, args)], capture_output=True,
                              text=True, env=env, timeout=timeout, cwd=tmp_path)
        if check is not None:
            assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        return proc

    return run


@pytest.fixture
def cli_here(capsys, monkeypatch):
    """The CLI in this process: ``(code, stdout, stderr)`` as ``cli``/``run_cli`` give them, without a fresh
    interpreter importing torch for each call (seconds on CI, a minute on a loaded 2-core machine). For runs that
    need no process of their own; kills, locks held by another process and ``sys.exit`` tools keep ``cli``."""
    from _cli_helpers import CliResult
    from ocrconvert.cli.app import main

    monkeypatch.setenv("COLUMNS", "200")

    def run(*args, check=None) -> CliResult:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main([str(a) for a in args])
        cap = capsys.readouterr()
        res = CliResult(exit_.value.code, cap.out, cap.err)
        if check is not None:
            assert res.code == check, f"exit {res.code}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
        return res

    return run


def leftovers(folder: Path) -> list[str]:
    """Anything a failed run may have left: partial staging folders or outputs."""
    return sorted(p.name for p in Path(folder).iterdir())


@pytest.fixture(scope="session")
def converted(zoo, tmp_path_factory):
    """``converted(source, target, route=None, verify=True, options=None) -> ConversionResult``: each conversion
    once per test session, shared by every test that only reads it (the suite converted the same zoo models
    through the same routes in up to five files). ``source``: a zoo name or a path (e.g. a shared result's
    ``artifact.path``). Read-only: copy an artifact before damaging it. A ``verify=False`` request is answered
    by the verified result when one exists (the same artifact; its manifest also records a verification)."""
    import ocrconvert

    root = tmp_path_factory.mktemp("shared-artifacts")
    made: dict[tuple, object] = {}
    suffix = {"onnx": ".onnx", "torch-aot": ".pt2"}

    def get(source, target: str, *, route: str | None = None, verify: bool = True, options: dict | None = None):
        src = zoo(source) if isinstance(source, str) else Path(source)
        key = (str(src), target, route, tuple(sorted((options or {}).items())))
        if (key, True) in made:
            return made[key, True]
        if (key, verify) not in made:
            out = root / f"{len(made):02d}-{src.name.split('.')[0]}-{route or target}{suffix.get(target, '')}"
            made[key, verify] = ocrconvert.convert(src, out, target=target, route=route, verify=verify,
                                                   options=options)
        return made[key, verify]

    return get


@pytest.fixture(scope="session")
def zoo_model(zoo):
    """Alias of ``zoo`` used by the CLI-driven suites: a real model folder, never a skip."""
    return zoo


@pytest.fixture(scope="session")
def damage():
    """``tests/verification/_damage.py``: small damages of real models that every verdict must catch."""
    path = Path(__file__).resolve().parent / "verification" / "_damage.py"
    spec = importlib.util.spec_from_file_location("ocx_test_damage", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
