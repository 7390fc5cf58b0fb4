import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from ocrconvert.converters.onnx_fixes import bool_where_to_int


def _bool_where_model():
    c = helper.make_tensor_value_info("c", TensorProto.BOOL, [4])
    x = helper.make_tensor_value_info("x", TensorProto.BOOL, [4])
    y = helper.make_tensor_value_info("y", TensorProto.BOOL, [4])
    out = helper.make_tensor_value_info("out", TensorProto.BOOL, [4])
    g = helper.make_graph([helper.make_node("Where", ["c", "x", "y"], ["out"], name="w")], "g", [c, x, y], [out])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 16)])


def test_bool_where_is_rewritten_exactly_and_runs_in_onnxruntime():
    model = _bool_where_model()
    with pytest.raises(Exception, match="Where"):
        ort.InferenceSession(model.SerializeToString())
    assert bool_where_to_int(model) == 1
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.BOOL  # the interface is unchanged
    onnx.checker.check_model(model)
    feed = {"c": np.array([1, 0, 1, 0], bool), "x": np.array([1, 1, 0, 0], bool), "y": np.array([0, 1, 1, 0], bool)}
    got = ort.InferenceSession(model.SerializeToString()).run(None, feed)[0]
    np.testing.assert_array_equal(got, np.where(feed["c"], feed["x"], feed["y"]))


def test_float_where_is_left_alone():
    model = _bool_where_model()
    for v in (*model.graph.input[1:], *model.graph.output):
        v.type.tensor_type.elem_type = TensorProto.FLOAT
    before = model.SerializeToString()
    assert bool_where_to_int(model) == 0
    assert model.SerializeToString() == before  # not a node, type or name touched
