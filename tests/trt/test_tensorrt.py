"""Engine build and run through the spine. Needs TensorRT + a CUDA GPU: skipped (with the reason) everywhere else.

NOT RUN in ocrconvert's CI so far; see docs/tensorrt.md.
"""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.tensorrt

trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install tensorrt; needs an NVIDIA GPU)")
torch = pytest.importorskip("torch", reason="the TensorRT runner uses torch.cuda for device buffers")
if not torch.cuda.is_available():
    pytest.skip("TensorRT is installed but no CUDA device is visible", allow_module_level=True)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cls_engine_builds_runs_and_matches_source(onnx_model, tmp_path, precision):
    import ocrconvert
    from ocrconvert.pipeline import convert

    src = onnx_model("ppocrv4-cls-onnx")
    engine = tmp_path / f"cls.{precision}.engine"
    result = convert(src, engine, target="tensorrt", route="trt-build",
                     options={"precision": precision, "shapes": ["x:1x3x48x192:4x3x48x192:8x3x48x192"],
                              "timing_cache": tmp_path / "timing.cache"})
    assert engine.is_file() and (tmp_path / "timing.cache").is_file()
    man = json.loads((tmp_path / f"cls.{precision}.engine.ocrconvert.json").read_text())
    assert man["engine"]["precision"] == precision and man["engine"]["tensorrt_version"] == trt.__version__
    assert man["precision"] == precision and man["hops"][-1]["produced"]["precision"] == precision
    assert result.report is not None and result.report.passed, result.report.summary_line()
    runner = ocrconvert.load(engine)
    assert runner.backend == "tensorrt" and runner.input_names == ["x"]


def test_int8_engine_from_calibration(onnx_model, calib_cls, tmp_path):
    from ocrconvert.pipeline import convert

    result = convert(onnx_model("ppocrv4-cls-onnx"), tmp_path / "cls.int8.engine", target="tensorrt",
                     route="trt-build", options={"precision": "int8", "calib_images": calib_cls,
                                                 "shapes": ["x:1x3x48x192:8x3x48x192:16x3x48x192"]})
    eng = result.manifest["engine"]
    assert eng["precision"] == "int8" and eng["calibration"]["images"] == 16
    if eng["tensorrt_major"] >= 11:
        assert eng["network"] == "strongly-typed" and eng["prepared_onnx"]["precision"] == "int8"
    else:
        assert "INT8" in eng["builder_flags"]
    assert result.report.passed, result.report.summary_line()
    assert result.report.informational and all(c.kind == "random" for c in result.report.informational)
