"""Everything on the TensorRT path that runs without TensorRT.

* optimization profiles derived from the ONNX dynamic dims + the model family (or the model's own
  ``inference.yml`` ``Hpi.backend_configs.tensorrt.dynamic_shapes``), overridable by
  ``--shapes name:min:opt:max``;
* calibration batches: real images through the family's own preprocessing, fitted to the profile's
  opt shape (TensorRT calibrates at kOPT);
* the FP16-cast ONNX (onnxconverter-common) and the INT8 Q/DQ ONNX (onnxruntime.quantization),
  each checked in ONNX Runtime against the source;
* build options, the engine manifest (a pure function of collected facts) and ``--export-only``.

Nothing here imports ``tensorrt``; ``converters/onnx_trt.py`` is the only module that does.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import json
import logging
import re
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import ConversionError, UsageError
from .families import resolve_family
from .families.base import Family, ModelInfo, TensorSpec

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
PROFILE_FILE = "profiles.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Family defaults, (min, opt, max) per axis. Det: square-ish sides, multiples of 32 (DB's FPN needs it),
# opt = the family's resize limit; batch 1 because det pages differ in size. Rec: PP-OCR's height 48,
# width from a short word (16) to a long line (3200), opt 320 = RecResizeImg's width. Cls: fixed 48x192.
# Batch ranges: 1 / 8 / 64 for line models; max batch x max width decides engine memory - lower it with
# --shapes when memory is tight.
DET_SIDE = (32, 960, 1920)
DET_BATCH = (1, 1, 1)
REC_WIDTH = (16, 320, 3200)
LINE_BATCH = (1, 8, 64)
CLS_HW = (48, 192)

# ops kept in fp32 by the FP16 cast: reductions and transcendental ops whose range or precision fp16
# cannot hold (LayerNorm's pow/sqrt, softmax/sigmoid tails, resize coordinate math).
FP16_KEEP_FP32_OPS = ("Softmax", "Sigmoid", "HardSigmoid", "ReduceMean", "Pow", "Sqrt", "Exp", "Log", "Erf",
                      "LayerNormalization", "Resize", "Upsample")
# ops TensorRT runs in INT8 when wrapped by Q/DQ; the rest stay in higher precision (explicit quantization)
INT8_QUANTIZED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


# --------------------------------------------------------------------------------------------------
# optimization profiles
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShapeProfile:
    """One input's (min, opt, max) shapes for a TensorRT optimization profile."""
    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]
    origin: str = "family"   # family | inference.yml | model metadata | --shapes | fixed

    def to_dict(self) -> dict:
        return {"name": self.name, "min": list(self.min), "opt": list(self.opt), "max": list(self.max),
                "origin": self.origin}

    def spec(self) -> str:
        """The ``--shapes`` / trtexec spelling."""
        return f"{self.name}:{_dims(self.min)}:{_dims(self.opt)}:{_dims(self.max)}"

    def contains(self, shape) -> bool:
        return len(shape) == len(self.min) and all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max))


def _dims(shape) -> str:
    return "x".join(str(int(d)) for d in shape)


def _fixed(d) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def _round32(v: int) -> int:
    return max(32, int(round(v / 32)) * 32)


def parse_shape_spec(spec: str) -> tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """``x:1x3x48x16:8x3x48x320:64x3x48x3200`` -> (name, min, opt, max)."""
    parts = spec.rsplit(":", 3)
    if len(parts) != 4 or not parts[0]:
        raise UsageError(f"--shapes {spec!r} is not NAME:MIN:OPT:MAX",
                         hint="e.g. --shapes x:1x3x48x16:8x3x48x320:64x3x48x3200")
    name, shapes = parts[0], []
    for label, text in zip(("min", "opt", "max"), parts[1:]):
        if not re.fullmatch(r"\d+(x\d+)*", text.strip()):
            raise UsageError(f"--shapes {spec!r}: {label} shape {text!r} is not like 1x3x48x320")
        dims = tuple(int(d) for d in text.strip().split("x"))
        if any(d < 1 for d in dims):
            raise UsageError(f"--shapes {spec!r}: {label} shape has a dimension < 1")
        shapes.append(dims)
    return name, shapes[0], shapes[1], shapes[2]


def validate_profile(p: ShapeProfile, spec: TensorSpec) -> None:
    """Rank, fixed dims and min <= opt <= max, each with its own message."""
    where = f"--shapes {p.name}" if p.origin == "--shapes" else f"profile of {p.name} ({p.origin})"
    rank = len(spec.shape)
    for label, shape in (("min", p.min), ("opt", p.opt), ("max", p.max)):
        if len(shape) != rank:
            raise UsageError(f"{where}: {label} shape {_dims(shape)} has rank {len(shape)}, the input has rank {rank}",
                             hint=f"the model's {p.name} is {_spec_str(spec)}")
        for axis, (want, got) in enumerate(zip(spec.shape, shape)):
            if _fixed(want) is not None and got != want:
                raise UsageError(f"{where}: {label} dim {axis} is {got} but the model fixes it to {want}",
                                 hint=f"the model's {p.name} is {_spec_str(spec)}; only dynamic dims may vary")
    for axis, (lo, mid, hi) in enumerate(zip(p.min, p.opt, p.max)):
        if not lo <= mid <= hi:
            raise UsageError(f"{where}: dim {axis} needs min <= opt <= max, got {lo} / {mid} / {hi}")


def _spec_str(spec: TensorSpec) -> str:
    return "[" + ", ".join(str(d) if _fixed(d) else "?" for d in spec.shape) + "]"


def _yml_dynamic_shapes(config: dict) -> dict:
    hpi = ((config or {}).get("Hpi") or {}).get("backend_configs") or {}
    shapes = (hpi.get("tensorrt") or {}).get("dynamic_shapes") or (hpi.get("paddle_infer") or {}).get("trt_dynamic_shapes")
    return shapes if isinstance(shapes, dict) else {}


def _family_profile(spec: TensorSpec, family: Family) -> ShapeProfile | None:
    """Defaults for an NCHW image input by family; None when the family has no rule for it."""
    shape = spec.shape
    if len(shape) != 4:
        return None
    c = _fixed(shape[1]) or 3
    h_fix, w_fix = _fixed(shape[2]), _fixed(shape[3])
    if family.task == "det":
        limit = _det_limit(family.info.config)
        side = (DET_SIDE[0], min(DET_SIDE[2], _round32(limit)), DET_SIDE[2])
        h, w = (h_fix,) * 3 if h_fix else side, (w_fix,) * 3 if w_fix else side
        b = DET_BATCH
    elif family.task == "rec":
        height = h_fix or getattr(family, "height", 48)
        h = (height,) * 3
        w = (w_fix,) * 3 if w_fix else REC_WIDTH
        b = LINE_BATCH
    elif family.task == "cls":
        ch, cw = h_fix or CLS_HW[0], w_fix or CLS_HW[1]
        h, w, b = (ch,) * 3, (cw,) * 3, LINE_BATCH
    else:
        return None
    if _fixed(shape[0]):
        b = (shape[0],) * 3
    return ShapeProfile(spec.name, (b[0], c, h[0], w[0]), (b[1], c, h[1], w[1]), (b[2], c, h[2], w[2]), "family")


def _det_limit(config: dict) -> int:
    from .families.imaging import transform_op

    op = transform_op(config, "DetResizeForTest") or {}
    for key in ("resize_long", "limit_side_len"):
        if isinstance(op.get(key), (int, float)) and op[key] > 0:
            return int(op[key])
    return DET_SIDE[1]


def _metadata_profiles(info: ModelInfo) -> dict:
    """Profiles an exporter declared in the ONNX metadata (``ocrconvert.trt_profiles``: name -> [min, opt, max])."""
    raw = (info.metadata or {}).get("ocrconvert.trt_profiles")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
        return {name: tuple(tuple(int(d) for d in s) for s in shapes) for name, shapes in data.items()}
    except (ValueError, TypeError, AttributeError) as exc:
        log.warning("ignoring malformed ocrconvert.trt_profiles metadata: %s", exc)
        return {}


def derive_profiles(info: ModelInfo, family: Family, overrides: list[str] | tuple[str, ...] = ()) -> list[ShapeProfile]:
    """One profile entry per model input: ``--shapes`` > inference.yml Hpi > the model's own metadata >
    family defaults > fixed dims."""
    inputs = {s.name: s for s in info.inputs}
    given: dict[str, ShapeProfile] = {}
    for text in overrides or ():
        name, lo, mid, hi = parse_shape_spec(text)
        if name not in inputs:
            raise UsageError(f"--shapes names input {name!r}, but the model's inputs are {list(inputs)}")
        if name in given:
            raise UsageError(f"--shapes gives input {name!r} twice")
        given[name] = ShapeProfile(name, lo, mid, hi, "--shapes")
    yml = _yml_dynamic_shapes(info.config)
    declared = _metadata_profiles(info)
    profiles = []
    for spec in info.inputs:
        if spec.name in given:
            p = given[spec.name]
        elif all(_fixed(d) for d in spec.shape):
            dims = tuple(spec.shape)
            p = ShapeProfile(spec.name, dims, dims, dims, "fixed")
        else:
            p = None
            if spec.name in yml:
                try:
                    lo, mid, hi = (tuple(int(d) for d in s) for s in yml[spec.name])
                    p = ShapeProfile(spec.name, lo, mid, hi, "inference.yml")
                    validate_profile(p, spec)
                except (TypeError, ValueError, UsageError) as exc:
                    log.warning("ignoring inference.yml dynamic_shapes for %s: %s", spec.name, exc)
                    p = None
            if p is None and spec.name in declared and len(declared[spec.name]) == 3:
                p = ShapeProfile(spec.name, *declared[spec.name], "model metadata")
                try:
                    validate_profile(p, spec)
                except UsageError as exc:
                    log.warning("ignoring the model's declared profile for %s: %s", spec.name, exc)
                    p = None
            p = p or _family_profile(spec, family)
            if p is None:
                raise UsageError(f"input {spec.name} {_spec_str(spec)} has dynamic dims and family {family.name!r} "
                                 "has no default range for it",
                                 hint=f"Pass --shapes {spec.name}:MIN:OPT:MAX, e.g. 1x3x224x224 for each.")
        validate_profile(p, spec)
        profiles.append(p)
    return profiles


# --------------------------------------------------------------------------------------------------
# calibration batches
# --------------------------------------------------------------------------------------------------
@dataclass
class CalibrationSet:
    input_name: str
    batches: list[np.ndarray]
    images: int          # images used (a last partial batch is dropped: TensorRT wants full batches)
    dropped: int
    folder: str

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.batches[0].shape)

    def to_dict(self) -> dict:
        return {"folder": self.folder, "input": self.input_name, "images": self.images, "dropped": self.dropped,
                "batches": len(self.batches), "batch_shape": list(self.batch_shape)}


def _list_images(folder: Path) -> list[Path]:
    if not folder.exists():
        raise UsageError(f"--calib-images {folder} does not exist")
    if not folder.is_dir():
        raise UsageError(f"--calib-images {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"--calib-images {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})",
                         hint="Use a few hundred real images of the kind the model will see (pages for det, "
                              "cropped text lines for rec/cls).")
    return files


def _fit_one(family: Family, img, opt: tuple[int, ...]) -> np.ndarray:
    """One image through the family's preprocessing, shrunk to fit and zero-padded to opt's H x W."""
    oh, ow = opt[2], opt[3]
    (_, feed), = family.image_feeds([("calib", img, None)])[:1]
    x = next(iter(feed.values()))[0]
    h, w = x.shape[1], x.shape[2]
    if h > oh or w > ow:
        if family.task == "rec":   # PP-OCR squeezes over-long lines to the target width
            img = img.resize((max(1, int(img.width * min(1.0, ow / w))), img.height), resample=2)
        elif family.task == "det":  # keep the aspect, land on multiples of 32 inside opt
            f = min(oh / h, ow / w)
            img = img.resize((max(32, int(w * f) // 32 * 32), max(32, int(h * f) // 32 * 32)), resample=2)
        else:
            img = img.resize((max(1, int(img.width * min(1.0, ow / w))), max(1, int(img.height * min(1.0, oh / h)))),
                             resample=2)
        (_, feed), = family.image_feeds([("calib", img, None)])[:1]
        x = next(iter(feed.values()))[0]
    out = np.zeros(opt[1:], np.float32)
    hh, ww = min(oh, x.shape[1]), min(ow, x.shape[2])
    out[:, :hh, :ww] = x[:, :hh, :ww]
    return out


def calibration_batches(folder: str | Path, family: Family, profiles: list[ShapeProfile], *,
                        limit: int | None = None) -> CalibrationSet:
    """Real images, preprocessed as the family expects, batched at the profile's opt shape."""
    from PIL import Image, UnidentifiedImageError

    if len(profiles) != 1 or len(profiles[0].opt) != 4:
        raise UsageError("INT8 calibration from images needs a model with one NCHW image input",
                         hint=f"this model takes {[p.name for p in profiles]}")
    if family.task not in ("det", "rec", "cls"):
        raise UsageError(f"INT8 calibration needs a det, rec or cls model; this one resolved to {family.name!r}",
                         hint="Pass --family det-db, rec-ctc or cls if the model is one of those.")
    prof = profiles[0]
    files = _list_images(Path(folder))[: limit or None]
    batch = prof.opt[0]
    if len(files) < batch:
        raise UsageError(f"--calib-images {folder} holds {len(files)} image(s); the profile's opt batch is {batch}",
                         hint="Give at least one full batch (a few hundred images is typical), or lower the opt "
                              f"batch with --shapes {prof.name}:...")
    arrays = []
    for p in files:
        try:
            with Image.open(p) as im:
                img = im.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise UsageError(f"{p} is not a readable image: {exc}") from None
        arrays.append(_fit_one(family, img, prof.opt))
    usable = len(arrays) // batch * batch
    if usable < len(arrays):
        log.info("calibration: dropping the last %d image(s) to keep full batches of %d", len(arrays) - usable, batch)
    batches = [np.stack(arrays[i:i + batch]) for i in range(0, usable, batch)]
    return CalibrationSet(prof.name, batches, usable, len(arrays) - usable, str(folder))


# --------------------------------------------------------------------------------------------------
# prepared ONNX: fp32 (slimmed), fp16 cast, int8 Q/DQ
# --------------------------------------------------------------------------------------------------
def _opset(model) -> int:
    from .onnx_io import opset

    return opset(model)


def _copy_metadata(src, dst) -> None:
    have = {p.key for p in dst.metadata_props}
    for p in src.metadata_props:
        if p.key not in have:
            e = dst.metadata_props.add()
            e.key, e.value = p.key, p.value


def _unshare_initializers(model) -> None:
    """One initializer per consumer: the caster cannot keep a constant fp32 for one node and fp16 for another."""
    inits = {i.name: i for i in model.graph.initializer}
    uses = collections.Counter(x for n in model.graph.node for x in n.input if x in inits)
    seen: collections.Counter = collections.Counter()
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in inits and uses[name] > 1:
                seen[name] += 1
                if seen[name] > 1:
                    dup = copy.deepcopy(inits[name])
                    dup.name = f"{name}__use{seen[name]}"
                    model.graph.initializer.append(dup)
                    node.input[i] = dup.name


def _identity_outputs(model) -> None:
    """An Identity before each graph output; onnxconverter-common fails when a kept-fp32 op feeds an output."""
    from onnx import helper

    outs = {o.name for o in model.graph.output}
    for node in list(model.graph.node):
        for i, name in enumerate(node.output):
            if name in outs:
                node.output[i] = name + "__fp32"
    for o in model.graph.output:
        model.graph.node.append(helper.make_node("Identity", [o.name + "__fp32"], [o.name], name=o.name + "__out"))


def cast_fp16(model, *, keep_fp32_ops=FP16_KEEP_FP32_OPS):
    """The FP16 ONNX TensorRT 11 builds strongly typed (I/O stays fp32; sensitive ops stay fp32)."""
    from ._compat import require

    require("onnxconverter_common", "casting the ONNX to FP16")
    from onnxconverter_common import float16
    m = copy.deepcopy(model)
    _unshare_initializers(m)
    del m.graph.value_info[:]   # stale fp32 value_info would contradict the cast graph
    _identity_outputs(m)
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(keep_fp32_ops))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning per clamped constant
        try:
            out = float16.convert_float_to_float16(m, keep_io_types=True, op_block_list=block)
        except Exception as exc:  # noqa: BLE001 - the caster raises bare ValueErrors on odd graphs
            raise ConversionError(f"FP16 cast failed: {type(exc).__name__}: {exc}") from None
    _copy_metadata(model, out)
    return out


class _LogWriter:
    """A file-like sink sending third-party prints to the debug log (stdout carries results only)."""

    def write(self, text: str) -> int:
        if text.strip():
            log.debug("%s", text.rstrip())
        return len(text)

    def flush(self) -> None:
        pass


class _BatchReader:
    """onnxruntime.quantization CalibrationDataReader over the calibration batches."""

    def __init__(self, calib: CalibrationSet):
        self._calib = calib
        self._it = iter(calib.batches)

    def get_next(self):
        b = next(self._it, None)
        return None if b is None else {self._calib.input_name: b}

    def rewind(self):
        self._it = iter(self._calib.batches)


def quantize_qdq(model, calib: CalibrationSet, out_path: Path, *, method: str = "percentile"):
    """INT8 Q/DQ ONNX for TensorRT's explicit quantization: symmetric int8 activations and per-channel
    symmetric int8 weights on Conv/ConvTranspose/MatMul/Gemm, bias left in float (TensorRT fuses it)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"percentile": CalibrationMethod.Percentile, "minmax": CalibrationMethod.MinMax,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise UsageError(f"unknown calibration method {method!r}", hint=f"One of: {', '.join(methods)}")
    m = copy.deepcopy(model)
    if _opset(m) < 13:  # per-channel DequantizeLinear (axis) needs opset 13
        from onnx import version_converter

        m = version_converter.convert_version(m, 13)
    with tempfile.TemporaryDirectory(prefix=".qdq.", dir=out_path.parent) as tmp:
        src = Path(tmp) / "fp32.onnx"
        onnx.save(m, str(src))
        try:
            with contextlib.redirect_stdout(_LogWriter()):  # ORT prints calibration progress on stdout
                quantize_static(str(src), str(out_path), _BatchReader(calib), quant_format=QuantFormat.QDQ,
                                op_types_to_quantize=list(INT8_QUANTIZED_OPS), per_channel=True,
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                                calibrate_method=methods[method],
                                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                               "QuantizeBias": False})
        except Exception as exc:  # noqa: BLE001 - ORT's quantizer raises untyped errors
            raise ConversionError(f"INT8 Q/DQ quantization failed: {type(exc).__name__}: {exc}") from None
    q = onnx.load(str(out_path))
    _copy_metadata(model, q)
    onnx.save(q, str(out_path))
    return q


# --------------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------------
@dataclass
class TrtBuildOptions:
    fp16: bool = False
    int8: bool = False
    calib_images: Path | None = None
    calib_limit: int | None = None
    calib_method: str = "percentile"
    shapes: list[str] = field(default_factory=list)
    timing_cache: Path | None = None
    workspace_gib: float | None = None
    family: str | None = None

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp16" if self.fp16 else "fp32"

    @property
    def workspace_bytes(self) -> int | None:
        return None if self.workspace_gib is None else int(self.workspace_gib * (1 << 30))

    def validate(self) -> "TrtBuildOptions":
        if self.int8 and self.calib_images is None:
            raise UsageError("--int8 needs --calib-images DIR (real images to calibrate on)")
        if self.calib_images is not None and not self.int8:
            raise UsageError("--calib-images is only used with --int8")
        if self.workspace_gib is not None and not (0 < self.workspace_gib <= 1024):
            raise UsageError(f"--workspace {self.workspace_gib} GiB is out of range (0, 1024]")
        if self.calib_limit is not None and self.calib_limit < 1:
            raise UsageError("--calib-limit must be at least 1")
        if self.calib_method not in ("percentile", "minmax", "entropy"):
            raise UsageError(f"unknown calibration method {self.calib_method!r}",
                             hint="One of: percentile, minmax, entropy")
        if self.timing_cache is not None and self.timing_cache.is_dir():
            raise UsageError(f"--timing-cache {self.timing_cache} is a folder; give a file path")
        for s in self.shapes:
            parse_shape_spec(s)
        return self

    def to_dict(self) -> dict:
        return {"precision": self.precision, "calib_images": str(self.calib_images) if self.calib_images else None,
                "calib_limit": self.calib_limit, "calib_method": self.calib_method if self.int8 else None,
                "shapes": list(self.shapes), "timing_cache": str(self.timing_cache) if self.timing_cache else None,
                "workspace_gib": self.workspace_gib, "family": self.family}

    @classmethod
    def from_dict(cls, d: dict) -> "TrtBuildOptions":
        p = d.get("precision", "fp32")
        return cls(fp16=p == "fp16", int8=p == "int8",
                   calib_images=Path(d["calib_images"]) if d.get("calib_images") else None,
                   calib_limit=d.get("calib_limit"), calib_method=d.get("calib_method") or "percentile",
                   shapes=list(d.get("shapes") or []),
                   timing_cache=Path(d["timing_cache"]) if d.get("timing_cache") else None,
                   workspace_gib=d.get("workspace_gib"), family=d.get("family"))


# --------------------------------------------------------------------------------------------------
# preparation (shared by --export-only and the TensorRT builder)
# --------------------------------------------------------------------------------------------------
@dataclass
class PreparedModel:
    onnx_path: Path                 # the ONNX TensorRT parses (strongly typed on TRT 11)
    precision: str
    profiles: list[ShapeProfile]
    family: str
    calibration: CalibrationSet | None = None
    tool: str = ""                  # what made the prepared ONNX

    def to_dict(self) -> dict:
        return {"onnx": str(self.onnx_path), "precision": self.precision, "family": self.family, "tool": self.tool,
                "profiles": [p.to_dict() for p in self.profiles],
                "calibration": self.calibration.to_dict() if self.calibration else None}


def model_info(source) -> ModelInfo:
    from .runners import runner_for

    return runner_for(source).info()


def prepare(source, dest_dir: Path, options: TrtBuildOptions, *, say: Callable[[str], None] = lambda m: None,
            precision: str | None = None, calibration: CalibrationSet | None = None) -> PreparedModel:
    """Write the ONNX TensorRT should parse for ``precision`` into ``dest_dir``; derive the profiles.

    ``precision`` defaults to the options'; the TRT 10 builder asks for ``fp32`` (it applies FP16/INT8
    with builder flags) while TRT 11 and ``--export-only`` ask for the cast or Q/DQ ONNX.
    """
    import onnx

    from .converters.onnx_torch import slim
    from .formats import Format, detect
    from .onnx_io import load_onnx

    art = source if not isinstance(source, (str, Path)) else detect(source)
    if art.format is not Format.ONNX:
        raise UsageError(f"trt-build takes an .onnx model, not {art.format.value}",
                         hint="Convert it first: ocrconvert paddle2onnx MODEL_DIR -o model.onnx")
    precision = precision or options.precision
    info = model_info(art)
    family = resolve_family(info, options.family)
    profiles = derive_profiles(info, family, options.shapes)
    if options.int8 and calibration is None:
        say("preprocessing calibration images")
        calibration = calibration_batches(options.calib_images, family, profiles, limit=options.calib_limit)
    say("slimming the ONNX (constants -> initializers)")
    model = slim(load_onnx(art.files["model"]))
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / f"model.{precision}.onnx"
    if precision == "fp16":
        say("casting to FP16 (onnxconverter-common)")
        onnx.save(cast_fp16(model), str(out))
        tool = "onnxconverter-common float16 (keep_io_types, fp32 ops: " + ", ".join(FP16_KEEP_FP32_OPS) + ")"
    elif precision == "int8":
        say(f"inserting INT8 Q/DQ from {calibration.images} calibration images")
        quantize_qdq(model, calibration, out, method=options.calib_method)
        tool = (f"onnxruntime.quantization QDQ, symmetric int8, per-channel weights, {options.calib_method} "
                f"calibration, ops {'/'.join(INT8_QUANTIZED_OPS)}")
    else:
        onnx.save(model, str(out))
        tool = "onnxslim"
    return PreparedModel(out, precision, profiles, family.name, calibration, tool)


# --------------------------------------------------------------------------------------------------
# verification of a prepared ONNX or an engine against the source
# --------------------------------------------------------------------------------------------------
def verify_prepared(source, target, precision: str, *, images=None, tolerances=None, progress=None):
    """verify_artifacts with the precision's tolerances. For INT8 the verdict is taken on image inputs only
    (rendered + ``images``): calibration fixed the activation ranges on images, so uniform noise saturates
    them by design. The random cases stay in ``report.informational`` with their numbers."""
    from .verification import Tolerances, verify_artifacts

    tol = tolerances or Tolerances(precision=precision)
    report = verify_artifacts(source, target, images=images, tolerances=tol, progress=progress)
    report.informational = []
    if precision == "int8":
        report.informational = [c for c in report.cases if c.kind == "random"]
        report.cases = [c for c in report.cases if c.kind != "random"]
    return report


def report_dict(report) -> dict:
    d = report.to_dict()
    extra = getattr(report, "informational", [])
    if extra:
        d["informational_cases"] = [c.to_dict() for c in extra]
        d["note"] = "INT8: random-noise cases are reported, not judged (calibration ranges come from images)"
    return d


# --------------------------------------------------------------------------------------------------
# manifests
# --------------------------------------------------------------------------------------------------
def trtexec_command(onnx_path: str, profiles: list[ShapeProfile], precision: str, engine: str = "model.engine",
                    ) -> str:
    """The equivalent trtexec command line, so a prepared export can be built on any TensorRT machine."""
    cmd = [f"trtexec --onnx={onnx_path} --saveEngine={engine}"]
    dyn = [p for p in profiles if p.origin != "fixed"]
    if dyn:
        for flag, attr in (("minShapes", "min"), ("optShapes", "opt"), ("maxShapes", "max")):
            cmd.append(f"--{flag}=" + ",".join(f"{p.name}:{_dims(getattr(p, attr))}" for p in dyn))
    if precision in ("fp16", "int8"):
        cmd.append("--stronglyTyped")  # the prepared ONNX carries its precision (required on 10.x, default on 11)
    return " ".join(cmd)


def engine_manifest(*, trt_version: str, gpu_name: str, compute_capability: str | None, precision: str,
                    strongly_typed: bool, builder_flags: list[str], profiles: list[ShapeProfile],
                    prepared: dict, calibration: dict | None, workspace_bytes: int | None,
                    timing_cache: dict | None, engine_bytes: int, build_seconds: float) -> dict:
    """The ``engine`` block of a TensorRT artifact's manifest: a pure function of the facts collected."""
    major = int(trt_version.split(".")[0]) if trt_version and trt_version[0].isdigit() else None
    return {
        "tensorrt_version": trt_version,
        "tensorrt_major": major,
        "gpu": {"name": gpu_name, "compute_capability": compute_capability},
        "precision": precision,
        "network": "strongly-typed" if strongly_typed else "weakly-typed (builder precision flags)",
        "builder_flags": sorted(builder_flags),
        "profiles": [p.to_dict() for p in profiles],
        "prepared_onnx": prepared,
        "calibration": calibration,
        "workspace_bytes": workspace_bytes,
        "timing_cache": timing_cache,
        "engine_bytes": engine_bytes,
        "build_seconds": round(build_seconds, 3),
        # a TensorRT plan runs only on the TensorRT version and GPU model (compute capability) that built it
        "portable": False,
    }


# --------------------------------------------------------------------------------------------------
# --export-only
# --------------------------------------------------------------------------------------------------
@dataclass
class ExportResult:
    folder: Path
    prepared: PreparedModel
    manifest_path: Path
    manifest: dict
    report: object | None

    @property
    def passed(self) -> bool:
        return self.report is None or self.report.passed

    def to_dict(self) -> dict:
        return {"folder": str(self.folder), "onnx": str(self.folder / self.prepared.onnx_path.name),
                "precision": self.prepared.precision, "profiles": [p.to_dict() for p in self.prepared.profiles],
                "manifest": str(self.manifest_path), "verified": self.report is not None, "passed": self.passed,
                "verification": report_dict(self.report) if self.report is not None else None}


def export_prepared(source, folder, options: TrtBuildOptions, *, verify: bool = True, images=None,
                    progress: Callable[[str], None] | None = None) -> ExportResult:
    """``trt-build --export-only DIR``: the prepared ONNX, its profiles and a manifest, without TensorRT.

    The prepared ONNX is checked in ONNX Runtime against the ORIGINAL source with the precision's
    tolerances, so what TensorRT will parse is known to be right before any GPU is involved.
    """
    from .atomic import commit_dir, staging
    from .formats import detect
    from .manifest import manifest_path, new_manifest, sha256_file, write_manifest
    from .pipeline import original_source

    say = progress or (lambda m: None)
    options.validate()
    src = detect(source)
    reference = original_source(src)
    folder = Path(folder)
    manifest = new_manifest(reference, options=options.to_dict())
    if reference is not src:
        manifest["input"] = {"path": str(src.path.resolve()), "format": src.format.value}
    with staging(folder) as stage:
        t0 = time.perf_counter()
        prepared = prepare(src, stage, options, say=say)
        manifest["hops"].append({"converter": "trt-prep", "from": "onnx", "to": "onnx", "tool": prepared.tool,
                                 "versions": _prep_versions(prepared.precision),
                                 "seconds": round(time.perf_counter() - t0, 3)})
        report = None
        if verify:
            say("verifying the prepared ONNX in ONNX Runtime against the source")
            report = verify_prepared(reference, prepared.onnx_path, prepared.precision, images=images,
                                     progress=lambda lbl: say(f"verify: {lbl}"))
        final = folder / prepared.onnx_path.name
        manifest["artifact"] = {"path": str(final.resolve()), "format": "onnx",
                                "sha256": sha256_file(prepared.onnx_path)}
        manifest["tensorrt_plan"] = {
            "precision": prepared.precision, "family": prepared.family,
            "profiles": [p.to_dict() for p in prepared.profiles],
            "calibration": prepared.calibration.to_dict() if prepared.calibration else None,
            "strongly_typed": prepared.precision != "fp32",
            "trtexec": trtexec_command(final.name, prepared.profiles, prepared.precision),
            "built": False,
        }
        manifest["verification"] = report_dict(report) if report is not None else None
        (stage / PROFILE_FILE).write_text(json.dumps([p.to_dict() for p in prepared.profiles], indent=2))
        write_manifest(prepared.onnx_path, manifest)
        commit_dir(stage, folder)
    prepared.onnx_path = final
    return ExportResult(folder, prepared, manifest_path(final), manifest, report)


def _prep_versions(precision: str) -> dict:
    from ._compat import version_of

    names = ["onnx", "onnxslim"] + (["onnxconverter-common"] if precision == "fp16" else []) + (
        ["onnxruntime"] if precision == "int8" else [])
    return {n: version_of(n) for n in names}


# --------------------------------------------------------------------------------------------------
# the full build (TensorRT needed; the library entry point behind `ocrconvert trt-build`)
# --------------------------------------------------------------------------------------------------
def trt_build(source, output, options: TrtBuildOptions, *, verify: bool = True, images=None,
              progress: Callable[[str], None] | None = None):
    """Build a TensorRT engine through the ``trt-build`` converter, then verify it against the ORIGINAL source.

    Raises MissingDependencyError (exit 4) before anything is read or written when TensorRT is absent.
    """
    from .converters.onnx_trt import require_tensorrt
    from .formats import detect
    from .manifest import write_manifest
    from .pipeline import convert, original_source

    options.validate()
    output = Path(output)
    if output.suffix != ".engine":
        raise UsageError(f"-o {output} should end in .engine", hint="e.g. -o model.fp16.engine")
    require_tensorrt()
    say = progress or (lambda m: None)
    src = detect(source)
    result = convert(src, output, target="tensorrt", route="trt-build", verify=False, options=options.to_dict(), progress=say)
    if verify:
        say("verifying the engine against the original source")
        report = verify_prepared(original_source(src), result.artifact, options.precision, images=images,
                                 progress=lambda lbl: say(f"verify: {lbl}"))
        result.report = report
        result.manifest["verification"] = report_dict(report)
        write_manifest(result.artifact.path, result.manifest)
    return result


__all__ = ["ShapeProfile", "parse_shape_spec", "validate_profile", "derive_profiles", "CalibrationSet",
           "calibration_batches", "cast_fp16", "quantize_qdq", "TrtBuildOptions", "PreparedModel", "prepare",
           "verify_prepared", "engine_manifest", "trtexec_command", "export_prepared", "ExportResult", "trt_build"]
