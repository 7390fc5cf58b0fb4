"""ONNX -> native PyTorch (transformers PP-OCRv6 / PP-LCNet classes), when the graph is a known architecture.

The architecture is recognised from the graph's layers and weight shapes (``native.onnx_layers`` + the
registry's ``parse_onnx`` records), never from file names. ``check`` reports an unrecognised graph so the
planner falls back to the graph route (onnx2torch). The result is verified against the ONNX original.
"""
from __future__ import annotations

import json
from pathlib import Path

from .._compat import version_of
from ..formats import WEIGHTS_FILE, Artifact, Format
from ..registry import Converter, HopResult, register_converter
from .paddle_torch import NativeOptions


@register_converter("onnx", "torch", "native", options=NativeOptions, requires=("torch", "transformers"),
                    description="ONNX graph -> transformers PP-OCRv6 / PP-LCNet model folder (+ fused inference form)")
class OnnxToNativeTorch(Converter):
    tool = "ocrconvert.native"

    def check(self, source: Artifact, options: NativeOptions) -> list[str]:
        from ..native import recognise

        try:
            found = recognise(source)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:  # an odd graph is no match
            return [f"architecture not recognised for the native route ({type(exc).__name__})"]
        return [] if found is not None else ["architecture not recognised for the native route"]

    def convert(self, source: Artifact, dest: Path, options: NativeOptions) -> HopResult:
        from ..native import convert_to_transformers

        dest.mkdir(parents=True, exist_ok=True)
        report = convert_to_transformers(source, dest, allow_partial=options.allow_partial)
        art = Artifact(dest, Format.TORCH_NATIVE, {"config_json": dest / "config.json", "weights": dest / WEIGHTS_FILE})
        model_type = json.loads((dest / "config.json").read_text(encoding="utf-8")).get("model_type")
        return HopResult(art, facts={"precision": "fp32", "model_type": model_type, "mapping_report": report.to_dict(),
                                     "name_map": self._name_map(source, art)})

    @staticmethod
    def _name_map(source: Artifact, art: Artifact) -> dict:
        """ONNX tensor -> module path of the fused form, matched by value on one input (folding BatchNorm leaves
        no shared names)."""
        import logging

        from ..runners.onnxruntime import OnnxRuntimeRunner
        from ..runners.torch import TorchNativeRunner
        from ..verification.names import record_map

        try:
            return record_map(OnnxRuntimeRunner(source), TorchNativeRunner(art), "onnx", "torch-native",
                              source_keys="onnx tensor", target_keys="native fused module", by_name=False)
        except Exception as exc:  # noqa: BLE001 - a missing map costs diff its names, never the conversion
            logging.getLogger(__name__).warning("no name map recorded: %s: %s", type(exc).__name__, exc)
            return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}

    def versions(self) -> dict:
        return {"transformers": version_of("transformers"), "torch": version_of("torch"), "onnx": version_of("onnx")}
