"""One real converted model set for the serving tests: PP-OCRv5 mobile det + rec with the v2.0 direction cls
(Paddle zoo models -> ONNX through convert-set, once per session; the stages' parity is tested in tests/ocr), and
two small rendered pages (one with upside-down lines, so the cls stage decides)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def served_set(tmp_path_factory, zoo) -> Path:
    from ocrconvert.pipeline import convert_set

    root = tmp_path_factory.mktemp("served-set")
    spec = root / "set.yaml"
    spec.write_text(f"det: {zoo('ppocrv5-mobile-det')}\ncls: {zoo('ppocrv4-cls')}\nrec: {zoo('ppocrv5-mobile-rec')}\n")
    t0 = time.perf_counter()
    result = convert_set(spec, root / "v5-onnx", to="onnx", verify=False)
    print(f"convert-set v5 -> onnx (no verify): {time.perf_counter() - t0:.1f} s")
    return Path(result.path)


@pytest.fixture(scope="session")
def pages(tmp_path_factory) -> list[Path]:
    from ocrconvert.ocr.pages import render_page

    folder = tmp_path_factory.mktemp("pages")
    return [render_page(3, "clean", (480, 320)).save(folder), render_page(4, "rotated", (480, 320)).save(folder)]
