"""Fixtures for the TensorRT path: real zoo models and rendered calibration images (kept small: 2-core CI)."""
from __future__ import annotations

import pytest

# Calibration text differs from the verification lines (families/imaging.SAMPLE_LINES): calibrate on one
# set, judge on another.
CALIB_LINES = (
    "alpha 12", "Beta-7 shipping", "Receipt no. 4471", "42 Main Street", "TOTAL 19.99", "gamma delta",
    "2026-05-01", "Qty 3 x 4.50", "ocr line", "Zebra Quartz", "hello", "ABC-123-XYZ", "Date: 01/02/03",
    "Name Surname", "x=y+z", "Paid in full",
)


@pytest.fixture(scope="session")
def zoo_model():
    """``zoo_model(name)`` -> the cached model folder, pulled once via ocrconvert.zoo ($OCRCONVERT_CACHE)."""
    from ocrconvert.zoo import pull

    cache = {}

    def get(name):
        if name not in cache:
            try:
                cache[name] = pull(name)
            except Exception as exc:  # noqa: BLE001 - no network and no cache: say so, never pass vacuously
                pytest.skip(f"zoo model {name} is not available: {exc}")
        return cache[name]

    return get


@pytest.fixture(scope="session")
def onnx_model(zoo_model):
    return lambda name: zoo_model(name) / "model.onnx"


def write_lines(folder, lines=CALIB_LINES, rotate_every: int = 0):
    from ocrconvert.families.imaging import render_line

    folder.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(lines):
        img = render_line(text, size=28 + (i % 3) * 4)
        if rotate_every and i % rotate_every == 0:
            img = img.rotate(180)
        img.save(folder / f"line_{i:02d}.png")
    return folder


def write_pages(folder, n: int = 3, size=(320, 256)):
    from ocrconvert.families.imaging import render_page

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        lines = CALIB_LINES[i * 5:(i * 5) + 5]
        render_page(lines, size=size, font_size=20 + 2 * i).save(folder / f"page_{i}.png")
    return folder


@pytest.fixture(scope="session")
def calib_lines(tmp_path_factory):
    return write_lines(tmp_path_factory.mktemp("calib_lines"))


@pytest.fixture(scope="session")
def calib_cls(tmp_path_factory):
    return write_lines(tmp_path_factory.mktemp("calib_cls"), rotate_every=2)


@pytest.fixture(scope="session")
def calib_pages(tmp_path_factory):
    return write_pages(tmp_path_factory.mktemp("calib_pages"))
