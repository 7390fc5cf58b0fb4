"""Vision encoders of end-to-end OCR VLMs, exported as one dynamic-resolution model and verified.

A VLM tower is a source of the spine: ``tower_source(model, checkpoint)`` makes its ``Artifact``, and
``pipeline.convert(..., target="onnx" | "torch-aot")`` runs the ``vlm-onnx`` / ``vlm-aot`` routes. What
those routes know (options, export, the verifier against the transformers tower) lives in :mod:`.export`;
each model family (config, weights, single-image wrapper, reference, preprocessing) in its own module
(:mod:`.hunyuan`, :mod:`.paddleocr_vl`); exact blocked attention and its ONNX ``Loop`` in :mod:`.attention`;
the peak-memory probe in :mod:`.memory`; image file -> embeddings in :mod:`.embed`.
"""
from __future__ import annotations

from pathlib import Path

MODELS = {"hunyuan-ocr": "hunyuan", "paddleocr-vl": "paddleocr_vl"}


def _known(name: str) -> None:
    from ..errors import UsageError

    if name not in MODELS:
        raise UsageError(f"unknown VLM {name!r}", hint=f"One of: {', '.join(MODELS)}")


def family(name: str):
    """The module that knows one VLM's tower: config/weights, wrapper, reference, preprocessing."""
    import importlib

    from .._compat import require

    _known(name)
    require("torch", "the VLM vision towers are PyTorch modules")
    require("transformers", f"{name}'s tower comes from transformers")
    return importlib.import_module(f".{MODELS[name]}", __name__)


def tower_source(model: str, checkpoint: str | Path | None = None):
    """The spine's source for a VLM vision tower: the family by name, weights from ``checkpoint`` (a folder
    with config.json + safetensors) or, without one, seeded random (the seed is a route option)."""
    from ..errors import UsageError
    from ..formats import Artifact, Format

    _known(model)
    if checkpoint is None:
        return Artifact(Path(model), Format.VLM_TOWER, meta={"model": model, "checkpoint": None})
    folder = Path(checkpoint).expanduser()
    if not folder.is_dir():
        raise UsageError(f"--checkpoint {checkpoint} is not a folder",
                         hint="Pass the checkpoint folder (config.json + model*.safetensors).")
    return Artifact(folder, Format.VLM_TOWER, meta={"model": model, "checkpoint": str(folder)})


def __getattr__(name):  # lazy: torch/transformers load only when used
    if name in ("verify_encoder", "VlmExportOptions"):
        from . import export

        return getattr(export, name)
    if name == "preprocess":
        from .hunyuan import preprocess

        return preprocess
    raise AttributeError(name)
