"""The pieces of ``bench`` that need no child process: device check, schedule, labels, statistics, shape."""
from __future__ import annotations

import pytest

from ocrconvert import bench
from ocrconvert.bench import BenchResult, Variant
from ocrconvert.errors import UsageError


@pytest.mark.parametrize("device, count, ok", [("cpu", 0, True), ("CUDA", 1, True), ("cuda:1", 2, True),
                                               ("cuda", 0, False), ("cuda:1", 1, False), ("gpu", 1, False),
                                               ("cuda:x", 1, False)])
def test_device_is_refused_unless_it_is_there(monkeypatch, device, count, ok):
    monkeypatch.setattr(bench, "_cuda_device_count", lambda: count)
    if ok:
        assert bench.check_device(device) == device.lower()
    else:
        with pytest.raises(UsageError):
            bench.check_device(device)


def test_runs_are_shared_out_over_rounds_never_changed():
    assert bench._schedule(20, None) == [4, 4, 4, 4, 4]
    assert bench._schedule(7, 3) == [3, 2, 2] and bench._schedule(3, None) == [1, 1, 1]
    with pytest.raises(UsageError, match="between 1 and --runs"):
        bench._schedule(3, 5)


def test_a_repeated_artifact_is_numbered():
    v = Variant("onnxruntime (m.onnx)", "m.onnx", "onnxruntime")
    assert [x.label for x in bench._numbered([v, v, v])] == ["onnxruntime (m.onnx)", "onnxruntime (m.onnx) #2",
                                                             "onnxruntime (m.onnx) #3"]


def test_ratios_are_paired_by_round_with_their_spread():
    base = BenchResult("a", "a", "onnxruntime", (1,), runs=[10, 10, 20, 20], round_medians=[10.0, 20.0, 40.0])
    other = BenchResult("b", "b", "onnxruntime", (1,), runs=[20, 20, 40, 40], round_medians=[20.0, 40.0, 40.0])
    failed = BenchResult("c", "c", "onnxruntime", (1,), error="boom")
    bench._statistics([failed, base, other], batch=1)
    assert base.ratio == 1.0 and (base.ratio_p10, base.ratio_p90) == (1.0, 1.0)
    # per-round ratios 2, 2, 1: a drifting machine (round 3 was slow for a only) moves the spread, not the median
    assert other.ratio == 2.0 and other.ratio_p10 == pytest.approx(1.2) and other.ratio_p90 == 2.0
    assert failed.ratio is None and failed.median_ms is None
    assert base.median_ms == 15.0 and base.throughput == pytest.approx(1000 / 15)


@pytest.mark.zoo
def test_bench_asks_the_family(zoo):
    assert bench._family_shape([zoo("ppocrv4-cls-onnx") / "model.onnx"]) == (8, 3, 48, 192)


@pytest.mark.zoo
def test_a_backend_that_cannot_run_on_the_device_is_refused(zoo, monkeypatch):
    monkeypatch.setattr(bench, "_ort_providers", lambda: ["CPUExecutionProvider"])
    onnx = zoo("ppocrv4-cls-onnx") / "model.onnx"
    with pytest.raises(UsageError, match="no CUDA provider"):
        bench.plan_variants(onnx, "cuda")
    monkeypatch.setattr(bench, "_ort_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert [v.kind for v in bench.plan_variants(onnx, "cuda")] == ["onnxruntime"]
    with pytest.raises(UsageError, match="CPU only"):
        bench.plan_variants(zoo("ppocrv4-cls"), "cuda")
    assert [(v.kind, v.mkldnn) for v in bench.plan_variants(zoo("ppocrv4-cls"), "cpu")] == [("paddle", False),
                                                                                          ("paddle", True)]
