"""Numeric comparison of two output sets against tolerances (after Polygraphy's comparator)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import UsageError
from ..options import Precision

DEFAULTS = {  # precision -> (atol, rtol, min cosine)
    "fp32": (1e-4, 1e-4, 0.9999),
    "fp16": (1e-2, 1e-2, 0.999),
    "bf16": (5e-2, 5e-2, 0.999),
    "int8": (5e-2, 5e-2, 0.99),
}


@dataclass
class Tolerances:
    """atol/rtol as one float or per output name (``""`` = default for the rest).

    ``precision`` None means "what the artifact was built in": the spine fills it from the last hop's
    verification policy (``resolved``), so an fp16 build is judged as fp16 and an fp32 one as fp32."""
    precision: Precision | str | None = None
    atol: float | dict[str, float] | None = None
    rtol: float | dict[str, float] | None = None
    min_cosine: float | None = None
    # Real and rendered images push activations into steep regions (sigmoid edges of text), where
    # fp32 reordering alone moves outputs ~1e-4..1e-3; there the task metric is the judge, and the
    # numeric bound is this factor looser. Random inputs keep the strict bound.
    image_factor: float = 10.0

    def __post_init__(self):
        if self.precision is not None:
            self.precision = Precision.parse(self.precision, where="--precision")

    @property
    def explicit(self) -> bool:
        return self.precision is not None

    def resolved(self, precision) -> "Tolerances":
        """These tolerances with ``precision`` where none was given."""
        if self.explicit:
            return self
        return replace(self, precision=Precision.parse(precision))

    @property
    def _key(self) -> str:
        return (self.precision or Precision.FP32).value

    def _pick(self, value, name: str, default: float) -> float:
        if value is None:
            return default
        if isinstance(value, dict):
            return float(value.get(name, value.get("", default)))
        return float(value)

    def for_output(self, name: str, image: bool = False) -> tuple[float, float, float]:
        atol, rtol, cos = DEFAULTS[self._key]
        k = self.image_factor if image else 1.0
        return (k * self._pick(self.atol, name, atol), k * self._pick(self.rtol, name, rtol),
                self.min_cosine if self.min_cosine is not None else cos)

    def to_dict(self) -> dict:
        return {"precision": self._key, "atol": self.atol, "rtol": self.rtol, "min_cosine": self.min_cosine,
                "image_factor": self.image_factor}


@dataclass
class OutputComparison:
    name: str
    shape: tuple
    max_abs: float = float("nan")
    mean_abs: float = float("nan")
    max_rel: float = float("nan")
    p999_abs: float = float("nan")
    cosine: float = float("nan")
    atol: float = 0.0
    rtol: float = 0.0
    min_cosine: float = 0.0
    passed: bool = False
    problem: str = ""
    target_name: str = field(default="")

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("name", "max_abs", "mean_abs", "max_rel", "p999_abs", "cosine",
                                           "atol", "rtol", "min_cosine", "passed")}
        d["shape"] = list(self.shape)
        if self.target_name and self.target_name != self.name:
            d["target_name"] = self.target_name
        if self.problem:
            d["problem"] = self.problem
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}


def compare_arrays(name: str, ref: np.ndarray, out: np.ndarray, tol: Tolerances, target_name: str = "",
                   image: bool = False) -> OutputComparison:
    atol, rtol, min_cos = tol.for_output(name, image)
    res = OutputComparison(name, tuple(ref.shape), atol=atol, rtol=rtol, min_cosine=min_cos, target_name=target_name)
    if ref.shape != out.shape:
        res.problem = f"shape {tuple(out.shape)} != source {tuple(ref.shape)}"
        return res
    a, b = ref.astype(np.float64), out.astype(np.float64)
    if not np.isfinite(b).all() and np.isfinite(a).all():
        res.problem = "target has NaN/Inf where the source has none"
        return res
    if ref.dtype.kind in "biu" or ref.dtype == bool:
        res.max_abs = res.mean_abs = res.p999_abs = float(np.abs(a - b).max()) if a.size else 0.0
        res.max_rel, res.cosine = 0.0, 1.0
        res.passed = bool((a == b).all())
        return res
    diff = np.abs(a - b)
    if diff.size == 0:
        res.max_abs = res.mean_abs = res.p999_abs = res.max_rel = 0.0
        res.cosine, res.passed = 1.0, True
        return res
    res.max_abs = float(diff.max())
    res.mean_abs = float(diff.mean())
    res.p999_abs = float(np.quantile(diff, 0.999))
    significant = np.abs(a) > 1e-3
    res.max_rel = float((diff[significant] / np.abs(a[significant])).max()) if significant.any() else 0.0
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    res.cosine = float((a.ravel() @ b.ravel()) / (na * nb)) if na > 0 and nb > 0 else (1.0 if na == nb else 0.0)
    within = bool((diff <= atol + rtol * np.abs(a)).all())
    if image and tol._key != "fp32":
        # reduced precision on real images: a few pixels on steep sigmoid edges move by 0.2+, which no
        # max-abs bound separates from a real fault. There the OCR metric judges (text identical, det
        # IoU >= 0.99, class agreement), with a cosine >= 0.99 sanity bound against gross faults.
        within = True
        min_cos = res.min_cosine = min(min_cos, 0.99)
    # a reference that is ~0 at the tolerance's scale has a meaningless direction: skip cosine there
    negligible = float(np.sqrt(np.mean(a * a))) <= atol
    res.passed = within and (res.cosine >= min_cos or negligible)
    if not within:
        res.problem = f"max abs {res.max_abs:.3g} exceeds atol {atol:g} + rtol {rtol:g}·|ref|"
    elif res.cosine < min_cos and not negligible:
        res.problem = f"cosine {res.cosine:.6f} < {min_cos}"
    return res


def pair_outputs(ref_names: list[str], out_names: list[str]) -> list[tuple[str, str]]:
    """Match outputs by name when both sides use the same names, else by position."""
    if set(ref_names) == set(out_names):
        return [(n, n) for n in ref_names]
    if len(ref_names) != len(out_names):
        raise UsageError(
            f"the source has {len(ref_names)} outputs {ref_names} but the target has {len(out_names)} {out_names}",
            hint="Are these two artifacts of the same model?",
        )
    return list(zip(ref_names, out_names))
