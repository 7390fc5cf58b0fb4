"""Every backend of a native PyTorch artifact on the same input as ONNX Runtime."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.paddle, pytest.mark.torch, pytest.mark.native, pytest.mark.zoo]


def test_bench_runs_every_backend_on_the_same_input(zoo, converted):
    from ocrconvert.bench import run_bench

    native = converted("ppocrv4-cls", "torch", route="native", verify=False).artifact.path  # shared, read only
    rep = run_bench([zoo("ppocrv4-cls-onnx") / "model.onnx", native], shape=(2, 3, 48, 192), runs=2, warmup=1,
                    compile_=False, threads=1)
    assert [r.variant.split(" (")[0] for r in rep.results] == ["onnxruntime", "native eager trainable",
                                                               "native eager fused"]
    assert rep.passed and all(r.median_ms > 0 and r.throughput > 0 and r.peak_mem_mb > 0 for r in rep.results)
    assert rep.results[0].ratio == 1.0 and rep.results[1].ratio > 0
