"""Native PyTorch route: Paddle inference models -> transformers PP-OCR classes (+ fused inference form).

Architectures are records in ``architectures`` (one per architecture); this package's API asks them."""

from .api import convert_to_transformers, fuse_model, load_native, recognise, trainable_module
from .architectures import NativeArchitecture, Recognised
from .errors import NativeMappingError
from .mapping import MappingReport

__all__ = [
    "MappingReport",
    "NativeArchitecture",
    "NativeMappingError",
    "Recognised",
    "convert_to_transformers",
    "fuse_model",
    "load_native",
    "recognise",
    "trainable_module",
]
