import pytest
from _native_models import require_model


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """Convert each model at most once per session."""
    cache = {}

    def get(key):
        if key not in cache:
            from ocrconvert.native import convert_to_transformers

            src = require_model(key)
            out = tmp_path_factory.mktemp(f"native_{key}")
            report = convert_to_transformers(src, out)
            assert report.complete
            cache[key] = out
        return cache[key]

    return get
