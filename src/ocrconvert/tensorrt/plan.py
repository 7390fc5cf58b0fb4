"""The prepared model TensorRT parses, and the records a TensorRT hop leaves in the manifest.

``prepare`` writes the ONNX for a precision (slimmed FP32, the FP16 cast or the INT8 Q/DQ model) and
derives the profiles; ``trtexec_command`` spells the equivalent build for any TensorRT machine;
``plan_manifest`` and ``engine_manifest`` are pure functions of the facts a hop collected.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..families import resolve_family
from ..families.base import ModelInfo
from ..options import Precision
from .calibration import CalibrationSet, calibration_batches
from .options import TrtOptions
from .precision import FP16_FP32_CONTROL_FLOW, FP16_KEEP_FP32_OPS, INT8_QUANTIZED_OPS, cast_fp16, quantize_qdq
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

    @property
    def strongly_typed(self) -> bool:
        """An fp16 or int8 ONNX carries its precision: TensorRT builds it as a strongly typed network."""
        return self.precision is not Precision.FP32

    def to_dict(self) -> dict:
        return {"onnx": self.onnx_path.name, "precision": self.precision.value, "family": self.family,
                "tool": self.tool, "profiles": [p.to_dict() for p in self.profiles],
                "calibration": self.calibration.to_dict() if self.calibration else None}


def prepare(load_model: Callable[[], object], info: ModelInfo, dest_dir: Path, options: TrtOptions, *,
            precision: Precision | None = None, calibration: CalibrationSet | None = None,
            say: Callable[[str], None] = lambda m: None) -> PreparedModel:
    """Write ``dest_dir/model.<precision>.onnx`` from the source ONNX and derive the profiles.

    ``info`` describes the source (inputs, config, metadata: the family and profiles come from it);
    ``load_model()`` returns its ONNX ModelProto, called only once the profiles and calibration images
    are known to be good (a bad ``--calib-images`` fails in a moment, not after loading a large model).
    ``precision`` defaults to the options'; the TRT 10 builder asks for ``fp32`` (it applies FP16/INT8 with
    builder flags, and still calibrates INT8 on the batches) while TRT 11 and the plan export ask for the
    cast or Q/DQ ONNX.
    """
    import onnx

    precision = Precision.parse(precision or options.precision)
    family = resolve_family(info, options.family)
    profiles = derive_profiles(info, family, options.shapes)
    if options.int8 and calibration is None:
        say("preprocessing calibration images")
        calibration = calibration_batches(options.calib_images, family, profiles, limit=options.calib_limit)
    model = load_model()
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / f"model.{precision.value}.onnx"
    if precision is Precision.FP16:
        say("casting to FP16 (onnxconverter-common)")
        onnx.save(cast_fp16(model), str(out))
        tool = ("onnxconverter-common float16 (keep_io_types, fp32 ops: " + ", ".join(FP16_KEEP_FP32_OPS)
                + "; fp32 control flow with its bodies: " + ", ".join(FP16_FP32_CONTROL_FLOW) + ")")
    elif precision is Precision.INT8:
        say(f"inserting INT8 Q/DQ from {calibration.images} calibration images")
        quantize_qdq(model, calibration, out, method=options.calib_method)
        tool = (f"onnxruntime.quantization QDQ, symmetric int8, per-channel weights, {options.calib_method} "
                f"calibration, ops {'/'.join(INT8_QUANTIZED_OPS)}")
    else:
        onnx.save(model, str(out))
        tool = "onnxslim"
    return PreparedModel(out, precision, profiles, family.name, calibration, tool)


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


__all__ = ["PreparedModel", "prepare", "write_profiles", "trtexec_command", "plan_manifest", "engine_manifest",
           "PROFILE_FILE"]
