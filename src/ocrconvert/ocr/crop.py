"""Text-line crops from detected quads (PaddleX ``CropByPolys`` with ``det_box_type='quad'``)."""
from __future__ import annotations

import numpy as np

VERTICAL_RATIO = 1.5  # a crop at least this many times taller than wide is read as vertical text


def order_min_area_rect(points) -> np.ndarray:
    """The min-area rectangle of ``points`` as 4 float32 corners: top-left, top-right, bottom-right, bottom-left."""
    import cv2

    rect = cv2.minAreaRect(np.asarray(points).astype(np.int32))
    pts = sorted(list(cv2.boxPoints(rect)), key=lambda p: p[0])
    a, d = (0, 1) if pts[1][1] > pts[0][1] else (1, 0)
    b, c = (2, 3) if pts[3][1] > pts[2][1] else (3, 2)
    return np.array([pts[a], pts[b], pts[c], pts[d]], dtype=np.float32)


def rotate_crop(img: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Perspective-warp the quad to an upright rectangle (cubic, replicated border); a crop with
    ``h / w >= 1.5`` is turned 90 degrees counter-clockwise (``np.rot90``) so a vertical line reads across."""
    import cv2

    quad = np.asarray(quad, np.float32)
    width = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    height = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    dst = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    m = cv2.getPerspectiveTransform(quad, dst)
    out = cv2.warpPerspective(img, m, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if out.shape[0] * 1.0 / max(out.shape[1], 1) >= VERTICAL_RATIO:
        out = np.rot90(out)
    return out


def crop_lines(img: np.ndarray, boxes) -> list[np.ndarray]:
    """One crop per quad: the quad's min-area rectangle, warped upright (empty crops are kept; the caller drops them)."""
    return [rotate_crop(img, order_min_area_rect(b)) for b in boxes]
