"""One adapter per runtime, all with ``infer(feed) -> dict[str, np.ndarray]``."""
from __future__ import annotations

from ..errors import ParityError, UnsupportedModelError
from ..formats import Artifact, Format, detect
from .base import Runner


def runner_for(artifact: Artifact, **kwargs) -> Runner:
    fmt = artifact.format
    if fmt in (Format.PADDLE_LEGACY, Format.PADDLE_PIR):
        from .paddle import PaddleRunner

        return PaddleRunner(artifact, **kwargs)
    if fmt is Format.ONNX:
        from .onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(artifact, **kwargs)
    if fmt is Format.TORCH_GRAPH:
        from .torch import TorchGraphRunner

        return TorchGraphRunner(artifact, **kwargs)
    if fmt is Format.TORCH_NATIVE:
        from .torch import TorchNativeRunner

        return TorchNativeRunner(artifact, **kwargs)
    if fmt is Format.TORCH_AOT:
        from .aot import AotRunner

        return AotRunner(artifact, **kwargs)
    if fmt is Format.REFERENCE:
        from .reference import ReferenceRunner

        return ReferenceRunner(artifact)
    if fmt is Format.TENSORRT:
        from .tensorrt import TensorRTRunner

        return TensorRTRunner(artifact, **kwargs)
    raise UnsupportedModelError(f"no runner for format {fmt.value}")


def load(path, *, allow_failed: bool = False, form: str = "auto", **kwargs) -> Runner:
    """The right runner for any supported artifact or Paddle model folder.

    An artifact whose manifest records a failed verification is refused unless ``allow_failed``:
    it is kept only so the failure can be examined. For a native PyTorch folder, ``form`` picks what runs:
    ``auto`` serves a verified CPU AOT package built from it (beside it) when that measured faster than eager fused
    at build, else the eager fused model; ``native`` / ``aot`` force one. ``runner.choice`` says which and why
    (``runners/deploy.py``)."""
    art = detect(path)
    if not allow_failed:
        from ..manifest import read_manifest

        man = read_manifest(art.path) or {}
        if man.get("status") == "failed-verification" or (man.get("verification") or {}).get("passed") is False:
            raise ParityError(f"{art.path} failed verification against its source; it is not loaded",
                              hint="Inspect it with ocrconvert.load(path, allow_failed=True), or convert again.")
    if art.format is Format.TORCH_NATIVE:
        from .deploy import load_native_or_package

        return load_native_or_package(art, form, **kwargs)
    return runner_for(art, **kwargs)


__all__ = ["Runner", "runner_for", "load"]
