"""``TrtOptions``: the one options record of the ``trt-build`` and ``trt-export`` routes.

The CLI, the batch YAML and the Python API build it through ``TrtOptions.from_mapping`` (the spine does
it for them); ``validate`` refuses, once, every value the routes cannot honour (exit 2).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import UsageError
from ..options import MixedPrecisionOptions, Precision
from .precision import CALIB_METHODS
from .profiles import parse_shape_spec

TRT_PRECISIONS = (Precision.FP32, Precision.FP16, Precision.INT8)


@dataclass(frozen=True)
class TrtOptions(MixedPrecisionOptions):
    # plan / plan_min_metric / plan_max_evals: the mixed-precision plan (options.MixedPrecisionOptions)
    precision: Precision = Precision.FP32
    calib_images: Optional[Path] = None      # INT8: a folder of real images to calibrate on
    calib_limit: Optional[int] = None        # INT8: use at most this many of them
    calib_method: str = "percentile"         # INT8 Q/DQ calibration: percentile | minmax | entropy
    calib_cache: Optional[Path] = None       # engine build, TRT 10 INT8: calibration cache file, read or written
    shapes: tuple[str, ...] = ()             # NAME:MIN:OPT:MAX per input, overriding the derived profile
    timing_cache: Optional[Path] = None      # engine build: timing cache file, read and updated
    workspace_gib: Optional[float] = None    # engine build: builder workspace limit
    family: Optional[str] = None             # the model family, when the model does not say

    def __post_init__(self):
        # the Python API may pass plain strings and lists; the record holds the typed values
        if not isinstance(self.precision, Precision):
            object.__setattr__(self, "precision", Precision.parse(self.precision, allowed=TRT_PRECISIONS,
                                                                  where="TensorRT precision"))
        if isinstance(self.shapes, str):
            object.__setattr__(self, "shapes", (self.shapes,))
        object.__setattr__(self, "shapes", tuple(self.shapes))
        if isinstance(self.plan, Path):
            object.__setattr__(self, "plan", str(self.plan))
        for name in ("calib_images", "timing_cache", "calib_cache"):
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, Path(getattr(self, name)))

    @property
    def int8(self) -> bool:
        return self.precision is Precision.INT8

    @property
    def workspace_bytes(self) -> int | None:
        return None if self.workspace_gib is None else int(self.workspace_gib * (1 << 30))

    def validate(self) -> None:
        Precision.parse(self.precision, allowed=TRT_PRECISIONS, where="TensorRT precision")
        self.validate_plan(self.precision)
        if self.int8 and self.calib_images is None:
            raise UsageError("--int8 needs --calib-images DIR (real images to calibrate on)")
        if not self.int8:
            given = [flag for flag, v in (("--calib-images", self.calib_images), ("--calib-limit", self.calib_limit),
                                          ("--calib-method", None if self.calib_method == "percentile" else 1),
                                          ("--calib-cache", self.calib_cache))
                     if v is not None]
            if given:
                raise UsageError(f"{', '.join(given)} is only used with --int8",
                                 hint=f"This build is {self.precision.value}; drop {given[0]} or add --int8.")
        if self.workspace_gib is not None and not (0 < self.workspace_gib <= 1024):
            raise UsageError(f"--workspace {self.workspace_gib} GiB is out of range (0, 1024]")
        if self.calib_limit is not None and self.calib_limit < 1:
            raise UsageError("--calib-limit must be at least 1")
        if self.calib_method not in CALIB_METHODS:
            raise UsageError(f"unknown calibration method {self.calib_method!r}", hint=f"One of: {', '.join(CALIB_METHODS)}")
        for flag, path in (("--timing-cache", self.timing_cache), ("--calib-cache", self.calib_cache)):
            if path is not None and path.is_dir():
                raise UsageError(f"{flag} {path} is a folder; give a file path")
        for s in self.shapes:
            parse_shape_spec(s)
        if self.family is not None:
            from ..families import get_family

            get_family(self.family)


__all__ = ["TrtOptions", "TRT_PRECISIONS"]
