"""Fixtures for the TensorRT path: real zoo models, rendered calibration images (kept small: 2-core CI) and the
fake TensorRT 10 / 11 modules (fake_tensorrt.py) the engine path runs against where TensorRT is absent."""
from __future__ import annotations

import sys

from fake_tensorrt import install_fake_tensorrt  # noqa: F401 - fixtures below use it

import pytest

# Calibration text differs from the verification lines (families/imaging.SAMPLE_LINES): calibrate on one
# set, judge on another.
CALIB_LINES = (
    "alpha 12", "Beta-7 shipping", "Receipt no. 4471", "42 Main Street", "TOTAL 19.99", "gamma delta",
    "2026-05-01", "Qty 3 x 4.50", "ocr line", "Zebra Quartz", "hello", "ABC-123-XYZ", "Date: 01/02/03",
    "Name Surname", "x=y+z", "Paid in full",
)


@pytest.fixture(scope="session")
def onnx_model(zoo):
    """``onnx_model(name)`` -> the zoo model's ``model.onnx`` (pulled once into $OCRCONVERT_CACHE; a failed pull
    fails the test, it is never a skip)."""
    return lambda name: zoo(name) / "model.onnx"


@pytest.fixture(params=[10, 11], ids=["trt10", "trt11"])
def fake_trt(request, monkeypatch):
    """The fake TensorRT 10.x, then 11.x (tests/trt/fake_tensorrt.py), installed for one test."""
    return install_fake_tensorrt(monkeypatch, request.param)


@pytest.fixture
def fake_trt10(monkeypatch):
    return install_fake_tensorrt(monkeypatch, 10)


@pytest.fixture
def fake_trt11(monkeypatch):
    return install_fake_tensorrt(monkeypatch, 11)


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
