"""TensorRT engines at run time: the engine loader and ``TensorRTRunner`` (after Polygraphy: the loader
holds its arguments and does its work when called; the runner only runs what the loader gives it).

``tensorrt`` is imported lazily (``require_tensorrt``), so importing this module costs nothing where
TensorRT is absent. Device buffers and the CUDA stream come from PyTorch (``torch.cuda``); TensorRT's
Python package brings no allocator of its own. The builder is ``converters/onnx_trt.py``.

NOT RUN in ocrconvert's CI: no machine there has TensorRT (see docs/tensorrt.md). Tests that need it
carry ``@pytest.mark.tensorrt`` and skip.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from .._compat import require
from ..errors import ConversionError, CorruptModelError, MissingDependencyError, UsageError
from ..families.base import TensorSpec
from ..formats import Artifact
from .base import Runner

TRT_INSTALL_HINT = ("Install it with: pip install tensorrt (NVIDIA publishes the wheels on PyPI and on "
                    "https://pypi.nvidia.com; needs an NVIDIA GPU + driver), or build elsewhere from "
                    "`ocrconvert trt-build MODEL.onnx --export-only DIR`.")


def tensorrt_missing(why: str = "building and running TensorRT engines") -> MissingDependencyError:
    """The exit-4 error naming the install, for when ``tensorrt`` cannot be imported."""
    exc = MissingDependencyError("tensorrt", None, why=why)
    exc.message = f"tensorrt is not installed: it is needed for {why}"
    exc.args = (exc.message,)
    exc.hint = TRT_INSTALL_HINT
    return exc


def require_tensorrt(why: str = "building and running TensorRT engines"):
    """``import tensorrt`` or MissingDependencyError (exit 4) naming the install."""
    try:
        return require("tensorrt", why)
    except MissingDependencyError:
        raise tensorrt_missing(why) from None


def trt_major(trt) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError:
        raise ConversionError(f"cannot read the TensorRT version from {trt.__version__!r}") from None


def cuda_torch(why: str):
    """``torch`` with a visible CUDA device (TensorRT's buffers and stream), or a conversion error saying why not."""
    torch = require("torch", why)
    if not torch.cuda.is_available():
        raise ConversionError(f"no CUDA device is visible ({why})",
                              hint="TensorRT needs an NVIDIA GPU; check nvidia-smi and CUDA_VISIBLE_DEVICES.")
    return torch


def gpu_facts() -> tuple[str, str | None]:
    """(GPU name, compute capability) of the current CUDA device: an engine runs only on that GPU model."""
    torch = cuda_torch("reading the GPU name")
    major, minor = torch.cuda.get_device_capability()
    return torch.cuda.get_device_name(), f"{major}.{minor}"


_LOGGER = None


def trt_logger(trt):
    """One TensorRT logger per process (TensorRT wants the same one for builder and runtime)."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


class EngineFromPath:
    """Loader: a serialized engine file -> a deserialized ``ICudaEngine`` on ``device``.

    ``built`` is the engine's manifest block (TensorRT version, GPU) for the message when this TensorRT
    or GPU cannot deserialize it."""

    def __init__(self, path: Path, device: int = 0, built: dict | None = None):
        self.path = Path(path)
        self.device = device
        self.built = built or {}

    def __call__(self):
        trt = require_tensorrt("running a TensorRT engine")
        torch = cuda_torch("running a TensorRT engine")
        torch.cuda.set_device(self.device)
        runtime = trt.Runtime(trt_logger(trt))
        engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise CorruptModelError(
                f"TensorRT {trt.__version__} could not deserialize {self.path}",
                hint=f"Engines run only on the TensorRT version and GPU that built them "
                     f"(this one: TensorRT {self.built.get('tensorrt_version', '?')}, "
                     f"{(self.built.get('gpu') or {}).get('name', '?')}). Rebuild it here with `ocrconvert trt-build`.")
        return engine


class TensorRTRunner(Runner):
    """A serialized engine on the current CUDA device: ``infer(feed) -> dict[str, ndarray]``."""

    backend = "tensorrt"

    def __init__(self, artifact: Artifact, device: int = 0, loader=None):
        super().__init__(artifact)
        self.device = device
        self._loader = loader

    @cached_property
    def _manifest(self) -> dict:
        from ..manifest import read_manifest

        return read_manifest(self.artifact.path) or {}

    @cached_property
    def engine(self):
        loader = self._loader or EngineFromPath(self.artifact.files["engine"], self.device,
                                                self._manifest.get("engine"))
        return loader()

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
        torch = cuda_torch("running a TensorRT engine")
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
            keep.append(t)  # alive until execute_async_v3 has read it
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


__all__ = ["TensorRTRunner", "EngineFromPath", "require_tensorrt", "tensorrt_missing", "trt_major", "gpu_facts",
           "cuda_torch", "trt_logger", "TRT_INSTALL_HINT"]
