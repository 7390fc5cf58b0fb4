"""DB text detection: resize + normalise a BGR page, run the model, turn its probability map into quads.

Faithful to PaddleX 3.7 (what ``paddleocr==3.7.0`` runs): ``DetResizeForTest`` type 0, ``NormalizeImage``
and ``DBPostProcess`` (quad boxes) with opencv + pyclipper, then ``SortQuadBoxes``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from .params import DetParams

log = logging.getLogger(__name__)

MIN_SIZE = 3  # DBPostProcess.min_size


def _cv2():
    import cv2

    return cv2


def resize_for_det(img: np.ndarray, params: DetParams) -> tuple[np.ndarray, tuple[int, int, float, float]]:
    """``img`` (HxWx3 uint8) resized to sides that are multiples of 32; returns it and
    ``(src_h, src_w, ratio_h, ratio_w)`` (``DetResizeForTest.resize_image_type0``)."""
    cv2 = _cv2()
    src_h, src_w = img.shape[:2]
    if src_h + src_w < 64:  # image_padding: tiny inputs are padded with black to at least 32 x 32
        pad = np.zeros((max(32, src_h), max(32, src_w), img.shape[2]), np.uint8)
        pad[:src_h, :src_w] = img
        img = pad
    h, w = img.shape[:2]
    limit = params.limit_side_len
    if params.limit_type == "max":
        ratio = float(limit) / max(h, w) if max(h, w) > limit else 1.0
    elif params.limit_type == "min":
        ratio = float(limit) / min(h, w) if min(h, w) < limit else 1.0
    else:  # resize_long
        ratio = float(limit) / max(h, w)
    resize_h, resize_w = int(h * ratio), int(w * ratio)
    if max(resize_h, resize_w) > params.max_side_limit:
        ratio = float(params.max_side_limit) / max(resize_h, resize_w)
        resize_h, resize_w = int(resize_h * ratio), int(resize_w * ratio)
    resize_h = max(int(round(resize_h / 32) * 32), 32)
    resize_w = max(int(round(resize_w / 32) * 32), 32)
    if (resize_h, resize_w) == (h, w):
        return img, (src_h, src_w, 1.0, 1.0)
    img = cv2.resize(img, (int(resize_w), int(resize_h)))
    return img, (src_h, src_w, resize_h / float(h), resize_w / float(w))


def normalize(img: np.ndarray, mean, std, scale: float) -> np.ndarray:
    """HWC uint8 -> CHW float32: ``x * scale / std - mean / std`` per channel, in PaddleX's float32 order."""
    x = img.astype(np.float32)
    alpha = np.asarray([scale / s for s in std], np.float32)
    beta = np.asarray([-m / s for m, s in zip(mean, std)], np.float32)
    x *= alpha
    x += beta
    return np.ascontiguousarray(x.transpose(2, 0, 1))


# ---- DB post-processing ------------------------------------------------------------------------------
def get_mini_boxes(contour) -> tuple[np.ndarray, float]:
    """The min-area rectangle's corners, ordered top-left, top-right, bottom-right, bottom-left, and its short side."""
    cv2 = _cv2()
    rect = cv2.minAreaRect(contour)
    points = sorted(list(cv2.boxPoints(rect)), key=lambda p: p[0])
    i1, i4 = (0, 1) if points[1][1] > points[0][1] else (1, 0)
    i2, i3 = (2, 3) if points[3][1] > points[2][1] else (3, 2)
    return np.array([points[i1], points[i2], points[i3], points[i4]]), min(rect[1])


def box_score_fast(pred: np.ndarray, box: np.ndarray) -> float:
    """Mean probability inside the quad (on its bounding window)."""
    cv2 = _cv2()
    h, w = pred.shape[:2]
    box = box.copy()
    xmin = max(0, min(math.floor(box[:, 0].min()), w - 1))
    xmax = max(0, min(math.ceil(box[:, 0].max()), w - 1))
    ymin = max(0, min(math.floor(box[:, 1].min()), h - 1))
    ymax = max(0, min(math.ceil(box[:, 1].max()), h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    box[:, 0] -= xmin
    box[:, 1] -= ymin
    cv2.fillPoly(mask, box.reshape(1, -1, 2).astype(np.int32), 1)
    return cv2.mean(pred[ymin:ymax + 1, xmin:xmax + 1], mask)[0]


def box_score_slow(pred: np.ndarray, contour: np.ndarray) -> float:
    """Mean probability inside the contour itself."""
    cv2 = _cv2()
    h, w = pred.shape[:2]
    contour = np.reshape(contour.copy(), (-1, 2))
    xmin, xmax = np.clip(contour[:, 0].min(), 0, w - 1), np.clip(contour[:, 0].max(), 0, w - 1)
    ymin, ymax = np.clip(contour[:, 1].min(), 0, h - 1), np.clip(contour[:, 1].max(), 0, h - 1)
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    contour[:, 0] -= xmin
    contour[:, 1] -= ymin
    cv2.fillPoly(mask, contour.reshape(1, -1, 2).astype(np.int32), 1)
    return cv2.mean(pred[ymin:ymax + 1, xmin:xmax + 1], mask)[0]


def unclip(box: np.ndarray, ratio: float) -> np.ndarray:
    """Grow the shrunk text kernel back: offset by ``area * ratio / perimeter`` (Vatti clipping, round joins)."""
    import pyclipper

    cv2 = _cv2()
    distance = cv2.contourArea(box) * ratio / cv2.arcLength(box, True)
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    try:
        return np.array(offset.Execute(distance))
    except ValueError:  # ragged result (several polygons): PaddleX keeps the first
        return np.array(offset.Execute(distance)[0])


def db_postprocess(pred: np.ndarray, shape: tuple[int, int, float, float], params: DetParams
                   ) -> tuple[np.ndarray, list[float]]:
    """Quads ``[N,4,2]`` (int16 pixel coordinates of the source page, as PaddleX) and their DB scores from one
    probability map ``[H,W]`` (``DBPostProcess`` with ``box_type='quad'``)."""
    cv2 = _cv2()
    src_h, src_w = int(shape[0]), int(shape[1])
    segmentation = pred > params.thresh
    if params.use_dilation:
        mask = cv2.dilate(segmentation.astype(np.uint8), np.array([[1, 1], [1, 1]]))
    else:
        mask = segmentation
    height, width = mask.shape
    width_scale, height_scale = src_w / width, src_h / height
    outs = cv2.findContours((mask * 255).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    contours = outs[1] if len(outs) == 3 else outs[0]
    boxes, scores = [], []
    for contour in contours[: params.max_candidates]:
        points, sside = get_mini_boxes(contour)
        if sside < MIN_SIZE:
            continue
        if params.score_mode == "fast":
            score = box_score_fast(pred, points.reshape(-1, 2))
        else:
            score = box_score_slow(pred, contour)
        if params.box_thresh > score:
            continue
        box = unclip(points, params.unclip_ratio).reshape(-1, 1, 2)
        box, sside = get_mini_boxes(box)
        if sside < MIN_SIZE + 2:
            continue
        box = np.array(box)
        for i in range(box.shape[0]):
            box[i, 0] = max(0, min(round(box[i, 0] * width_scale), src_w))
            box[i, 1] = max(0, min(round(box[i, 1] * height_scale), src_h))
        boxes.append(box.astype(np.int16))
        scores.append(float(score))
    return np.array(boxes, dtype=np.int16).reshape(-1, 4, 2), scores


def sort_boxes(boxes, scores=None):
    """Top to bottom, then left to right within 10 px rows (``SortQuadBoxes`` / 2.x ``sorted_boxes``);
    ``scores`` (if given) follow their boxes. Returns ``(boxes, scores)``."""
    items = list(zip(list(boxes), list(scores) if scores is not None else [None] * len(boxes)))
    items = sorted(items, key=lambda it: (it[0][0][1], it[0][0][0]))
    for i in range(len(items) - 1):
        for j in range(i, -1, -1):
            if abs(int(items[j + 1][0][0][1]) - int(items[j][0][0][1])) < 10 and items[j + 1][0][0][0] < items[j][0][0][0]:
                items[j], items[j + 1] = items[j + 1], items[j]
            else:
                break
    return [b for b, _ in items], [s for _, s in items]


def quad_iou(a, b) -> float:
    """Intersection over union of two quads (shapely; invalid quads are repaired by ``buffer(0)``)."""
    from shapely.geometry import Polygon

    pa, pb = Polygon(np.asarray(a, float)).buffer(0), Polygon(np.asarray(b, float)).buffer(0)
    union = pa.union(pb).area
    return float(pa.intersection(pb).area / union) if union > 0 else 0.0


@dataclass
class Detection:
    """One page's detection: quads in page pixels (sorted), their scores, the map and the model input size."""
    boxes: list[np.ndarray]
    scores: list[float]
    prob_map: np.ndarray
    input_hw: tuple[int, int]


class TextDetector:
    """A det stage on any runner (``infer(feed) -> dict``): ``TextDetector(runner, params)(bgr_page)``."""

    def __init__(self, runner, params: DetParams):
        self.runner = runner
        self.params = params
        self._input = runner.input_names[0] if getattr(runner, "input_names", None) else "x"

    def preprocess(self, img: np.ndarray) -> tuple[np.ndarray, tuple[int, int, float, float]]:
        resized, shape = resize_for_det(img, self.params)
        p = self.params
        return normalize(resized, p.mean, p.std, p.scale)[None], shape

    def __call__(self, img: np.ndarray) -> Detection:
        x, shape = self.preprocess(img)
        out = self.runner.infer({self._input: x})
        pred = np.asarray(next(iter(out.values())), dtype=np.float32)
        pred = pred.reshape(pred.shape[-2:]) if pred.ndim != 2 else pred
        boxes, scores = db_postprocess(pred, shape, self.params)
        boxes, scores = sort_boxes(boxes, scores)
        return Detection(boxes, scores, pred, (int(x.shape[2]), int(x.shape[3])))
