"""Item 8: on the ORIGINAL Paddle models, ``ocrconvert.ocr`` gives PaddleOCR 3.7's own boxes (<= 1 px) and
texts on rendered pages, and reads the known text; damaged parameters or a wrong dictionary fail the check."""
from __future__ import annotations

import pytest

from ocrconvert.ocr import OcrPipeline

from _ocr_helpers import compare_pages, known_text_cer, oracle_input, page_dict, run_oracle

pytestmark = [pytest.mark.paddle, pytest.mark.zoo, pytest.mark.slow]

SETS = {"v4": ("ppocrv4-det", "ppocrv4-rec"), "v5": ("ppocrv5-mobile-det", "ppocrv5-mobile-rec")}
MAX_BOX_PX = 1.0
# PP-OCRv4's Chinese model drops most spaces between Latin words: known text is compared without them
MAX_CER = {"v4": 0.03, "v5": 0.03}


@pytest.fixture(scope="module", params=sorted(SETS))
def version(request):
    return request.param


@pytest.fixture(scope="module")
def oracle(version, zoo, rendered_pages, paddleocr_python, tmp_path_factory):
    det, rec = (zoo(n) for n in SETS[version])
    images = [oracle_input(page, path) for page, path in rendered_pages]
    return run_oracle(paddleocr_python, det, rec, images, tmp_path_factory.mktemp(f"oracle-{version}") / "out.json")


@pytest.fixture(scope="module")
def pipeline(version, zoo):
    det, rec = (zoo(n) for n in SETS[version])
    return OcrPipeline.from_paths(det=det, rec=rec)


def _ours(pipeline, rendered_pages):
    return [page_dict(pipeline(path)) for _, path in rendered_pages]


def test_boxes_and_texts_match_paddleocr(version, pipeline, oracle, rendered_pages):
    ours = _ours(pipeline, rendered_pages)
    cmp = compare_pages(ours, oracle)
    assert cmp["pages_with_other_line_count"] == 0, cmp
    assert cmp["lines"] >= 60, cmp                  # the pages carry signal: many lines on every page
    assert cmp["max_box_px"] <= MAX_BOX_PX, cmp
    assert cmp["text_diffs"] == [], cmp


def test_known_text_is_read(version, pipeline, rendered_pages):
    """Every rendered line is found and read with a small CER (the transparent page too)."""
    for page, path in rendered_pages:
        rate, missing = known_text_cer(pipeline(path), page, drop_spaces=version == "v4")
        assert not missing, (page.name, missing)
        assert rate <= MAX_CER[version], (page.name, rate)


# ---- negative controls: the comparison can fail --------------------------------------------------------
def test_shifted_unclip_ratio_fails(version, zoo, oracle, rendered_pages, pipeline):
    damaged = OcrPipeline(pipeline.det_runner, pipeline.rec_runner, dictionary=pipeline.dictionary,
                          params=pipeline.params.override(det_unclip_ratio=1.6))
    cmp = compare_pages(_ours(damaged, rendered_pages[:3]), oracle[:3])
    assert cmp["max_box_px"] > MAX_BOX_PX, cmp


def test_wrong_dictionary_fails(version, oracle, rendered_pages, pipeline):
    shifted = pipeline.dictionary[1:] + pipeline.dictionary[:1]   # every class id reads its neighbour
    damaged = OcrPipeline(pipeline.det_runner, pipeline.rec_runner, dictionary=shifted, params=pipeline.params)
    cmp = compare_pages(_ours(damaged, rendered_pages[:2]), oracle[:2])
    assert cmp["max_box_px"] <= MAX_BOX_PX and cmp["text_diffs"], cmp
