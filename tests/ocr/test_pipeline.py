"""OcrPipeline end to end: page reading (EXIF, alpha, BGR), real zoo models on rendered pages, any backend."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ocrconvert.errors import UsageError
from ocrconvert.ocr import OcrPipeline, read_image
from ocrconvert.ocr.pages import cer, render_page

from _ocr_helpers import known_text_cer


# ---- reading pages -------------------------------------------------------------------------------------
def test_alpha_is_composited_on_white(tmp_path):
    from PIL import Image

    im = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    im.putpixel((5, 5), (10, 20, 30, 255))
    im.save(tmp_path / "a.png")
    bgr, name = read_image(tmp_path / "a.png")
    assert bgr.shape == (20, 40, 3) and (bgr[0, 0] == 255).all() and bgr[5, 5].tolist() == [30, 20, 10]
    assert name.endswith("a.png")
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[0, 0] = [10, 20, 30, 255]
    out, _ = read_image(bgra)
    assert out[0, 0].tolist() == [10, 20, 30] and out[1, 1].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    im = Image.new("RGB", (60, 20), "white")
    im.putpixel((0, 0), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: the viewer turns it 90 degrees clockwise
    im.save(tmp_path / "e.jpg", exif=exif, quality=100)
    bgr, _ = read_image(tmp_path / "e.jpg")
    assert bgr.shape[:2] == (60, 20)
    pil, _ = read_image(Image.open(tmp_path / "e.jpg"))
    assert pil.shape[:2] == (60, 20)


def test_ndarrays_are_bgr_and_other_inputs_are_refused(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (8, 9, 3), dtype=np.uint8)
    assert read_image(arr)[0] is not None and np.array_equal(read_image(arr)[0], arr)
    assert read_image(arr[:, :, 0])[0].shape == (8, 9, 3)
    for bad in (arr.astype(np.float32), np.zeros((2, 2, 2), np.uint8), 42, tmp_path / "missing.png"):
        with pytest.raises(UsageError):
            read_image(bad)
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(UsageError, match="junk.png"):
        read_image(tmp_path / "junk.png")


# ---- real models ---------------------------------------------------------------------------------------
def _cer_of(result, page) -> float:
    rate, missing = known_text_cer(result, page)
    return 1.0 if missing else rate


@pytest.fixture(scope="module")
def v5_onnx(zoo):
    return OcrPipeline.from_paths(det=zoo("ppocrv5-mobile-det-onnx"), rec=zoo("ppocrv5-mobile-rec-onnx"))


@pytest.mark.zoo
def test_onnx_set_reads_rendered_pages(v5_onnx):
    for seed, style in ((1, "rotated"), (4, "transparent"), (7, "mixed")):
        page = render_page(seed, style)
        result = v5_onnx(page.image)
        assert len(result.lines) == len(page.lines), (style, result.texts)
        assert _cer_of(result, page) < 0.05, (style, result.texts)
        doc = json.loads(json.dumps(result.to_dict()))
        assert doc["lines"][0]["box"] and set(doc["timings"]) >= {"det", "rec", "total"}


@pytest.mark.zoo
def test_wrong_dictionary_reads_wrong_text(v5_onnx):
    page = render_page(0, "clean")
    shifted = v5_onnx.dictionary[1:] + v5_onnx.dictionary[:1]
    damaged = OcrPipeline(v5_onnx.det_runner, v5_onnx.rec_runner, dictionary=shifted, params=v5_onnx.params)
    assert _cer_of(v5_onnx(page.image), page) < 0.05
    assert _cer_of(damaged(page.image), page) > 0.5


@pytest.mark.zoo
def test_prob_map_is_kept_on_request(v5_onnx):
    page = render_page(0, "clean")
    assert v5_onnx(page.image).prob_map is None
    kept = v5_onnx(page.image, keep_prob_map=True).prob_map
    assert kept.shape == (704, 960) and 0.0 < float((kept > 0.3).mean()) < 0.5


@pytest.mark.zoo
def test_classifier_rights_an_upside_down_page(zoo):
    page = render_page(0, "clean")
    upside_down = page.image.rotate(180)
    with_cls = OcrPipeline.from_paths(det=zoo("ppocrv4-det-onnx"), rec=zoo("ppocrv4-rec-onnx"), cls=zoo("ppocrv4-cls-onnx"))
    without = OcrPipeline(with_cls.det_runner, with_cls.rec_runner, dictionary=with_cls.dictionary, params=with_cls.params)
    righted = with_cls(upside_down)
    assert {line.angle for line in righted.lines} == {180}
    # PP-OCRv4's Chinese model drops spaces between Latin words: texts compared without them (as sets: the
    # known quads are those of the upright page)
    got = sorted(t.replace(" ", "") for t in righted.texts)
    ref = sorted(ln.text.replace(" ", "") for ln in page.lines)
    assert len(got) == len(ref) and np.mean([cer(a, b) for a, b in zip(ref, got)]) < 0.05
    wrong = sorted(t.replace(" ", "") for t in without(upside_down).texts)
    assert np.mean([cer(a, b) for a, b in zip(ref, wrong)]) > 0.5


@pytest.mark.zoo
@pytest.mark.paddle
def test_paddle_and_onnx_twins_agree(zoo, v5_onnx):
    """Any backend per stage: the original Paddle set and its ONNX twins give the same page result."""
    paddle = OcrPipeline.from_paths(det=zoo("ppocrv5-mobile-det"), rec=zoo("ppocrv5-mobile-rec"))
    mixed = OcrPipeline(paddle.det_runner, v5_onnx.rec_runner, dictionary=paddle.dictionary)
    page = render_page(2, "vertical")
    a, b, c = paddle(page.image), v5_onnx(page.image), mixed(page.image)
    assert len(a.lines) == len(b.lines) == len(c.lines) >= 8
    for x, y, z in zip(a.lines, b.lines, c.lines):
        assert np.abs(x.box - y.box).max() <= 1 and np.abs(x.box - z.box).max() == 0
        assert x.text == y.text == z.text
    assert any(ln.vertical for ln in page.lines) and _cer_of(a, page) < 0.05


def test_cuda_refused_for_paddle_and_cpu_for_nothing(zoo):
    from ocrconvert.ocr import load_stage

    with pytest.raises(UsageError, match="CPU only"):
        load_stage(zoo("ppocrv4-det"), "cuda")
