"""A mixed-precision plan: which layers of a reduced-precision (fp16 / INT8) artifact stay in fp32.

One record for every route that lowers precision: the FP16 ONNX and the INT8 Q/DQ ONNX of ``trt-export``, the
network ``trt-build`` writes (TensorRT 11: the casts travel in the strongly typed ONNX; TensorRT 10: per-layer
precision), and the fp16 AOT package (native module paths). ``--plan auto`` searches one
(``verification/plan_search.py``), ``--plan FILE`` reuses one, and a family may ship one (the native det split).
The plan lands in the manifest (``precision_plan``) and beside the artifact (``precision-plan.json``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError

PLAN_FORMAT = "ocrconvert-precision-plan/1"
PLAN_FILE = "precision-plan.json"
# what the names in ``keep_fp32`` are: ONNX node names of the slimmed source ONNX, or native module paths
ONNX_NODES = "onnx node"
NATIVE_MODULES = "native module"


@dataclass
class PrecisionPlan:
    precision: str                          # the reduced precision the rest runs in: fp16 | int8
    keys: str                               # ONNX_NODES | NATIVE_MODULES
    keep_fp32: tuple[str, ...] = ()         # the layers kept in fp32, in depth order
    origin: str = "file"                    # auto | file | shipped
    family: str | None = None
    fp32_flop_share: float | None = None    # FLOPs of the kept layers / all FLOPs (at the family's bench shape)
    passed: bool | None = None              # the gate held with this plan (None: not judged)
    search: dict = field(default_factory=dict)   # how it was found: gate, evaluations, values, budget

    @property
    def gate_threshold(self) -> float | None:
        """The task metric the plan was searched at (what its build is verified at), if it records one."""
        return (self.search.get("gate") or {}).get("threshold")

    def to_dict(self) -> dict:
        return {"format": PLAN_FORMAT, "precision": self.precision, "keys": self.keys, "origin": self.origin,
                "family": self.family, "keep_fp32": list(self.keep_fp32), "fp32_flop_share": self.fp32_flop_share,
                "passed": self.passed, "search": self.search}

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "plan") -> "PrecisionPlan":
        if isinstance(data, dict) and isinstance(data.get("precision_plan"), dict):
            data = data["precision_plan"]  # an artifact's manifest: the plan it was built with
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise UsageError(f"{where} is not a precision plan (format {PLAN_FORMAT!r})",
                             hint="Write one with --plan auto; it lands beside the artifact as " + PLAN_FILE)
        keep = data.get("keep_fp32") or []
        if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
            raise UsageError(f"{where}: keep_fp32 must be a list of layer names")
        if data.get("keys") not in (ONNX_NODES, NATIVE_MODULES):
            raise UsageError(f"{where}: keys {data.get('keys')!r} is neither {ONNX_NODES!r} nor {NATIVE_MODULES!r}")
        return cls(str(data.get("precision")), data["keys"], tuple(keep), str(data.get("origin") or "file"),
                   data.get("family"), data.get("fp32_flop_share"), data.get("passed"), dict(data.get("search") or {}))

    @classmethod
    def load(cls, path) -> "PrecisionPlan":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the precision plan {path}: {exc}") from None
        return cls.from_dict(data, where=str(path))

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def check_for(self, precision: str, keys: str, known: set[str] | None = None) -> None:
        """Refuse a plan written for another precision or naming scheme, or naming layers this model lacks."""
        if self.precision != str(precision):
            raise UsageError(f"the precision plan is for {self.precision}, this build is {precision}")
        if self.keys != keys:
            raise UsageError(f"the precision plan names {self.keys}s; this route keeps {keys}s in fp32")
        if known is not None:
            missing = [k for k in self.keep_fp32 if k not in known]
            if missing:
                raise UsageError(f"the precision plan names {len(missing)} layer(s) this model lacks: "
                                 f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}",
                                 hint="A plan is written for one model; search one for this model with --plan auto.")


__all__ = ["PrecisionPlan", "PLAN_FORMAT", "PLAN_FILE", "ONNX_NODES", "NATIVE_MODULES"]
