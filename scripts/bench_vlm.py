#!/usr/bin/env python
"""Full-depth HunyuanOCR vision encoder on CPU: export (27 layers, seeded random weights), verify at
three sizes against the transformers tower, peak RSS of a 2048x2048 run in ONNX Runtime, and ONNX
Runtime vs torch eager latency at 1024x768, side by side in one run.

usage: python scripts/bench_vlm.py OUT_DIR [--layers N] [--skip-memory] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def timed(fn, runs: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    from ocrconvert.pipeline import convert
    from ocrconvert.vlm import tower_source
    from ocrconvert.vlm.export import seeded_image
    from ocrconvert.vlm.hunyuan import HunyuanVisionEncoder, build_tower, reference_forward
    from ocrconvert.vlm.memory import peak_rss

    say = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", flush=True)  # noqa: E731
    res: dict = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "onnxruntime": ort.__version__,
                 "threads": torch.get_num_threads(), "command": " ".join(sys.argv)}
    path = a.out / "encoder.onnx"
    result = convert(tower_source("hunyuan-ocr"), path, target="onnx", force=True, progress=say,
                     options={"layers": a.layers} if a.layers else {})
    (hop,) = result.manifest["hops"]
    res["export"] = {"passed": result.passed, "timings": {"build_and_export_s": hop["seconds"],
                                                          "verify_s": round(result.report.seconds, 2)},
                     "summary": result.report.summary_line(),
                     "max_abs": {c.label: {o.name: o.max_abs for o in c.outputs} for c in result.report.cases},
                     "parameters": result.manifest["tower"]["parameters"],
                     "layers": result.manifest["tower"]["vision_config"]["num_hidden_layers"],
                     "onnx_bytes": result.artifact.path.stat().st_size}
    say(res["export"]["summary"])
    # latency at 1024x768: ONNX Runtime vs the transformers tower (torch eager, sdpa) vs our wrapper (eager)
    x = seeded_image(1024, 768, 0)
    sess = ort.InferenceSession(str(result.artifact.path), providers=["CPUExecutionProvider"])
    tower = build_tower(layers=a.layers, seed=0)
    enc = HunyuanVisionEncoder(tower, attention="sdpa").eval()
    xt = torch.from_numpy(x)
    lat = {"onnxruntime": timed(lambda: sess.run(None, {"pixel_values": x}), a.runs),
           "transformers_eager": timed(lambda: reference_forward(tower, xt), a.runs)}
    with torch.no_grad():
        lat["wrapper_eager_sdpa"] = timed(lambda: enc(xt), a.runs)
    res["latency_1024x768_s"] = {k: round(v, 3) for k, v in lat.items()}
    res["ratio_vs_transformers"] = {k: round(v / lat["transformers_eager"], 3) for k, v in lat.items()}
    say(f"latency {res['latency_1024x768_s']}")
    del sess
    if not a.skip_memory:
        say("2048x2048 in ONNX Runtime, child process (peak RSS)")
        res["memory_2048"] = peak_rss(result.artifact.path, 2048, 2048)
        n = 16384
        res["memory_2048"]["unblocked_scores_gib"] = round(16 * n * n * 4 / 1024 ** 3, 1)
        say(f"peak RSS {res['memory_2048']['peak_rss_gib']} GiB in {res['memory_2048']['run_s']} s")
    text = json.dumps(res, indent=2, default=float)
    print(text)
    if a.json:
        a.json.write_text(text)
    return 0 if result.passed else 6


if __name__ == "__main__":
    sys.exit(main())
