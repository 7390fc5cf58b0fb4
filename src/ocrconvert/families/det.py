"""DB text detection: ``x[N,3,H,W]`` -> probability map ``[N,1,H,W]``; judged by IoU at 0.3."""
from __future__ import annotations

import numpy as np

from .base import Family, Profile, TaskResult, TensorSpec, nchw_profile
from .imaging import normalize_chw, render_page, render_random_page, to_bgr_array, transform_op

DEFAULT_MEAN = (0.485, 0.456, 0.406)
DEFAULT_STD = (0.229, 0.224, 0.225)
# TensorRT defaults (min, opt, max): square-ish sides, multiples of 32 (DB's FPN needs it), opt = the
# family's resize limit; batch 1 because det pages differ in size.
TRT_SIDE = (32, 960, 1920)
TRT_BATCH = (1, 1, 1)


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

    # what each precision must still satisfy on the binarized map (fp32 reordering alone stays >= 0.999;
    # fp16 with the fp32 stem measured >= 0.998; INT8 Q/DQ of PP-OCRv4 det measured 0.83-0.93 on text pages)
    MIN_IOU = {"fp32": 0.99, "fp16": 0.98, "bf16": 0.95, "int8": 0.8}
    # what a mixed-precision plan (--plan auto) must reach: fp16 with the right layers in fp32 holds the fp32
    # bound (all-fp16 PP-OCRv5 det measured 0.9875 on the rendered 640x480 page); INT8 the 0.95
    PLAN_MIN_IOU = {"fp16": 0.99, "bf16": 0.98, "int8": 0.95}

    def plan_threshold(self, precision: str) -> float | None:
        return self.PLAN_MIN_IOU.get(str(precision))

    def default_config(self) -> dict:
        """PP-OCR's DB detection as PaddleOCR 2.x ran legacy programs: long side 960, ImageNet normalisation,
        ``DBPostProcess`` thresholds."""
        return {"PreProcess": {"transform_ops": [
                    {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                    {"DetResizeForTest": {"resize_long": 960}},
                    {"NormalizeImage": {"mean": list(DEFAULT_MEAN), "std": list(DEFAULT_STD), "scale": "1./255.",
                                        "order": "hwc"}},
                    {"ToCHWImage": None}, {"KeepKeys": {"keep_keys": ["image", "shape"]}}]},
                "PostProcess": {"name": "DBPostProcess", "thresh": 0.3, "box_thresh": 0.6, "max_candidates": 1000,
                                "unclip_ratio": 1.5}}

    def synthetic_feeds(self, seed: int = 0):
        """Text-like pages at the random shapes (noise gives an empty map: two empty masks agree trivially)."""
        feeds = []
        for i, (b, h, w) in enumerate(self.random_shapes):
            spec = self.info.inputs[0]
            _, _, hh, ww = self.concrete_shape(spec, b, h, w)
            pages = [render_random_page((ww, hh), seed=seed * 1000 + i * 10 + k) for k in range(b)]
            x = np.stack([self._normalize(p) for p in pages])
            feeds.append((f"text-like {b}x3x{hh}x{ww} (seed {seed})", {spec.name: x}))
        return feeds

    def _normalize(self, img) -> np.ndarray:
        norm = transform_op(self.info.config, "NormalizeImage") or {}
        return normalize_chw(to_bgr_array(img), norm.get("mean", DEFAULT_MEAN), norm.get("std", DEFAULT_STD))

    def uninformative(self, ref, noise_floor):
        """A det case carries signal when its binarized map holds text and background."""
        why = self._unusable(ref)
        if why:
            return why
        frac = float((self.primary_output(ref) > self.thresh).mean())
        if frac == 0.0:
            return f"empty det mask at {self.thresh:g} (nothing to detect)"
        if frac > 0.95:
            return f"det mask covers {frac:.0%} of the map"
        return ""

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

    # ---- deployment ------------------------------------------------------------------
    bench_shape = (1, 3, 640, 640)
    calibrates_on_images = True

    @classmethod
    def export_dims(cls, rank: int) -> dict:
        """Sides divisible by 32 (the FPN adds upsampled maps), at least 64."""
        from torch.export import Dim

        dims = super().export_dims(rank)
        if rank == 4:
            dims.update({2: 32 * Dim("h32", min=2, max=256), 3: 32 * Dim("w32", min=2, max=256)})
        return dims

    @property
    def side_limit(self) -> int:
        """The long-side limit of the model's own ``DetResizeForTest`` (960 when it names none)."""
        op = transform_op(self.info.config, "DetResizeForTest") or {}
        for key in ("resize_long", "limit_side_len"):
            if isinstance(op.get(key), (int, float)) and op[key] > 0:
                return int(op[key])
        return TRT_SIDE[1]

    def trt_profile(self, spec: TensorSpec) -> Profile | None:
        opt = min(TRT_SIDE[2], max(32, int(round(self.side_limit / 32)) * 32))
        side = (TRT_SIDE[0], opt, TRT_SIDE[2])
        return nchw_profile(spec, TRT_BATCH, side, side)

    def shrink_to_fit(self, img, size, target):
        """Keep the aspect and land on multiples of 32 inside the target."""
        (h, w), (th, tw) = size, target
        f = min(th / h, tw / w)
        return img.resize((max(32, int(w * f) // 32 * 32), max(32, int(h * f) // 32 * 32)), resample=2)

    def task_metric(self, ref, out, labels=None):
        iou = binarized_iou(self.primary_output(ref), self.primary_output(out), self.thresh)
        need = self.MIN_IOU.get(str(self.precision), 0.99)
        return TaskResult(f"det-map IoU@{self.thresh:g}", iou, need, iou >= need)
