"""``OcrPipeline``: a page image in, text lines (quad, text, score) out — det -> (cls) -> rec on any runners.

Each stage takes anything with ``infer(feed) -> dict[str, ndarray]`` (what ``ocrconvert.load()`` returns for
Paddle, ONNX Runtime, torch graph / native, AOT and TensorRT artifacts), so one pipeline code path serves the
original models and every converted set. Faithful to PaddleOCR 3.7's ``OCR`` pipeline (det + textline
orientation + rec, doc preprocessing off): BGR pixels, boxes sorted as ``SortQuadBoxes``, lines recognised
in aspect-ratio order, the text-score filter applied last.

    from ocrconvert.ocr import OcrPipeline
    ocr = OcrPipeline.from_paths(det="ppocrv5-det/", rec="ppocrv5-rec/", cls=None, device="cpu")
    page = ocr("scan.png")
    for line in page.lines:
        print(line.text, line.score, line.box.tolist())
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .classify import TextClassifier
from .crop import crop_lines
from .detect import TextDetector
from .params import ClsParams, DetParams, OcrParams, RecParams
from .recognize import TextRecognizer

log = logging.getLogger(__name__)


@dataclass
class TextLine:
    """One recognised line: ``box`` is a 4x2 float32 quad in page pixels (top-left, top-right, bottom-right,
    bottom-left), ``score`` the recognition score, ``angle`` 0/180 from the classifier (None without one)."""
    box: np.ndarray
    text: str
    score: float
    angle: int | None = None
    det_score: float | None = None

    def to_dict(self) -> dict:
        return {"box": [[float(x), float(y)] for x, y in np.asarray(self.box)], "text": self.text,
                "score": round(float(self.score), 6), "angle": self.angle,
                "det_score": None if self.det_score is None else round(float(self.det_score), 6)}


@dataclass
class PageResult:
    """One page: its lines in reading order, its size, per-stage seconds and, on request, the det map."""
    lines: list[TextLine]
    size: tuple[int, int]                      # (width, height) of the page as read (EXIF applied)
    timings: dict[str, float] = field(default_factory=dict)
    prob_map: np.ndarray | None = None         # det probability map [H', W'] at the model's input size
    source: str | None = None
    dropped: int = 0                           # lines under the rec score threshold

    @property
    def texts(self) -> list[str]:
        return [line.text for line in self.lines]

    def to_dict(self) -> dict:
        return {"source": self.source, "size": list(self.size), "lines": [ln.to_dict() for ln in self.lines],
                "dropped": self.dropped, "timings": {k: round(v, 6) for k, v in self.timings.items()}}


# ---- images ------------------------------------------------------------------------------------------
def read_image(image) -> tuple[np.ndarray, str | None]:
    """A page as BGR uint8 ``HxWx3`` (PaddleOCR's convention) and its name.

    ``image``: a path (EXIF orientation applied, transparency composited on white), a PIL image (the same),
    or an ndarray taken as cv2 gives it: BGR ``HxWx3``, BGRA ``HxWx4`` (composited on white) or grey ``HxW``."""
    from PIL import Image, ImageOps

    from ..families.imaging import open_image, to_rgb

    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise UsageError(f"{path} is not an image file")
        try:
            with Image.open(path) as im:
                rgb = to_rgb(ImageOps.exif_transpose(im))
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
            rgb = open_image(path)  # fails again, as the one usage error naming the file
        return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1]), str(path)
    if isinstance(image, Image.Image):
        rgb = to_rgb(ImageOps.exif_transpose(image))
        return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1]), getattr(image, "filename", None) or None
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            raise UsageError(f"an ndarray page must be uint8, not {arr.dtype}")
        if arr.ndim == 2:
            return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2)), None
        if arr.ndim == 3 and arr.shape[2] == 3:
            return np.ascontiguousarray(arr), None
        if arr.ndim == 3 and arr.shape[2] == 4:
            alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
            out = arr[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
            return np.ascontiguousarray(np.round(out).astype(np.uint8)), None
        raise UsageError(f"an ndarray page must be HxW, HxWx3 (BGR) or HxWx4 (BGRA), not {arr.shape}")
    raise UsageError(f"cannot read a page from {type(image).__name__}",
                     hint="Pass a path, a PIL image or a BGR uint8 ndarray.")


# ---- runners -----------------------------------------------------------------------------------------
def load_stage(path, device: str = "cpu", **kwargs):
    """The runner for one stage's model on ``device`` (``cpu``, ``cuda``, ``cuda:N``), as ``ocrconvert.load``."""
    from ..formats import Format, detect
    from ..runners import load

    art = detect(path)
    dev = (device or "cpu").strip().lower()
    cuda = dev.startswith("cuda")
    index = int(dev.split(":", 1)[1]) if ":" in dev else 0
    fmt = art.format
    if fmt in (Format.PADDLE_LEGACY, Format.PADDLE_PIR):
        if cuda:
            raise UsageError(f"{art.path}: the Paddle runner runs on the CPU only", hint="Use --device cpu.")
    elif fmt is Format.ONNX:
        if cuda:
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise UsageError(f"{art.path}: this onnxruntime has no CUDA provider",
                                 hint="Install onnxruntime-gpu, or use --device cpu.")
            kwargs.setdefault("providers", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    elif fmt in (Format.TORCH_GRAPH, Format.TORCH_NATIVE, Format.TORCH_AOT):
        kwargs.setdefault("device", dev)
    elif fmt is Format.TENSORRT:
        if not cuda:
            raise UsageError(f"{art.path}: TensorRT engines run on a GPU only", hint="Use --device cuda.")
        kwargs.setdefault("device", index)
    return load(art.path, **kwargs)


def _info(runner):
    try:
        return runner.info()
    except AttributeError:  # a bare infer() object: no config, no dictionary
        return None


# ---- the pipeline ------------------------------------------------------------------------------------
class OcrPipeline:
    """det -> (cls) -> rec on three runners; ``pipeline(image) -> PageResult``.

    ``dictionary`` defaults to the rec model's own (inference.yml, ONNX metadata ``character``, a dict file);
    ``params`` defaults to :class:`OcrParams` read from the models' ``inference.yml`` with PaddleOCR 3.7's
    pipeline defaults. ``keep_prob_map=True`` keeps each page's det map in its result (for reports)."""

    def __init__(self, det, rec, cls=None, *, dictionary: list[str] | None = None, params: OcrParams | None = None,
                 keep_prob_map: bool = False):
        self.det_runner, self.rec_runner, self.cls_runner = det, rec, cls
        rec_info = _info(rec)
        if params is None:
            det_info, cls_info = _info(det), _info(cls) if cls is not None else None
            params = OcrParams(
                DetParams.from_config(det_info.config if det_info else None),
                ClsParams.from_config(cls_info.config if cls_info else None,
                                      input_shape=cls_info.inputs[0].shape if cls_info and cls_info.inputs else None),
                RecParams.from_config(rec_info.config if rec_info else None,
                                      input_shape=rec_info.inputs[0].shape if rec_info and rec_info.inputs else None))
        self.params = params
        if dictionary is None and rec_info is not None:
            dictionary = rec_info.dictionary
        if dictionary is None:
            log.warning("the recognition model carries no dictionary: texts are class ids")
        self.dictionary = dictionary
        self.keep_prob_map = keep_prob_map
        self.detector = TextDetector(det, params.det)
        self.classifier = TextClassifier(cls, params.cls) if cls is not None else None
        self.recognizer = TextRecognizer(rec, dictionary, params.rec)

    @classmethod
    def from_paths(klass, det, rec, cls=None, *, device: str = "cpu", dictionary: list[str] | str | Path | None = None,
                   params: OcrParams | None = None, keep_prob_map: bool = False, **runner_kwargs) -> "OcrPipeline":
        """Load each stage with ``ocrconvert.load`` on ``device``; ``dictionary`` may be a list or a dict file."""
        if isinstance(dictionary, (str, Path)):
            from ..families.rec import read_dictionary_file

            dictionary = read_dictionary_file(dictionary)
        return klass(load_stage(det, device, **runner_kwargs), load_stage(rec, device, **runner_kwargs),
                     load_stage(cls, device, **runner_kwargs) if cls is not None else None,
                     dictionary=dictionary, params=params, keep_prob_map=keep_prob_map)

    def describe(self) -> dict:
        """Which runner each stage uses and the parameters: for reports and ``--json``."""
        def name(r):
            return None if r is None else {"backend": getattr(r, "backend", type(r).__name__),
                                           "path": str(getattr(getattr(r, "artifact", None), "path", "")) or None}

        return {"det": name(self.det_runner), "cls": name(self.cls_runner), "rec": name(self.rec_runner),
                "dictionary_size": None if self.dictionary is None else len(self.dictionary),
                "params": self.params.to_dict()}

    def __call__(self, image, *, keep_prob_map: bool | None = None) -> PageResult:
        t0 = time.perf_counter()
        img, source = read_image(image)
        timings = {"read": time.perf_counter() - t0}

        t = time.perf_counter()
        det = self.detector(img)
        timings["det"] = time.perf_counter() - t

        t = time.perf_counter()
        crops = crop_lines(img, det.boxes)
        kept = [i for i, c in enumerate(crops) if c.size > 0 and c.shape[0] > 0 and c.shape[1] > 0]
        boxes = [det.boxes[i] for i in kept]
        det_scores = [det.scores[i] for i in kept]
        crops = [crops[i] for i in kept]
        timings["crop"] = time.perf_counter() - t

        angles: list[int | None] = [None] * len(crops)
        t = time.perf_counter()
        if self.classifier is not None and crops:
            crops, angles, _ = self.classifier(crops)
        timings["cls"] = time.perf_counter() - t

        t = time.perf_counter()
        recs = self.recognizer(crops) if crops else []
        timings["rec"] = time.perf_counter() - t

        lines, dropped = [], 0
        for box, det_score, angle, (text, score) in zip(boxes, det_scores, angles, recs):
            if score >= self.params.rec.score_thresh:
                lines.append(TextLine(np.asarray(box, np.float32), text, score, angle, det_score))
            else:
                dropped += 1
        timings["total"] = time.perf_counter() - t0
        keep = self.keep_prob_map if keep_prob_map is None else keep_prob_map
        return PageResult(lines, (int(img.shape[1]), int(img.shape[0])), timings,
                          det.prob_map if keep else None, source, dropped)
