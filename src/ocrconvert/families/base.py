from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..specs import Dim, ModelInfo, TensorSpec  # noqa: F401 - re-exported: families speak in these


@dataclass
class TaskResult:
    name: str
    value: float
    threshold: float
    passed: bool
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"metric": self.name, "value": self.value, "threshold": self.threshold,
                "passed": self.passed, **({"detail": self.detail} if self.detail else {})}


class Family:
    """Base family: random inputs only, numeric comparison only."""

    name = "generic"
    task = "generic"
    # preferred sizes for dynamic dims, per verification case: (batch, height, width)
    random_shapes: tuple[tuple[int, int, int], ...] = ((1, 224, 224), (2, 160, 256))
    image_layout = "nchw"

    def __init__(self, info: ModelInfo):
        self.info = info

    # ---- pre/post-processing that travels with a converted model ---------------------------
    def default_config(self) -> dict:
        """A PaddleX-style ``inference.yml`` for a model that ships none (legacy Paddle programs), from the
        program's input shapes and the family's defaults; empty where the family knows no processing."""
        return {}

    # ---- inputs -----------------------------------------------------------------------
    def concrete_shape(self, spec: TensorSpec, batch: int, height: int, width: int) -> tuple[int, ...]:
        dims = list(spec.shape)
        wanted = {0: batch}
        if len(dims) == 4:
            wanted.update({2: height, 3: width})
        elif len(dims) == 3:
            wanted.update({1: height, 2: width})
        out = []
        for i, d in enumerate(dims):
            if isinstance(d, int) and d > 0:
                out.append(d)
            else:
                out.append(wanted.get(i, 1))
        return tuple(out)

    def random_feeds(self, seed: int = 0) -> list[tuple[str, dict[str, np.ndarray]]]:
        rng = np.random.default_rng(seed)
        feeds = []
        for b, h, w in self.random_shapes:
            feed = {}
            for spec in self.info.inputs:
                shape = self.concrete_shape(spec, b, h, w)
                if spec.dtype.startswith("float"):
                    arr = rng.uniform(-1.0, 1.0, size=shape).astype(spec.dtype)
                elif spec.dtype.startswith("int"):
                    arr = rng.integers(0, 2, size=shape).astype(spec.dtype)
                else:
                    arr = rng.integers(0, 2, size=shape).astype(bool)
                feed[spec.name] = arr
            label = "x".join(str(s) for s in self.concrete_shape(self.info.inputs[0], b, h, w))
            feeds.append((f"random {label}", feed))
        return feeds

    def synthetic_feeds(self, seed: int = 0) -> list[tuple[str, dict[str, np.ndarray]]]:
        """Seeded inputs that look like the task's real inputs (text-like pages for det), judged like
        rendered images. Families whose random inputs already carry signal need none."""
        return []

    # ---- precision policy -----------------------------------------------------------
    precision = "fp32"  # what the target was built in; the verifier sets it before judging
    # INT8 calibration fixes activation ranges on images, so uniform noise saturates them by design: there
    # random cases are loose gates (max abs, min cosine; no task metric), never evidence for a pass.
    INT8_RANDOM_GATE = (0.35, 0.9)

    def random_gate(self, precision) -> tuple[float, float] | None:
        """(max abs, min cosine) bounds random cases must meet instead of the precision's tolerances, or None
        when random cases are judged like any other."""
        return self.INT8_RANDOM_GATE if str(precision) == "int8" else None

    def plan_threshold(self, precision) -> float | None:
        """The task metric a mixed-precision plan (``--plan auto``) must reach at ``precision``, where the family
        asks more of a planned build than its verification threshold (None: that threshold)."""
        return None

    # Tighter (atol, rtol) for random cases than the precision's default, where the family's outputs allow one.
    RANDOM_BOUNDS: dict[str, tuple[float, float]] = {}

    def random_bounds(self, precision) -> tuple[float, float] | None:
        return self.RANDOM_BOUNDS.get(str(precision))

    # At reduced precision the outputs carry the precision's own error, which hides a weight damaged by less (INT8
    # det: a head conv x1.02 moves IoU 0.920 -> 0.919); a weight cannot hide it. So every weight of an fp16 / INT8
    # ONNX must lie within this many steps of the precision (fp16 spacing, INT8 per-channel scale) of its source
    # weight: an honest cast or quantisation rounds to the nearest, half a step (verification/weights.py).
    WEIGHT_STEPS = {"fp16": 1.0, "int8": 1.0}

    def weight_steps(self, precision) -> float | None:
        """How many steps of ``precision`` a target weight may be off its source weight; None: not checked."""
        return self.WEIGHT_STEPS.get(str(precision))

    # ---- could a case have failed? -------------------------------------------------
    # a verdict needs at least this many cases whose reference carried signal (else INCONCLUSIVE)
    min_informative = 1

    def uninformative(self, ref: dict[str, np.ndarray], noise_floor: float) -> str:
        """Why the reference outputs of a case carry no signal a damaged model would disturb ("" if they do).
        Without a task metric, the numeric comparison is the only judge: the primary output must rise above
        its noise floor (the comparison's atol). Families with a task metric judge by what it can see."""
        why = self._unusable(ref)
        if why:
            return why
        y = np.asarray(self.primary_output(ref), dtype=np.float64)
        if float(np.sqrt(np.mean(y * y))) <= noise_floor:
            return f"output RMS below the noise floor ({noise_floor:g})"
        return ""

    def _unusable(self, ref) -> str:
        y = np.asarray(self.primary_output(ref), dtype=np.float64)
        if y.size == 0:
            return "empty output"
        if not np.isfinite(y).all():
            return "non-finite reference output"
        return ""

    def synthetic_images(self):
        """Rendered images with known content for this task (list of PIL images + labels)."""
        return []

    def image_feeds(self, images) -> list[tuple[str, dict[str, np.ndarray]]]:
        return []

    # ---- outputs ----------------------------------------------------------------------
    def task_metric(self, ref: dict[str, np.ndarray], out: dict[str, np.ndarray],
                    labels: list[str] | None = None) -> TaskResult | None:
        return None

    def primary_output(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        return outputs[self.info.outputs[0].name] if self.info.outputs else next(iter(outputs.values()))

    # ---- deployment: torch.export dims, TensorRT profiles and calibration, bench shape ----
    # bench's input when the user gives no --shape; None: this family cannot tell
    bench_shape: tuple[int, ...] | None = None
    # INT8 calibration from a folder of images (the family can preprocess an image into a feed)
    calibrates_on_images = False

    @classmethod
    def export_dims(cls, rank: int) -> dict:
        """torch.export ``Dim`` per dynamic axis of the (single) image input; by default the batch only."""
        from torch.export import Dim

        return {0: Dim("batch", min=1, max=512)}

    def trt_profile(self, spec: TensorSpec) -> Profile | None:
        """Default TensorRT (min, opt, max) shapes for a dynamic input; None: the user must give --shapes."""
        return None

    def calibration_input(self, img, opt: tuple[int, ...]) -> np.ndarray:
        """One calibration image as this family preprocesses it, shrunk (``shrink_to_fit``) until it fits
        opt's H x W, then zero-padded to opt's C x H x W (TensorRT calibrates at the profile's opt shape)."""
        oh, ow = opt[2], opt[3]
        x = self._one_feed(img)
        if x.shape[1] > oh or x.shape[2] > ow:
            x = self._one_feed(self.shrink_to_fit(img, (x.shape[1], x.shape[2]), (oh, ow)))
        out = np.zeros(opt[1:], np.float32)
        hh, ww = min(oh, x.shape[1]), min(ow, x.shape[2])
        out[:, :hh, :ww] = x[:, :hh, :ww]
        return out

    def shrink_to_fit(self, img, size: tuple[int, int], target: tuple[int, int]):
        """``img`` resized so that its preprocessed size (``size``, H x W) fits ``target``: each side on its own."""
        (h, w), (th, tw) = size, target
        return img.resize((max(1, int(img.width * min(1.0, tw / w))), max(1, int(img.height * min(1.0, th / h)))),
                          resample=2)

    def _one_feed(self, img) -> np.ndarray:
        (_, feed), = self.image_feeds([("calib", img, None)])[:1]
        return next(iter(feed.values()))[0]


Profile = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # (min, opt, max) shapes of one input


def _fixed(d) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def nchw_profile(spec: TensorSpec, batch: tuple[int, int, int], height: tuple[int, int, int],
                 width: tuple[int, int, int]) -> Profile | None:
    """(min, opt, max) of an NCHW input from per-axis ranges; dims the model fixes keep their size."""
    if len(spec.shape) != 4:
        return None
    n, c, h, w = (_fixed(d) for d in spec.shape)
    axes = [(n,) * 3 if n else batch, (c or 3,) * 3, (h,) * 3 if h else height, (w,) * 3 if w else width]
    return tuple(tuple(int(a[i]) for a in axes) for i in range(3))


class GenericFamily(Family):
    """Any model: seeded random inputs at two shapes, numeric comparison only."""
