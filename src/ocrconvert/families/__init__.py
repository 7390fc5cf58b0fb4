"""Model families: what an OCR model's inputs look like and how its outputs are judged.

A family knows its input layout (for seeded random inputs inside the dynamic range), how to
preprocess a real image the way the original pipeline does, and its task metric (decoded text,
binarized detection maps, class agreement, table structure tokens and cell boxes). ``resolve_family``
picks one from the model's own config (``inference.yml`` / ONNX metadata), falling back to output shapes.
"""
from __future__ import annotations

from .base import Family, GenericFamily, ModelInfo, TensorSpec
from .cls import ClsFamily
from .det import DetDbFamily
from .rec import RecCtcFamily, load_dictionary
from .resolve import FAMILIES, get_family, resolve_family
from .table import TableFamily

__all__ = [
    "Family", "GenericFamily", "ModelInfo", "TensorSpec", "ClsFamily", "DetDbFamily", "RecCtcFamily",
    "TableFamily", "FAMILIES", "get_family", "resolve_family", "load_dictionary",
]
