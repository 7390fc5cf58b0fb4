"""Typed options: one ``Precision`` for every route, and the base of every route's options record.

A route declares its record at registration (``@register_converter(..., options=PaddleToOnnxOptions)``);
the CLI, the batch YAML and the Python API all build it through ``from_mapping``, which refuses
unknown keys, wrong types and values the route cannot honour (exit 2) — once, in one place.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Optional

from .errors import UsageError


class Precision(str, Enum):
    """The arithmetic an artifact runs in: tolerances, AOT, TensorRT, VLM and batch all use this type."""
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"

    @classmethod
    def parse(cls, value, *, allowed: tuple["Precision", ...] | None = None, where: str = "precision") -> "Precision":
        if isinstance(value, cls):
            p = value
        else:
            try:
                p = cls(str(value).lower())
            except ValueError:
                raise UsageError(f"{where} {value!r} is not a precision",
                                 hint=f"One of: {', '.join(m.value for m in (allowed or tuple(cls)))}") from None
        if allowed is not None and p not in allowed:
            raise UsageError(f"{where} {p.value} is not available here",
                             hint=f"This route builds: {', '.join(m.value for m in allowed)}")
        return p

    def __str__(self) -> str:
        return self.value


def _coerce(name: str, kind, value, where: str):
    """``value`` as the annotated type ``kind`` (Optional, int, float, bool, str, Path, Enum, list/tuple[str])."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None:
            return None
        return _coerce(name, args[0], value, where)
    bad = UsageError(f"{where}: {name} = {value!r} is not {getattr(kind, '__name__', kind)}")
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            value = [value]
        (item,) = typing.get_args(kind)[:1] or (str,)
        items = [_coerce(name, item, v, where) for v in value]
        return tuple(items) if origin is tuple else items
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise bad
        return value
    if kind is Path:
        if not isinstance(value, (str, Path)):
            raise bad
        return Path(value)
    if isinstance(kind, type) and issubclass(kind, Precision):
        return Precision.parse(value, where=f"{where}: {name}")
    return value


@dataclasses.dataclass(frozen=True)
class RouteOptions:
    """Base of every route's options record. Subclasses add typed fields and ``validate``."""

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None = None, *, where: str = "options"):
        data = dict(data or {})
        unknown = sorted(set(data) - cls.field_names())
        if unknown:
            raise UsageError(f"{where}: {', '.join(unknown)} not accepted by this route",
                             hint=f"It takes: {', '.join(sorted(cls.field_names())) or 'no options'}")
        hints = typing.get_type_hints(cls)
        values = {k: _coerce(k, hints[k], v, where) for k, v in data.items()}
        opts = cls(**values)
        opts.validate()
        return opts

    def validate(self) -> None:
        """Refuse values the route cannot honour (raise ``UsageError``)."""

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = (v.value if isinstance(v, Enum) else str(v) if isinstance(v, Path)
                           else list(v) if isinstance(v, tuple) else v)
        return out


@dataclasses.dataclass(frozen=True)
class NoOptions(RouteOptions):
    """A route that takes no options."""


# the bound on ``--plan auto``'s search: candidate plans built and judged (each one a cast + a verification run)
PLAN_MAX_EVALS = 16


@dataclasses.dataclass(frozen=True)
class MixedPrecisionOptions(RouteOptions):
    """The precision-plan options every route that lowers precision takes (trt-export, trt-build, aot-build):
    ``plan``: None (today's behaviour), ``"auto"`` (search the fewest fp32 layers that pass the family's gate
    against the ORIGINAL) or a plan file to reuse; ``plan_min_metric``: a tighter gate than the family's;
    ``plan_max_evals``: the search's budget."""
    plan: Optional[str] = None
    plan_min_metric: Optional[float] = None
    plan_max_evals: int = PLAN_MAX_EVALS

    @property
    def plan_path(self) -> Path | None:
        return None if self.plan in (None, "auto") else Path(self.plan)

    def validate_plan(self, precision) -> None:
        precision = Precision.parse(precision)
        if self.plan is None:
            if self.plan_min_metric is not None or self.plan_max_evals != PLAN_MAX_EVALS:
                raise UsageError("--plan-min-metric and --plan-max-evals only apply with --plan auto")
            return
        if precision not in (Precision.FP16, Precision.INT8):
            raise UsageError(f"--plan keeps layers of an fp16 or int8 build in fp32; this build is {precision.value}",
                             hint="Add --fp16 or --int8, or drop --plan.")
        if self.plan != "auto":
            if not Path(self.plan).is_file():
                raise UsageError(f"--plan {self.plan}: no such plan file",
                                 hint="Give 'auto' or a precision-plan.json written by a --plan auto build.")
            if self.plan_min_metric is not None or self.plan_max_evals != PLAN_MAX_EVALS:
                raise UsageError("--plan FILE reuses a plan without searching; --plan-min-metric and "
                                 "--plan-max-evals only apply with --plan auto")
        if self.plan_max_evals < 3:
            raise UsageError("--plan-max-evals must be at least 3 (all reduced, all fp32, one candidate)")
        if self.plan_min_metric is not None and not 0.0 < self.plan_min_metric <= 1.0:
            raise UsageError(f"--plan-min-metric {self.plan_min_metric} is outside (0, 1]")


def check_opset(opset: int, lo: int, hi: int, tool: str) -> None:
    if not lo <= opset <= hi:
        raise UsageError(f"--opset {opset} is outside what {tool} writes ({lo}..{hi})",
                         hint=f"Choose an opset between {lo} and {hi}.")


__all__ = ["Precision", "RouteOptions", "NoOptions", "MixedPrecisionOptions", "PLAN_MAX_EVALS", "check_opset"]
