"""Optimization-profile derivation and --shapes validation, on the real zoo models' own inputs."""
from __future__ import annotations

import pytest

from ocrconvert.errors import ExitCode, UsageError
from ocrconvert.families import resolve_family
from ocrconvert.families.base import ModelInfo, TensorSpec
from ocrconvert.formats import detect
from ocrconvert.runners import runner_for
from ocrconvert.tensorrt.profiles import ShapeProfile, derive_profiles, parse_shape_spec, validate_profile


def _derive(path, shapes=()):
    info = runner_for(detect(path)).info()
    return derive_profiles(info, resolve_family(info), shapes)


def test_rec_family_defaults(onnx_model):
    (p,) = _derive(onnx_model("ppocrv4-rec-onnx"))   # x: [?, 3, ?, ?] -> height from the family (48)
    assert (p.name, p.origin) == ("x", "family")
    assert (p.min, p.opt, p.max) == ((1, 3, 48, 16), (8, 3, 48, 320), (64, 3, 48, 3200))


def test_det_family_defaults_are_multiples_of_32(onnx_model):
    (p,) = _derive(onnx_model("ppocrv4-det-onnx"))
    assert (p.min, p.opt, p.max) == ((1, 3, 32, 32), (1, 3, 960, 960), (1, 3, 1920, 1920))
    assert all(d % 32 == 0 for s in (p.min, p.opt, p.max) for d in s[2:])


def test_cls_fixed_line_shape(onnx_model):
    (p,) = _derive(onnx_model("ppocrv4-cls-onnx"))
    assert (p.min, p.opt, p.max) == ((1, 3, 48, 192), (8, 3, 48, 192), (64, 3, 48, 192))


def test_inference_yml_dynamic_shapes_win(zoo_model):
    # PP-OCRv6 ships Hpi.backend_configs.tensorrt.dynamic_shapes in its inference.yml
    (p,) = _derive(zoo_model("ppocrv6-small-rec-onnx") / "model.onnx")
    assert p.origin == "inference.yml"
    assert (p.min, p.opt, p.max) == ((1, 3, 48, 160), (1, 3, 48, 320), (8, 3, 48, 3200))
    (d,) = _derive(zoo_model("ppocrv6-small-det-onnx") / "model.onnx")
    assert d.origin == "inference.yml" and d.max == (1, 3, 4000, 4000)


def test_shapes_override(onnx_model):
    (p,) = _derive(onnx_model("ppocrv5-mobile-rec-onnx"), ["x:1x3x48x16:4x3x48x320:8x3x48x960"])
    assert p.origin == "--shapes" and p.opt == (4, 3, 48, 320)
    assert p.spec() == "x:1x3x48x16:4x3x48x320:8x3x48x960"


@pytest.mark.parametrize("spec, words", [
    ("x:1x3x48x16:1x3x48x8:2x3x48x32", "min <= opt <= max"),
    ("x:1x3x48:1x3x48:1x3x48", "rank 3"),
    ("x:1x3x32x16:1x3x32x320:1x3x32x640", "fixes it to 48"),      # v5 rec fixes H=48
    ("x:1x1x48x16:1x1x48x320:1x1x48x640", "fixes it to 3"),
    ("image:1x3x48x16:1x3x48x320:1x3x48x640", "inputs are ['x']"),
    ("x:1x3x48x16:1x3x48x320", "NAME:MIN:OPT:MAX"),
    ("x:1x3x48x16:1x3x48xW:1x3x48x640", "not like"),
    ("x:0x3x48x16:1x3x48x320:1x3x48x640", "< 1"),
])
def test_bad_shapes_are_usage_errors(onnx_model, spec, words):
    with pytest.raises(UsageError) as ei:
        _derive(onnx_model("ppocrv5-mobile-rec-onnx"), [spec])
    assert words in ei.value.message + ei.value.hint
    assert ei.value.exit_code == ExitCode.USAGE


def test_duplicate_override(onnx_model):
    s = "x:1x3x48x16:1x3x48x320:1x3x48x640"
    with pytest.raises(UsageError, match="twice"):
        _derive(onnx_model("ppocrv5-mobile-rec-onnx"), [s, s])


def test_generic_dynamic_input_needs_shapes():
    info = ModelInfo([TensorSpec("tokens", (None, 128), "float32")], [TensorSpec("y", (None, 4))])
    fam = resolve_family(info, "generic")
    with pytest.raises(UsageError, match="no default range") as ei:
        derive_profiles(info, fam)
    assert "--shapes tokens:MIN:OPT:MAX" in ei.value.hint
    (p,) = derive_profiles(info, fam, ["tokens:1x128:4x128:16x128"])
    assert p.max == (16, 128)


def test_fixed_model_gets_a_fixed_profile():
    info = ModelInfo([TensorSpec("x", (1, 3, 224, 224))], [TensorSpec("y", (1, 4))])
    (p,) = derive_profiles(info, resolve_family(info, "generic"))
    assert p.origin == "fixed" and p.min == p.opt == p.max == (1, 3, 224, 224)


def test_parse_and_contains():
    name, lo, mid, hi = parse_shape_spec("a/b.tmp_0:1x3x48x16:8x3x48x320:64x3x48x3200")
    assert name == "a/b.tmp_0" and hi == (64, 3, 48, 3200)
    p = ShapeProfile(name, lo, mid, hi)
    validate_profile(p, TensorSpec(name, (None, 3, 48, None)))
    assert p.contains((2, 3, 48, 100)) and not p.contains((2, 3, 48, 4000))
