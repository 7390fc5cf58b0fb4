"""Exceptions of the native PyTorch route."""


class NativeMappingError(Exception):
    """A Paddle program cannot be mapped (completely) onto the native PyTorch architecture."""
