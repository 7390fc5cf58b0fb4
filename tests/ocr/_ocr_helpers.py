"""Helpers of the OCR pipeline tests: the PaddleOCR oracle, page comparison."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np

ORACLE = Path(__file__).with_name("paddleocr_oracle.py")


def oracle_input(page, path: Path) -> Path:
    """What PaddleOCR is given for a page: the file itself, or for a transparent page its flattened copy.
    PaddleOCR reads with cv2.imread, which drops alpha (transparent pixels turn black); ocrconvert composites
    on white as the issue asks, so both are fed the same pixels."""
    if page.style != "transparent":
        return path
    from PIL import Image

    flat = path.with_name(path.stem + ".flat.png")
    if not flat.exists():
        canvas = Image.new("RGBA", page.image.size, (255, 255, 255, 255))
        canvas.alpha_composite(page.image.convert("RGBA"))
        canvas.convert("RGB").save(flat)
    return flat


def run_oracle(python: str, det: Path, rec: Path, images: list[Path], out: Path) -> list[dict]:
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="2")
    proc = subprocess.run([python, str(ORACLE), "--det", str(det), "--rec", str(rec), "--out", str(out),
                           *map(str, images)], capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, f"PaddleOCR oracle failed:\n{proc.stderr[-4000:]}"
    return json.loads(out.read_text(encoding="utf-8"))["pages"]


def compare_pages(ours: list[dict], ref: list[dict]) -> dict:
    """Per-line agreement of two runs over the same pages (each ``{"boxes", "texts"}`` in reading order):
    line counts, the largest corner difference in pixels, and the text differences."""
    lines = count_diffs = 0
    max_px = 0.0
    texts = []
    for a, b in zip(ours, ref):
        ba, bb = np.asarray(a["boxes"], float).reshape(-1, 4, 2), np.asarray(b["boxes"], float).reshape(-1, 4, 2)
        if ba.shape != bb.shape:
            count_diffs += 1
            max_px = float("inf")
            continue
        lines += len(ba)
        if len(ba):
            max_px = max(max_px, float(np.abs(ba - bb).max()))
        texts += [(x, y) for x, y in zip(a["texts"], b["texts"]) if x != y]
    return {"lines": lines, "pages_with_other_line_count": count_diffs, "max_box_px": max_px, "text_diffs": texts}


def page_dict(result) -> dict:
    return {"boxes": [line.box.tolist() for line in result.lines], "texts": result.texts}


def _inside(point, quad) -> bool:
    import cv2

    return cv2.pointPolygonTest(np.asarray(quad, np.float32).reshape(-1, 1, 2),
                                (float(point[0]), float(point[1])), False) >= 0


def known_text_cer(result, page, drop_spaces: bool = False) -> tuple[float, list[str]]:
    """CER of a page result against the rendered text: each known line is matched to the detected lines whose
    quads hold its centre (reading order does not matter). Returns (CER over all characters, lines not found)."""
    from ocrconvert.ocr.pages import cer

    errors = chars = 0
    missing = []
    for line in page.lines:
        centre = line.quad.mean(0)
        got = " ".join(r.text for r in result.lines if _inside(centre, r.box))
        if not got:
            missing.append(line.text)
        ref = line.text.replace(" ", "") if drop_spaces else line.text
        got = got.replace(" ", "") if drop_spaces else got
        errors += cer(ref, got) * len(ref)
        chars += len(ref)
    return errors / max(chars, 1), missing
