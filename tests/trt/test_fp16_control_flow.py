"""FP16 cast of models with control flow (Loop, If): the bodies, their carried state and what they read from the
outer graph stay fp32, cast at the boundary; a Cast to float whose output the caster retyped casts to fp16.

SLANet-plus (the table model) was the case: its decoder is a Loop whose body casts a step counter to float into
a carried output; the caster retyped that output to fp16 and ONNX Runtime refused the model."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ocrconvert.tensorrt import precision
from ocrconvert.tensorrt.precision import cast_fp16

pytest.importorskip("onnxconverter_common", reason="FP16 cast needs onnxconverter-common (extra 'trt-fp16')")

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def _vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def _init(name, a):
    return numpy_helper.from_array(np.asarray(a, np.float32), name)


def loop_model() -> onnx.ModelProto:
    """y = Loop 3 times {h <- tanh(h @ W + a); n <- n + float(i)} from h = relu(x), n = sum(x); a = x * 0.5 is an
    outer activation and W an outer initializer the body reads by name."""
    rng = np.random.default_rng(0)
    body = helper.make_graph(
        [helper.make_node("MatMul", ["h_in", "W"], ["hw"]),
         helper.make_node("Add", ["hw", "a"], ["hwa"]),
         helper.make_node("Tanh", ["hwa"], ["h_out"]),
         helper.make_node("Cast", ["i"], ["i_f"], to=F),           # the SLANet pattern: a counter cast to float ...
         helper.make_node("Add", ["n_in", "i_f"], ["n_out"]),       # ... into carried state
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [_vi("i", I64, []), _vi("cond_in", TensorProto.BOOL, []), _vi("h_in", F, [2, 4]), _vi("n_in", F, [])],
        [_vi("cond_out", TensorProto.BOOL, []), _vi("h_out", F, [2, 4]), _vi("n_out", F, [])])
    nodes = [helper.make_node("Relu", ["x"], ["h0"]),
             helper.make_node("ReduceSum", ["x"], ["n0"], keepdims=0),
             helper.make_node("Mul", ["x", "half"], ["a"]),
             helper.make_node("Loop", ["M", "", "h0", "n0"], ["h", "n"], body=body),
             helper.make_node("MatMul", ["h", "V"], ["y"]),
             helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Cast", ["s"], ["s_f"], to=F),               # outer: int -> float, fed to fp16 ops
             helper.make_node("Mul", ["s_f", "k"], ["z"])]
    inits = [_init("W", rng.standard_normal((4, 4)) * 0.5), _init("V", rng.standard_normal((4, 3))), _init("half", 0.5),
             _init("k", [0.25, 0.5]), numpy_helper.from_array(np.array(3, np.int64), "M")]
    g = helper.make_graph(nodes, "loop", [_vi("x", F, [2, 4])],
                          [_vi("y", F, [2, 3]), _vi("n", F, []), _vi("z", F, [2])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def if_model() -> onnx.ModelProto:
    """y = If c then a + T else a - E, with a = x * 2 an outer activation and T, E outer initializers."""
    then = helper.make_graph([helper.make_node("Add", ["a", "T"], ["t"])], "then", [], [_vi("t", F, [2, 4])])
    other = helper.make_graph([helper.make_node("Sub", ["a", "E"], ["e"])], "else", [], [_vi("e", F, [2, 4])])
    nodes = [helper.make_node("Mul", ["x", "two"], ["a"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    # 1/3 and 0.1 are not fp16 numbers: a body reading them rounded would be off by ~1e-4
    inits = [_init("two", 2.0), _init("T", np.full((2, 4), 1 / 3)), _init("E", np.full((2, 4), 0.1))]
    g = helper.make_graph(nodes, "if", [_vi("x", F, [2, 4]), _vi("c", TensorProto.BOOL, [])], [_vi("y", F, [2, 4])],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, feed):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)


def _bodies(model):
    return [a.g for n in model.graph.node if n.op_type in ("Loop", "If") for a in n.attribute if a.type == a.GRAPH]


def test_loop_body_and_carried_state_stay_fp32():
    m = loop_model()
    onnx.checker.check_model(m, full_check=True)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 4)).astype(np.float32)
    ref = _run(m, {"x": x})
    m16 = cast_fp16(m)
    out = _run(m16, {"x": x})                        # ONNX Runtime loads it (it refused before the fix)
    for r, o in zip(ref, out):
        assert o.dtype == np.float32 and np.abs(r - o).max() < 1e-2
    (body,) = _bodies(m16)
    assert all(v.type.tensor_type.elem_type == F for v in [*body.input[2:], *body.output[1:]])   # carried state
    assert [i.data_type for i in body.initializer] == [F]                # W copied into the body, unrounded
    assert numpy_helper.to_array(body.initializer[0]).tobytes() == \
        numpy_helper.to_array(m.graph.initializer[0]).tobytes()
    assert "W" not in {i.name for i in m16.graph.initializer}           # read by the body only: moved, not kept
    assert numpy_helper.to_array(next(i for i in m16.graph.initializer if i.name == "V")).dtype == np.float16
    loop = next(n for n in m16.graph.node if n.op_type == "Loop")
    boundary = {n.output[0]: n for n in m16.graph.node if n.op_type == "Cast"}
    assert boundary[loop.input[2]].attribute[0].i == F       # h0 (computed in fp16) cast to fp32 into the loop
    cast_a = boundary["a__fp32"]                            # the outer activation the body reads, cast at the boundary
    assert cast_a.input == ["a"] and "a__fp32" in {i for n in body.node for i in n.input}


def test_if_branches_read_outer_values_in_fp32():
    m = if_model()
    x = np.random.default_rng(2).uniform(-1, 1, (2, 4)).astype(np.float32)
    m16 = cast_fp16(m)
    for c in (True, False):
        feed = {"x": x, "c": np.array(c)}
        (ref,), (out,) = _run(m, feed), _run(m16, feed)
        # a = 2x is exact in fp16 only to ~1e-3; the constants must not add their fp16 rounding (1/3 -> 0.33325)
        a_rounding = np.abs(2 * x - (2 * x).astype(np.float16).astype(np.float32)).max()
        assert np.abs(ref - out).max() <= a_rounding + 1e-6 < 2e-3
    for body in _bodies(m16):
        assert [i.data_type for i in body.initializer] == [F]


def test_without_the_fix_onnx_runtime_refuses_the_loop(monkeypatch):
    """Negative control: the caster alone (bodies retyped, Cast targets unchanged) writes the model ONNX Runtime
    refused for SLANet; the test above would have caught it."""
    monkeypatch.setattr(precision, "FP16_FP32_CONTROL_FLOW", ())
    monkeypatch.setattr(precision, "_cast_targets_follow_retyping", lambda model: None)
    m16 = cast_fp16(loop_model())
    with pytest.raises(Exception, match="Type Error|type"):
        _run(m16, {"x": np.zeros((2, 4), np.float32)})


# ------------------------------------------------------------------ the real table model (zoo)
TABLE = "slanet-plus-onnx"
BBOX, STRUCTURE = "save_infer_model/scale_0.tmp_0", "save_infer_model/scale_1.tmp_0"


def _table_image(rows: int, cols: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """A ruled table with a short label per cell, preprocessed as SLANet expects (long side 488, ImageNet
    mean/std on BGR, zero padding to 488 x 488): the decoder reads a real structure, unlike on noise."""
    from PIL import Image, ImageDraw

    from ocrconvert.families.imaging import font, normalize_chw, to_bgr_array

    w, h = size
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    for i in range(rows + 1):
        d.line([(5, 5 + i * (h - 10) // rows), (w - 5, 5 + i * (h - 10) // rows)], fill="black", width=2)
    for j in range(cols + 1):
        d.line([(5 + j * (w - 10) // cols, 5), (5 + j * (w - 10) // cols, h - 5)], fill="black", width=2)
    for i in range(rows):
        for j in range(cols):
            d.text((12 + j * (w - 10) // cols, 12 + i * (h - 10) // rows), f"cell {rng.integers(0, 999)}",
                   fill="black", font=font(16))
    s = 488 / max(w, h)
    a = normalize_chw(to_bgr_array(im.resize((round(w * s), round(h * s)))), [0.485, 0.456, 0.406],
                      [0.229, 0.224, 0.225])
    out = np.zeros((1, 3, 488, 488), np.float32)
    out[0, :, :a.shape[1], :a.shape[2]] = a
    return out


def _table_outputs(path_or_model, feeds):
    src = path_or_model.SerializeToString() if isinstance(path_or_model, onnx.ModelProto) else str(path_or_model)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return [dict(zip(names, sess.run(None, {"x": x}))) for x in feeds]


def _table_agreement(ref, out) -> list[tuple[bool, float, float]]:
    """Per image: same structure tokens (and as many decode steps), max abs of bbox and structure outputs."""
    res = []
    for r, o in zip(ref, out):
        if r[STRUCTURE].shape != o[STRUCTURE].shape:
            res.append((False, float("inf"), float("inf")))
            continue
        same = bool((r[STRUCTURE].argmax(-1) == o[STRUCTURE].argmax(-1)).all())
        res.append((same, float(np.abs(r[BBOX] - o[BBOX]).max()), float(np.abs(r[STRUCTURE] - o[STRUCTURE]).max())))
    return res


@pytest.fixture(scope="module")
def table_fp16(onnx_model, tmp_path_factory):
    """(source, prepared FP16 ONNX) of trt-export --fp16 on SLANet-plus, made once for the module."""
    from ocrconvert.converters.onnx_trt import prepare_source
    from ocrconvert.formats import detect
    from ocrconvert.tensorrt.options import TrtOptions

    src = onnx_model(TABLE)
    opts = TrtOptions.from_mapping({"precision": "fp16", "shapes": ["x:1x3x224x224:1x3x488x488:2x3x488x488"]})
    return src, prepare_source(detect(src), tmp_path_factory.mktemp("table16"), opts).onnx_path


@pytest.mark.zoo
def test_fp16_table_export_loads_and_keeps_tables(table_fp16):
    """trt-export --fp16 of SLANet-plus: the prepared ONNX loads in ONNX Runtime (it was refused) and reads two
    rendered tables as the fp32 source does. Measured: same tokens, bbox max abs 1.5e-3, structure 1.1e-2; a
    copy with its first conv x1.02 moves the bbox by 7e-3, which the 3e-3 bound catches."""
    from onnx import numpy_helper

    src, prepared = table_fp16
    m16 = onnx.load(str(prepared))
    assert sum(i.data_type == TensorProto.FLOAT16 for i in m16.graph.initializer) > 50   # the encoder is fp16
    (loop,) = [n for n in m16.graph.node if n.op_type == "Loop"]
    (body,) = [a.g for a in loop.attribute if a.name == "body"]
    assert not [n for n in body.node if n.op_type == "Cast" and n.attribute[0].i == TensorProto.FLOAT16]  # body fp32

    feeds = [_table_image(4, 3, (480, 200), 0), _table_image(6, 4, (400, 300), 1)]
    ref = _table_outputs(src, feeds)
    assert [r[STRUCTURE].shape[1] for r in ref] == [22, 38]     # the decoder read 4x3 and 6x4 cells, then stopped
    for same, bbox, structure in _table_agreement(ref, _table_outputs(prepared, feeds)):
        assert same and bbox <= 3e-3 and structure <= 2e-2, (bbox, structure)

    # negative control: the same checks fail on the export with its first conv x1.02
    conv = next(n for n in m16.graph.node if n.op_type == "Conv")
    w = next(i for i in m16.graph.initializer if i.name == conv.input[1])
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * np.float16(1.02), w.name))
    assert all(bbox > 3e-3 for _, bbox, _ in _table_agreement(ref, _table_outputs(m16, feeds)))


@pytest.mark.zoo
def test_fp16_table_verdict_on_noise_is_measured_honestly(table_fp16):
    """The spine's verdict, table family, fp16: the rendered tables pass (structure tokens identical, cell boxes
    1.6e-3 / 2.9e-3 / 2.5e-3 within the fp16 bound 5e-3); the one noise case reads no structure (uninformative),
    but its boxes move 0.028, over the fp16 atol 1e-2 (on noise the autoregressive decoder amplifies the fp16
    encoder's 0.4 % error; the fp32 source itself moves them 7e-3 under 1e-3 input noise), so the verdict stays
    FAILED: a numeric failure is never excused by an uninformative case."""
    from ocrconvert.verification import Tolerances, verify_artifacts

    src, prepared = table_fp16
    report = verify_artifacts(src, prepared, tolerances=Tolerances(precision="fp16"))
    assert report.family == "table"
    noise, *tables = report.cases
    assert noise.kind == "random" and noise.uninformative and len(tables) == 3
    for case in tables:
        assert case.kind == "rendered" and case.informative and case.passed, case.task
        assert case.task.value == 1.0 and case.task.detail["cell_box_max_abs"] <= 5e-3
    failed = [(o.name, o.max_abs) for o in noise.outputs if not o.passed]
    assert [name for name, _ in failed] == [BBOX] and 0.01 < failed[0][1] < 0.05, failed
    assert not report.passed
