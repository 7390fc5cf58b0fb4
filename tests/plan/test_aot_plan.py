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

    assert AotOptions.from_mapping({"precision": "fp16", "plan": "auto"}).plan == "auto"  # searched on the module
    with pytest.raises(UsageError, match="fp16 or int8"):
        AotOptions.from_mapping({"plan": "auto"})
    with pytest.raises(UsageError, match="fp16 or int8"):
        AotOptions.from_mapping({"plan": str(PrecisionPlan("fp16", ONNX_NODES).save(tmp_path / "p.json"))})
    path = PrecisionPlan("fp16", ONNX_NODES, ("Conv.0",)).save(tmp_path / "onnx.json")
    with pytest.raises(UsageError, match="onnx nodes"):
        PrecisionPlan.load(path).check_for("fp16", "native module")


def test_native_plan_search_keeps_what_the_gate_needs(det_native, zoo, tmp_path):
    """--plan auto on aot-build: candidates are the native module at fp16 with some compute modules kept fp32,
    judged against the ORIGINAL Paddle model (here its recording on the synthetic text-like cases). At a tight
    gate the all-fp16 module FAILS, all-fp32 passes, and the plan found keeps a strict subset that passes."""
    import copy

    from ocrconvert.converters.torch_aot import build_module, wrap_module
    from ocrconvert.formats import detect
    from ocrconvert.native import load_native
    from ocrconvert.precision_plan import NATIVE_MODULES
    from ocrconvert.runners import runner_for
    from ocrconvert.verification.plan_search import search_native_plan
    from ocrconvert.verification.run import record_reference

    ref = detect(record_reference(zoo("ppocrv4-det"), tmp_path / "ref.npz", rendered=False))
    runner = runner_for(det_native)
    base = load_native(det_native.path, fused=True).eval()
    plan = search_native_plan(lambda keep: wrap_module(copy.deepcopy(base), keep is not None, False, keep_fp32=keep),
                              ref, "fp16", input_name=runner.input_names[0], output_names=list(runner.output_names),
                              min_metric=0.999, max_evals=3)
    first, every = plan.search["candidates"][:2]
    assert first["kept_units"] == 0 and not first["passed"] and first["worst"] < 0.999  # the gate can fail
    assert every["kept_units"] == plan.search["units"] and every["passed"]
    assert plan.passed and plan.origin == "auto" and plan.keys == NATIVE_MODULES
    assert 0 < len(plan.keep_fp32) < plan.search["units"] and 0 < plan.fp32_flop_share < 1
    assert plan.search["gate"]["threshold"] == 0.999 and plan.search["gate"]["against_format"] == "reference"
    # the plan names single convs; the module it builds runs them in fp32 and the rest in fp16
    _, wrapped = build_module(det_native, True, "cpu", keep_fp32=plan.keep_fp32)
    dt = dict(wrapped.inner.named_parameters())
    assert all(dt[f"{k}.weight"].dtype == torch.float32 for k in plan.keep_fp32 if f"{k}.weight" in dt)
    assert all(p.dtype == torch.float16 for n, p in dt.items() if not any(n.startswith(k + ".") for k in plan.keep_fp32))
    assert wrapped(torch.zeros(1, 3, 64, 64)).dtype == torch.float32


def test_bisect_units_finds_the_fewest_units_within_its_budget():
    from ocrconvert.verification.plan_search import bisect_units

    need = {3, 4, 9}
    calls = []

    def judge(idx):
        calls.append(tuple(idx))
        return need <= set(idx)

    kept, passed, why = bisect_units(12, judge, 3, lambda: len(calls) < 40)
    assert passed and set(kept) == need and why == ""
    calls.clear()
    kept, passed, _ = bisect_units(12, judge, 3, lambda: len(calls) < 4)   # a small budget: passing, not minimal
    assert passed and need <= set(kept) and len(calls) <= 4
    kept, passed, why = bisect_units(12, lambda idx: False, 0, lambda: True)
    assert not passed and kept == list(range(12)) and "every layer in fp32" in why
