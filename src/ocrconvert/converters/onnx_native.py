"""ONNX -> native PyTorch (transformers PP-OCRv6 / PP-LCNet classes), when the graph is a known architecture.

The architecture is recognised from the graph's layers and weight shapes (``native.onnx_layers`` + the
registry's ``parse_onnx`` records), never from file names. ``check`` reports an unrecognised graph so the
planner falls back to the graph route (onnx2torch). The result is verified against the ONNX original.
"""
from __future__ import annotations

from .._compat import version_of
from ..formats import Artifact
from ..registry import register_converter
from .paddle_torch import NativeConverter, NativeOptions


@register_converter("onnx", "torch", "native", options=NativeOptions, requires=("torch", "transformers"),
                    description="ONNX graph -> transformers PP-OCRv6 / PP-LCNet model folder (+ fused inference form)")
class OnnxToNativeTorch(NativeConverter):
    source_kind, source_keys = "onnx", "onnx tensor"

    def check(self, source: Artifact, options: NativeOptions) -> list[str]:
        from ..native import recognise

        try:
            found = recognise(source)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:  # an odd graph is no match
            return [f"architecture not recognised for the native route ({type(exc).__name__})"]
        return [] if found is not None else ["architecture not recognised for the native route"]

    def source_runner(self, source: Artifact):
        from ..runners.onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(source)

    def versions(self) -> dict:
        return {"transformers": version_of("transformers"), "torch": version_of("torch"), "onnx": version_of("onnx")}
