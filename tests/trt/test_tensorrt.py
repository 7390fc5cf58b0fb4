"""Engine build and run through the spine on REAL TensorRT and a CUDA GPU (markers ``tensorrt`` and ``gpu``: skipped
with the reason where either is absent, a failure where OCRCONVERT_REQUIRE demands them).

NOT RUN in ocrconvert's CI so far (no GPU, no TensorRT there); the same calls run against the fake TensorRT 10 / 11
in test_fake_engine.py. See docs/tensorrt.md.
"""
from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]

CLS_SHAPES = ["x:1x3x48x192:4x3x48x192:8x3x48x192"]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cls_engine_builds_runs_and_matches_source(onnx_model, tmp_path, precision):
    import tensorrt as trt

    import ocrconvert
    from ocrconvert.pipeline import convert

    src = onnx_model("ppocrv4-cls-onnx")
    engine = tmp_path / f"cls.{precision}.engine"
    result = convert(src, engine, target="tensorrt", route="trt-build",
                     options={"precision": precision, "shapes": CLS_SHAPES, "timing_cache": tmp_path / "timing.cache"})
    assert engine.is_file() and (tmp_path / "timing.cache").is_file()
    man = json.loads((tmp_path / f"cls.{precision}.engine.ocrconvert.json").read_text())
    assert man["engine"]["precision"] == precision and man["engine"]["tensorrt_version"] == trt.__version__
    assert man["precision"] == precision and man["hops"][-1]["produced"]["precision"] == precision
    assert result.report is not None and result.report.passed, result.report.summary_line()
    runner = ocrconvert.load(engine)
    assert runner.backend == "tensorrt" and runner.input_names == ["x"]


def test_int8_engine_from_calibration(onnx_model, calib_cls, tmp_path):
    """The verdict is whatever TensorRT's INT8 gives; the calibration flow (and on 10.x its cache) is checked."""
    import tensorrt as trt

    from ocrconvert.pipeline import convert

    major = int(trt.__version__.split(".")[0])
    options = {"precision": "int8", "calib_images": calib_cls, "shapes": ["x:1x3x48x192:8x3x48x192:16x3x48x192"]}
    if major < 11:
        options["calib_cache"] = tmp_path / "calib.cache"
    result = convert(onnx_model("ppocrv4-cls-onnx"), tmp_path / "cls.int8.engine", target="tensorrt",
                     route="trt-build", options=options)
    eng = result.manifest["engine"]
    assert eng["precision"] == "int8" and eng["calibration"]["images"] == 16
    if major >= 11:
        assert eng["network"] == "strongly-typed" and eng["prepared_onnx"]["precision"] == "int8"
    else:
        assert "INT8" in eng["builder_flags"] and eng["calibration"]["batches_read_by_tensorrt"] == 2
        assert eng["calibration"]["cache"]["written_bytes"] == (tmp_path / "calib.cache").stat().st_size > 0
    randoms = [c for c in result.report.cases if c.kind == "random"]
    assert randoms and all(c.gate for c in randoms)   # the family's INT8 policy: loose gates, as under verify
    print(result.report.summary_line())   # recorded in docs/tensorrt.md when this first runs on a GPU
