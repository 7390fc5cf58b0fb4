"""ONNX -> TensorRT: the ``trt-build`` route (an engine; needs TensorRT) and the ``trt-export`` route (the
prepared plan folder TensorRT would build from; needs no TensorRT). Both take ``TrtOptions``.

TensorRT 10: the FP32 ONNX is parsed into a weakly typed network and precision comes from builder
flags: ``BuilderFlag.FP16``, or ``BuilderFlag.INT8`` with an ``IInt8EntropyCalibrator2`` fed real
images preprocessed as the model family expects (deprecated in 10.x, but still the 10.x implicit path).
TensorRT 11 removed those flags, the calibrator and weak typing: every network is strongly typed, so
FP16 builds from the FP16-cast ONNX and INT8 from the Q/DQ ONNX that ``ocrconvert.tensorrt`` writes.

The builder is the only code outside ``runners/tensorrt.py`` that imports ``tensorrt`` (lazily). CI runs
it against faithful fakes of the TensorRT 10 and 11 Python APIs (tests/trt/fake_tensorrt.py), never against
TensorRT itself; docs/tensorrt.md says what has run where.
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .._compat import version_of
from ..errors import ConversionError, UsageError
from ..formats import Artifact, Format
from ..options import Precision
from ..registry import Converter, HopResult, VerificationPolicy, register_converter
from ..runners import tensorrt as trt_runtime
from ..runners.tensorrt import require_tensorrt, trt_logger, trt_major
from ..tensorrt.options import TrtOptions
from ..tensorrt.plan import PreparedModel, engine_manifest, plan_manifest, prepare, write_profiles

log = logging.getLogger(__name__)


def plan_arguments(options: TrtOptions, context, say: Callable[[str], None]) -> dict:
    """``prepare``'s plan arguments for ``--plan``: the plan file to reuse, or the search (``--plan auto``) judged
    against the ORIGINAL the spine verifies against (the hop's context; the input itself when run bare)."""
    if options.plan is None:
        return {}
    if options.plan != "auto":
        from ..precision_plan import PrecisionPlan

        plan = PrecisionPlan.load(options.plan_path)
        plan.origin, plan.passed = "file", None   # judged by this build's verification, at the plan's gate
        plan.search = {"reused_from": str(options.plan_path), "gate": plan.search.get("gate"),
                       "kept_units": plan.search.get("kept_units"), "evaluations": 0}
        return {"plan": plan}
    from ..verification.plan_search import search_plan

    def search(model, family, calibration, write):
        ref = context.reference if context is not None else None
        if ref is None:
            raise UsageError("--plan auto needs the ORIGINAL to judge candidates against; run it through convert()")
        return search_plan(model, write, ref, options.precision, images=context.images, seed=context.seed,
                           family=context.family or options.family, min_metric=options.plan_min_metric,
                           max_evals=options.plan_max_evals, say=say)

    return {"search": search}


def plan_record(prepared: PreparedModel, folder: Path | None) -> dict:
    """The manifest's ``precision_plan`` block (and ``precision-plan.json`` in ``folder``, for ``--plan FILE``)."""
    from ..precision_plan import PLAN_FILE

    if prepared.plan is None:
        return {}
    record = prepared.plan.to_dict()
    if folder is not None:
        prepared.plan.save(folder / PLAN_FILE)
        record["file"] = PLAN_FILE
    return {"precision_plan": record}


def prepare_source(source: Artifact, dest_dir: Path, options: TrtOptions, *, precision: Precision | None = None,
                   say: Callable[[str], None] = lambda m: None, context=None) -> PreparedModel:
    """The source ONNX, slimmed (constants -> initializers), prepared for ``precision`` into ``dest_dir``
    (with the ``--plan`` options' precision plan)."""
    from ..onnx_io import load_onnx
    from ..runners import runner_for
    from .onnx_torch import slim

    if source.format is not Format.ONNX:
        raise UsageError(f"TensorRT routes take an .onnx model, not {source.format.value}",
                         hint="Convert it first: ocrconvert paddle2onnx MODEL_DIR -o model.onnx")

    def load_model():
        say("slimming the ONNX (constants -> initializers)")
        return slim(load_onnx(source.files["model"]))

    return prepare(load_model, runner_for(source).info(), dest_dir, options, precision=precision, say=say,
                   **plan_arguments(options, context, say))


def _policy(options: TrtOptions, prepared: PreparedModel | None = None) -> VerificationPolicy:
    # the precision: how INT8's random cases are judged (loose gates: calibration fixed the activation ranges
    # on images) is the family's policy, the same here as under `ocrconvert verify --precision int8`; a precision
    # plan's build is judged at the plan's gate (a reused plan that no longer holds is a FAILED build)
    gate = prepared.plan_gate if prepared is not None else None
    return VerificationPolicy(precision=options.precision, min_metric=gate)


def _facts(prepared: PreparedModel) -> dict:
    return {"precision": prepared.precision.value, "family": prepared.family,
            "profiles": [p.to_dict() for p in prepared.profiles],
            "calibration": prepared.calibration.to_dict() if prepared.calibration else None}


def source_metadata(source: Artifact) -> dict:
    """Family, dictionary and config travel into the manifest (an engine has no metadata_props)."""
    from ..families import resolve_family
    from ..runners import runner_for

    info = runner_for(source).info()
    meta = dict(info.metadata)
    if info.dictionary and "character" not in meta:
        meta["character"] = "\n".join(info.dictionary)
    if info.config and "ocrconvert.config" not in meta:
        meta["ocrconvert.config"] = json.dumps(info.config, ensure_ascii=False, default=str)
    meta.setdefault("ocrconvert.family", resolve_family(info).name)
    return meta


def _not_onnx(source: Artifact, route: str) -> list[str]:
    return [] if source.format is Format.ONNX else [f"{route} takes ONNX, not {source.format.value}"]


def _prep_versions() -> dict:
    return {n: version_of(n) for n in ("onnx", "onnxslim", "onnxconverter-common", "onnxruntime")}


# --------------------------------------------------------------------------------------------------
# trt-export: the prepared plan folder, no TensorRT
# --------------------------------------------------------------------------------------------------
@register_converter("onnx", "tensorrt-plan", "trt-export", options=TrtOptions,
                    description="the ONNX TensorRT would build (fp32 / FP16 cast / INT8 Q/DQ) + profiles + trtexec "
                                "command; no TensorRT needed")
class OnnxToTensorRTPlan(Converter):
    """ONNX -> a folder holding ``model.<precision>.onnx`` and ``profiles.json`` (``trt-build --export-only``).

    The spine verifies the prepared ONNX in ONNX Runtime against the ORIGINAL source, so what TensorRT
    will parse is known to be right before any GPU is involved."""

    tool = "onnxslim + onnxconverter-common / onnxruntime.quantization"

    def check(self, source: Artifact, options: TrtOptions) -> list[str]:
        given = [flag for flag, v in (("--timing-cache", options.timing_cache), ("--workspace", options.workspace_gib),
                                      ("--calib-cache", options.calib_cache)) if v is not None]
        if given:  # refused, never silently dropped
            raise UsageError(f"{', '.join(given)} only apply to an engine build; an export builds none",
                             hint=f"Drop {given[0]}, or build the engine with -o OUT.engine.")
        return _not_onnx(source, "trt-export")

    def convert(self, source: Artifact, dest: Path, options: TrtOptions) -> HopResult:
        dest.mkdir(parents=True, exist_ok=True)
        prepared = prepare_source(source, dest, options, context=self.context)
        write_profiles(dest, prepared.profiles)
        art = Artifact(dest, Format.ONNX, {"model": prepared.onnx_path})
        return HopResult(art, facts={**_facts(prepared), "strongly_typed": prepared.strongly_typed,
                                     "onnx": prepared.onnx_path.name, "tool": prepared.tool},
                         manifest={"tensorrt_plan": plan_manifest(prepared), "model_metadata": source_metadata(source),
                                   **plan_record(prepared, dest)},
                         policy=_policy(options, prepared))

    def versions(self) -> dict:
        return _prep_versions()


# --------------------------------------------------------------------------------------------------
# trt-build: the engine
# --------------------------------------------------------------------------------------------------
class CalibrationCache:
    """TRT 10: the calibration cache file, read back by the next build (TensorRT then skips the batches).

    Records what happened for the manifest: bytes read (the scales came from the file, not the images)
    and bytes written."""

    def __init__(self, path: Path | None):
        self.path = path
        self.read_bytes = 0
        self.written_bytes = 0

    def read(self) -> bytes | None:
        if self.path is None or not self.path.is_file():
            return None
        data = self.path.read_bytes()
        self.read_bytes = len(data)
        return data or None

    def write(self, data) -> None:
        if self.path is None:
            return
        data = bytes(data)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(self.path)
        self.written_bytes = len(data)

    def to_dict(self) -> dict | None:
        if self.path is None:
            return None
        return {"path": str(self.path), "read_bytes": self.read_bytes, "written_bytes": self.written_bytes,
                "scales_from": "cache" if self.read_bytes else "images"}


def _entropy_calibrator(trt, calib, cache: CalibrationCache, mem):
    """TRT 10 only: IInt8EntropyCalibrator2 over the calibration batches (already at the profile's opt shape).

    ``mem`` is the CUDA side (``runners.tensorrt.cuda()``): TensorRT reads each batch from device memory."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)  # TensorRT needs the base init called explicitly
            self._batches = iter(calib.batches)
            self._device = None  # kept alive until the next batch: TensorRT reads it after get_batch returns
            self.batches_given = 0

        def get_batch_size(self):
            return calib.batch_shape[0]

        def get_batch(self, names):
            batch = next(self._batches, None)
            if batch is None:
                return None
            self._device = mem.to_device(np.ascontiguousarray(batch, dtype=np.float32))
            self.batches_given += 1
            return [mem.address(self._device)]

        def read_calibration_cache(self):
            return cache.read()

        def write_calibration_cache(self, data):
            cache.write(data)

    return EntropyCalibrator()


def _parse(trt, builder, onnx_path: Path):
    # No creation flags: explicit batch is the only mode since 10.0; TRT 11 is always strongly typed (its
    # STRONGLY_TYPED flag is deprecated and ignored); on TRT 10 we want the weakly typed network the
    # FP16/INT8 builder flags act on.
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, trt_logger(trt))
    if not parser.parse_from_file(str(onnx_path)):  # from file: external data resolves beside the model
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ConversionError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {'; '.join(errors) or 'no detail'}",
                              hint="Run with --debug; `ocrconvert trt-build --export-only` shows the ONNX it would parse.")
    return network, parser


def keep_layers_fp32(trt, network, config, keep) -> dict:
    """TRT 10 (weakly typed): the precision plan as per-layer precision — each layer parsed from a kept node (the
    parser names layers after their nodes) computes and outputs fp32, and the builder must obey it."""
    keep = set(keep)
    matched, names = set(), []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        node = next((k for k in (layer.name, layer.name.rsplit("_", 1)[0]) if k in keep), None)
        if node is None:
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        matched.add(node)
        names.append(layer.name)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    return {"how": "layer.precision + set_output_type(fp32), BuilderFlag.OBEY_PRECISION_CONSTRAINTS",
            "layers_fp32": len(names), "plan_nodes_matched": len(matched),
            "plan_nodes_unmatched": sorted(keep - matched)[:20]}


def build_engine_bytes(*, onnx_path: Path, profiles, precision: Precision, calibration=None,
                       timing_cache: Path | None = None, workspace_bytes: int | None = None,
                       calib_cache: Path | None = None, keep_fp32=()) -> tuple[bytes, dict]:
    """Build a serialized engine; returns (plan bytes, facts for the engine manifest).

    ``onnx_path`` is the FP32 ONNX on TRT 10 (precision via flags) and the prepared (FP16-cast or
    Q/DQ) ONNX on TRT 11 (strongly typed). ``calib_cache`` (TRT 10 INT8): read when present, else written.
    ``keep_fp32``: the precision plan's nodes; TRT 10 keeps their layers fp32 per layer (on TRT 11 the prepared
    ONNX already carries the plan as casts).
    """
    trt = require_tensorrt()
    major = trt_major(trt)
    mem = trt_runtime.cuda(why="building a TensorRT engine")
    builder = trt.Builder(trt_logger(trt))
    network, _parser = _parse(trt, builder, onnx_path)
    config = builder.create_builder_config()
    if precision is Precision.FP32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 is on by default; fp32 should mean fp32 matmul/conv
    if workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    flags: list[str] = []
    profile = builder.create_optimization_profile()
    for p in profiles:
        profile.set_shape(p.name, p.min, p.opt, p.max)
    if config.add_optimization_profile(profile) < 0:
        raise ConversionError("TensorRT rejected the optimization profile "
                              + ", ".join(p.spec() for p in profiles),
                              hint="Run with --debug for TensorRT's reason; check --shapes against the model's inputs.")
    calibrator, cache = None, CalibrationCache(calib_cache)
    layer_plan = None
    if major < 11 and keep_fp32 and precision is not Precision.FP32:
        layer_plan = keep_layers_fp32(trt, network, config, keep_fp32)
        flags.append("OBEY_PRECISION_CONSTRAINTS")
    if major < 11:
        if precision is Precision.FP16:
            config.set_flag(trt.BuilderFlag.FP16)
            flags.append("FP16")
        elif precision is Precision.INT8:
            if calibration is None:
                raise UsageError("INT8 on TensorRT 10 needs calibration images (--calib-images)")
            config.set_flag(trt.BuilderFlag.INT8)
            config.set_flag(trt.BuilderFlag.FP16)  # layers INT8 cannot take fall back to FP16, not FP32
            flags += ["INT8", "FP16"]
            calibrator = _entropy_calibrator(trt, calibration, cache, mem)  # referenced until the build ends
            config.int8_calibrator = calibrator
            if not config.set_calibration_profile(profile):  # calibrate at this profile's kOPT shapes
                raise ConversionError("TensorRT refused the calibration profile")
    elif calib_cache is not None:
        raise UsageError(f"TensorRT {trt.__version__} has no calibrator, so no calibration cache",
                         hint="INT8 on TensorRT 11 builds from the Q/DQ ONNX; drop the calibration cache.")
    cache_info = None
    if timing_cache is not None:
        blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
        tcache = config.create_timing_cache(blob)
        if tcache is None or not config.set_timing_cache(tcache, ignore_mismatch=False):
            raise UsageError(f"--timing-cache {timing_cache} is not a timing cache of this TensorRT version and GPU",
                             hint="Delete it (it is rebuilt), or give another --timing-cache path.")
        cache_info = {"path": str(timing_cache), "loaded_bytes": len(blob)}
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if plan is None:
        raise ConversionError("TensorRT could not build an engine (build_serialized_network returned None)",
                              hint="Run with --debug for TensorRT's log; a larger --workspace can help.")
    if timing_cache is not None:
        data = bytes(config.get_timing_cache().serialize())
        tmp = timing_cache.with_name(timing_cache.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(timing_cache)
        cache_info["saved_bytes"] = len(data)
    gpu, cc = mem.gpu()
    facts = {"trt_version": str(trt.__version__), "gpu_name": gpu, "compute_capability": cc,
             "strongly_typed": major >= 11, "builder_flags": flags,
             "timing_cache": cache_info, "build_seconds": seconds,
             "calibration_cache": cache.to_dict() if calibrator is not None else None, "layer_plan": layer_plan,
             "calibration_batches_read": calibrator.batches_given if calibrator is not None else None}
    return bytes(plan), facts


def _calibration_record(prepared: PreparedModel, facts: dict) -> dict | None:
    """What the engine's INT8 scales came from: the images (and how many batches TensorRT read) or the cache."""
    if prepared.calibration is None:
        return None
    record = prepared.calibration.to_dict()
    if facts.get("calibration_cache") is not None:
        record["cache"] = facts["calibration_cache"]
    if facts.get("calibration_batches_read") is not None:
        record["batches_read_by_tensorrt"] = facts["calibration_batches_read"]
    return record


@register_converter("onnx", "tensorrt", "trt-build", options=TrtOptions, requires=("tensorrt",),
                    description="TensorRT engine; TRT 10 precision flags + entropy calibrator, TRT 11 strongly typed "
                                "from the FP16-cast / Q/DQ ONNX")
class OnnxToTensorRT(Converter):
    """ONNX -> TensorRT engine for this GPU and TensorRT version."""

    tool = "tensorrt"

    def check(self, source: Artifact, options: TrtOptions) -> list[str]:
        if options.calib_cache is not None and trt_major(require_tensorrt()) >= 11:
            raise UsageError("--calib-cache needs TensorRT 10's calibrator; TensorRT 11 has none",
                             hint="INT8 on TensorRT 11 builds from the Q/DQ ONNX; drop --calib-cache.")
        return _not_onnx(source, "trt-build")

    def convert(self, source: Artifact, dest: Path, options: TrtOptions) -> HopResult:
        from ..manifest import sha256_file, write_manifest

        trt = require_tensorrt()
        major = trt_major(trt)
        with tempfile.TemporaryDirectory(prefix=".trtprep.", dir=dest.parent) as tmp:
            # TRT 10 takes the FP32 ONNX and applies precision by flags; TRT 11 takes the precision-carrying ONNX
            want = Precision.FP32 if major < 11 else options.precision
            prepared = prepare_source(source, Path(tmp), options, precision=want, context=self.context)
            plan, facts = build_engine_bytes(
                onnx_path=prepared.onnx_path, profiles=prepared.profiles, precision=options.precision,
                calibration=prepared.calibration, timing_cache=options.timing_cache,
                workspace_bytes=options.workspace_bytes, calib_cache=options.calib_cache,
                keep_fp32=prepared.plan.keep_fp32 if prepared.plan is not None else ())
            prepared_info = {"precision": prepared.precision.value, "tool": prepared.tool,
                             "sha256": sha256_file(prepared.onnx_path)}
        dest.write_bytes(plan)
        engine = engine_manifest(
            trt_version=facts["trt_version"], gpu_name=facts["gpu_name"], compute_capability=facts["compute_capability"],
            precision=options.precision, strongly_typed=facts["strongly_typed"], builder_flags=facts["builder_flags"],
            profiles=prepared.profiles, prepared=prepared_info,
            calibration=_calibration_record(prepared, facts),
            workspace_bytes=options.workspace_bytes, timing_cache=facts["timing_cache"], engine_bytes=len(plan),
            build_seconds=facts["build_seconds"])
        if prepared.plan is not None:  # how the plan reached the network: casts (TRT 11) or per-layer fp32 (TRT 10)
            engine["precision_plan"] = facts["layer_plan"] or {"how": "casts in the strongly typed ONNX"}
        metadata = source_metadata(source)
        # provisional sidecar: the runner reads the model's metadata from it while the spine verifies the engine
        write_manifest(dest, {"engine": engine, "model_metadata": metadata})
        return HopResult(Artifact(dest, Format.TENSORRT, {"engine": dest}),
                         facts={**_facts(prepared), "precision": options.precision.value,
                                "strongly_typed": facts["strongly_typed"], "builder_flags": sorted(facts["builder_flags"]),
                                "tensorrt_version": facts["trt_version"], "gpu": facts["gpu_name"]},
                         manifest={"engine": engine, "model_metadata": metadata, **plan_record(prepared, None)},
                         policy=_policy(options, prepared))

    def versions(self) -> dict:
        return {"tensorrt": version_of("tensorrt"), **_prep_versions()}


__all__ = ["OnnxToTensorRT", "OnnxToTensorRTPlan", "CalibrationCache", "prepare_source", "build_engine_bytes",
           "source_metadata"]
