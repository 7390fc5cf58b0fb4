"""Typed parameters of the PP-OCR text pipeline: det / cls / rec, read from a model's ``inference.yml``.

Two kinds of value, as in PaddleOCR 3.x (``paddlex/configs/pipelines/OCR.yaml`` of paddlex 3.7.2, which
``paddleocr==3.7.0`` runs):

* model-level values come from the model's ``inference.yml`` (normalisation, ``max_candidates``,
  ``score_mode``, ``use_dilation``, the rec image shape) with PaddleX's defaults when it names none;
* pipeline-level values (``limit_side_len`` / ``limit_type`` / ``max_side_limit``, ``thresh``,
  ``box_thresh``, ``unclip_ratio``, the rec score threshold, batch sizes) are the pipeline's: PaddleOCR's
  pipeline passes its own and so overrides the yml's ``PostProcess`` thresholds; so do we, unless the
  caller overrides them.

The pipeline defaults are PaddleOCR 3.7's, not 2.x's: ``limit_side_len=64, limit_type='min'`` (a page is
detected at its own size, rounded to multiples of 32, up to ``max_side_limit=4000``) and a rec score
threshold of 0.0 (2.x: 960 / 'max' and ``drop_score=0.5``; :meth:`OcrParams.paddleocr2` gives those).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from ..errors import CorruptModelError, UnsupportedModelError, UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LIMIT_TYPES = ("max", "min", "resize_long")
SCORE_MODES = ("fast", "slow")


def _transform_op(config: dict | None, name: str) -> dict | None:
    for op in (config or {}).get("PreProcess", {}).get("transform_ops", []) or []:
        if isinstance(op, dict) and name in op:
            return op[name] or {}
    return None


def _scale(value) -> float:
    """``NormalizeImage.scale`` is written as ``1./255.`` in PaddleX ymls: a tiny arithmetic string."""
    if value is None:
        return 1.0 / 255.0
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).replace(" ", "")
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise CorruptModelError(f"inference.yml: NormalizeImage.scale {text[:40]!r} is not a number") from None


@dataclass(frozen=True)
class DetParams:
    """Text detection (DB): resize, normalisation and post-processing."""
    limit_side_len: int = 64
    limit_type: str = "min"
    max_side_limit: int = 4000
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scale: float = 1.0 / 255.0
    thresh: float = 0.3
    box_thresh: float = 0.6
    unclip_ratio: float = 1.5
    max_candidates: int = 1000
    score_mode: str = "fast"
    use_dilation: bool = False

    def __post_init__(self):
        if self.limit_type not in LIMIT_TYPES:
            raise UsageError(f"det limit_type {self.limit_type!r} is not one of {LIMIT_TYPES}")
        if self.score_mode not in SCORE_MODES:
            raise UsageError(f"det score_mode {self.score_mode!r} is not one of {SCORE_MODES}")
        if self.limit_side_len <= 0 or self.max_side_limit <= 0:
            raise UsageError("det limit_side_len and max_side_limit must be positive")
        if not (0.0 <= self.thresh <= 1.0 and 0.0 <= self.box_thresh <= 1.0):
            raise UsageError("det thresh and box_thresh must lie in [0, 1]")
        if self.unclip_ratio <= 0 or self.max_candidates <= 0:
            raise UsageError("det unclip_ratio and max_candidates must be positive")

    @classmethod
    def from_config(cls, config: dict | None, **overrides) -> "DetParams":
        """Model-level values from ``inference.yml``, pipeline-level ones from PaddleOCR's pipeline defaults."""
        norm = _transform_op(config, "NormalizeImage") or {}
        post = (config or {}).get("PostProcess", {}) or {}
        found = {
            "mean": tuple(float(v) for v in norm.get("mean", IMAGENET_MEAN)),
            "std": tuple(float(v) for v in norm.get("std", IMAGENET_STD)),
            "scale": _scale(norm.get("scale")),
            "max_candidates": int(post.get("max_candidates", 1000)),
            "score_mode": str(post.get("score_mode", "fast")),
            "use_dilation": bool(post.get("use_dilation", False)),
        }
        return _build(cls, found, overrides)


@dataclass(frozen=True)
class ClsParams:
    """The 180-degree text-line classifier (PP-OCR ``TextClassifier``)."""
    image_shape: tuple[int, int, int] = (3, 48, 192)
    thresh: float = 0.9
    batch_size: int = 6
    labels: tuple[str, ...] = ("0", "180")

    @classmethod
    def from_config(cls, config: dict | None, input_shape=None, **overrides) -> "ClsParams":
        found = {}
        if _transform_op(config, "ResizeImage") is not None:
            # PaddleX's textline_ori classifiers (PP-LCNet_x*_textline_ori) resize without keeping the aspect, use
            # ImageNet statistics and take the argmax: another contract than PP-OCR's TextClassifier, not run here
            raise UnsupportedModelError(
                "this text-line classifier is a PaddleX image classifier (ResizeImage in its inference.yml); "
                "the pipeline runs PP-OCR's 180-degree TextClassifier (keep-aspect 48x192 crops) only",
                hint="Use a PP-OCR direction classifier (ch_ppocr_mobile_v2.0_cls), or run without --cls.")
        if input_shape is not None and len(input_shape) == 4 and all(isinstance(d, int) and d > 0 for d in input_shape[2:]):
            found["image_shape"] = (3, int(input_shape[2]), int(input_shape[3]))
        labels = ((config or {}).get("PostProcess", {}) or {}).get("Topk", {}) or {}
        if isinstance(labels.get("label_list"), list) and labels["label_list"]:
            found["labels"] = tuple(str(v).replace("_degree", "") for v in labels["label_list"])
        return _build(cls, found, overrides)


@dataclass(frozen=True)
class RecParams:
    """CTC text recognition: the line height/width from ``RecResizeImg``, batching and the score filter."""
    image_shape: tuple[int, int, int] = (3, 48, 320)
    batch_size: int = 6
    score_thresh: float = 0.0
    max_width: int = 3200
    use_space_char: bool = True

    @classmethod
    def from_config(cls, config: dict | None, input_shape=None, **overrides) -> "RecParams":
        found = {}
        shape = (_transform_op(config, "RecResizeImg") or {}).get("image_shape")
        if isinstance(shape, (list, tuple)) and len(shape) == 3:
            found["image_shape"] = tuple(int(v) for v in shape)
        elif input_shape is not None and len(input_shape) == 4 and isinstance(input_shape[2], int) and input_shape[2] > 0:
            found["image_shape"] = (3, int(input_shape[2]), 320)
        post = (config or {}).get("PostProcess", {}) or {}
        if "use_space_char" in post:
            found["use_space_char"] = bool(post["use_space_char"])
        return _build(cls, found, overrides)


@dataclass(frozen=True)
class OcrParams:
    """All three stages' parameters; ``to_dict()`` for reports and JSON."""
    det: DetParams = field(default_factory=DetParams)
    cls: ClsParams = field(default_factory=ClsParams)
    rec: RecParams = field(default_factory=RecParams)

    @classmethod
    def paddleocr2(cls) -> "OcrParams":
        """PaddleOCR 2.x's defaults (``det_limit_side_len=960``, 'max', ``drop_score=0.5``)."""
        return cls(DetParams(limit_side_len=960, limit_type="max"), ClsParams(), RecParams(score_thresh=0.5))

    def to_dict(self) -> dict:
        return {"det": asdict(self.det), "cls": asdict(self.cls), "rec": asdict(self.rec)}

    def override(self, **changes) -> "OcrParams":
        """``override(det_thresh=0.2, rec_score_thresh=0.5)``: one flat mapping, each key checked."""
        parts = {"det": {}, "cls": {}, "rec": {}}
        for key, value in changes.items():
            stage, _, name = key.partition("_")
            if stage not in parts or name not in {f.name for f in fields(getattr(self, stage))}:
                raise UsageError(f"unknown OCR parameter {key!r}",
                                 hint="Parameters are det_*, cls_* or rec_* fields of DetParams, ClsParams, RecParams.")
            parts[stage][name] = value
        return OcrParams(*(replace(getattr(self, s), **parts[s]) for s in ("det", "cls", "rec")))


def _build(klass, found: dict, overrides: dict):
    names = {f.name for f in fields(klass)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UsageError(f"unknown {klass.__name__} parameter(s) {unknown}", hint=f"Known: {sorted(names)}.")
    return klass(**{**found, **{k: v for k, v in overrides.items() if v is not None}})
