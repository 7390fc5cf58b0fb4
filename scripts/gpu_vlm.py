#!/usr/bin/env python
"""GPU: HunyuanOCR vision encoder (full depth, seeded random weights) through `aot-build`-style
AOTInductor packages at fp16/bf16, verified against the fp32 transformers tower on the same GPU
(TF32 off) at 1024x768 and 2048x2048, and timed there beside torch eager, in one run.

usage: python scripts/gpu_vlm.py OUT_DIR [--layers N] [--precisions fp16,bf16] [--device cuda] [--runs 20]
On the lent H100 image, AOTInductor packages need LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libstdc++.so.6.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

SIZES = ((1024, 768), (2048, 2048))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--precisions", default="fp16,bf16")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--deadline", type=float, default=540, help="skip further builds after this many seconds")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    import torch

    import ocrconvert
    from ocrconvert.pipeline import convert
    from ocrconvert.vlm import tower_source
    from ocrconvert.vlm.export import at_precision, seeded_image
    from ocrconvert.vlm.hunyuan import HunyuanVisionEncoder, build_tower, reference_forward

    dev = a.device
    cuda = dev.startswith("cuda")
    say = lambda m: print(f"[{time.perf_counter() - started:6.1f}s] {m}", flush=True)  # noqa: E731
    res: dict = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "device": dev,
                 "gpu": torch.cuda.get_device_name() if cuda else None, "command": " ".join(sys.argv),
                 "builds": {}, "latency_ms": {}, "peak_mem_gib": {}}
    out_json = a.out / "gpu-vlm.json"

    def save():
        out_json.write_text(json.dumps(res, indent=2, default=float))

    def timed(fn):
        def sync():
            if cuda:
                torch.cuda.synchronize()
        for _ in range(3):
            fn()
        sync()
        ts = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            fn()
            sync()
            ts.append((time.perf_counter() - t0) * 1e3)
        return round(statistics.median(ts), 3)

    packages = {}
    for p in a.precisions.split(","):
        if time.perf_counter() - started > a.deadline:
            res["builds"][p] = {"skipped": "deadline"}
            continue
        path = a.out / f"encoder-{p}.pt2"
        say(f"building {path.name}")
        options = {"precision": p, "device": dev, "reference_device": dev, "export_size": "512x512",
                   "sizes": [f"{h}x{w}" for h, w in SIZES], **({"layers": a.layers} if a.layers else {})}
        r = convert(tower_source("hunyuan-ocr"), path, target="torch-aot", options=options, force=True, progress=say)
        timings = {"build_and_export_s": r.manifest["hops"][0]["seconds"], "verify_s": round(r.report.seconds, 2)}
        res["builds"][p] = {"passed": r.passed, "timings": timings, "summary": r.report.summary_line(),
                            "cases": {c.label: {o.name: {"max_abs": o.max_abs, "cosine": o.cosine, "passed": o.passed}
                                                for o in c.outputs} for c in r.report.cases}}
        if r.passed:   # a package that failed verification is not timed (ocrconvert.load refuses it)
            packages[p] = r.artifact.path
        say(r.report.summary_line())
        save()

    say("timing")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    tower = build_tower(layers=a.layers, seed=0).to(dev)
    variants = {"transformers eager fp32": lambda x: reference_forward(tower, x)}
    for p in packages:
        enc = at_precision(HunyuanVisionEncoder(tower, attention="sdpa").eval(), p, dev)
        variants[f"wrapper eager {p} (sdpa)"] = (lambda m: lambda x: m(x))(enc)
        pkg = ocrconvert.load(packages[p]).session   # the AOT runner: loads packages whose manifest vouches for them
        variants[f"AOTInductor {p}"] = (lambda k: lambda x: k(x))(pkg)
    for h, w in SIZES:
        key = f"{h}x{w}"
        x = torch.from_numpy(seeded_image(h, w, 0)).to(dev)
        res["latency_ms"][key], res["peak_mem_gib"][key] = {}, {}
        for name, fn in variants.items():
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            with torch.no_grad():
                res["latency_ms"][key][name] = timed(lambda: fn(x))
            if cuda:
                res["peak_mem_gib"][key][name] = round(torch.cuda.max_memory_allocated() / 1024 ** 3, 2)
            say(f"{key} {name}: {res['latency_ms'][key][name]} ms")
        base = res["latency_ms"][key]["transformers eager fp32"]
        res.setdefault("ratio_vs_eager_fp32", {})[key] = {k: round(v / base, 3) for k, v in res["latency_ms"][key].items()}
        save()
    print(json.dumps(res, indent=2, default=float))
    return 0 if all(b.get("passed", True) for b in res["builds"].values()) else 6


if __name__ == "__main__":
    sys.exit(main())
