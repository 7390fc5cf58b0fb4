"""``--plan auto`` / ``--plan FILE`` (issue 14, item 3): PP-OCRv5 det as fp16 ONNX (trt-export) judged against the
ORIGINAL Paddle program, on the rendered pages the search saw and on pages it has not seen."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ocrconvert.pipeline import convert

pytestmark = [pytest.mark.paddle, pytest.mark.zoo, pytest.mark.slow]
DET = "ppocrv5-mobile-det"


@pytest.fixture(scope="module")
def det_onnx(converted):
    """PP-OCRv5 det converted from Paddle (its manifest names the Paddle program: the ORIGINAL); the session's
    shared conversion (tests/integration verifies the same one). Read only."""
    result = converted(DET, "onnx", route="paddle2onnx")
    assert result.passed
    return result.artifact.path


@pytest.fixture(scope="module")
def auto_plan(det_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("plan") / "det-fp16"
    return convert(det_onnx, out, target="tensorrt-plan", options={"precision": "fp16", "plan": "auto"})


def _unseen_ious(zoo, onnx_path, seed=500, pages=6):
    """det-map IoU against Paddle on rendered pages of another seed and size than the search's (960x720)."""
    from ocrconvert.families import resolve_family
    from ocrconvert.families.det import binarized_iou
    from ocrconvert.formats import Artifact, Format, detect
    from ocrconvert.ocr.pages import render_pages
    from ocrconvert.runners import runner_for

    ref = runner_for(detect(zoo(DET)))
    tgt = runner_for(Artifact(onnx_path, Format.ONNX, {"model": onnx_path}))
    fam = resolve_family(ref.info())
    feeds = fam.image_feeds([(p.name, p.image.convert("RGB"), None) for p in render_pages(pages, seed=seed)])
    out = []
    for _, feed in feeds:
        x = next(iter(feed.values()))
        a = next(iter(ref.infer(feed).values()))
        b = next(iter(tgt.infer({tgt.input_names[0]: x}).values()))
        out.append(binarized_iou(a, b, fam.thresh))
    return out


def test_auto_plan_passes_against_paddle_on_seen_and_unseen_pages(auto_plan, zoo):
    result = auto_plan
    assert result.passed, result.report.summary_line()
    plan = result.manifest["precision_plan"]
    search = plan["search"]
    assert plan["origin"] == "auto" and plan["passed"] is True and plan["keys"] == "onnx node"
    assert search["gate"]["threshold"] >= 0.99 and search["gate"]["against_format"] == "paddle-pir"
    # all-fp16 misses the gate on the rendered 640x480 page (0.9875): the search had to find layers
    first = search["candidates"][0]
    assert first["kept_units"] == 0 and first["passed"] is False
    assert search["kept_units"] and plan["keep_fp32"] and 0.0 < plan["fp32_flop_share"] < 0.5
    assert search["evaluations"] <= search["max_evals"] == 16
    # the spine judged the build at the plan's gate, against Paddle
    images = [c for c in result.report.cases if c.kind != "random" and c.task is not None]
    assert images and all(c.task.value >= 0.99 and c.task.threshold >= 0.99 for c in images)
    # the plan file beside the artifact is the manifest's plan
    onnx_path = result.artifact.files["model"]
    saved = json.loads((onnx_path.parent / "precision-plan.json").read_text())
    assert saved["keep_fp32"] == plan["keep_fp32"]
    # the kept nodes are fp32 in the written ONNX: their weights were not rounded
    import onnx

    m = onnx.load(str(onnx_path))
    kept = {n.name: n for n in m.graph.node if n.name in set(plan["keep_fp32"])}
    inits = {i.name: i.data_type for i in m.graph.initializer}
    convs = [n for n in kept.values() if n.op_type == "Conv"]
    assert convs and all(inits[n.input[1]] == onnx.TensorProto.FLOAT for n in convs)
    # pages it has not seen (another seed, another size)
    ious = _unseen_ious(zoo, onnx_path)
    assert min(ious) >= 0.99, ious


def test_plan_file_is_reused_without_searching(auto_plan, det_onnx, tmp_path, monkeypatch):
    import ocrconvert.verification.plan_search as plan_search

    monkeypatch.setattr(plan_search, "search_plan", lambda *a, **k: pytest.fail("--plan FILE searched"))
    plan_file = auto_plan.artifact.files["model"].parent / "precision-plan.json"
    result = convert(det_onnx, tmp_path / "again", target="tensorrt-plan",
                     options={"precision": "fp16", "plan": str(plan_file)})
    assert result.passed, result.report.summary_line()
    plan = result.manifest["precision_plan"]
    assert plan["origin"] == "file" and plan["search"]["evaluations"] == 0
    assert plan["search"]["reused_from"] == str(plan_file)
    assert plan["keep_fp32"] == auto_plan.manifest["precision_plan"]["keep_fp32"]
    assert plan["fp32_flop_share"] == auto_plan.manifest["precision_plan"]["fp32_flop_share"]
    a = (tmp_path / "again" / "model.fp16.onnx").read_bytes()
    assert a == auto_plan.artifact.files["model"].read_bytes()  # the same plan writes the same ONNX
    # a manifest is a plan file too (an engine has no folder to put precision-plan.json in)
    again = convert(det_onnx, tmp_path / "from-manifest", target="tensorrt-plan",
                    options={"precision": "fp16", "plan": str(result.manifest_path)}, verify=False)
    assert again.manifest["precision_plan"]["keep_fp32"] == plan["keep_fp32"]


def test_a_plan_keeping_nothing_fp32_fails_with_its_gate(auto_plan, det_onnx, tmp_path):
    """Negative control: the same plan emptied (all fp16) is a FAILED build, reported with the gate it failed."""
    empty = dict(auto_plan.manifest["precision_plan"], keep_fp32=[], fp32_flop_share=0.0)
    path = tmp_path / "empty-plan.json"
    path.write_text(json.dumps(empty))
    result = convert(det_onnx, tmp_path / "empty", target="tensorrt-plan",
                     options={"precision": "fp16", "plan": str(path)})
    assert not result.passed
    assert result.artifact.path.name.endswith("FAILED") or "FAILED" in str(result.artifact.path)
    failing = [c for c in result.report.cases if c.task is not None and not c.task.passed]
    assert failing and all(c.task.threshold >= 0.99 and c.task.value < 0.99 for c in failing)
    assert result.manifest["precision_plan"]["keep_fp32"] == []


def test_tight_gate_searches_deeper_within_its_budget(det_onnx, tmp_path):
    """A tighter gate than the family's needs more fp32; the search stays inside --plan-max-evals."""
    result = convert(det_onnx, tmp_path / "tight", target="tensorrt-plan",
                     options={"precision": "fp16", "plan": "auto", "plan_min_metric": 0.998, "plan_max_evals": 8},
                     verify=False)
    plan = result.manifest["precision_plan"]
    search = plan["search"]
    assert search["evaluations"] <= 8 and search["gate"]["threshold"] == 0.998
    if plan["passed"]:
        passing = [c for c in search["candidates"] if c["passed"]]
        assert passing and min(c["worst"] for c in passing) >= 0.998
        assert plan["fp32_flop_share"] == min(c["fp32_flop_share"] for c in passing if c["kept_units"]
                                              == len(search["kept_units"]))
    else:  # reported, not a crash: every layer, share 1.0
        assert search.get("failure") and plan["fp32_flop_share"] == 1.0


def test_plan_options_are_refused_where_they_cannot_be_honoured(det_onnx, tmp_path):
    from ocrconvert.errors import UsageError

    with pytest.raises(UsageError, match="fp16 or int8"):
        convert(det_onnx, tmp_path / "x", target="tensorrt-plan", options={"plan": "auto"})
    with pytest.raises(UsageError, match="no such plan file"):
        convert(det_onnx, tmp_path / "x", target="tensorrt-plan",
                options={"precision": "fp16", "plan": str(tmp_path / "missing.json")})
    with pytest.raises(UsageError, match="only apply with --plan auto"):
        convert(det_onnx, tmp_path / "x", target="tensorrt-plan", options={"precision": "fp16", "plan_max_evals": 4})
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"format": "ocrconvert-precision-plan/1", "precision": "fp16", "keys": "onnx node",
                               "keep_fp32": ["no-such-node"]}))
    with pytest.raises(UsageError, match="lacks"):
        convert(det_onnx, tmp_path / "x", target="tensorrt-plan", options={"precision": "fp16", "plan": str(bad)})


def test_layer_units_and_flops_on_a_tiny_graph():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ocrconvert.verification.plan_search import layer_units, unit_flops

    w1 = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w1")
    w2 = numpy_helper.from_array(np.ones((8, 4, 1, 1), np.float32), "w2")
    nodes = [helper.make_node("Mul", ["x", "x"], ["m"], name="pre"),
             helper.make_node("Conv", ["m", "w1"], ["c1"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
             helper.make_node("Conv", ["r1", "w2"], ["y"], name="c2")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])], [w1, w2])
    m = helper.make_model(g)
    assert layer_units(m) == [("c1", ["pre", "c1", "r1"]), ("c2", ["c2"])]
    fl = unit_flops(m, {"x": (1, 3, 8, 8), "m": (1, 3, 8, 8), "c1": (1, 4, 8, 8), "r1": (1, 4, 8, 8), "y": (1, 8, 8, 8)})
    assert fl == {"c1": 2.0 * 4 * 64 * 27, "c2": 2.0 * 8 * 64 * 4}
    onnx.checker.check_model(m)


def test_cli_plan_file_and_refusals(auto_plan, det_onnx, tmp_path, cli_here):
    plan_file = auto_plan.artifact.files["model"].parent / "precision-plan.json"
    res = cli_here("trt-build", det_onnx, "--export-only", tmp_path / "cli", "--fp16", "--plan", plan_file,
                   "--no-verify", "--json", check=0)
    out = json.loads(res.stdout)   # results on stdout: one JSON document
    assert out["artifact"].endswith("cli/model.fp16.onnx")
    man = json.loads((tmp_path / "cli" / "precision-plan.json").read_text())
    assert man["origin"] == "file" and man["keep_fp32"] == auto_plan.manifest["precision_plan"]["keep_fp32"]
    res = cli_here("trt-build", det_onnx, "--export-only", tmp_path / "x", "--plan", "auto")
    assert res.code == 2 and "fp16 or int8" in res.stderr and not res.stdout.strip()
    res = cli_here("trt-build", det_onnx, "--export-only", tmp_path / "x", "--fp16", "--plan", plan_file,
                   "--plan-max-evals", "4")
    assert res.code == 2 and "only apply with --plan auto" in res.stderr


def test_a_gate_no_plan_can_pass_is_a_clear_failed_report(det_onnx, tmp_path):
    """IoU 1.0 against Paddle: even every layer in fp32 misses it (ONNX Runtime vs Paddle: 0.9999). The search stops
    after two candidates and says so; the build is verified at that gate and lands FAILED, not a crash."""
    result = convert(det_onnx, tmp_path / "impossible", target="tensorrt-plan",
                     options={"precision": "fp16", "plan": "auto", "plan_min_metric": 1.0})
    plan = result.manifest["precision_plan"]
    search = plan["search"]
    assert plan["passed"] is False and plan["fp32_flop_share"] == 1.0
    assert search["failure"] == "the gate fails even with every layer in fp32" and search["evaluations"] == 2
    assert len(search["kept_units"]) == search["units"]
    assert not result.passed and result.manifest["status"] == "failed-verification"
