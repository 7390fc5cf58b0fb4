"""Fixtures of the OCR pipeline tests: rendered pages on disk, the PaddleOCR oracle's python."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

PAGE_SEED = 0
PAGE_COUNT = 8   # one page per style of ocrconvert.ocr.pages.STYLES


@pytest.fixture(scope="session")
def rendered_pages(tmp_path_factory):
    """``[(RenderedPage, path)]``: every style once, saved as the product would read them."""
    from ocrconvert.ocr.pages import render_pages

    folder = tmp_path_factory.mktemp("pages")
    return [(page, page.save(folder)) for page in render_pages(PAGE_COUNT, seed=PAGE_SEED)]


@pytest.fixture(scope="session")
def paddleocr_python():
    """A python that imports ``paddleocr`` (3.7.0, the ``fidelity`` extra): ``$OCRCONVERT_PADDLEOCR_PYTHON`` (its
    own venv: it pins opencv-contrib and numpy), or this one if it has it. Skips — or fails where CI sets
    ``OCRCONVERT_REQUIRE=paddleocr`` — when there is none."""
    exe = os.environ.get("OCRCONVERT_PADDLEOCR_PYTHON")
    if not exe and importlib.util.find_spec("paddleocr") is not None:
        exe = sys.executable
    if not exe or not Path(exe).exists():
        why = "PaddleOCR's pipeline is not available (pip install 'ocrconvert[fidelity]' in a venv; set OCRCONVERT_PADDLEOCR_PYTHON)"
        if "paddleocr" in os.environ.get("OCRCONVERT_REQUIRE", ""):
            pytest.fail(f"OCRCONVERT_REQUIRE demands 'paddleocr': {why}", pytrace=False)
        pytest.skip(why)
    return exe

