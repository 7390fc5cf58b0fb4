"""CTC text recognition (PP-OCR rec): ``x[N,3,48,W]`` -> ``[N,T,C]`` class probabilities."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .base import Family, Profile, TaskResult, TensorSpec, nchw_profile
from .imaging import SAMPLE_LINES, line_crops, normalize_chw, render_line, to_bgr_array, transform_op


NO_DICTIONARY = "no dictionary: comparing class ids"


def read_dictionary_file(path: str | Path) -> list[str]:
    p = Path(path)
    if not _is_file(str(p)):
        raise UsageError(f"dictionary file {p} does not exist")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"dictionary file {p} is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"cannot read dictionary file {p}: {exc.strerror or type(exc).__name__}") from None
    # dict files ship with LF or CRLF endings; one character (or token) per line
    return [line.rstrip("\r") for line in text.split("\n") if line.rstrip("\r") != ""]


def _is_file(name: str) -> bool:
    """Whether a name from a config is a file; a name the file system refuses (too long, a loop) is not."""
    try:
        return Path(name).is_file()
    except OSError:
        return False


def load_dictionary(config: dict, metadata: dict, dict_file: Path | None) -> list[str] | None:
    """The character list from, in order: inference.yml, ONNX metadata, a dict file in the folder."""
    chars = (config or {}).get("PostProcess", {}).get("character_dict")
    if isinstance(chars, list) and chars:
        return [str(c) for c in chars]
    if isinstance(chars, str) and chars and _is_file(chars):
        return read_dictionary_file(chars)
    meta_chars = (metadata or {}).get("character")
    if meta_chars:
        return [c for c in meta_chars.replace("\r\n", "\n").split("\n") if c != ""]
    if dict_file is not None:
        return read_dictionary_file(dict_file)
    return None


def ctc_labels(dictionary: list[str], num_classes: int) -> list[str]:
    """blank + dictionary (+ space when the head has one more class), as PaddleOCR's CTCLabelDecode."""
    if num_classes == len(dictionary) + 2:
        return ["<blank>"] + dictionary + [" "]
    if num_classes == len(dictionary) + 1:
        return ["<blank>"] + dictionary
    raise UsageError(
        f"the dictionary has {len(dictionary)} entries but the model predicts {num_classes} classes",
        hint="Expected classes = entries + 1 (blank) or + 2 (blank and space). Pass the model's own dictionary with --dict.",
    )


def ctc_greedy_decode(probs: np.ndarray, labels: list[str] | None) -> list[str]:
    idx = probs.argmax(axis=-1)
    texts = []
    for row in idx:
        keep = [int(c) for i, c in enumerate(row) if c != 0 and (i == 0 or c != row[i - 1])]
        if labels is None:
            texts.append(" ".join(str(c) for c in keep))
        else:
            texts.append("".join(labels[c] if c < len(labels) else "�" for c in keep))
    return texts


# TensorRT defaults (min, opt, max): width from a short word (16) to a long line (3200), opt 320 =
# RecResizeImg's width; batch 1 / 8 / 64 lines (max batch x max width decides engine memory).
TRT_WIDTH = (16, 320, 3200)
LINE_BATCH = (1, 8, 64)


class RecCtcFamily(Family):
    name = "rec-ctc"
    task = "rec"
    random_shapes = ((1, 48, 320), (3, 48, 160), (2, 48, 480))

    def __init__(self, info):
        super().__init__(info)
        self._labels = None
        if info.dictionary is not None and info.outputs:
            shape = info.outputs[0].shape
            c = shape[-1] if shape else None  # a model may declare a scalar output
            if isinstance(c, int) and c > 0:
                self._labels = ctc_labels(info.dictionary, c)

    @property
    def height(self) -> int:
        shape = self.info.inputs[0].shape
        if len(shape) == 4 and isinstance(shape[2], int) and shape[2] > 0:
            return shape[2]
        img_shape = (transform_op(self.info.config, "RecResizeImg") or {}).get("image_shape")
        return int(img_shape[1]) if img_shape else 48

    def default_config(self) -> dict:
        """CTC recognition: the program's line height, PP-OCR's 320 width, ``CTCLabelDecode`` with the
        dictionary (and the space class when the head has one)."""
        post = {"name": "CTCLabelDecode"}
        if self.info.dictionary:
            post["character_dict"] = list(self.info.dictionary)
            c = self.info.outputs[0].shape[-1] if self.info.outputs else None
            if isinstance(c, int) and c > 0:
                post["use_space_char"] = c == len(self.info.dictionary) + 2
        return {"PreProcess": {"transform_ops": [
                    {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                    {"RecResizeImg": {"image_shape": [3, self.height, 320]}},
                    {"KeepKeys": {"keep_keys": ["image"]}}]},
                "PostProcess": post}

    def synthetic_images(self):
        known = set(self.info.dictionary or [])
        lines = [t for t in SAMPLE_LINES if not known or all(ch in known or ch == " " for ch in t)]
        return [(f"line '{t}'", render_line(t), t) for t in lines]

    def image_feeds(self, images):
        h = self.height
        arrays = []
        for _, page, *_ in images:
            for img in line_crops(page):  # a page is read line by line, never squeezed whole into one line
                w = max(16, int(math.ceil(h * img.width / img.height)))
                resized = img.resize((w, h), resample=3)  # bicubic ~ cv2.INTER_LINEAR closely enough here
                arrays.append(normalize_chw(to_bgr_array(resized), [0.5] * 3, [0.5] * 3))
        width = max(a.shape[2] for a in arrays)
        batch = np.zeros((len(arrays), 3, h, width), np.float32)
        for i, a in enumerate(arrays):
            batch[i, :, :, : a.shape[2]] = a
        return [(f"{len(arrays)} text lines", {self.info.inputs[0].name: batch})]

    # ---- deployment ------------------------------------------------------------------
    bench_shape = (8, 3, 48, 320)
    calibrates_on_images = True

    @classmethod
    def export_dims(cls, rank: int) -> dict:
        """Any width whose sequence has > 1 step (torch.export derives the bound, ~13)."""
        from torch.export import Dim

        dims = super().export_dims(rank)
        if rank == 4:
            dims[3] = Dim.DYNAMIC
        return dims

    def trt_profile(self, spec: TensorSpec) -> Profile | None:
        return nchw_profile(spec, LINE_BATCH, (self.height,) * 3, TRT_WIDTH)

    def shrink_to_fit(self, img, size, target):
        """PP-OCR squeezes an over-long line to the target width; the height is the model's."""
        return img.resize((max(1, int(img.width * min(1.0, target[1] / size[1]))), img.height), resample=2)

    def synthetic_feeds(self, seed: int = 0):
        """Seeded lines of dictionary words, batched like the random cases (noise decodes to blanks)."""
        rng = np.random.default_rng(seed)
        known = set(self.info.dictionary or [])
        words = [w for w in " ".join(SAMPLE_LINES).split() if not known or all(c in known for c in w)] or ["text"]
        lines = [" ".join(rng.choice(words, size=int(rng.integers(1, 4)))) for _ in range(4)]
        (label, feed), = self.image_feeds([(t, render_line(t, size=int(rng.integers(22, 40))), t) for t in lines])
        return [(f"text lines (seed {seed}): {label}", feed)]

    def uninformative(self, ref, noise_floor):
        why = self._unusable(ref)
        if why:
            return why
        if not any(t.strip() for t in self.decode(ref)):
            return "blank decode (no text read)"
        return ""

    def decode(self, outputs) -> list[str]:
        probs = self.primary_output(outputs)
        return ctc_greedy_decode(probs, self._labels)

    def task_metric(self, ref, out, labels=None):
        a, b = self.decode(ref), self.decode(out)
        same = sum(x == y for x, y in zip(a, b))
        rate = same / max(len(a), 1)
        detail = {"source_text": a, "target_text": b}
        if self._labels is None:  # texts are class ids: reading 0 of the drawn lines would say nothing
            detail["no_dictionary"] = True
            return TaskResult(f"class-id exact-match ({NO_DICTIONARY})", rate, 1.0, rate >= 1.0, detail)
        if labels:
            detail["ground_truth"] = labels
        return TaskResult("text exact-match", rate, 1.0, rate >= 1.0, detail)
