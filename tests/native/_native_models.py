"""The real Paddle test models, pulled from the pinned zoo (downloaded once into $OCRCONVERT_CACHE)."""

from pathlib import Path

import pytest

ZOO_NAMES = {"v4_det": "ppocrv4-det", "v4_rec": "ppocrv4-rec", "v2_cls": "ppocrv4-cls",
             "v5_det": "ppocrv5-mobile-det", "v5_rec": "ppocrv5-mobile-rec"}
SHAPES = {"v4_det": (1, 3, 160, 160), "v5_det": (1, 3, 160, 160), "v4_rec": (1, 3, 48, 160),
          "v5_rec": (1, 3, 48, 160), "v2_cls": (1, 3, 48, 192)}
TASKS = {"v4_det": "det", "v5_det": "det", "v4_rec": "rec", "v5_rec": "rec", "v2_cls": "cls"}


def model_dir(key: str) -> Path:
    from ocrconvert.zoo import pull

    return pull(ZOO_NAMES[key])


def require_model(key: str) -> Path:
    pytest.importorskip("paddle", reason="paddlepaddle is not installed")
    pytest.importorskip("transformers", reason="transformers is not installed")
    return model_dir(key)
