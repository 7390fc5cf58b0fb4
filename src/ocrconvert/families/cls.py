"""Classification (text-line direction, document orientation): ``[N,3,H,W]`` -> ``[N,K]``."""
from __future__ import annotations

import numpy as np

from .base import Family, Profile, TaskResult, TensorSpec, nchw_profile
from .imaging import SAMPLE_LINES, normalize_chw, render_line, to_bgr_array


def argmax_agreement(a: np.ndarray, b: np.ndarray) -> float:
    a2, b2 = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    return float((a2.argmax(-1) == b2.argmax(-1)).mean())


# TensorRT defaults: PP-OCR's 48 x 192 text-line crop (or the model's fixed size), batch 1 / 8 / 64 lines
TRT_HW = (48, 192)
LINE_BATCH = (1, 8, 64)


class ClsFamily(Family):
    name = "cls"
    task = "cls"
    random_shapes = ((1, 48, 192), (4, 48, 192))

    def _hw(self) -> tuple[int, int]:
        shape = self.info.inputs[0].shape
        h = shape[2] if len(shape) == 4 and isinstance(shape[2], int) and shape[2] > 0 else 48
        w = shape[3] if len(shape) == 4 and isinstance(shape[3], int) and shape[3] > 0 else 192
        return h, w

    def default_config(self) -> dict:
        """PP-OCR's 180-degree text-line classifier as PaddleOCR 2.x ran it: keep-aspect crops padded to the
        program's size (``ClsResizeImg``, 48 x 192 where it is dynamic), labels ``0`` / ``180``. Other classifiers
        (4-way document orientation, PaddleX's ``ResizeImage`` ones) have processing of their own that no program
        records: none is made up for them."""
        h, w = self._hw()
        if (self.info.outputs[0].shape[-1] if self.info.outputs else None) != 2:
            return {}
        return {"PreProcess": {"transform_ops": [{"ClsResizeImg": {"image_shape": [3, h, w]}}]},
                "PostProcess": {"name": "ClsPostProcess", "label_list": ["0", "180"]}}

    def synthetic_images(self):
        items = []
        for t in SAMPLE_LINES[:4]:
            img = render_line(t)
            items.append((f"'{t}' upright", img, "0"))
            items.append((f"'{t}' rotated 180", img.rotate(180), "180"))
        return items

    def image_feeds(self, images):
        h, w = self._hw()
        square = abs(h - w) < 8  # document-orientation style: plain resize + ImageNet stats
        batch = []
        for _, img, *_ in images:
            if square:
                x = normalize_chw(to_bgr_array(img.resize((w, h), resample=2)), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
            else:
                nw = min(w, max(8, int(round(h * img.width / img.height))))
                x = np.zeros((3, h, w), np.float32)
                x[:, :, :nw] = normalize_chw(to_bgr_array(img.resize((nw, h), resample=2)), [0.5] * 3, [0.5] * 3)
            batch.append(x)
        return [(f"{len(batch)} rendered lines", {self.info.inputs[0].name: np.stack(batch)})]

    # ---- deployment ------------------------------------------------------------------
    bench_shape = (8, 3, 48, 192)
    calibrates_on_images = True

    def trt_profile(self, spec: TensorSpec) -> Profile | None:
        return nchw_profile(spec, LINE_BATCH, (TRT_HW[0],) * 3, (TRT_HW[1],) * 3)

    def synthetic_feeds(self, seed: int = 0):
        """Seeded hard lines (a short crop, a blur, a quarter turn): a model is unsure of them, so its
        probabilities stay away from one-hot and carry signal; clean lines saturate at 1.0 and hide damage."""
        from PIL import ImageFilter

        rng = np.random.default_rng(seed)
        items = []
        for t in SAMPLE_LINES[:4]:
            img = render_line(t)
            cut = max(8, int(img.width * rng.uniform(0.12, 0.3)))
            items += [(f"'{t}' cut", img.crop((0, 0, cut, img.height)), None),
                      (f"'{t}' blurred", img.filter(ImageFilter.GaussianBlur(float(rng.uniform(3, 5)))), None),
                      (f"'{t}' quarter turn", img.rotate(90, expand=True), None)]
        (label, feed), = self.image_feeds(items)
        return [(f"hard lines (seed {seed}): {label}", feed)]

    # fp16 random lines: probabilities move <= 8.3e-4 (PP-OCRv4 textline cls) and <= 6.6e-4 (document orientation)
    # under the FP16-cast ONNX, <= 1.6e-3 under the native model in plain torch half (CPU); the default fp16
    # bound (1e-2 + 1e-2 |p|) let a last conv x1.02 through (6.3e-3)
    RANDOM_BOUNDS = {"fp16": (4e-3, 0.0)}

    # a softmax row this close to one-hot hides any damage short of a flipped class
    SATURATED = 1e-4

    def uninformative(self, ref, noise_floor):
        why = self._unusable(ref)
        if why:
            return why
        p = np.asarray(self.primary_output(ref), dtype=np.float64).reshape(len(self.primary_output(ref)), -1)
        is_softmax = bool((p >= 0).all() and np.allclose(p.sum(-1), 1.0, atol=1e-3))
        if is_softmax and (p.max(-1) > 1.0 - self.SATURATED).all():
            return "saturated class probabilities (every row ~one-hot)"
        return ""

    # reduced precision: a row the source itself is unsure of (top-2 margin below this) may flip; fp32 may not
    REDUCED_PRECISION_MARGIN = 0.3

    def task_metric(self, ref, out, labels=None):
        a, b = self.primary_output(ref), self.primary_output(out)
        if str(self.precision) == "fp32":
            agree = argmax_agreement(a, b)
            return TaskResult("class agreement", agree, 1.0, agree >= 1.0)
        a2, b2 = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
        top2 = np.sort(a2, axis=-1)[:, -2:] if a2.shape[-1] > 1 else np.concatenate([a2, a2 * 0], -1)
        sure = (top2[:, 1] - top2[:, 0]) >= self.REDUCED_PRECISION_MARGIN
        agree = float((a2.argmax(-1) == b2.argmax(-1))[sure].mean()) if sure.any() else 1.0
        return TaskResult("class agreement (confident rows)", agree, 1.0, agree >= 1.0,
                          {"confident_rows": int(sure.sum()), "rows": int(len(sure))})
