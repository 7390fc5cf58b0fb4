"""Shared fixtures for the bad-input corpus: real zoo models from the cache ($OCRCONVERT_CACHE)."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def zoo_model():
    """``zoo_model(name)`` -> the cached folder of a real zoo model; skips when it cannot be fetched."""
    from ocrconvert.errors import OcrConvertError
    from ocrconvert.zoo import pull

    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            try:
                cache[name] = pull(name)
            except OcrConvertError as exc:
                pytest.skip(f"zoo model {name} unavailable: {exc.message}")
        return cache[name]

    return get
