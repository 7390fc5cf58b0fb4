"""FP16 cast and INT8 Q/DQ ONNX, each verified in ONNX Runtime against the source zoo model.

Measured on this machine (see docs/tensorrt.md): FP16 passes fp16 tolerances on det, rec and cls;
INT8 Q/DQ with the tests' small calibration sets fails the judged cases of cls (hard lines) and rec (text),
which these tests pin rather than hide.
"""
from __future__ import annotations

import onnx
import pytest

from ocrconvert.converters.onnx_torch import slim
from ocrconvert.converters.onnx_trt import prepare_source
from ocrconvert.formats import detect
from ocrconvert.onnx_io import load_onnx
from ocrconvert.tensorrt.options import TrtOptions
from ocrconvert.tensorrt.precision import cast_fp16
from ocrconvert.verification import Tolerances, verify_artifacts

pytest.importorskip("onnxconverter_common", reason="FP16 cast needs onnxconverter-common (extra 'trt-fp16')")


@pytest.mark.parametrize("name", ["ppocrv4-det-onnx", "ppocrv4-rec-onnx", "ppocrv4-cls-onnx"])
def test_fp16_cast_matches_source(onnx_model, tmp_path, name):
    src = onnx_model(name)
    m16 = cast_fp16(slim(load_onnx(src)))
    path = tmp_path / "model.fp16.onnx"
    onnx.save(m16, str(path))
    f16 = onnx.TensorProto.FLOAT16
    assert sum(i.data_type == f16 for i in m16.graph.initializer) > 10          # weights really are fp16
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in [*m16.graph.input, *m16.graph.output])
    report = verify_artifacts(src, path, tolerances=Tolerances(precision="fp16"))
    assert report.passed, report.summary_line()
    assert all(c.task is not None and c.task.passed for c in report.cases)


def test_fp16_keeps_sensitive_ops_fp32(onnx_model):
    m16 = cast_fp16(slim(load_onnx(onnx_model("ppocrv4-rec-onnx"))))
    # every Softmax/Pow/Sqrt/ReduceMean computes in fp32 (its input tensor is float32 after type inference)
    inferred = onnx.shape_inference.infer_shapes(m16)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.input]}
    checked = 0
    for node in inferred.graph.node:
        if node.op_type in ("Softmax", "Pow", "Sqrt", "ReduceMean"):
            assert types.get(node.input[0]) == onnx.TensorProto.FLOAT, node.name
            checked += 1
    assert checked >= 20


def _verify_int8(source, prepared):
    """As the spine (and `verify --precision int8`) judges an INT8 hop: the family's INT8 policy."""
    return verify_artifacts(source, prepared, tolerances=Tolerances(precision="int8"))


def _qdq_facts(path):
    from onnx import numpy_helper

    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    q = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    zps = [inits[n.input[2]] for n in q + dq if len(n.input) > 2 and n.input[2] in inits]
    per_channel = [n for n in dq if n.input[0] in inits and inits[n.input[1]].ndim == 1 and inits[n.input[1]].size > 1]
    return m, q, dq, zps, per_channel


def test_int8_qdq_cls_is_measured_honestly(onnx_model, calib_cls, tmp_path):
    """Cls INT8 Q/DQ (16 calibration lines, half turned): the Q/DQ model is well formed, but it fails on the seeded
    hard lines (measured: cosine 0.95, max abs 0.35, confident classes still agree); the clean rendered lines agree
    to 3e-6 but are saturated one-hot rows, so they carry no signal and cannot carry the verdict."""
    opts = TrtOptions.from_mapping({"precision": "int8", "calib_images": calib_cls,
                                    "shapes": ["x:1x3x48x192:8x3x48x192:16x3x48x192"]})
    prepared = prepare_source(detect(onnx_model("ppocrv4-cls-onnx")), tmp_path, opts)
    assert prepared.calibration.to_dict()["batches"] == 2
    m, q, dq, zps, per_channel = _qdq_facts(prepared.onnx_path)
    assert q and dq and per_channel                            # activations Q/DQ, per-channel weights
    assert all(z.dtype.name == "int8" and not z.any() for z in zps)   # symmetric: every zero point is 0
    assert all(i.data_type != onnx.TensorProto.INT32 for i in m.graph.initializer if i.name.endswith("_quantized")), \
        "bias must stay float (TensorRT)"
    report = _verify_int8(onnx_model("ppocrv4-cls-onnx"), prepared.onnx_path)
    assert not report.passed, report.summary_line()
    assert all(c.gate for c in report.cases if c.kind == "random")
    hard = next(c for c in report.cases if c.label.startswith("synthetic: hard lines"))
    clean = next(c for c in report.cases if c.label.startswith("rendered"))
    assert not hard.uninformative and not hard.passed and hard.task.passed   # output deviates, classes agree
    assert min(o.cosine for o in hard.outputs) < 0.99
    assert clean.uninformative and max(o.max_abs for o in clean.outputs) < 1e-4


@pytest.mark.slow
def test_int8_qdq_rec_is_measured_honestly(onnx_model, calib_lines, tmp_path):
    """Rec INT8 (16 calibration lines): the text mostly survives, but not exactly; the verdict says so."""
    opts = TrtOptions.from_mapping({"precision": "int8", "calib_images": calib_lines,
                                    "shapes": ["x:1x3x48x16:8x3x48x320:16x3x48x640"]})
    prepared = prepare_source(detect(onnx_model("ppocrv4-rec-onnx")), tmp_path, opts)
    report = _verify_int8(onnx_model("ppocrv4-rec-onnx"), prepared.onnx_path)
    # the random cases are the family's loose INT8 gates (numbers only); the text lines are judged by the task
    judged = [c for c in report.cases if not c.gate]
    assert all(c.gate and c.kind == "random" for c in report.cases if c not in judged)
    assert not report.passed and len(judged) == 2, report.summary_line()
    # measured: exact match 0.5 on the seeded text lines and on the rendered lines; most differences are a
    # leading/trailing space, one is a character ("Paddle0CR" read by the source, "PaddleOCR" by INT8)
    for case in judged:
        src, tgt = case.task.detail["source_text"], case.task.detail["target_text"]
        assert case.task.value < 1.0 and len(src) == len(tgt)
        assert sum(s.strip() == t.strip() for s, t in zip(src, tgt)) >= len(src) - 1
