"""``bench --device cuda`` where there is a GPU: torch timed on the device, its GPU memory reported."""
from __future__ import annotations

import pytest
from _bench_helpers import as_json, run_bench_cli

pytestmark = [pytest.mark.gpu, pytest.mark.torch, pytest.mark.zoo]


def test_torch_on_cuda_reports_gpu_memory(cls_torch):
    p = run_bench_cli(cls_torch, "--device", "cuda", "--runs", "10", "--rounds", "2", "--no-compile", "--json")
    assert p.returncode == 0, p.stderr
    d = as_json(p)
    (r,) = d["results"]
    assert d["device"] == "cuda" and r["median_ms"] > 0 and r["gpu_peak_mb"] > 0 and r["peak_mem_mb"] > 0
