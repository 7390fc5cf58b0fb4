"""Exceptions of the native PyTorch route."""
from ..errors import UnsupportedModelError


class NativeMappingError(UnsupportedModelError):
    """A Paddle program cannot be mapped (completely) onto the native PyTorch architecture (exit 3)."""

    default_hint = "Use --allow-partial to accept it anyway, or --route graph for the traced route."

    def __init__(self, message: str, *args, hint: str | None = None):
        super().__init__(message, hint=hint)
