"""Vision encoders of end-to-end OCR VLMs, exported as one dynamic-resolution model and verified.

``export_encoder`` (load -> wrap -> export -> verify -> manifest) lives in :mod:`.export`; the model
family (config, weights, single-image wrapper, reference, preprocessing) in :mod:`.hunyuan`; exact
blocked attention and its ONNX ``Loop`` in :mod:`.attention`; the peak-memory probe in :mod:`.memory`.
"""
from __future__ import annotations

MODELS = ("hunyuan-ocr",)


def __getattr__(name):  # lazy: torch/transformers load only when used
    if name in ("export_encoder", "verify_encoder", "VlmExportOptions"):
        from . import export

        return getattr(export, name)
    if name == "preprocess":
        from .hunyuan import preprocess

        return preprocess
    raise AttributeError(name)
