"""The weight check on tiny generated models: an honest fp16 cast / INT8 quantisation passes within half a step, a
weight damaged by less than the precision's output error fails naming its tensor, untraceable weights leave it
incomplete (docs/negative-controls.md has the real-model matrix)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ocrconvert.verification.weights import check_weights, onnx_source_weights

RNG = np.random.default_rng(0)
W = RNG.normal(0, 0.1, size=(8, 3, 3, 3)).astype(np.float32)


def _conv_model(inits: list, weight_input: str, nodes_before: list | None = None):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [*(nodes_before or []), helper.make_node("Conv", ["x", weight_input], ["y"])]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=inits))


def _qdq(w: np.ndarray, name: str = "conv.w_0", scale_factor: float = 1.0):
    """Per-channel symmetric INT8 as onnxruntime writes it: q = round(w / s), s = max|w| / 127 per channel."""
    s = np.abs(w).reshape(len(w), -1).max(-1) / 127
    q = np.clip(np.round(w / s.reshape(-1, 1, 1, 1)), -127, 127).astype(np.int8)
    inits = [numpy_helper.from_array(q, f"{name}_quantized"),
             numpy_helper.from_array((s * scale_factor).astype(np.float32), f"{name}_scale"),
             numpy_helper.from_array(np.zeros(len(w), np.int8), f"{name}_zero_point")]
    dq = helper.make_node("DequantizeLinear", [f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"],
                          [f"{name}_dq"], axis=0)
    return _conv_model(inits, f"{name}_dq", [dq])


def test_honest_int8_weights_are_within_half_a_step():
    res = check_weights({"conv.w_0": W}, _qdq(W), "int8", 1.0)
    assert res.passed and res.complete and res.checked == 1 and res.worst_steps <= 0.5 + 1e-6


def test_a_scale_x1_02_fails_naming_the_tensor():
    res = check_weights({"conv.w_0": W}, _qdq(W, scale_factor=1.02), "int8", 1.0)
    assert not res.passed and res.mismatches[0]["tensor"] == "conv.w_0" and res.mismatches[0]["steps"] > 2
    assert res.mismatches[0]["channels_off"] == 8   # every channel's largest weight moved by 127 x 2 % steps


def test_fp16_weights_and_swapped_channels():
    honest = _conv_model([numpy_helper.from_array(W.astype(np.float16), "conv.w_0")], "conv.w_0")
    assert check_weights({"conv.w_0": W}, honest, "fp16", 1.0).worst_steps <= 0.5
    swapped = W.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    res = check_weights({"conv.w_0": W}, _conv_model([numpy_helper.from_array(swapped.astype(np.float16),
                                                                              "conv.w_0")], "conv.w_0"), "fp16", 1.0)
    assert not res.passed and {res.mismatches[0]["channel"], res.mismatches[0]["channels_off"]} == {0, 2}


def test_a_renamed_weight_traces_by_value_and_an_unknown_one_leaves_the_check_incomplete():
    # a source whose names the target does not carry (another export of the same weights): traced by value
    res = check_weights({"other_name": W, "decoy": RNG.normal(0, 0.1, size=W.shape)}, _qdq(W), "int8", 1.0)
    assert res.passed and res.complete and res.checked == 1
    res = check_weights({"decoy": RNG.normal(0, 0.1, size=W.shape)}, _qdq(W), "int8", 1.0)
    assert res.ran is False and res.incomplete == ["conv.w_0"]


def test_conv_batchnorm_folds_under_the_name_onnxslim_gives(tmp_path):
    """A source Conv -> BatchNormalization: the folded weight is ``<bn output>_weight``, as onnxslim names it."""
    gamma, beta = RNG.uniform(0.5, 2, 8), RNG.normal(0, 0.1, 8)
    mean, var = RNG.normal(0, 0.1, 8), RNG.uniform(0.5, 2, 8)
    inits = [numpy_helper.from_array(W, "conv.w_0")] + [
        numpy_helper.from_array(a.astype(np.float32), n) for a, n in
        ((gamma, "bn.w_0"), (beta, "bn.b_0"), (mean, "bn.w_1"), (var, "bn.w_2"))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("bn.tmp_3", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "conv.w_0"], ["c"]),
                               helper.make_node("BatchNormalization", ["c", "bn.w_0", "bn.b_0", "bn.w_1", "bn.w_2"],
                                                ["bn.tmp_3"], epsilon=1e-5)], "g", [x], [y], initializer=inits)
    onnx.save(helper.make_model(graph), str(tmp_path / "src.onnx"))
    tensors = onnx_source_weights(tmp_path / "src.onnx")
    k = gamma / np.sqrt(var + 1e-5)
    assert np.allclose(tensors["bn.tmp_3_weight"], W * k.reshape(-1, 1, 1, 1))
    assert np.allclose(tensors["bn.tmp_3_bias"], beta - mean * k)
    folded = tensors["bn.tmp_3_weight"].astype(np.float32)
    assert check_weights(tensors, _qdq(folded, "bn.tmp_3_weight"), "int8", 1.0).passed
    assert not check_weights(tensors, _qdq(folded, "bn.tmp_3_weight", scale_factor=1.02), "int8", 1.0).passed


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_the_family_declares_the_weight_policy(precision):
    from ocrconvert.families.base import GenericFamily
    from ocrconvert.specs import ModelInfo

    fam = GenericFamily(ModelInfo(inputs=[], outputs=[]))
    assert fam.weight_steps(precision) == 1.0 and fam.weight_steps("fp32") is None


def _save_pair(tmp_path):
    """A tiny fp32 conv model and its fp16-weight twin (the weights cast, as the FP16 cast writes them)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])
    src = helper.make_model(helper.make_graph([helper.make_node("Conv", ["x", "conv.w_0"], ["y"])], "g", [x], [y],
                                              initializer=[numpy_helper.from_array(W, "conv.w_0")]),
                            opset_imports=[helper.make_opsetid("", 13)])
    w16 = helper.make_node("Cast", ["conv.w_0"], ["w32"], to=TensorProto.FLOAT)
    tgt = helper.make_model(helper.make_graph([w16, helper.make_node("Conv", ["x", "w32"], ["y"])], "g", [x], [y],
                                              initializer=[numpy_helper.from_array(W.astype(np.float16), "conv.w_0")]),
                            opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(src, str(tmp_path / "src.onnx"))
    onnx.save(tgt, str(tmp_path / "tgt.onnx"))
    return tmp_path / "src.onnx", tmp_path / "tgt.onnx"


def test_the_verifier_checks_weights_against_the_source_or_its_recorded_reference(tmp_path):
    from ocrconvert.verification import Tolerances, record_reference, verify_artifacts

    src, tgt = _save_pair(tmp_path)
    fp16 = Tolerances(precision="fp16")
    report = verify_artifacts(src, tgt, tolerances=fp16)
    assert report.passed and report.weights.ran and report.weights.checked == 1, report.summary_line()
    assert "weights" in report.to_dict() and "weights 1 within" in report.summary_line()
    ref = record_reference(src, tmp_path / "ref.npz")
    assert verify_artifacts(ref, tgt, tolerances=fp16).weights.ran   # the reference names its source
    assert verify_artifacts(src, tgt, tolerances=Tolerances(precision="fp32")).weights is None  # fp32: outputs judge
    m = onnx.load(str(src))
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(W * 1.02, "conv.w_0"))   # the source changed since
    onnx.save(m, str(src))
    skipped = verify_artifacts(ref, tgt, tolerances=fp16).weights
    assert skipped.skipped and "changed since it was recorded" in skipped.line()
    failed = verify_artifacts(src, tgt, tolerances=fp16)   # against the changed source: the weights differ by 2 %
    assert failed.verdict == "FAILED" and failed.weights.mismatches[0]["tensor"] == "conv.w_0"
