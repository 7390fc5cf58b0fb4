"""ONNX Loop / If (and ScatterElements, OneHot) -> PyTorch through onnx2torch's registry (ocrconvert.onnx2torch_ops),
each small hand-built model compared with ONNX Runtime: carried state, scan outputs, trip count and condition,
values read from enclosing scopes (constants and computed ones, at any depth), If inside Loop, Loop inside Loop.
Negative controls: a body changed after the reference was taken no longer matches it; an unsupported op deep in
a body is named by the preflight."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

pytestmark = pytest.mark.torch

F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
OPSET = 17


def _vi(name, t=F, shape=None):
    return helper.make_tensor_value_info(name, t, shape)


def _const(name, value, dtype=np.float32):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype=dtype)))


def _model(nodes, inputs, outputs, initializers=(), opset=OPSET):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _ort(model, feed):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)


def _torch(model, feed):
    import torch

    from ocrconvert.torch_graph import build_module

    module = build_module(model)
    with torch.inference_mode():
        out = module(*[torch.from_numpy(v) for v in feed.values()])
    out = out if isinstance(out, (list, tuple)) else [out]
    return [o.numpy() for o in out]


def _assert_same(model, feed, atol=1e-6):
    ref, got = _ort(model, feed), _torch(model, feed)
    assert len(ref) == len(got)
    for r, g in zip(ref, got):
        assert r.shape == g.shape and r.dtype == g.dtype, (r.shape, g.shape, r.dtype, g.dtype)
        np.testing.assert_allclose(g, r, atol=atol, rtol=0)
    return ref


# --------------------------------------------------------------------------- Loop
def loop_model(scale=2.0):
    """for i < M while sum(h) < limit: h = h * w + x (x: enclosing input, w: enclosing initializer),
    n += i; scan out h and i*1.0. Outputs: h, n, stacked h, stacked i."""
    body = helper.make_graph(
        [helper.make_node("Mul", ["h_in", "w"], ["hw"]),
         helper.make_node("Add", ["hw", "x"], ["h_out"]),
         helper.make_node("Add", ["n_in", "i"], ["n_out"]),
         helper.make_node("ReduceSum", ["h_out"], ["s"], keepdims=0),
         helper.make_node("Less", ["s", "limit"], ["c_out"]),
         helper.make_node("Cast", ["i"], ["i_f"], to=F),
         helper.make_node("Identity", ["h_out"], ["scan_h"])],
        "body", [_vi("i", I64, []), _vi("c_in", B, []), _vi("h_in", F, [2, 3]), _vi("n_in", I64, [])],
        [_vi("c_out", B, []), _vi("h_out", F, [2, 3]), _vi("n_out", I64, []), _vi("scan_h", F, [2, 3]),
         _vi("i_f", F, [])])
    nodes = [_const("limit", 1e4), helper.make_node("Loop", ["M", "c0", "h0", "n0"], ["h", "n", "hs", "is"], body=body)]
    inits = [numpy_helper.from_array(np.full((2, 3), scale, np.float32), "w"),
             numpy_helper.from_array(np.zeros((2, 3), np.float32), "h0"),
             numpy_helper.from_array(np.asarray(0, np.int64), "n0")]
    return _model(nodes, [_vi("x", F, [2, 3]), _vi("M", I64, []), _vi("c0", B, [])],
                  [_vi("h", F, [2, 3]), _vi("n", I64, []), _vi("hs", F, None), _vi("is", F, None)], inits)


@pytest.mark.parametrize("trips, cond", [(5, True), (50, True), (3, False), (0, True)])
def test_loop_carried_scan_trip_count_and_condition(trips, cond):
    x = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    ref = _assert_same(loop_model(), {"x": x, "M": np.asarray(trips, np.int64), "c0": np.asarray(cond)})
    if trips == 50:
        assert 0 < ref[2].shape[0] < 50      # stopped by the condition, not the trip count
    if not cond:
        assert ref[2].shape[0] == 0          # an initial false condition runs no iteration


def test_loop_negative_control_changed_body_fails():
    """A body with another weight gives other numbers: the comparison above can fail."""
    feed = {"x": np.ones((2, 3), np.float32), "M": np.asarray(4, np.int64), "c0": np.asarray(True)}
    ref = _ort(loop_model(2.0), feed)
    got = _torch(loop_model(2.01), feed)
    assert not np.allclose(ref[0], got[0], atol=1e-3)
    assert not np.allclose(ref[2], got[2], atol=1e-3)


def test_while_loop_without_trip_count_and_for_loop_without_condition():
    """Loop("", cond, ...) is a while loop; Loop(M, "", ...) a for loop that, in ONNX Runtime, still stops on the
    body's condition."""
    body = helper.make_graph(
        [helper.make_node("Add", ["v_in", "one"], ["v_out"]),
         helper.make_node("Less", ["v_out", "x"], ["c_out"])],
        "body", [_vi("i", I64, []), _vi("c_in", B, []), _vi("v_in", F, [1])],
        [_vi("c_out", B, []), _vi("v_out", F, [1])])
    m_while = _model([_const("one", [1.0]), _const("v0", [0.0]), _const("t", True, bool),
                      helper.make_node("Loop", ["", "t", "v0"], ["v"], body=body)],
                     [_vi("x", F, [1])], [_vi("v", F, [1])])
    assert _assert_same(m_while, {"x": np.asarray([6.5], np.float32)})[0].tolist() == [7.0]
    m_for = _model([_const("one", [1.0]), _const("v0", [0.0]), _const("M", 9, np.int64),
                    helper.make_node("Loop", ["M", "", "v0"], ["v"], body=body)],
                   [_vi("x", F, [1])], [_vi("v", F, [1])])
    assert _assert_same(m_for, {"x": np.asarray([2.0], np.float32)})[0].tolist() == [2.0]
    assert _assert_same(m_for, {"x": np.asarray([20.0], np.float32)})[0].tolist() == [9.0]


def test_loop_growing_state_and_pass_through_outputs():
    """A carried value that grows each step (Concat, as a decoder appends), one that passes straight through
    (a body output that is a body input) and a scan output read from the enclosing graph."""
    body = helper.make_graph(
        [helper.make_node("Unsqueeze", ["i", "ax"], ["i1"]),
         helper.make_node("Concat", ["seq_in", "i1"], ["seq_out"], axis=0)],
        "body", [_vi("i", I64, []), _vi("c_in", B, []), _vi("seq_in", I64, [None]), _vi("keep_in", F, [2])],
        [_vi("c_in_out", B, []), _vi("seq_out", I64, [None]), _vi("keep_in", F, [2]), _vi("x_scan", F, [2])])
    body.node.append(helper.make_node("Identity", ["x"], ["x_scan"]))  # ORT refuses an enclosing value as an output
    body.output[0].name = "c_in"
    m = _model([_const("ax", [0], np.int64), _const("s0", [7], np.int64), _const("M", 4, np.int64),
                _const("t", True, bool),
                helper.make_node("Loop", ["M", "t", "s0", "x"], ["seq", "kept", "xs"], body=body)],
               [_vi("x", F, [2])], [_vi("seq", I64, [None]), _vi("kept", F, [2]), _vi("xs", F, [None, 2])])
    ref = _assert_same(m, {"x": np.asarray([1.5, -2.0], np.float32)})
    assert ref[0].tolist() == [7, 0, 1, 2, 3] and ref[2].shape == (4, 2)


# --------------------------------------------------------------------------- If
def if_model():
    """y = x * a if sum(x) > 0 else x - b: a an enclosing computed value, b an enclosing initializer; the then
    branch also returns a copy of an enclosing input."""
    then_g = helper.make_graph([helper.make_node("Mul", ["x", "a"], ["t1"]),
                                helper.make_node("Identity", ["x"], ["t2"])], "then", [],
                               [_vi("t1", F, [3]), _vi("t2", F, [3])])
    else_g = helper.make_graph([helper.make_node("Sub", ["x", "b"], ["e1"]), helper.make_node("Neg", ["x"], ["e2"])],
                               "else", [], [_vi("e1", F, [3]), _vi("e2", F, [3])])
    nodes = [helper.make_node("Exp", ["x"], ["a"]),
             helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["y", "z"], then_branch=then_g, else_branch=else_g)]
    inits = [numpy_helper.from_array(np.asarray(0.0, np.float32), "zero"),
             numpy_helper.from_array(np.asarray([1.0, 2.0, 3.0], np.float32), "b")]
    return _model(nodes, [_vi("x", F, [3])], [_vi("y", F, [3]), _vi("z", F, [3])], inits)


@pytest.mark.parametrize("x", [[1.0, 2.0, -0.5], [-1.0, -2.0, 0.5]])
def test_if_both_branches_with_enclosing_values(x):
    _assert_same(if_model(), {"x": np.asarray(x, np.float32)})


# --------------------------------------------------------------------------- nesting
def nested_model(offset=0.5):
    """Loop over i < M: If (i even) then h + x (outermost input) else h * k (loop-body value), with an inner Loop
    summing j < i into a scan output. Reads from two scopes up, and a constant two scopes up (``off``)."""
    then_g = helper.make_graph([helper.make_node("Add", ["h_in", "x"], ["ht"]),
                                helper.make_node("Add", ["ht", "off"], ["ht2"])], "then", [], [_vi("ht2", F, [2])])
    else_g = helper.make_graph([helper.make_node("Mul", ["h_in", "k"], ["he"])], "else", [], [_vi("he", F, [2])])
    inner = helper.make_graph(
        [helper.make_node("Cast", ["j"], ["jf"], to=F),
         helper.make_node("Add", ["acc_in", "jf"], ["acc1"]),
         helper.make_node("Add", ["acc1", "off"], ["acc_out"])],
        "inner", [_vi("j", I64, []), _vi("ci", B, []), _vi("acc_in", F, [])],
        [_vi("ci_out", B, []), _vi("acc_out", F, []), _vi("acc_out_scan", F, [])])
    inner.node.append(helper.make_node("Identity", ["ci"], ["ci_out"]))
    inner.node.append(helper.make_node("Identity", ["acc_out"], ["acc_out_scan"]))
    body = helper.make_graph(
        [helper.make_node("Mod", ["i", "two"], ["r"]),
         helper.make_node("Equal", ["r", "zero_i"], ["even"]),
         helper.make_node("Cast", ["i"], ["if_"], to=F),
         helper.make_node("Add", ["if_", "one"], ["k"]),
         helper.make_node("If", ["even"], ["h_out"], then_branch=then_g, else_branch=else_g),
         helper.make_node("Loop", ["i", "c_in", "acc0"], ["acc", "accs"], body=inner),
         helper.make_node("ReduceSum", ["accs"], ["acc_sum"], keepdims=0),
         helper.make_node("Identity", ["c_in"], ["c_out"])],
        "body", [_vi("i", I64, []), _vi("c_in", B, []), _vi("h_in", F, [2])],
        [_vi("c_out", B, []), _vi("h_out", F, [2]), _vi("acc", F, []), _vi("acc_sum", F, [])])
    nodes = [_const("two", 2, np.int64), _const("zero_i", 0, np.int64), _const("one", 1.0), _const("acc0", 0.0),
             _const("t", True, bool),
             helper.make_node("Loop", ["M", "t", "h0"], ["h", "accs_last", "acc_sums"], body=body)]
    inits = [numpy_helper.from_array(np.asarray(offset, np.float32), "off"),
             numpy_helper.from_array(np.asarray([1.0, -1.0], np.float32), "h0")]
    return _model(nodes, [_vi("x", F, [2]), _vi("M", I64, [])],
                  [_vi("h", F, [2]), _vi("accs_last", F, None), _vi("acc_sums", F, None)], inits)


def test_if_and_loop_nested_in_loop():
    feed = {"x": np.asarray([0.25, 2.0], np.float32), "M": np.asarray(6, np.int64)}
    ref = _assert_same(nested_model(), feed, atol=1e-5)
    assert ref[2].shape == (6,)
    # negative control: the constant two scopes up changed gives other numbers
    got = _torch(nested_model(0.6), feed)
    assert not np.allclose(ref[0], got[0], atol=1e-3) and not np.allclose(ref[2], got[2], atol=1e-3)


def test_preflight_names_an_unsupported_op_inside_a_body():
    from ocrconvert.torch_graph import unsupported_ops

    m = nested_model()
    loop = next(n for n in m.graph.node if n.op_type == "Loop")
    body = next(a.g for a in loop.attribute if a.name == "body")
    if_node = next(n for n in body.node if n.op_type == "If")
    then_g = next(a.g for a in if_node.attribute if a.name == "then_branch")
    then_g.node[0].op_type = "NoSuchOp"
    assert unsupported_ops(m) == ["NoSuchOp"]
    assert unsupported_ops(nested_model()) == []


# --------------------------------------------------------------------------- ScatterElements, OneHot
@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max"])
def test_scatter_elements(reduction):
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    idx = np.asarray([[1, -1], [0, 2], [3, -4]], np.int64)
    upd = np.asarray([[10, 20], [30, 40], [50, 60]], np.float32)
    m = _model([helper.make_node("ScatterElements", ["d", "i", "u"], ["y"], axis=1, reduction=reduction)],
               [_vi("d", F, [3, 4]), _vi("i", I64, [3, 2]), _vi("u", F, [3, 2])], [_vi("y", F, [3, 4])], opset=18)
    _assert_same(m, {"d": data, "i": idx, "u": upd})


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_one_hot(axis):
    idx = np.asarray([[0, 3, -1], [2, 7, -6]], np.int64)  # -1 counts from depth; 7 and -6 are out of range
    m = _model([_const("depth", [5], np.int64), _const("vals", [-1.0, 2.5]),
                helper.make_node("OneHot", ["i", "depth", "vals"], ["y"], axis=axis)],
               [_vi("i", I64, [2, 3])], [_vi("y", F, None)])
    _assert_same(m, {"i": idx})


# --------------------------------------------------------------------------- a saved graph artifact, fresh process
def test_saved_graph_artifact_with_a_loop_rebuilds_in_a_fresh_process(tmp_path):
    """The runner that rebuilds a graph artifact (no converter imported) finds Loop/If through torch_graph."""
    import json
    import subprocess
    import sys

    from ocrconvert.torch_graph import write_graph_artifact

    feed = {"x": np.asarray([0.25, 2.0], np.float32), "M": np.asarray(5, np.int64)}
    (tmp_path / "art").mkdir()
    write_graph_artifact(nested_model(), tmp_path / "art")
    np.savez(tmp_path / "feed.npz", **feed)
    code = (
        "import json, sys, numpy as np, torch\n"
        "from ocrconvert.torch_graph import build_module, read_graph_artifact\n"
        "assert 'ocrconvert.converters' not in sys.modules\n"
        f"feed = dict(np.load({str(tmp_path / 'feed.npz')!r}))\n"
        f"m = build_module(read_graph_artifact(__import__('pathlib').Path({str(tmp_path / 'art')!r})))\n"
        "out = m(*[torch.from_numpy(v) for v in feed.values()])\n"
        "print(json.dumps([o.tolist() for o in out]))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    for r, g in zip(_ort(nested_model(), feed), got):
        np.testing.assert_allclose(np.asarray(g, np.float32), r, atol=1e-5)
