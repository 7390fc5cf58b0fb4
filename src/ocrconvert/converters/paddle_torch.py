"""Paddle inference -> native PyTorch (transformers PP-OCR classes), when the architecture is known.

The graph route (paddle -> onnx -> torch) is planned by the registry; this module adds the direct
one. ``check`` reports an unrecognised architecture so the planner falls back to the graph route.
"""
from __future__ import annotations

from pathlib import Path

from .._compat import version_of
from ..formats import WEIGHTS_FILE, Artifact, Format
from ..registry import register_converter


@register_converter("paddle", "torch", "native", requires=("torch", "transformers", "paddle"),
                    description="Paddle program -> transformers PP-OCR model folder (+ fused inference form)")
class PaddleToNativeTorch:
    tool = "ocrconvert.native"

    def check(self, source: Artifact, options: dict) -> list[str]:
        from ..native import recognise

        spec = recognise(source.path)
        if spec is None:
            return ["architecture not recognised for the native route"]
        return []

    def convert(self, source: Artifact, dest: Path, options: dict) -> Artifact:
        from ..native import convert_to_transformers

        dest.mkdir(parents=True, exist_ok=True)
        report = convert_to_transformers(source.path, dest, allow_partial=bool(options.get("allow_partial")))
        art = Artifact(dest, Format.TORCH_NATIVE, {"config_json": dest / "config.json", "weights": dest / WEIGHTS_FILE})
        art.meta["mapping_report"] = report.to_dict() if hasattr(report, "to_dict") else dict(getattr(report, "__dict__", {}))
        return art

    def versions(self) -> dict:
        return {"transformers": version_of("transformers"), "torch": version_of("torch")}
