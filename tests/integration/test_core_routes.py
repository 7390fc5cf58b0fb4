"""Issue 'core': paddle2onnx, onnx2torch and paddle2torch (graph route) on the five real PP-OCR
models, each verified against Paddle inference; artifacts accept other batches and widths."""
from __future__ import annotations

import json

import numpy as np
import pytest

import ocrconvert
from ocrconvert.formats import Format

pytestmark = [pytest.mark.paddle, pytest.mark.torch, pytest.mark.zoo, pytest.mark.slow]

MODELS = {  # zoo name -> (family, an input shape unlike any verification case)
    "ppocrv4-rec": ("rec-ctc", (5, 3, 48, 224)),
    "ppocrv4-det": ("det-db", (3, 3, 224, 160)),
    "ppocrv4-cls": ("cls", (7, 3, 48, 192)),
    "ppocrv5-mobile-rec": ("rec-ctc", (5, 3, 48, 224)),
    "ppocrv5-mobile-det": ("det-db", (3, 3, 224, 160)),
}


def _random_max_abs(report) -> float:
    return max(o.max_abs for c in report.cases if c.kind == "random" for o in c.outputs)


def _check_report(report, family):
    assert report.passed, report.summary_line()
    assert report.family == family
    assert _random_max_abs(report) <= 1e-4
    kinds = {c.kind for c in report.cases}
    assert {"random", "rendered"} <= kinds
    batches = {shape[0] for c in report.cases for shape in c.input_shapes.values()}
    assert 1 in batches and max(batches) > 1
    for case in report.cases:
        assert case.task is not None and case.task.passed
        if family == "rec-ctc":
            assert case.task.detail["source_text"] == case.task.detail["target_text"]
        if family == "det-db":
            assert case.task.value >= 0.99


@pytest.fixture(scope="module", params=sorted(MODELS))
def routes(request, zoo, converted):
    """paddle2onnx and onnx2torch of each model, each verified by the spine against Paddle (shared with the
    other suites through the session's ``converted``)."""
    name = request.param
    onnx_res = converted(name, "onnx", route="paddle2onnx")
    torch_res = converted(onnx_res.artifact.path, "torch", route="onnx2torch")
    return name, zoo(name), onnx_res, torch_res


@pytest.fixture(scope="module")
def paddle2torch_graph(converted):
    """The two-hop graph route from a Paddle folder, once (the same two converters as above on every model)."""
    return converted("ppocrv4-cls", "torch", route="onnx2torch")


def test_paddle2onnx_verifies_against_paddle(routes):
    name, src, onnx_res, _ = routes
    assert onnx_res.artifact.format is Format.ONNX
    assert onnx_res.report.source_backend == "paddle"
    _check_report(onnx_res.report, MODELS[name][0])


def test_onnx2torch_on_paddle_exported_onnx_verifies_against_the_original_paddle_model(routes):
    name, src, _, torch_res = routes
    assert torch_res.artifact.format is Format.TORCH_GRAPH
    # the ONNX's manifest names the Paddle model, so verification goes back to it
    assert torch_res.report.source_backend == "paddle"
    _check_report(torch_res.report, MODELS[name][0])


def test_paddle2torch_verifies_against_paddle_not_the_intermediate_onnx(paddle2torch_graph):
    p2t = paddle2torch_graph
    assert p2t.route == ["paddle2onnx", "onnx2torch"]
    assert p2t.report.source_backend == "paddle" and p2t.report.target_backend == "torch"
    _check_report(p2t.report, "cls")
    man = json.loads((p2t.artifact.path / "ocrconvert.json").read_text())
    assert man["schema_version"] == 1
    assert man["source"]["format"] in ("paddle-legacy", "paddle-pir")
    assert len(man["source"]["sha256"]) == 64
    assert [h["converter"] for h in man["hops"]] == ["paddle2onnx", "onnx2torch"]
    assert man["hops"][0]["versions"]["paddle2onnx"] == "2.0.1"
    assert man["environment"]["packages"]["onnx2torch"]
    assert man["verification"]["passed"] is True


def test_a_damaged_artifact_fails_the_same_verification(routes, damage, tmp_path):
    """Negative controls: one conv scaled by 1.02 in the exported ONNX, two channels swapped in the torch
    artifact's weights; verified against the Paddle source as above, each must FAIL."""
    import shutil

    name, src, onnx_res, torch_res = routes
    bad_onnx = tmp_path / "bad.onnx"
    what = damage.damaged_onnx(onnx_res.artifact.path, bad_onnx, "conv x1.02")
    rep = ocrconvert.verify(src, bad_onnx)
    assert rep.verdict == "FAILED", f"{name}: {what} x1.02 slipped: {rep.summary_line()}"
    bad_torch = tmp_path / "bad_torch"
    shutil.copytree(torch_res.artifact.path, bad_torch)
    what = damage.damaged_safetensors(bad_torch, "channels swapped")
    rep = ocrconvert.verify(src, bad_torch)
    assert rep.verdict == "FAILED", f"{name}: {what} channels swapped slipped: {rep.summary_line()}"


def test_artifacts_accept_other_batch_and_width(routes):
    name, src, onnx_res, torch_res = routes
    shape = MODELS[name][1]
    x = np.random.default_rng(1).uniform(-1, 1, size=shape).astype(np.float32)
    ref = list(ocrconvert.load(src).infer({"x": x}).values())[0]
    for art in (onnx_res.artifact, torch_res.artifact):
        runner = ocrconvert.load(art.path)
        assert runner.input_names == ["x"]
        got = list(runner.infer({"x": x}).values())[0]
        assert got.shape == ref.shape and got.shape[0] == shape[0]
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


def test_dictionary_travels_into_onnx_metadata_for_recognition_only(routes):
    name, src, onnx_res, torch_res = routes
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(onnx_res.artifact.path)).metadata_props}
    assert meta["ocrconvert.family"] == MODELS[name][0]
    if MODELS[name][0] != "rec-ctc":
        assert "character" not in meta  # only recognition models carry a dictionary
        return
    n_classes = 6625 if name == "ppocrv4-rec" else 18385
    assert len(meta["character"].split("\n")) + 2 == n_classes
    # the same dictionary in the source, the ONNX metadata and the torch artifact
    assert ocrconvert.load(torch_res.artifact.path).info().dictionary == meta["character"].split("\n") \
        == ocrconvert.load(src).info().dictionary
    gts = next(c for c in torch_res.report.cases if c.label.startswith("rendered:")).task.detail  # known text
    # the Paddle model itself reads most rendered lines exactly (a sanity check on preprocessing)
    assert sum(a == b for a, b in zip(gts["source_text"], gts["ground_truth"])) >= len(gts["ground_truth"]) // 2
