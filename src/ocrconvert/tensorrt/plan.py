"""The prepared model TensorRT parses, and the records a TensorRT hop leaves in the manifest.

``prepare`` writes the ONNX for a precision (slimmed FP32, the FP16 cast or the INT8 Q/DQ model) and
derives the profiles; ``trtexec_command`` spells the equivalent build for any TensorRT machine;
``plan_manifest`` and ``engine_manifest`` are pure functions of the facts a hop collected.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..families import resolve_family
from ..families.base import ModelInfo
from ..options import Precision
from ..precision_plan import ONNX_NODES, PrecisionPlan
from .calibration import CalibrationSet, calibration_batches
from .options import TrtOptions
from .precision import (FP16_FP32_CONTROL_FLOW, FP16_KEEP_FP32_OPS, INT8_QUANTIZED_OPS, cast_fp16, name_nodes,
                        quantize_qdq)
from .profiles import ShapeProfile, derive_profiles, dims

PROFILE_FILE = "profiles.json"


@dataclass
class PreparedModel:
    onnx_path: Path                 # the ONNX TensorRT parses (strongly typed for fp16 / int8)
    precision: Precision
    profiles: list[ShapeProfile]
    family: str
    calibration: CalibrationSet | None = None
    tool: str = ""                  # what made the prepared ONNX
    plan: PrecisionPlan | None = None   # the layers kept in fp32 (a --plan build)
    plan_gate: float | None = None      # the task metric the plan must reach (the spine verifies at it)

    @property
    def strongly_typed(self) -> bool:
        """An fp16 or int8 ONNX carries its precision: TensorRT builds it as a strongly typed network."""
        return self.precision is not Precision.FP32

    def to_dict(self) -> dict:
        return {"onnx": self.onnx_path.name, "precision": self.precision.value, "family": self.family,
                "tool": self.tool, "profiles": [p.to_dict() for p in self.profiles],
                "calibration": self.calibration.to_dict() if self.calibration else None,
                **({"plan_keep_fp32": len(self.plan.keep_fp32)} if self.plan is not None else {})}


def write_reduced(model, precision: Precision, out: Path, *, keep_fp32=(), calibration: CalibrationSet | None = None,
                  calib_method: str = "percentile", ranges_cache: Path | None = None) -> str:
    """Write the FP16-cast or Q/DQ ONNX of ``model`` (nodes named) to ``out``, ``keep_fp32`` nodes left fp32;
    returns what made it. The one writer of reduced-precision ONNX: the build and every ``--plan auto`` candidate."""
    import onnx

    keep = tuple(keep_fp32)
    kept = f"; {len(keep)} node(s) kept fp32 by the precision plan" if keep else ""
    if precision is Precision.FP16:
        onnx.save(cast_fp16(model, keep_fp32_nodes=keep), str(out))
        return ("onnxconverter-common float16 (keep_io_types, fp32 ops: " + ", ".join(FP16_KEEP_FP32_OPS)
                + "; fp32 control flow with its bodies: " + ", ".join(FP16_FP32_CONTROL_FLOW) + kept + ")")
    if precision is Precision.INT8:
        quantize_qdq(model, calibration, out, method=calib_method, keep_fp32_nodes=keep, ranges_cache=ranges_cache)
        return (f"onnxruntime.quantization QDQ, symmetric int8, per-channel weights, {calib_method} "
                f"calibration, ops {'/'.join(INT8_QUANTIZED_OPS)}{kept}")
    raise ValueError(f"no reduced precision {precision}")


# search(model, family, calibration, write) -> PrecisionPlan: ``--plan auto`` (the converter passes
# verification.plan_search's, judged against the ORIGINAL); write(keep, path) -> what made it
PlanSearch = Callable[..., PrecisionPlan]


def prepare(load_model: Callable[[], object], info: ModelInfo, dest_dir: Path, options: TrtOptions, *,
            precision: Precision | None = None, calibration: CalibrationSet | None = None,
            say: Callable[[str], None] = lambda m: None, plan: PrecisionPlan | None = None,
            search: PlanSearch | None = None) -> PreparedModel:
    """Write ``dest_dir/model.<precision>.onnx`` from the source ONNX and derive the profiles.

    ``info`` describes the source (inputs, config, metadata: the family and profiles come from it);
    ``load_model()`` returns its ONNX ModelProto, called only once the profiles and calibration images
    are known to be good (a bad ``--calib-images`` fails in a moment, not after loading a large model).
    ``precision`` defaults to the options'; the TRT 10 builder asks for ``fp32`` (it applies FP16/INT8 with
    builder flags, and still calibrates INT8 on the batches) while TRT 11 and the plan export ask for the
    cast or Q/DQ ONNX. ``plan`` keeps its nodes fp32 (checked against this model); ``search`` finds the plan
    once the model is loaded (``--plan auto``); the TRT 10 builder (fp32 ONNX) applies the plan per layer.
    """

    precision = Precision.parse(precision or options.precision)
    family = resolve_family(info, options.family)
    profiles = derive_profiles(info, family, options.shapes)
    if options.int8 and calibration is None:
        say("preprocessing calibration images")
        calibration = calibration_batches(options.calib_images, family, profiles, limit=options.calib_limit)
    model = name_nodes(load_model())
    dest_dir.mkdir(parents=True, exist_ok=True)
    reduced = Precision.parse(options.precision)  # what the plan is for (TRT 10 prepares fp32 and applies it)
    # INT8: the search's candidates and the build share one calibration (the ranges, computed once)
    ranges = Path(tempfile.mkdtemp(prefix="ocrconvert-ranges-")) / "ranges.json" if search is not None else None
    try:
        if search is not None:
            say(f"searching the precision plan ({reduced.value}, at most {options.plan_max_evals} candidates)")
            def write(keep, path):
                return write_reduced(model, reduced, path, keep_fp32=keep, calibration=calibration,
                                     calib_method=options.calib_method, ranges_cache=ranges)

            plan = search(model, family, calibration, write)
        return _write_prepared(model, info, dest_dir, options, precision, reduced, family, profiles, calibration, plan,
                               ranges, say)
    finally:
        if ranges is not None:
            shutil.rmtree(ranges.parent, ignore_errors=True)


def _write_prepared(model, info, dest_dir, options, precision, reduced, family, profiles, calibration, plan, ranges,
                    say) -> PreparedModel:
    import onnx

    out = dest_dir / f"model.{precision.value}.onnx"
    gate = None
    if plan is not None:
        plan.check_for(reduced.value, ONNX_NODES, {n.name for n in model.graph.node})
        gate = plan.gate_threshold or family.plan_threshold(reduced.value)
    keep = plan.keep_fp32 if plan is not None else ()
    if precision in (Precision.FP16, Precision.INT8):
        say("casting to FP16 (onnxconverter-common)" if precision is Precision.FP16
            else f"inserting INT8 Q/DQ from {calibration.images} calibration images")
        tool = write_reduced(model, precision, out, keep_fp32=keep, calibration=calibration,
                             calib_method=options.calib_method, ranges_cache=ranges)
    else:
        onnx.save(model, str(out))
        tool = "onnxslim"
    return PreparedModel(out, precision, profiles, family.name, calibration, tool, plan, gate)


def write_profiles(folder: Path, profiles: list[ShapeProfile]) -> Path:
    path = Path(folder) / PROFILE_FILE
    path.write_text(json.dumps([p.to_dict() for p in profiles], indent=2))
    return path


def trtexec_command(onnx_path: str, profiles: list[ShapeProfile], precision, engine: str = "model.engine") -> str:
    """The equivalent trtexec command line, so a prepared export can be built on any TensorRT machine."""
    cmd = [f"trtexec --onnx={onnx_path} --saveEngine={engine}"]
    dyn = [p for p in profiles if p.origin != "fixed"]
    if dyn:
        for flag, attr in (("minShapes", "min"), ("optShapes", "opt"), ("maxShapes", "max")):
            cmd.append(f"--{flag}=" + ",".join(f"{p.name}:{dims(getattr(p, attr))}" for p in dyn))
    if str(precision) in ("fp16", "int8"):
        cmd.append("--stronglyTyped")  # the prepared ONNX carries its precision (required on 10.x, default on 11)
    return " ".join(cmd)


def plan_manifest(prepared: PreparedModel) -> dict:
    """The ``tensorrt_plan`` block of an exported plan's manifest: what to build, and how."""
    name = prepared.onnx_path.name
    return {**prepared.to_dict(), "profiles_file": PROFILE_FILE, "strongly_typed": prepared.strongly_typed,
            "trtexec": trtexec_command(name, prepared.profiles, prepared.precision), "built": False}


def engine_manifest(*, trt_version: str, gpu_name: str, compute_capability: str | None, precision,
                    strongly_typed: bool, builder_flags: list[str], profiles: list[ShapeProfile],
                    prepared: dict, calibration: dict | None, workspace_bytes: int | None,
                    timing_cache: dict | None, engine_bytes: int, build_seconds: float) -> dict:
    """The ``engine`` block of a TensorRT artifact's manifest: a pure function of the facts collected."""
    major = int(trt_version.split(".")[0]) if trt_version and trt_version[0].isdigit() else None
    return {
        "tensorrt_version": trt_version,
        "tensorrt_major": major,
        "gpu": {"name": gpu_name, "compute_capability": compute_capability},
        "precision": str(precision),
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


__all__ = ["PreparedModel", "prepare", "write_reduced", "PlanSearch", "write_profiles", "trtexec_command", "plan_manifest", "engine_manifest",
           "PROFILE_FILE"]
