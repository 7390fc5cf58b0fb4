"""Vision encoders of end-to-end OCR VLMs, exported as one dynamic-resolution model and verified.

``export_encoder`` (load -> wrap -> export -> verify -> manifest) lives in :mod:`.export`; the model
family (config, weights, single-image wrapper, reference, preprocessing) in :mod:`.hunyuan`; exact
blocked attention and its ONNX ``Loop`` in :mod:`.attention`; the peak-memory probe in :mod:`.memory`.
"""
from __future__ import annotations

MODELS = {"hunyuan-ocr": "hunyuan", "paddleocr-vl": "paddleocr_vl"}


def family(name: str):
    """The module that knows one VLM's tower: config/weights, wrapper, reference, preprocessing."""
    import importlib

    from ..errors import UsageError

    if name not in MODELS:
        raise UsageError(f"unknown VLM {name!r}", hint=f"One of: {', '.join(MODELS)}")
    from .._compat import require

    require("torch", "the VLM vision towers are PyTorch modules")
    require("transformers", f"{name}'s tower comes from transformers")
    return importlib.import_module(f".{MODELS[name]}", __name__)


def __getattr__(name):  # lazy: torch/transformers load only when used
    if name in ("export_encoder", "verify_encoder", "VlmExportOptions"):
        from . import export

        return getattr(export, name)
    if name == "preprocess":
        from .hunyuan import preprocess

        return preprocess
    raise AttributeError(name)
