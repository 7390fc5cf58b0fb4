"""One adapter per runtime, all with ``infer(feed) -> dict[str, np.ndarray]``."""
from __future__ import annotations

from ..errors import UnsupportedModelError
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
        from ..converters.onnx_trt import TensorRTRunner

        return TensorRTRunner(artifact, **kwargs)
    raise UnsupportedModelError(f"no runner for format {fmt.value}")


def load(path, **kwargs) -> Runner:
    """The right runner for any supported artifact or Paddle model folder."""
    return runner_for(detect(path), **kwargs)


__all__ = ["Runner", "runner_for", "load"]
