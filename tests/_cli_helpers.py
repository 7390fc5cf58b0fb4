"""Helpers for CLI-driven tests (batch, corpus): availability marks and a CLI driver in a child process."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


needs_torch = pytest.mark.skipif(not (has("torch") and has("onnx2torch")), reason="torch + onnx2torch not installed")
needs_paddle = pytest.mark.skipif(not (has("paddle") and has("paddle2onnx")), reason="paddle + paddle2onnx not installed")


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(*args, env: dict | None = None, timeout: float = 300, prelude: str = "") -> CliResult:
    """``ocrconvert ARGS`` in a child process (exit codes and streams are what the tests assert).

    ``prelude`` is Python run in that process before the CLI (used to simulate a full disk).
    """
    code = f"{prelude}\nfrom ocrconvert.cli.app import main\nmain({[str(a) for a in args]!r})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
