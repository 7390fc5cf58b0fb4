"""The 180-degree text-line classifier (PaddleOCR ``TextClassifier``): batched by aspect ratio, a crop is
turned only when the model says ``180`` with a score above ``thresh``."""
from __future__ import annotations

import math

import numpy as np

from .params import ClsParams


def resize_norm_cls(img: np.ndarray, image_shape) -> np.ndarray:
    """Keep the aspect, height to the model's, width capped at the model's; ``(x/255 - 0.5) / 0.5``; zero padded."""
    import cv2

    c, h, w = image_shape
    ratio = img.shape[1] / float(img.shape[0])
    resized_w = w if math.ceil(h * ratio) > w else int(math.ceil(h * ratio))
    resized = cv2.resize(img, (resized_w, h)).astype(np.float32)
    resized = resized.transpose((2, 0, 1)) / 255
    resized -= 0.5
    resized /= 0.5
    out = np.zeros((c, h, w), dtype=np.float32)
    out[:, :, :resized_w] = resized
    return out


class TextClassifier:
    """A cls stage on any runner: ``TextClassifier(runner, params)(crops) -> (crops, angles, scores)``."""

    def __init__(self, runner, params: ClsParams):
        self.runner = runner
        self.params = params
        self._input = runner.input_names[0] if getattr(runner, "input_names", None) else "x"

    def __call__(self, crops: list[np.ndarray]) -> tuple[list[np.ndarray], list[int], list[float]]:
        import cv2

        crops = list(crops)
        n = len(crops)
        angles, scores = [0] * n, [0.0] * n
        order = np.argsort(np.array([c.shape[1] / float(c.shape[0]) for c in crops]))
        bs = self.params.batch_size
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            x = np.stack([resize_norm_cls(crops[i], self.params.image_shape) for i in idx])
            probs = np.asarray(next(iter(self.runner.infer({self._input: x}).values())), np.float32)
            probs = probs.reshape(probs.shape[0], -1)
            for k, i in enumerate(idx):
                cls_id = int(probs[k].argmax())
                label = self.params.labels[cls_id] if cls_id < len(self.params.labels) else str(cls_id)
                score = float(probs[k, cls_id])
                angles[i], scores[i] = int(label) if label.lstrip("-").isdigit() else cls_id, score
                if "180" in label and score > self.params.thresh:
                    crops[i] = cv2.rotate(crops[i], cv2.ROTATE_180)
                elif "180" in label:
                    angles[i] = 0  # below the threshold: left as it is, and reported as upright
        return crops, angles, scores
