"""Lazy imports of the heavy optional stacks, each failing with the pip extra to install."""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

# module -> (pip package, extra)
_EXTRAS = {
    "paddle": ("paddlepaddle", "paddle"),
    "paddle2onnx": ("paddle2onnx", "paddle"),
    "torch": ("torch", "torch"),
    "onnx2torch": ("onnx2torch", "torch"),
    "transformers": ("transformers", "native"),
    "onnxscript": ("onnxscript", "native"),
    "tensorrt": ("tensorrt", None),
    "tritonclient": ("tritonclient[http,grpc]", "triton"),
    "onnxconverter_common": ("onnxconverter-common", "trt-fp16"),
    "ray": ("ray", "ray"),
}


def require(module: str, why: str = "") -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package, extra = _EXTRAS.get(module.split(".")[0], (module, None))
        err = MissingDependencyError(package, extra, why=why or str(exc))
        raise err from exc


def available(module: str) -> bool:
    """Installed? (a spec lookup: cheap, imports nothing heavy)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def version_of(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def fp32_on_cuda(torch=None) -> None:
    """fp32 on a GPU means fp32: TF32 convs/matmuls (the CUDA default) cost ~1e-2 of parity. The one place
    that switches TF32 off — runners, verification references and benchmarks all call it."""
    torch = torch or importlib.import_module("torch")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def peak_rss_mb() -> float | None:
    """This process's own peak resident memory (``VmHWM``), in MiB.

    Not ``ru_maxrss`` from a parent's ``wait4``: on Linux, exec folds the old (vforked: the parent's) address
    space's high-water mark into the child's, so a child started by a large parent reports the parent's size."""
    from pathlib import Path

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # not a POSIX system
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
