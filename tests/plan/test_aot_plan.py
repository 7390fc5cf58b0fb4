"""aot-build's precision plan: the det model's hand split is its shipped plan (native module paths, the same
record --plan auto writes); --plan FILE replaces it. The package itself needs CUDA (fp16); the module it would
compile is checked here on the CPU."""
from __future__ import annotations

import pytest
import torch

from ocrconvert.errors import UsageError

pytestmark = [pytest.mark.native, pytest.mark.zoo, pytest.mark.slow]


@pytest.fixture(scope="module")
def det_native(zoo, tmp_path_factory):
    from ocrconvert.formats import detect
    from ocrconvert.native.api import convert_to_transformers

    out = tmp_path_factory.mktemp("aot") / "det-native"
    convert_to_transformers(zoo("ppocrv4-det"), out)
    return detect(out)


def _dtypes(module):
    return {name: p.dtype for name, p in module.named_parameters()}


def test_the_hand_split_is_the_shipped_plan_and_a_plan_file_replaces_it(det_native, tmp_path):
    from ocrconvert.converters.torch_aot import build_module, shipped_plan
    from ocrconvert.precision_plan import NATIVE_MODULES, PrecisionPlan

    _, wrapped = build_module(det_native, True, "cpu")
    plan = shipped_plan(wrapped.inner, None)
    assert plan.keys == NATIVE_MODULES and plan.origin == "shipped"
    assert plan.keep_fp32[0] == "backbone.stem" and plan.keep_fp32[-1] == "conv_final"
    dt = _dtypes(wrapped.inner)
    assert all(v == torch.float32 for k, v in dt.items() if k.startswith(("backbone.stem.", "conv_final.")))
    assert any(v == torch.float16 for k, v in dt.items() if k.startswith("neck."))

    mine = PrecisionPlan("fp16", NATIVE_MODULES, ("neck",), "file")
    path = mine.save(tmp_path / "plan.json")
    loaded = PrecisionPlan.load(path)
    _, wrapped = build_module(det_native, True, "cpu", keep_fp32=loaded.keep_fp32)
    dt = _dtypes(wrapped.inner)
    assert all(v == torch.float32 for k, v in dt.items() if k.startswith("neck."))
    assert all(v == torch.float16 for k, v in dt.items() if k.startswith(("backbone.stem.", "conv_final.")))
    assert wrapped.in_dtype == torch.float16  # the stem is fp16 now: the image is fed as fp16
    with pytest.raises(AttributeError):   # a plan naming a module the model lacks is refused, not ignored
        build_module(det_native, True, "cpu", keep_fp32=("no.such.module",))


def test_aot_plan_options(tmp_path):
    from ocrconvert.converters.torch_aot import AotOptions
    from ocrconvert.precision_plan import ONNX_NODES, PrecisionPlan

    with pytest.raises(UsageError, match="ONNX builds only"):
        AotOptions.from_mapping({"precision": "fp16", "plan": "auto"})
    with pytest.raises(UsageError, match="fp16 or int8"):
        AotOptions.from_mapping({"plan": str(PrecisionPlan("fp16", ONNX_NODES).save(tmp_path / "p.json"))})
    path = PrecisionPlan("fp16", ONNX_NODES, ("Conv.0",)).save(tmp_path / "onnx.json")
    with pytest.raises(UsageError, match="onnx nodes"):
        PrecisionPlan.load(path).check_for("fp16", "native module")
