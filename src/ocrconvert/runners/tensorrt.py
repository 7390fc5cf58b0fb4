"""TensorRT engines at run time: the engine loader and ``TensorRTRunner`` (after Polygraphy: the loader
holds its arguments and does its work when called; the runner only runs what the loader gives it).

``tensorrt`` is imported lazily (``require_tensorrt``), so importing this module costs nothing where
TensorRT is absent. TensorRT's Python package brings no allocator: device buffers, the stream and the
GPU's name come from ``cuda()`` (``TorchCuda``, through ``torch.cuda``), the one place the TensorRT path
touches CUDA. The builder is ``converters/onnx_trt.py``.

On CPU machines the tests run this module against faithful fakes of the TensorRT 10 and 11 Python APIs
with host memory standing in for ``cuda()`` (tests/trt/fake_tensorrt.py); against real TensorRT only
where it is installed (``@pytest.mark.tensorrt``). See docs/tensorrt.md for what has run where.
"""
from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path

import numpy as np

from .._compat import require
from ..errors import ConversionError, CorruptModelError, MissingDependencyError, UsageError
from ..families.base import TensorSpec
from ..formats import Artifact
from .base import Runner

log = logging.getLogger(__name__)

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


class TorchCuda:
    """What TensorRT needs from CUDA and its Python package does not bring: device buffers, a stream and the
    GPU's name, through ``torch.cuda``. Buffers are torch tensors; TensorRT sees only their addresses."""

    def __init__(self, device: int = 0, why: str = "running a TensorRT engine"):
        self.torch = cuda_torch(why)
        self.device = device
        self.torch.cuda.set_device(device)

    def gpu(self) -> tuple[str, str]:
        """(name, compute capability): an engine runs only on the GPU model that built it."""
        major, minor = self.torch.cuda.get_device_capability(self.device)
        return self.torch.cuda.get_device_name(self.device), f"{major}.{minor}"

    def to_device(self, array: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(array)).cuda(self.device)

    def empty(self, shape: tuple[int, ...], dtype: str):
        return self.torch.empty(tuple(shape), dtype=getattr(self.torch, dtype), device=f"cuda:{self.device}")

    @staticmethod
    def address(buffer) -> int:
        return int(buffer.data_ptr())

    @staticmethod
    def to_host(buffer) -> np.ndarray:
        return buffer.cpu().numpy()

    def stream(self) -> int:
        return int(self.torch.cuda.current_stream(self.device).cuda_stream)

    def synchronize(self) -> None:
        self.torch.cuda.current_stream(self.device).synchronize()


def cuda(device: int = 0, why: str = "running a TensorRT engine") -> TorchCuda:
    """The CUDA side of the TensorRT path (buffers, stream, GPU facts); the tests put host memory here."""
    return TorchCuda(device, why)


def gpu_facts() -> tuple[str, str | None]:
    """(GPU name, compute capability) of the current CUDA device."""
    return cuda(why="reading the GPU name").gpu()


_LOGGER: tuple[object, object] | None = None   # (tensorrt module, its logger)
_LEVELS = {"INTERNAL_ERROR": logging.CRITICAL, "ERROR": logging.ERROR, "WARNING": logging.WARNING,
           "INFO": logging.INFO, "VERBOSE": logging.DEBUG}


def trt_logger(trt):
    """One TensorRT logger per process and module (TensorRT wants the same one for builder and runtime).

    An ``ILogger`` that sends TensorRT's messages to the ``logging`` tree: ``trt.Logger`` prints them on
    stdout, which carries results only (``--json``)."""
    global _LOGGER
    if _LOGGER is None or _LOGGER[0] is not trt:
        class LoggingLogger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)  # the pybind11 base must be initialised explicitly

            def log(self, severity, msg):
                log.log(_LEVELS.get(getattr(severity, "name", ""), logging.WARNING), "TensorRT: %s", msg)

        _LOGGER = (trt, LoggingLogger())
    return _LOGGER[1]


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
        cuda(self.device)  # selects the device; TensorRT deserializes onto the current one
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

    @cached_property
    def _cuda(self):
        return cuda(self.device)

    def _load(self):
        ctx = self.engine.create_execution_context()
        if ctx is None:
            raise ConversionError("TensorRT could not create an execution context (out of GPU memory?)")
        return ctx

    def _infer(self, feed):
        mem = self._cuda
        ctx = self.session
        ranges = self.profile_ranges()
        keep = []  # device buffers stay alive until the stream has finished with them
        for spec in self.inputs:
            arr = np.ascontiguousarray(feed[spec.name], dtype=spec.dtype)
            lo, _, hi = ranges[spec.name]
            if len(arr.shape) != len(lo) or any(s < a or s > b for s, a, b in zip(arr.shape, lo, hi)):
                raise UsageError(f"input {spec.name} shape {list(arr.shape)} is outside the engine's profile "
                                 f"{list(lo)} .. {list(hi)}",
                                 hint="Rebuild with a wider --shapes range, or feed shapes inside it.")
            buf = mem.to_device(arr)
            keep.append(buf)
            if not ctx.set_input_shape(spec.name, tuple(arr.shape)):
                raise ConversionError(f"TensorRT rejected input shape {list(arr.shape)} for {spec.name}")
            if not ctx.set_tensor_address(spec.name, mem.address(buf)):
                raise ConversionError(f"TensorRT rejected the device address of input {spec.name}")
        outs = []
        for spec in self.outputs:
            shape = tuple(ctx.get_tensor_shape(spec.name))
            if any(d < 0 for d in shape):
                raise ConversionError(f"TensorRT could not infer the shape of output {spec.name} ({list(shape)})")
            buf = mem.empty(shape, spec.dtype)
            if not ctx.set_tensor_address(spec.name, mem.address(buf)):
                raise ConversionError(f"TensorRT rejected the device address of output {spec.name}")
            outs.append(buf)
        if not ctx.execute_async_v3(mem.stream()):
            raise ConversionError("TensorRT execution failed (execute_async_v3 returned False)",
                                  hint="Run with --debug for TensorRT's log.")
        mem.synchronize()
        return [mem.to_host(o) for o in outs]


__all__ = ["TensorRTRunner", "EngineFromPath", "TorchCuda", "cuda", "require_tensorrt", "tensorrt_missing",
           "trt_major", "gpu_facts", "cuda_torch", "trt_logger", "TRT_INSTALL_HINT"]
