"""Build options and the engine manifest (a pure function of the collected facts)."""
from __future__ import annotations

from pathlib import Path

import pytest

from ocrconvert.errors import UsageError
from ocrconvert.trt_prep import ShapeProfile, TrtBuildOptions, engine_manifest, trtexec_command


def test_options_roundtrip_and_precision():
    o = TrtBuildOptions(int8=True, calib_images=Path("/data/calib"), shapes=["x:1x3x48x16:8x3x48x320:64x3x48x3200"],
                        workspace_gib=2, timing_cache=Path("/tmp/t.cache")).validate()
    assert o.precision == "int8" and o.workspace_bytes == 2 << 30
    back = TrtBuildOptions.from_dict(o.to_dict())
    assert back.to_dict() == o.to_dict()
    assert TrtBuildOptions(fp16=True).precision == "fp16" and TrtBuildOptions().precision == "fp32"


def test_option_errors(tmp_path):
    with pytest.raises(UsageError, match="--calib-images"):
        TrtBuildOptions(int8=True).validate()
    with pytest.raises(UsageError, match="folder"):
        TrtBuildOptions(timing_cache=tmp_path).validate()
    with pytest.raises(UsageError, match="calibration method"):
        TrtBuildOptions(int8=True, calib_images=tmp_path, calib_method="magic").validate()


def test_engine_manifest_is_pure():
    p = ShapeProfile("x", (1, 3, 48, 16), (8, 3, 48, 320), (64, 3, 48, 3200), "family")
    facts = dict(trt_version="10.13.0.35", gpu_name="NVIDIA H100", compute_capability="9.0", precision="fp16",
                 strongly_typed=False, builder_flags=["FP16"], profiles=[p], prepared={"precision": "fp32"},
                 calibration=None, workspace_bytes=1 << 30, timing_cache=None, engine_bytes=123, build_seconds=1.23456)
    m = engine_manifest(**facts)
    assert m == engine_manifest(**facts)
    assert m["tensorrt_major"] == 10 and m["network"].startswith("weakly-typed")
    assert m["profiles"][0]["max"] == [64, 3, 48, 3200] and m["gpu"]["compute_capability"] == "9.0"
    assert m["build_seconds"] == 1.235 and m["portable"] is False
    m11 = engine_manifest(**{**facts, "trt_version": "11.1.0", "strongly_typed": True, "builder_flags": []})
    assert m11["tensorrt_major"] == 11 and m11["network"] == "strongly-typed"


def test_trtexec_command_skips_fixed_inputs():
    dyn = ShapeProfile("x", (1, 3, 32, 32), (1, 3, 960, 960), (1, 3, 1920, 1920), "family")
    fixed = ShapeProfile("scale", (1, 2), (1, 2), (1, 2), "fixed")
    cmd = trtexec_command("model.fp32.onnx", [dyn, fixed], "fp32")
    assert "--minShapes=x:1x3x32x32" in cmd and "scale" not in cmd and "--stronglyTyped" not in cmd
