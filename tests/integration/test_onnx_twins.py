"""onnx2torch on raw Paddle-exported ONNX (the zoo's ONNX twins: weights as Constant nodes)."""
from __future__ import annotations

import numpy as np
import pytest

import ocrconvert

pytestmark = [pytest.mark.torch, pytest.mark.zoo]


@pytest.mark.parametrize("name", ["ppocrv4-rec-onnx", "ppocrv4-cls-onnx", "ppocrv5-mobile-det-onnx"])
def test_raw_paddle_exported_onnx_converts_and_verifies(name, zoo, tmp_path):
    res = ocrconvert.convert(zoo(name), tmp_path / "t", target="torch")
    assert res.passed, res.report.summary_line()
    assert max(o.max_abs for c in res.report.cases if c.kind == "random" for o in c.outputs) <= 1e-4


@pytest.mark.paddle
def test_twin_is_bit_identical_reference_for_paddle(zoo):
    """The ONNX twin and the Paddle model agree: a free reference (verify works across formats)."""
    rep = ocrconvert.verify(zoo("ppocrv4-cls"), zoo("ppocrv4-cls-onnx"))
    assert rep.passed and rep.source_backend == "paddle" and rep.target_backend == "onnxruntime"
    x = np.zeros((2, 3, 48, 192), np.float32)
    assert ocrconvert.load(zoo("ppocrv4-cls")).infer({"x": x})  # Paddle folder loads and runs
