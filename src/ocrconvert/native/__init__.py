"""Native PyTorch route: Paddle inference models -> transformers PP-OCR classes (+ fused inference form)."""

from .api import NativeSpec, convert_to_transformers, load_native, recognise, trainable_module
from .errors import NativeMappingError
from .mapping import MappingReport

__all__ = [
    "MappingReport",
    "NativeMappingError",
    "NativeSpec",
    "convert_to_transformers",
    "load_native",
    "recognise",
    "trainable_module",
]
