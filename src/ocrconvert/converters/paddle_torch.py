"""Paddle inference -> native PyTorch (transformers PP-OCR classes), when the architecture is known.

The graph route (paddle -> onnx -> torch) is planned by the registry; this module adds the direct
one. ``check`` reports an unrecognised architecture so the planner falls back to the graph route; a
program that cannot be read is an error (exit 3), as on every Paddle path.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .._compat import version_of
from ..formats import WEIGHTS_FILE, Artifact, Format
from ..options import RouteOptions
from ..registry import Converter, HopResult, register_converter


@dataclass(frozen=True)
class NativeOptions(RouteOptions):
    allow_partial: bool = False   # accept unmapped source parameters / unset target parameters


class NativeConverter(Converter):
    """What the native routes share once the source is recognised: fill the transformers classes, record the
    mapping report and the name map. A route adds ``check``, ``source_runner`` and its ``source_kind``/``_keys``."""
    tool = "ocrconvert.native"
    source_kind = source_keys = ""

    def source_runner(self, source: Artifact):
        raise NotImplementedError

    def convert(self, source: Artifact, dest: Path, options: NativeOptions) -> HopResult:
        from ..native import convert_to_transformers

        dest.mkdir(parents=True, exist_ok=True)
        report = convert_to_transformers(source, dest, allow_partial=options.allow_partial)
        art = Artifact(dest, Format.TORCH_NATIVE, {"config_json": dest / "config.json", "weights": dest / WEIGHTS_FILE})
        model_type = json.loads((dest / "config.json").read_text(encoding="utf-8")).get("model_type")
        return HopResult(art, facts={"precision": "fp32", "model_type": model_type, "mapping_report": report.to_dict(),
                                     "name_map": self._name_map(source, art)})

    def _name_map(self, source: Artifact, art: Artifact) -> dict:
        """Source tensor -> module path of the fused form (what ``load`` runs). Fusion merges a rep-layer's
        branches and folds BatchNorm, so no weight names a fused module's output: each is matched by value on
        one input, in execution order."""
        import logging

        from ..runners.torch import TorchNativeRunner
        from ..verification.names import record_map

        try:
            return record_map(self.source_runner(source), TorchNativeRunner(art), self.source_kind, "torch-native",
                              source_keys=self.source_keys, target_keys="native fused module", by_name=False)
        except Exception as exc:  # noqa: BLE001 - a missing map costs diff its names, never the conversion
            logging.getLogger(__name__).warning("no name map recorded: %s: %s", type(exc).__name__, exc)
            return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}


@register_converter("paddle", "torch", "native", options=NativeOptions, requires=("torch", "transformers", "paddle"),
                    description="Paddle program -> transformers PP-OCR model folder (+ fused inference form)")
class PaddleToNativeTorch(NativeConverter):
    source_kind, source_keys = "paddle", "paddle variable"

    def check(self, source: Artifact, options: NativeOptions) -> list[str]:
        from ..native import NativeMappingError, architectures
        from ..paddle_program import read_program

        try:
            architectures.recognise(read_program(source))
        except NativeMappingError:
            return ["architecture not recognised for the native route"]
        return []

    def source_runner(self, source: Artifact):
        from ..runners.paddle import PaddleRunner

        return PaddleRunner(source)

    def versions(self) -> dict:
        return {"transformers": version_of("transformers"), "torch": version_of("torch")}
