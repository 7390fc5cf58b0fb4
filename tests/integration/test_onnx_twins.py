"""onnx2torch on raw Paddle-exported ONNX (the zoo's ONNX twins: weights as Constant nodes)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import ocrconvert

pytestmark = [pytest.mark.torch, pytest.mark.zoo]


@pytest.mark.parametrize("name", ["ppocrv4-rec-onnx", "ppocrv4-cls-onnx", "ppocrv5-mobile-det-onnx"])
def test_raw_paddle_exported_onnx_converts_and_verifies(name, zoo, converted, tmp_path, damage):
    res = converted(name, "torch")  # shared with tests/verification's negative controls
    assert res.passed, res.report.summary_line()
    assert max(o.max_abs for c in res.report.cases if c.kind == "random" for o in c.outputs) <= 1e-4
    # negative control: the same verification of a copy with two output channels of one conv swapped fails
    bad = tmp_path / "bad"
    shutil.copytree(res.artifact.path, bad)
    what = damage.damaged_safetensors(bad, "channels swapped")
    rep = ocrconvert.verify(zoo(name), bad)
    assert rep.verdict == "FAILED", f"{what} swapped slipped through: {rep.summary_line()}"


@pytest.mark.paddle
def test_twin_agrees_with_the_paddle_model_on_real_lines(zoo):
    """The ONNX twin and the Paddle model agree (a free reference: verify works across formats), on lines
    whose direction the model really reads, upright and turned."""
    from ocrconvert.families import resolve_family
    from ocrconvert.families.imaging import render_line

    rep = ocrconvert.verify(zoo("ppocrv4-cls"), zoo("ppocrv4-cls-onnx"))
    assert rep.passed, rep.summary_line()
    assert rep.source_backend == "paddle" and rep.target_backend == "onnxruntime"
    paddle, twin = ocrconvert.load(zoo("ppocrv4-cls")), ocrconvert.load(zoo("ppocrv4-cls-onnx"))
    lines = [render_line(t) for t in ("Receipt no. 4471", "TOTAL 19.99")]
    (_, feed), = resolve_family(paddle.info()).image_feeds(
        [(str(i), img, None) for i, img in enumerate(lines + [im.rotate(180) for im in lines])])
    ref = next(iter(paddle.infer(feed).values()))
    got = next(iter(twin.infer(feed).values()))
    assert ref.shape == got.shape == (4, 2)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert ref.argmax(1).tolist() == [0, 0, 1, 1]  # upright vs 180 degrees: the outputs carry the answer
