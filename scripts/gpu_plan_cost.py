"""What the native fp16 det plan costs on a GPU (issue 14, item 4): the fused native model in fp32, all-fp16, fp16
with the shipped plan (FusedDet.FP32_PARTS: stem + stages 1-3 + the last conv) and fp16 with the stem alone in fp32,
side by side in one process on one GPU: fp32 FLOP share of each plan (conv FLOPs from forward hooks), eager CUDA
latency (CUDA events, median of N after warm-up) and det-map IoU@0.3 against the fp32 model on rendered pages.

    python scripts/gpu_plan_cost.py NATIVE_DIR [--runs 200] [--side 960] [--batch 1]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

import numpy as np
import torch
import torch.nn as nn


def conv_flops(module, x) -> dict[str, float]:
    flops, hooks = {}, []
    for name, m in module.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            def hook(mod, inp, out, name=name):
                k = float(np.prod(mod.weight.shape[1:]))
                n = inp[0].numel() if isinstance(mod, nn.ConvTranspose2d) else out.numel()
                flops[name] = flops.get(name, 0.0) + 2.0 * n * k
            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        module(x)
    for h in hooks:
        h.remove()
    return flops


def share(flops: dict[str, float], keep) -> float:
    kept = sum(v for k, v in flops.items() if any(k == p or k.startswith(p + ".") for p in keep))
    return kept / sum(flops.values())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("native")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--side", type=int, default=960)
    ap.add_argument("--batch", type=int, default=1, help="timed batch (batch 1 eager is launch-bound on a big GPU)")
    args = ap.parse_args(argv)
    from ocrconvert.native import load_native
    from ocrconvert.native.fused import half_precision, input_dtype
    from ocrconvert.ocr.pages import render_pages

    torch.backends.cudnn.benchmark = True
    dev = "cuda"
    base = load_native(args.native, fused=True).eval()
    shipped = tuple(base.FP32_PARTS)
    variants = {"fp32": None, "fp16 all": (), "fp16 shipped plan": shipped, "fp16 stem only": ("backbone.stem",)}
    x = torch.randn(args.batch, 3, args.side, args.side)
    flops = conv_flops(base, x)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    pages = []
    for p in render_pages(6, seed=500):
        img = np.asarray(p.image.convert("RGB").resize((960, 704)), np.float32)[:, :, ::-1] / 255.0
        pages.append(torch.from_numpy(((img - mean) / std).transpose(2, 0, 1).astype(np.float32))[None])
    out, ref = {}, None
    for name, keep in variants.items():
        m = load_native(args.native, fused=True).eval()
        if keep is not None:
            m.FP32_PARTS = keep
            half_precision(m)
        m = m.to(dev)
        dt = input_dtype(m)
        with torch.no_grad():
            maps = [m(p.to(dev).to(dt)).float().cpu() for p in pages]
            xx = x.to(dev).to(dt)
            for _ in range(30):
                m(xx)
            torch.cuda.synchronize()
            times = []
            for _ in range(args.runs):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                m(xx)
                b.record()
                torch.cuda.synchronize()
                times.append(a.elapsed_time(b))
        if ref is None:
            ref = maps
        ious = []
        for r, q in zip(ref, maps):
            ma, mb = r > 0.3, q > 0.3
            ious.append(float((ma & mb).sum() / max(1, (ma | mb).sum())))
        out[name] = {"fp32_parts": list(keep) if keep is not None else "all",
                     "fp32_flop_share": 1.0 if keep is None else round(share(flops, keep), 4),
                     "median_ms": round(statistics.median(times), 4),
                     "p10_ms": round(float(np.percentile(times, 10)), 4), "p90_ms": round(float(np.percentile(times, 90)), 4),
                     "iou_vs_fp32_min": round(min(ious), 5)}
        del m
        torch.cuda.empty_cache()
    all16 = out["fp16 all"]["median_ms"]
    for v in out.values():
        v["latency_vs_all_fp16"] = round(v["median_ms"] / all16, 3)
    print(json.dumps({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "shape": list(x.shape),
                      "runs": args.runs, "variants": out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
