"""A precision plan written into the TensorRT network, under the fake TensorRT 10.x and 11.x
(fake_tensorrt.py): 10.x keeps the plan's layers fp32 per layer (``layer.precision``, ``set_output_type``,
``OBEY_PRECISION_CONSTRAINTS``) on the weakly typed fp32 network; 11.x (strongly typed only) parses the FP16 ONNX
whose casts carry the plan. A fake pass says the calls and the data flow are right, not TensorRT's numbers."""
from __future__ import annotations

import json

import onnx
import pytest

from ocrconvert.pipeline import convert
from test_fake_engine import CLS, CLS_SHAPES, engine_contents, slim_once  # noqa: F401 - slim_once: autouse fixture


def _plan_file(onnx_model, tmp_path):
    """A plan keeping the first compute unit of the slimmed cls model (the names the builds use) in fp32."""
    from ocrconvert.converters.onnx_torch import slim
    from ocrconvert.onnx_io import load_onnx
    from ocrconvert.precision_plan import ONNX_NODES, PrecisionPlan
    from ocrconvert.tensorrt.precision import name_nodes
    from ocrconvert.verification.plan_search import layer_units

    model = name_nodes(slim(load_onnx(onnx_model(CLS))))
    anchor, nodes = layer_units(model)[0]
    plan = PrecisionPlan("fp16", ONNX_NODES, tuple(nodes), "file", "cls",
                         search={"kept_units": [anchor], "gate": {"threshold": None}})
    return plan.save(tmp_path / "plan.json"), nodes, model


def test_plan_reaches_the_network(fake_trt, onnx_model, tmp_path):
    path, nodes, source = _plan_file(onnx_model, tmp_path)
    engine = tmp_path / "cls.fp16.engine"
    result = convert(onnx_model(CLS), engine, target="tensorrt", route="trt-build",
                     options={"precision": "fp16", "shapes": CLS_SHAPES, "plan": str(path)})
    assert result.report.passed, result.report.summary_line()
    man = json.loads((tmp_path / f"{engine.name}.ocrconvert.json").read_text())
    assert man["precision_plan"]["keep_fp32"] == list(nodes) and man["precision_plan"]["origin"] == "file"
    facts, parsed = engine_contents(engine)
    how = man["engine"]["precision_plan"]
    if fake_trt._major == 10:
        # the fp32 ONNX, the plan's layers pinned to fp32 and the builder told to obey
        assert facts["fp32_layers"] == sorted(nodes)
        assert "OBEY_PRECISION_CONSTRAINTS" in facts["flags"] and "FP16" in facts["flags"]
        assert how["layers_fp32"] == len(nodes) and how["plan_nodes_unmatched"] == []
    else:
        # strongly typed: the FP16 ONNX carries the plan (kept Conv weights fp32, casts at the boundary)
        assert facts["fp32_layers"] == [] and how == {"how": "casts in the strongly typed ONNX"}
        inits = {i.name: i.data_type for i in parsed.graph.initializer}
        conv = next(n for n in parsed.graph.node if n.name == nodes[-1] or (n.name in nodes and n.op_type == "Conv"))
        assert inits[conv.input[1]] == onnx.TensorProto.FLOAT
        assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in parsed.graph.initializer)
        assert any(n.op_type == "Cast" for n in parsed.graph.node)


def test_trt11_refuses_per_layer_precision(fake_trt11, onnx_model, tmp_path):
    """The fake models 11.x faithfully: per-layer precision is not a strongly typed network's, so the builder must
    never call it there (it writes the plan as casts instead)."""
    from ocrconvert.converters.onnx_trt import keep_layers_fp32

    trt = fake_trt11
    builder = trt.Builder(trt.Logger())
    network = builder.create_network(0)
    assert trt.OnnxParser(network, trt.Logger()).parse_from_file(str(onnx_model(CLS)))
    with pytest.raises(RuntimeError, match="strongly typed"):
        network.get_layer(0).precision = trt.float32
    with pytest.raises(RuntimeError):
        keep_layers_fp32(trt, network, builder.create_builder_config(), [network.get_layer(0).name])


def test_auto_plan_on_the_engine_route(fake_trt, onnx_model, tmp_path):
    """trt-build --plan auto: the search runs before the build (against the input, the ORIGINAL here), the engine
    records the plan, and the spine verifies it at the plan's gate."""
    engine = tmp_path / "cls.fp16.engine"
    result = convert(onnx_model(CLS), engine, target="tensorrt", route="trt-build",
                     options={"precision": "fp16", "shapes": CLS_SHAPES, "plan": "auto", "plan_max_evals": 4})
    assert result.report.passed, result.report.summary_line()
    plan = json.loads((tmp_path / f"{engine.name}.ocrconvert.json").read_text())["precision_plan"]
    assert plan["origin"] == "auto" and plan["passed"] is True and 1 <= plan["search"]["evaluations"] <= 4
    assert plan["search"]["gate"]["against_format"] == "onnx" and plan["search"]["gate"]["cases"]
