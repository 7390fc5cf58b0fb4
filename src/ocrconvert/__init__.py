"""ocrconvert: convert OCR models between Paddle, ONNX, PyTorch and TensorRT, and prove parity.

Public API::

    import ocrconvert
    result = ocrconvert.convert("ch_PP-OCRv4_rec_infer/", "out/", target="torch")
    assert result.passed
    report = ocrconvert.verify("ch_PP-OCRv4_rec_infer/", "out/")
    runner = ocrconvert.load("out/")           # .infer(feed) -> dict[str, ndarray]
    ocr = ocrconvert.load_set("set/")          # det -> cls -> rec: ocr("page.png").lines
    ocrconvert.list_converters()
"""
from __future__ import annotations

__version__ = "0.1.0"

from pathlib import Path

from .errors import ExitCode, OcrConvertError


def convert(source, output, *, target: str, **kwargs):
    """Convert ``source`` to ``target`` (``onnx``, ``torch``, ...) at ``output`` and verify it."""
    from .pipeline import convert as _convert

    return _convert(source, output, target=target, **kwargs)


def verify(source, target, **kwargs):
    """Compare ``target`` with ``source`` on random and rendered inputs; returns a ``ParityReport``."""
    from .verification import verify_artifacts

    return verify_artifacts(source, target, **kwargs)


def load(path: str | Path, **kwargs):
    """The runner for any supported artifact or Paddle model folder."""
    from .runners import load as _load

    return _load(path, **kwargs)


def load_set(path: str | Path, device: str = "cpu", **kwargs):
    """The OCR pipeline (det -> cls -> rec) on a model set: a ``convert-set`` folder, a PaddleOCR model-set
    folder or a YAML naming each stage. ``pipeline(image).lines`` -> boxes, texts, scores."""
    from .ocr.modelset import load_set as _load_set

    return _load_set(path, device, **kwargs)


def list_converters():
    """Every registered converter spec (built-in and plugins), with availability."""
    from .pipeline import available_converters

    return available_converters()


__all__ = ["convert", "verify", "load", "load_set", "list_converters", "ExitCode", "OcrConvertError", "__version__"]
