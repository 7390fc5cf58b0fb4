"""TrtOptions (the one record of trt-build and trt-export) and the engine / plan manifests (pure functions)."""
from __future__ import annotations

from pathlib import Path

import pytest

from ocrconvert.errors import UsageError
from ocrconvert.options import Precision
from ocrconvert.tensorrt.options import TrtOptions
from ocrconvert.tensorrt.plan import PreparedModel, engine_manifest, plan_manifest, trtexec_command
from ocrconvert.tensorrt.profiles import ShapeProfile


def test_options_roundtrip_and_precision():
    o = TrtOptions.from_mapping({"precision": "int8", "calib_images": "/data/calib", "workspace_gib": 2,
                                 "shapes": ["x:1x3x48x16:8x3x48x320:64x3x48x3200"], "timing_cache": "/tmp/t.cache"})
    assert o.precision is Precision.INT8 and o.int8 and o.workspace_bytes == 2 << 30
    assert o.calib_images == Path("/data/calib") and o.shapes == ("x:1x3x48x16:8x3x48x320:64x3x48x3200",)
    assert TrtOptions.from_mapping(o.to_dict()) == o
    assert o.to_dict()["precision"] == "int8" and o.to_dict()["shapes"] == list(o.shapes)
    assert TrtOptions(precision="fp16").precision is Precision.FP16 and TrtOptions().precision is Precision.FP32


@pytest.mark.parametrize("mapping, words", [
    ({"precision": "int8"}, "--int8 needs --calib-images"),
    ({"precision": "bf16"}, "not available here"),
    ({"precision": "fp8"}, "not a precision"),
    ({"calib_images": "."}, "only used with --int8"),
    ({"calib_limit": 10}, "only used with --int8"),
    ({"calib_cache": "calib.cache"}, "only used with --int8"),
    ({"precision": "int8", "calib_images": ".", "calib_cache": "."}, "--calib-cache . is a folder"),
    ({"precision": "int8", "calib_images": ".", "calib_method": "magic"}, "calibration method"),
    ({"precision": "int8", "calib_images": ".", "calib_limit": 0}, "at least 1"),
    ({"workspace_gib": 0}, "--workspace"),
    ({"shapes": ["x:1x3x48x192"]}, "NAME:MIN:OPT:MAX"),
    ({"family": "det-east"}, "unknown model family"),
    ({"fp16": True}, "not accepted by this route"),
    ({"workspace_gib": "2"}, "is not float"),
])
def test_option_errors(mapping, words):
    with pytest.raises(UsageError) as ei:
        TrtOptions.from_mapping(mapping)
    assert words in ei.value.message + ei.value.hint


def test_timing_cache_must_be_a_file(tmp_path):
    with pytest.raises(UsageError, match="folder"):
        TrtOptions.from_mapping({"timing_cache": str(tmp_path)})


def test_engine_manifest_is_pure():
    p = ShapeProfile("x", (1, 3, 48, 16), (8, 3, 48, 320), (64, 3, 48, 3200), "family")
    facts = dict(trt_version="10.13.0.35", gpu_name="NVIDIA H100", compute_capability="9.0", precision=Precision.FP16,
                 strongly_typed=False, builder_flags=["FP16"], profiles=[p], prepared={"precision": "fp32"},
                 calibration=None, workspace_bytes=1 << 30, timing_cache=None, engine_bytes=123, build_seconds=1.23456)
    m = engine_manifest(**facts)
    assert m == engine_manifest(**facts)
    assert m["tensorrt_major"] == 10 and m["network"].startswith("weakly-typed") and m["precision"] == "fp16"
    assert m["profiles"][0]["max"] == [64, 3, 48, 3200] and m["gpu"]["compute_capability"] == "9.0"
    assert m["build_seconds"] == 1.235 and m["portable"] is False
    m11 = engine_manifest(**{**facts, "trt_version": "11.1.0", "strongly_typed": True, "builder_flags": []})
    assert m11["tensorrt_major"] == 11 and m11["network"] == "strongly-typed"


def test_trtexec_command_skips_fixed_inputs():
    dyn = ShapeProfile("x", (1, 3, 32, 32), (1, 3, 960, 960), (1, 3, 1920, 1920), "family")
    fixed = ShapeProfile("scale", (1, 2), (1, 2), (1, 2), "fixed")
    cmd = trtexec_command("model.fp32.onnx", [dyn, fixed], Precision.FP32)
    assert "--minShapes=x:1x3x32x32" in cmd and "scale" not in cmd and "--stronglyTyped" not in cmd


def test_plan_manifest():
    p = ShapeProfile("x", (1, 3, 48, 192), (8, 3, 48, 192), (64, 3, 48, 192), "family")
    m = plan_manifest(PreparedModel(Path("/stage/model.int8.onnx"), Precision.INT8, [p], "cls", tool="qdq"))
    assert m["onnx"] == "model.int8.onnx" and m["precision"] == "int8" and m["strongly_typed"] is True
    assert m["trtexec"].startswith("trtexec --onnx=model.int8.onnx ") and "--stronglyTyped" in m["trtexec"]
    assert m["built"] is False and m["profiles_file"] == "profiles.json"
    assert ShapeProfile.from_dict(m["profiles"][0]) == p
