"""Helpers of the bench suite: the CLI in a child process, its JSON."""
from __future__ import annotations

import json
import os
import subprocess
import sys

TINY_SHAPE = (8, 3, 48, 100)   # the only input shape the tiny generated model accepts


def bench_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "ocrconvert", "bench", *map(str, args)]


def bench_env(**extra) -> dict:
    return dict(os.environ, PYTHONWARNINGS="ignore", COLUMNS="200", **extra)


def run_bench_cli(*args, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(bench_cmd(*args), capture_output=True, text=True, env=env or bench_env(), timeout=timeout)


def as_json(proc: subprocess.CompletedProcess) -> dict:
    """The whole of stdout is one JSON object (nothing else may reach it)."""
    return json.loads(proc.stdout)
