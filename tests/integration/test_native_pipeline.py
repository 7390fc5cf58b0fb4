"""The native route through the pipeline: default choice, both forms verified, dynamo ONNX re-export
verified against the Paddle source, AOTInductor package on CPU, recorded references."""
from __future__ import annotations

import json

import numpy as np
import pytest

import ocrconvert
from ocrconvert.formats import Format

pytestmark = [pytest.mark.paddle, pytest.mark.torch, pytest.mark.native, pytest.mark.zoo]


@pytest.fixture(scope="module")
def native_rec(zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("nat") / "rec"
    return ocrconvert.convert(zoo("ppocrv4-rec"), out, target="torch")


def test_paddle2torch_picks_native_and_verifies_fused_and_trainable_forms(native_rec):
    res = native_rec
    assert res.route == ["native"] and res.artifact.format is Format.TORCH_NATIVE
    assert res.passed, res.report.summary_line()
    assert res.report.target_backend == "torch-native (fused)"
    assert [r.target_backend for r in res.report.extra_reports] == ["torch-native (trainable)"]
    man = json.loads((res.artifact.path / "ocrconvert.json").read_text())
    mapping = man["hops"][0]["produced"]["mapping_report"]
    assert mapping["complete"] and mapping["unmapped_source"] == [] and mapping["unset_target"] == []
    assert man["verification"]["passed"] and man["verification_trainable_form"]["passed"]
    assert json.loads((res.artifact.path / "config.json").read_text())["model_type"] == "pp_ocrv5_mobile_rec"
    for rep in (res.report, *res.report.extra_reports):
        assert rep.worst_max_abs("random") <= 1e-4
        rendered = next(c for c in rep.cases if c.kind == "rendered")
        assert rendered.task.detail["source_text"] == rendered.task.detail["target_text"]


def test_a_damaged_native_artifact_fails_the_same_verification(native_rec, zoo, damage, tmp_path):
    """Negative control: a square Linear transposed (every shape still valid) must fail against Paddle."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(native_rec.artifact.path, bad)
    what = damage.damaged_safetensors(bad, "square linear transposed")
    assert what is not None
    rep = ocrconvert.verify(zoo("ppocrv4-rec"), bad)
    assert rep.verdict == "FAILED", f"{what} transposed slipped through: {rep.summary_line()}"


def test_native_reexport_to_onnx_keeps_dynamic_axes_and_verifies_against_paddle(native_rec, zoo, tmp_path):
    res = ocrconvert.convert(native_rec.artifact.path, tmp_path / "rec.onnx", target="onnx")
    assert res.passed, res.report.summary_line()
    assert res.report.source_backend == "paddle"  # the ORIGINAL source, found through the manifest
    r = ocrconvert.load(res.artifact.path)
    assert r.inputs[0].dynamic_axes == [0, 3]
    x = np.random.default_rng(3).uniform(-1, 1, (6, 3, 48, 208)).astype(np.float32)
    ref = list(ocrconvert.load(zoo("ppocrv4-rec")).infer({"x": x}).values())[0]
    np.testing.assert_allclose(list(r.infer({"x": x}).values())[0], ref, atol=1e-4)


@pytest.mark.slow
def test_aot_package_on_cpu_from_a_paddle_folder_verified_against_a_recorded_reference(zoo, tmp_path):
    from ocrconvert.verification import record_reference

    ref = record_reference(zoo("ppocrv4-cls"), tmp_path / "cls_ref.npz")
    res = ocrconvert.convert(zoo("ppocrv4-cls"), tmp_path / "cls.pt2", target="torch-aot",
                             options={"device": "cpu"}, reference=ref)
    assert res.route == ["native", "aot-build"]
    assert res.passed and res.report.source_backend == "reference(paddle)"
    man = json.loads((tmp_path / "cls.pt2.ocrconvert.json").read_text())
    assert man["source"]["format"] == "paddle-legacy" and man["verified_against"]["format"] == "reference"
    assert man["aot"]["device"] == "cpu" and man["io"]["inputs"][0]["name"] == "x"
    out = ocrconvert.load(tmp_path / "cls.pt2").infer({"x": np.zeros((5, 3, 48, 192), np.float32)})
    assert list(out.values())[0].shape == (5, 2)
    # loading a .pt2 runs its native code: one without ocrconvert's matching manifest is refused
    import shutil

    from ocrconvert.errors import UnsupportedModelError

    shutil.copy(tmp_path / "cls.pt2", tmp_path / "stranger.pt2")
    with pytest.raises(UnsupportedModelError, match="native code"):
        ocrconvert.load(tmp_path / "stranger.pt2").infer({"x": np.zeros((1, 3, 48, 192), np.float32)})


def test_reference_only_answers_recorded_inputs(zoo, tmp_path, damage):
    from ocrconvert.errors import UsageError
    from ocrconvert.verification import record_reference

    ref = record_reference(zoo("ppocrv4-cls"), tmp_path / "r.npz", rendered=False)
    rep = ocrconvert.verify(ref, zoo("ppocrv4-cls-onnx"))
    recorded = ocrconvert.load(ref).recorded_cases
    assert rep.passed, rep.summary_line()
    assert [c.label for c in rep.cases] == [label for _, label, _, _ in recorded] and len(recorded) >= 2  # its own cases
    # negative control: the recorded outputs catch a damaged model as the live source would
    what = damage.damaged_onnx(zoo("ppocrv4-cls-onnx") / "model.onnx", tmp_path / "bad.onnx", "conv x1.02")
    rep = ocrconvert.verify(ref, tmp_path / "bad.onnx")
    assert rep.verdict == "FAILED", f"{what} x1.02 slipped through: {rep.summary_line()}"
    with pytest.raises(UsageError, match="not recorded"):
        ocrconvert.load(ref).infer({"x": np.ones((1, 3, 48, 192), np.float32)})
