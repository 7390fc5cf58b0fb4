"""ONNX -> TensorRT engine (``trt-build``), and the TensorRT runner. The only module importing ``tensorrt``.

TensorRT 10: the FP32 ONNX is parsed into a weakly typed network and precision comes from builder
flags: ``BuilderFlag.FP16``, or ``BuilderFlag.INT8`` with an ``IInt8EntropyCalibrator2`` fed real
images preprocessed as the model family expects (deprecated in 10.x, but still the 10.x implicit path).
TensorRT 11 removed those flags, the calibrator and weak typing: every network is strongly typed, so
FP16 builds from the FP16-cast ONNX and INT8 from the Q/DQ ONNX that ``trt_prep`` writes.

Device buffers and the CUDA stream come from PyTorch (``torch.cuda``); TensorRT's Python package
brings no allocator of its own.

NOT RUN in ocrconvert's CI: no machine there has TensorRT (see docs/tensorrt.md). Tests that need it
carry ``@pytest.mark.tensorrt`` and skip.
"""
from __future__ import annotations

import logging
import tempfile
import time
from functools import cached_property
from pathlib import Path

import numpy as np

from .._compat import require, version_of
from ..errors import ConversionError, CorruptModelError, MissingDependencyError, UsageError
from ..families.base import TensorSpec
from ..formats import Artifact, Format
from ..registry import register_converter
from ..runners.base import Runner

log = logging.getLogger(__name__)

TRT_INSTALL_HINT = ("Install it with: pip install tensorrt (NVIDIA publishes the wheels on PyPI and on "
                    "https://pypi.nvidia.com; needs an NVIDIA GPU + driver), or build elsewhere from "
                    "`ocrconvert trt-build MODEL.onnx --export-only DIR`.")


def require_tensorrt(why: str = "building and running TensorRT engines"):
    """``import tensorrt`` or MissingDependencyError (exit 4) naming the install."""
    try:
        return require("tensorrt", why)
    except MissingDependencyError as exc:
        exc.hint = TRT_INSTALL_HINT
        exc.message = f"tensorrt is not installed: it is needed for {why}"
        exc.args = (exc.message,)
        raise


def trt_major(trt) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError:
        raise ConversionError(f"cannot read the TensorRT version from {trt.__version__!r}") from None


def _torch_cuda(why: str):
    torch = require("torch", why)
    if not torch.cuda.is_available():
        raise ConversionError(f"no CUDA device is visible ({why})",
                              hint="TensorRT needs an NVIDIA GPU; check nvidia-smi and CUDA_VISIBLE_DEVICES.")
    return torch


def gpu_facts() -> tuple[str, str | None]:
    torch = _torch_cuda("reading the GPU name")
    major, minor = torch.cuda.get_device_capability()
    return torch.cuda.get_device_name(), f"{major}.{minor}"


_LOGGER = None


def _logger(trt):
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


# --------------------------------------------------------------------------------------------------
# builder
# --------------------------------------------------------------------------------------------------
def _entropy_calibrator(trt, calib, cache_path: Path | None):
    """TRT 10 only: IInt8EntropyCalibrator2 over the calibration batches (already at the profile's opt shape)."""
    torch = _torch_cuda("INT8 calibration")

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)  # TensorRT needs the base init called explicitly
            self._batches = iter(calib.batches)
            self._device = None  # kept alive until the next batch: TensorRT reads it after get_batch returns

        def get_batch_size(self):
            return calib.batch_shape[0]

        def get_batch(self, names):
            batch = next(self._batches, None)
            if batch is None:
                return None
            self._device = torch.from_numpy(np.ascontiguousarray(batch)).cuda()
            return [int(self._device.data_ptr())]

        def read_calibration_cache(self):
            if cache_path is not None and cache_path.is_file():
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache):
            if cache_path is not None:
                cache_path.write_bytes(bytes(cache))

    return EntropyCalibrator()


def _parse(trt, builder, onnx_path: Path):
    # No creation flags: explicit batch is the only mode since 10.0; TRT 11 is always strongly typed (its
    # STRONGLY_TYPED flag is deprecated and ignored); on TRT 10 we want the weakly typed network the
    # FP16/INT8 builder flags act on.
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, _logger(trt))
    if not parser.parse_from_file(str(onnx_path)):  # from file: external data resolves beside the model
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ConversionError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {'; '.join(errors) or 'no detail'}",
                              hint="Run with --debug; `ocrconvert trt-build --export-only` shows the ONNX it would parse.")
    return network, parser


def build_engine_bytes(*, onnx_path: Path, profiles, precision: str, calibration=None,
                       timing_cache: Path | None = None, workspace_bytes: int | None = None,
                       calib_cache: Path | None = None) -> tuple[bytes, dict]:
    """Build a serialized engine; returns (plan bytes, facts for the engine manifest).

    ``onnx_path`` is the FP32 ONNX on TRT 10 (precision via flags) and the prepared (FP16-cast or
    Q/DQ) ONNX on TRT 11 (strongly typed).
    """
    trt = require_tensorrt()
    major = trt_major(trt)
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, onnx_path)
    config = builder.create_builder_config()
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 is on by default; fp32 should mean fp32 matmul/conv
    if workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    flags: list[str] = []
    profile = builder.create_optimization_profile()
    for p in profiles:
        profile.set_shape(p.name, p.min, p.opt, p.max)
    config.add_optimization_profile(profile)
    if major < 11:
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
            flags.append("FP16")
        elif precision == "int8":
            if calibration is None:
                raise UsageError("INT8 on TensorRT 10 needs calibration images (--calib-images)")
            config.set_flag(trt.BuilderFlag.INT8)
            config.set_flag(trt.BuilderFlag.FP16)  # layers INT8 cannot take fall back to FP16, not FP32
            flags += ["INT8", "FP16"]
            config.int8_calibrator = _entropy_calibrator(trt, calibration, calib_cache)
            config.set_calibration_profile(profile)  # calibrate at this profile's kOPT shapes
    cache_info = None
    if timing_cache is not None:
        blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
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
    gpu, cc = gpu_facts()
    facts = {"trt_version": str(trt.__version__), "gpu_name": gpu, "compute_capability": cc,
             "strongly_typed": major >= 11, "builder_flags": flags,
             "timing_cache": cache_info, "build_seconds": seconds}
    return bytes(plan), facts


@register_converter("onnx", "tensorrt", "trt-build", requires=("tensorrt",),
                    description="TensorRT engine; TRT 10 precision flags + entropy calibrator, TRT 11 strongly typed "
                                "from the FP16-cast / Q/DQ ONNX")
class OnnxToTensorRT:
    """ONNX -> TensorRT engine for this GPU and TensorRT version."""

    tool = "tensorrt"

    def check(self, source: Artifact, options: dict) -> list[str]:
        problems = []
        if source.format is not Format.ONNX:
            problems.append(f"trt-build takes ONNX, not {source.format.value}")
        return problems

    def convert(self, source: Artifact, dest: Path, options: dict) -> Artifact:
        from .. import trt_prep
        from ..manifest import sha256_file

        opts = trt_prep.TrtBuildOptions.from_dict(options).validate()
        trt = require_tensorrt()
        major = trt_major(trt)
        with tempfile.TemporaryDirectory(prefix=".trtprep.", dir=dest.parent) as tmp:
            # TRT 10 takes the FP32 ONNX and applies precision by flags; TRT 11 takes the precision-carrying ONNX
            want = "fp32" if major < 11 else opts.precision
            prepared = trt_prep.prepare(source, Path(tmp), opts, precision=want)
            plan, facts = build_engine_bytes(
                onnx_path=prepared.onnx_path, profiles=prepared.profiles, precision=opts.precision,
                calibration=prepared.calibration, timing_cache=opts.timing_cache,
                workspace_bytes=opts.workspace_bytes)
            prepared_info = {"precision": prepared.precision, "tool": prepared.tool,
                             "sha256": sha256_file(prepared.onnx_path)}
        dest.write_bytes(plan)
        engine = trt_prep.engine_manifest(
            trt_version=facts["trt_version"], gpu_name=facts["gpu_name"], compute_capability=facts["compute_capability"],
            precision=opts.precision, strongly_typed=facts["strongly_typed"], builder_flags=facts["builder_flags"],
            profiles=prepared.profiles, prepared=prepared_info,
            calibration=prepared.calibration.to_dict() if prepared.calibration else None,
            workspace_bytes=opts.workspace_bytes, timing_cache=facts["timing_cache"], engine_bytes=len(plan),
            build_seconds=facts["build_seconds"])
        return Artifact(dest, Format.TENSORRT, {"engine": dest}, {"engine": engine,
                                                                   "model_metadata": _source_metadata(source)})

    def versions(self) -> dict:
        return {"tensorrt": version_of("tensorrt"), "onnxconverter-common": version_of("onnxconverter-common"),
                "onnxruntime": version_of("onnxruntime")}


def _source_metadata(source: Artifact) -> dict:
    """Family, dictionary and config travel into the engine's manifest (a plan has no metadata_props)."""
    import json

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


# --------------------------------------------------------------------------------------------------
# runner
# --------------------------------------------------------------------------------------------------
class TensorRTRunner(Runner):
    """A serialized engine on the current CUDA device: ``infer(feed) -> dict[str, ndarray]``."""

    backend = "tensorrt"

    def __init__(self, artifact: Artifact, device: int = 0):
        super().__init__(artifact)
        self.device = device

    @cached_property
    def _manifest(self) -> dict:
        from ..manifest import read_manifest

        return read_manifest(self.artifact.path) or {}

    @cached_property
    def engine(self):
        trt = require_tensorrt("running a TensorRT engine")
        torch = _torch_cuda("running a TensorRT engine")
        torch.cuda.set_device(self.device)
        runtime = trt.Runtime(_logger(trt))
        engine = runtime.deserialize_cuda_engine(self.artifact.files["engine"].read_bytes())
        if engine is None:
            built = (self._manifest.get("engine") or {})
            raise CorruptModelError(
                f"TensorRT {trt.__version__} could not deserialize {self.artifact.path}",
                hint=f"Engines run only on the TensorRT version and GPU that built them "
                     f"(this one: TensorRT {built.get('tensorrt_version', '?')}, "
                     f"{(built.get('gpu') or {}).get('name', '?')}). Rebuild it here with `ocrconvert trt-build`.")
        return engine

    def _io(self, want_input: bool) -> list[TensorSpec]:
        trt = require_tensorrt("running a TensorRT engine")
        eng = self.engine
        specs = []
        for i in range(eng.num_io_tensors):
            name = eng.get_tensor_name(i)
            if (eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT) != want_input:
                continue
            shape = tuple(d if d >= 0 else None for d in eng.get_tensor_shape(name))
            specs.append(TensorSpec(name, shape, np.dtype(trt.nptype(eng.get_tensor_dtype(name))).name))
        return specs

    @cached_property
    def inputs(self):
        return self._io(True)

    @cached_property
    def outputs(self):
        return self._io(False)

    def metadata(self) -> dict:
        return dict(self._manifest.get("model_metadata") or {})

    def profile_ranges(self) -> dict[str, tuple]:
        eng = self.engine
        return {s.name: tuple(tuple(d) for d in eng.get_tensor_profile_shape(s.name, 0)) for s in self.inputs}

    def _load(self):
        ctx = self.engine.create_execution_context()
        if ctx is None:
            raise ConversionError("TensorRT could not create an execution context (out of GPU memory?)")
        return ctx

    def _infer(self, feed):
        torch = _torch_cuda("running a TensorRT engine")
        ctx = self.session
        ranges = self.profile_ranges()
        keep = []
        for spec in self.inputs:
            arr = np.ascontiguousarray(feed[spec.name], dtype=spec.dtype)
            lo, _, hi = ranges[spec.name]
            if len(arr.shape) != len(lo) or any(s < a or s > b for s, a, b in zip(arr.shape, lo, hi)):
                raise UsageError(f"input {spec.name} shape {list(arr.shape)} is outside the engine's profile "
                                 f"{list(lo)} .. {list(hi)}",
                                 hint="Rebuild with a wider --shapes range, or feed shapes inside it.")
            t = torch.from_numpy(arr).cuda(self.device)
            keep.append(t)
            if not ctx.set_input_shape(spec.name, tuple(arr.shape)):
                raise ConversionError(f"TensorRT rejected input shape {list(arr.shape)} for {spec.name}")
            ctx.set_tensor_address(spec.name, int(t.data_ptr()))
        outs = []
        for spec in self.outputs:
            shape = tuple(ctx.get_tensor_shape(spec.name))
            t = torch.empty(shape, dtype=getattr(torch, spec.dtype), device=f"cuda:{self.device}")
            ctx.set_tensor_address(spec.name, int(t.data_ptr()))
            outs.append(t)
        stream = torch.cuda.current_stream(self.device)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise ConversionError("TensorRT execution failed (execute_async_v3 returned False)")
        stream.synchronize()
        return [o.cpu().numpy() for o in outs]
