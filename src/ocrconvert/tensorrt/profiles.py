"""TensorRT optimization profiles: one (min, opt, max) per model input, validated against the model.

Per input, first match wins: ``--shapes`` > the model's ``inference.yml``
``Hpi.backend_configs.tensorrt.dynamic_shapes`` > profiles an exporter declared in the ONNX metadata
(``ocrconvert.trt_profiles``) > the family's defaults (``Family.trt_profile``) > fixed dims.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

from ..errors import UsageError
from ..families.base import Family, ModelInfo, TensorSpec

log = logging.getLogger(__name__)


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

    @classmethod
    def from_dict(cls, d: dict) -> "ShapeProfile":
        return cls(d["name"], tuple(d["min"]), tuple(d["opt"]), tuple(d["max"]), d.get("origin", "family"))

    def spec(self) -> str:
        """The ``--shapes`` / trtexec spelling."""
        return f"{self.name}:{dims(self.min)}:{dims(self.opt)}:{dims(self.max)}"

    def contains(self, shape) -> bool:
        return len(shape) == len(self.min) and all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max))


def dims(shape) -> str:
    """``(1, 3, 48, 320)`` -> ``1x3x48x320``."""
    return "x".join(str(int(d)) for d in shape)


def _fixed(d) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


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
        shape = tuple(int(d) for d in text.strip().split("x"))
        if any(d < 1 for d in shape):
            raise UsageError(f"--shapes {spec!r}: {label} shape has a dimension < 1")
        shapes.append(shape)
    return name, shapes[0], shapes[1], shapes[2]


def validate_profile(p: ShapeProfile, spec: TensorSpec) -> None:
    """Rank, fixed dims and min <= opt <= max, each with its own message."""
    where = f"--shapes {p.name}" if p.origin == "--shapes" else f"profile of {p.name} ({p.origin})"
    rank = len(spec.shape)
    for label, shape in (("min", p.min), ("opt", p.opt), ("max", p.max)):
        if len(shape) != rank:
            raise UsageError(f"{where}: {label} shape {dims(shape)} has rank {len(shape)}, the input has rank {rank}",
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


def _checked(p: ShapeProfile, spec: TensorSpec, what: str) -> ShapeProfile | None:
    """A profile the model itself declared, or None (with a warning) when it does not fit the model."""
    try:
        validate_profile(p, spec)
        return p
    except UsageError as exc:
        log.warning("ignoring %s for %s: %s", what, spec.name, exc)
        return None


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
            shape = tuple(spec.shape)
            p = ShapeProfile(spec.name, shape, shape, shape, "fixed")
        else:
            p = None
            if spec.name in yml:
                try:
                    lo, mid, hi = (tuple(int(d) for d in s) for s in yml[spec.name])
                    p = _checked(ShapeProfile(spec.name, lo, mid, hi, "inference.yml"), spec,
                                 "inference.yml dynamic_shapes")
                except (TypeError, ValueError) as exc:
                    log.warning("ignoring inference.yml dynamic_shapes for %s: %s", spec.name, exc)
            if p is None and len(declared.get(spec.name, ())) == 3:
                p = _checked(ShapeProfile(spec.name, *declared[spec.name], "model metadata"), spec,
                             "the model's declared profile")
            if p is None and (default := family.trt_profile(spec)) is not None:
                p = ShapeProfile(spec.name, *default, "family")
            if p is None:
                raise UsageError(f"input {spec.name} {_spec_str(spec)} has dynamic dims and family {family.name!r} "
                                 "has no default range for it",
                                 hint=f"Pass --shapes {spec.name}:MIN:OPT:MAX, e.g. 1x3x224x224 for each.")
        validate_profile(p, spec)
        profiles.append(p)
    return profiles


__all__ = ["ShapeProfile", "parse_shape_spec", "validate_profile", "derive_profiles", "dims"]
