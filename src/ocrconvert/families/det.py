"""DB text detection: ``x[N,3,H,W]`` -> probability map ``[N,1,H,W]``; judged by IoU at 0.3."""
from __future__ import annotations

import numpy as np

from .base import Family, TaskResult
from .imaging import normalize_chw, render_page, to_bgr_array, transform_op

DEFAULT_MEAN = (0.485, 0.456, 0.406)
DEFAULT_STD = (0.229, 0.224, 0.225)


def binarized_iou(a: np.ndarray, b: np.ndarray, thresh: float) -> float:
    ma, mb = a > thresh, b > thresh
    union = np.logical_or(ma, mb).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(ma, mb).sum() / union)


class DetDbFamily(Family):
    name = "det-db"
    task = "det"
    random_shapes = ((1, 320, 320), (2, 256, 384))

    @property
    def thresh(self) -> float:
        return float((self.info.config or {}).get("PostProcess", {}).get("thresh", 0.3))

    def synthetic_images(self):
        return [("rendered page 640x480", render_page(), None), ("rendered page 480x352", render_page(size=(480, 352)), None)]

    def image_feeds(self, images):
        norm = transform_op(self.info.config, "NormalizeImage") or {}
        mean, std = norm.get("mean", DEFAULT_MEAN), norm.get("std", DEFAULT_STD)
        limit = int((transform_op(self.info.config, "DetResizeForTest") or {}).get("resize_long", 960))
        feeds = []
        for label, img, *_ in images:
            scale = min(1.0, limit / max(img.width, img.height))
            w = max(32, int(round(img.width * scale / 32)) * 32)
            h = max(32, int(round(img.height * scale / 32)) * 32)
            x = normalize_chw(to_bgr_array(img.resize((w, h), resample=2)), mean, std)
            feeds.append((label, {self.info.inputs[0].name: x[None]}))
        return feeds

    def task_metric(self, ref, out, labels=None):
        iou = binarized_iou(self.primary_output(ref), self.primary_output(out), self.thresh)
        return TaskResult(f"det-map IoU@{self.thresh:g}", iou, 0.99, iou >= 0.99)
