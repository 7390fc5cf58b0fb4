"""Image file -> encoder embeddings through an exported encoder, with the preprocessing it records."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import UsageError


def embed_image(encoder: str | Path, image: str | Path, output: str | Path) -> dict:
    """Run the preprocessing the encoder records in its ONNX metadata (``vlm-export`` writes it), then the model."""
    from ..formats import detect
    from ..runners import runner_for
    from . import family

    encoder, image, output = Path(encoder), Path(image), Path(output)
    if not image.is_file():
        raise UsageError(f"{image} is not a file")
    if output.suffix != ".npy":
        raise UsageError("the output must end in .npy", hint="e.g. -o embeds.npy")
    art = detect(encoder)
    if art.format.value != "onnx":
        raise UsageError(f"{encoder} is not an ONNX encoder", hint="Pass the .onnx written by `ocrconvert vlm-export`.")
    runner = runner_for(art)
    meta = runner.metadata()
    if meta.get("ocrconvert.family") != "vlm-vision":
        raise UsageError(f"{encoder} was not written by `ocrconvert vlm-export` (no vlm-vision metadata)",
                         hint="Export the encoder first: ocrconvert vlm-export hunyuan-ocr -o encoder.onnx")
    prep = json.loads(meta["ocrconvert.preprocess"])
    x = family(meta.get("ocrconvert.vlm", "hunyuan-ocr")).preprocess(
        image, min_pixels=prep["min_pixels"], max_pixels=prep["max_pixels"])
    emb = runner.infer({"pixel_values": x})["image_embeds"][0]
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.partial.npy")
    np.save(tmp, emb)
    os.replace(tmp, output)
    return {"output": str(output), "shape": list(emb.shape), "pixel_values": list(x.shape)}
