"""Fixtures for the bench suite: the PP-OCRv4 direction classifier as ONNX (zoo) and as the torch graph
artifact ``onnx2torch`` makes of it, and a tiny generated ONNX model that accepts one input shape only."""
from __future__ import annotations

from pathlib import Path

import pytest
from _bench_helpers import TINY_SHAPE


@pytest.fixture(scope="session")
def cls_onnx(zoo) -> Path:
    return zoo("ppocrv4-cls-onnx") / "model.onnx"


@pytest.fixture(scope="session")
def cls_torch(cls_onnx, tmp_path_factory) -> Path:
    """The classifier's torch graph artifact (the ``onnx2torch`` route; its parity is tested elsewhere).
    Tests that use it carry ``pytest.mark.torch``."""
    import ocrconvert

    res = ocrconvert.convert(cls_onnx, tmp_path_factory.mktemp("bench") / "cls.torch", target="torch", verify=False)
    return res.artifact.path


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(TINY_SHAPE))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(TINY_SHAPE))
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny", [x], [y])
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path
