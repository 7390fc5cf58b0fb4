"""The VLM tower exports as every caller reaches them: a tower source, then the spine."""
from __future__ import annotations

from pathlib import Path


def export(out, model: str = "hunyuan-ocr", checkpoint=None, *, verify: bool = True, force: bool = False, **options):
    """``pipeline.convert`` of the ``model`` tower to ``out`` (.onnx: vlm-onnx, .pt2: vlm-aot)."""
    from ocrconvert.pipeline import convert
    from ocrconvert.vlm import tower_source

    target = "torch-aot" if Path(out).suffix == ".pt2" else "onnx"
    return convert(tower_source(model, checkpoint), out, target=target, options=options, verify=verify, force=force)
