"""Image file -> encoder embeddings through an exported encoder, with the preprocessing it records."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import UsageError


def read_preprocess(encoder: Path) -> tuple[str, dict]:
    """The VLM and preprocessing recorded in the encoder's ONNX metadata (``vlm-export`` writes them)."""
    from ..formats import detect
    from ..onnx_io import load_onnx, metadata

    art = detect(encoder)
    if art.format.value != "onnx":
        raise UsageError(f"{encoder} is not an ONNX encoder", hint="Pass the .onnx written by `ocrconvert vlm-export`.")
    meta = metadata(load_onnx(art.files["model"], load_weights=False))
    if meta.get("ocrconvert.family") != "vlm-vision":
        raise UsageError(f"{encoder} was not written by `ocrconvert vlm-export` (no vlm-vision metadata)",
                         hint="Export the encoder first: ocrconvert vlm-export hunyuan-ocr -o encoder.onnx")
    return meta.get("ocrconvert.vlm", "hunyuan-ocr"), json.loads(meta["ocrconvert.preprocess"])


def embed_image(encoder: str | Path, image: str | Path, output: str | Path) -> dict:
    import onnxruntime as ort

    from . import family

    encoder, image, output = Path(encoder), Path(image), Path(output)
    if not image.is_file():
        raise UsageError(f"{image} is not a file")
    if output.suffix != ".npy":
        raise UsageError("the output must end in .npy", hint="e.g. -o embeds.npy")
    model, prep = read_preprocess(encoder)
    x = family(model).preprocess(image, min_pixels=prep["min_pixels"], max_pixels=prep["max_pixels"])
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(encoder), opts, providers=["CPUExecutionProvider"])
    (emb,) = sess.run(["image_embeds"], {"pixel_values": x})
    emb = emb[0]
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.partial.npy")
    np.save(tmp, emb)
    os.replace(tmp, output)
    return {"output": str(output), "shape": list(emb.shape), "pixel_values": list(x.shape)}
