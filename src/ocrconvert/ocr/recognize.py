"""CTC text recognition of line crops: batched by aspect ratio, each line resized to the model's height and
zero-padded to the batch's widest ratio (PaddleX ``OCRReisizeNormImg`` + ``ToBatch``), greedy CTC decoding
with the dictionary (``CTCLabelDecode``: blank + dictionary + space) and the line score = mean max-probability
of the kept steps."""
from __future__ import annotations

import math

import numpy as np

from ..errors import UsageError
from ..families.rec import ctc_labels
from .params import RecParams


def resize_norm_rec(img: np.ndarray, image_shape, max_wh_ratio: float, max_width: int = 3200) -> np.ndarray:
    """One crop, height to the model's, width ``ceil(h * ratio)`` inside ``int(h * max_wh_ratio)`` (squeezed to
    ``max_width`` beyond it), ``(x/255 - 0.5) / 0.5``, zero padded on the right."""
    import cv2

    c, h, _ = image_shape
    width = int(h * max_wh_ratio)
    if width > max_width:
        resized = cv2.resize(img, (max_width, h))
        resized_w = width = max_width
    else:
        ratio = img.shape[1] / float(img.shape[0])
        resized_w = width if math.ceil(h * ratio) > width else int(math.ceil(h * ratio))
        resized = cv2.resize(img, (resized_w, h))
    x = resized.astype(np.float32).transpose((2, 0, 1)) / 255
    x -= 0.5
    x /= 0.5
    out = np.zeros((c, h, width), dtype=np.float32)
    out[:, :, :resized_w] = x
    return out


def ctc_decode(probs: np.ndarray, labels: list[str] | None) -> list[tuple[str, float]]:
    """Greedy CTC: argmax per step, repeats merged, blanks (class 0) dropped; score = mean max-probability of
    the kept steps (0 when nothing is kept). Without labels the class ids are joined by spaces."""
    from ..runners.base import best_class

    idx, top, _ = best_class(probs)
    return ctc_decode_best(idx, top, labels)


def ctc_decode_best(idx: np.ndarray, top: np.ndarray, labels: list[str] | None) -> list[tuple[str, float]]:
    """:func:`ctc_decode` from the best class id and its probability at every step (``[N, T]`` each)."""
    out = []
    for row, prob in zip(idx, top):
        keep = np.ones(len(row), dtype=bool)
        keep[1:] = row[1:] != row[:-1]
        keep &= row != 0
        ids = row[keep]
        if labels is None:
            text = " ".join(str(int(c)) for c in ids)
        else:
            text = "".join(labels[c] if c < len(labels) else "\ufffd" for c in ids)
        conf = prob[keep]
        out.append((text, float(np.mean(conf)) if conf.size else 0.0))
    return out


class TextRecognizer:
    """A rec stage on any runner: ``TextRecognizer(runner, dictionary, params)(crops) -> [(text, score)]``."""

    def __init__(self, runner, dictionary: list[str] | None, params: RecParams):
        self.runner = runner
        self.params = params
        self.dictionary = list(dictionary) if dictionary is not None else None
        self._labels: list[str] | None = None
        self._input = runner.input_names[0] if getattr(runner, "input_names", None) else "x"

    def labels_for(self, num_classes: int) -> list[str] | None:
        """blank + dictionary (+ space): checked against the model's class count once it is known."""
        if self.dictionary is None:
            return None
        if self._labels is None or len(self._labels) != num_classes:
            if self.params.use_space_char and num_classes == len(self.dictionary) + 1:
                raise UsageError(f"the dictionary has {len(self.dictionary)} entries; the model predicts {num_classes} "
                                 "classes, one short of blank + dictionary + space",
                                 hint="Pass the model's own dictionary.")
            self._labels = ctc_labels(self.dictionary, num_classes)
        return self._labels

    def _best(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Best class and its probability per step. A runner with ``infer_best`` (every ocrconvert runner)
        reduces the ``[N, T, classes]`` output itself — torch on its device, so the host neither copies nor
        scans it (argmax + max of six 1,400-px v4 lines, [6, 175, 6625]: ~100 ms on a loaded 2-core CPU); a bare
        ``infer`` object is reduced here. Both take the first maximum: the same ids and values."""
        best = getattr(self.runner, "infer_best", None)
        if best is not None:
            return best({self._input: x})
        from ..runners.base import best_class

        return best_class(np.asarray(next(iter(self.runner.infer({self._input: x}).values())), np.float32))

    def __call__(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        n = len(crops)
        results: list[tuple[str, float]] = [("", 0.0)] * n
        ratios = np.array([c.shape[1] / float(c.shape[0]) for c in crops])
        order = np.argsort(ratios, kind="stable")
        c, h, w = self.params.image_shape
        bs = self.params.batch_size
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            # each line is resized inside its own max(w/h, ratio), then the batch is padded to its widest line
            # (PaddleX: a line narrower than the widest keeps int(), not ceil(), of its own width)
            lines = [resize_norm_rec(crops[i], self.params.image_shape, max(w / h, float(ratios[i])),
                                     self.params.max_width) for i in idx]
            x = np.zeros((len(lines), c, h, max(a.shape[2] for a in lines)), np.float32)
            for k, a in enumerate(lines):
                x[k, :, :, : a.shape[2]] = a
            ids, top, classes = self._best(x)
            labels = self.labels_for(classes)
            for i, res in zip(idx, ctc_decode_best(ids, top, labels)):
                results[i] = res
        return results
