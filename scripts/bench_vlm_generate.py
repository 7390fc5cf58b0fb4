#!/usr/bin/env python
"""HunyuanOCR end to end outside PyTorch at full (or reduced) depth: the whole model exported as ONNX (encoder,
token embedding, KV-cache decoder), greedy generation in ONNX Runtime against transformers' own `generate` on
the same weights (seeded random unless --checkpoint), CPU latency per page and peak resident memory of each side.

usage: python scripts/bench_vlm_generate.py OUT_DIR [--layers N] [--checkpoint DIR] [--precisions fp32,fp16]
                                            [--size 512x512] [--new-tokens 64]
The full-depth fp32 decoder (~2.1 GB) exceeds one ONNX file: here it is saved with external data
(decoder.onnx.data); the CLI (`vlm-export --parts all`) refuses it and takes --fp16. Results: OUT_DIR/results.json.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ort_peak_rss(folder: Path, x, prompt, new_tokens: int, out: Path) -> float:
    """Peak RSS (VmHWM) of a fresh process that loads the folder and generates: ONNX Runtime alone, no torch."""
    import os
    import subprocess

    import numpy as np

    np.save(out / "x.npy", x)
    code = ("import numpy as np, sys; from ocrconvert.vlm.generate import VlmGenerator\n"
            f"g = VlmGenerator({str(folder)!r}); g.generate(prompt_ids={prompt!r}, pixel_values=np.load({str(out / 'x.npy')!r}),"
            f" max_new_tokens={new_tokens})\n"
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=3600)
    return round(int(proc.stdout.strip().splitlines()[-1]) / 1024, 1) if proc.returncode == 0 else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--layers", type=int, default=None, help="decoder and encoder blocks (default: all)")
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--precisions", default="fp16,fp32")
    ap.add_argument("--size", default="512x512")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--results", type=Path, default=None, help="where results.json goes (default OUT_DIR)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)

    import torch

    from ocrconvert.vlm import bundle, export as vlm_export
    from ocrconvert.vlm.hunyuan import HunyuanVisionEncoder
    from ocrconvert.vlm.hunyuan_lm import build_model

    res: dict = {"layers": a.layers, "size": a.size, "new_tokens": a.new_tokens, "threads": torch.get_num_threads(),
                 "weights": str(a.checkpoint) if a.checkpoint else "seeded random (seed 0)"}
    save = lambda: (a.results or a.out / "results.json").write_text(json.dumps(res, indent=2))  # noqa: E731
    h, w = vlm_export.parse_size(a.size)
    t = time.perf_counter()
    model = build_model(a.checkpoint, layers=a.layers, vision_layers=a.layers)
    res["build_s"] = round(time.perf_counter() - t, 1)
    res["parameters"] = int(sum(p.numel() for p in model.parameters()))

    # the encoder, once (fp32; its own verification is scripts/bench_vlm.py's)
    enc_dir = a.out / "encoder"
    enc_dir.mkdir(exist_ok=True)
    t = time.perf_counter()
    encoder = HunyuanVisionEncoder(model.model.vision_tower, attention="blocked").eval()
    import onnx

    from ocrconvert.vlm import attention
    with torch.no_grad():
        prog = torch.onnx.export(encoder, (torch.from_numpy(vlm_export.seeded_image(h, w, 0)),), dynamo=True,
                                 input_names=["pixel_values"], output_names=list(vlm_export.OUTPUTS),
                                 dynamic_shapes=(vlm_export._dynamic_sides(32),), verbose=False, opset_version=18,
                                 custom_translation_table=attention.onnx_translation_table())
    proto = prog.model_proto
    attention.expand_blocked_attention(proto)
    onnx.save(proto, str(enc_dir / "encoder.onnx"))
    res["encoder_export_s"] = round(time.perf_counter() - t, 1)
    save()

    x = vlm_export.seeded_image(h, w, 0)
    # transformers eager fp32: latency of the same greedy run (the reference the parity check uses)
    from ocrconvert.vlm.generate import expand_prompt, VlmGenerator
    from ocrconvert.vlm.hunyuan_lm import reference_generate

    for precision in a.precisions.split(","):
        folder = a.out / precision
        folder.mkdir(exist_ok=True)
        (folder / "encoder.onnx").unlink(missing_ok=True)
        (folder / "encoder.onnx").symlink_to(enc_dir / "encoder.onnx")
        t = time.perf_counter()
        big = precision == "fp32" and a.layers is None
        facts = bundle.export_language_parts(model, folder, precision=precision, opset=18, encoder_manifest=None,
                                             external_data=big)
        res[f"{precision}_export_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        rep = bundle.verify_generation(folder, model, sizes=[(h, w)], precision=precision, new_tokens=a.new_tokens,
                                       say=lambda m: print(m, file=sys.stderr))
        case = rep.cases[0]
        res[precision] = {"verdict": rep.verdict, "facts": facts, "token_agreement": case.task.value,
                          "first_divergence": case.task.detail["first_divergence"],
                          "logit_cosine": case.task.detail["logit_cosine"],
                          "prefill_max_abs": {o.name: o.max_abs for o in case.outputs},
                          "distinct_tokens": case.task.detail["distinct_tokens"],
                          "verify_s": round(time.perf_counter() - t, 1)}
        # latency: ORT (second run: sessions warm) and transformers eager fp32, same image and prompt
        gen = VlmGenerator(folder)
        prompt = bundle.seeded_prompt(gen.info["tokens"], 0)
        gen.generate(prompt_ids=prompt, pixel_values=x, max_new_tokens=4)
        g = gen.generate(prompt_ids=prompt, pixel_values=x, max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens)
        res[precision]["ort_seconds"] = g.seconds
        res[precision]["prompt_length"] = g.prompt_length
        res[precision]["ort_peak_rss_mb"] = ort_peak_rss(folder, x, prompt, a.new_tokens, a.out)
        save()
    ids, mm = expand_prompt(prompt, g.image_tokens, gen.info["tokens"])
    t = time.perf_counter()
    reference_generate(model, x, ids, mm, max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens)
    res["transformers_eager_fp32_s"] = round(time.perf_counter() - t, 2)
    res["peak_rss_mb_torch_process"] = round(rss_mb())   # the transformers model + reference runs (and exports)
    save()
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
