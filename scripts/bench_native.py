#!/usr/bin/env python
"""CPU benchmark of the native PyTorch route vs ONNX Runtime.

For each model: native eager (unfused training form), native fused, native fused + torch.compile, and ONNX
Runtime on the Paddle model exported with paddle2onnx (or a given .onnx).  Prints a markdown table of
median latencies and ratios vs ONNX Runtime.

    python scripts/bench_native.py --det DIR --rec DIR --cls DIR [--runs 20] [--threads 2]
    python scripts/bench_native.py --rec DIR --rec-onnx model.onnx
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHAPES = {"det": (1, 3, 640, 640), "rec": (8, 3, 48, 320), "cls": (8, 3, 48, 192)}


def _time(fn, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1000.0


def paddle_to_onnx(model_dir: Path, out: Path) -> Path:
    prog = "inference.json" if (model_dir / "inference.json").is_file() else "inference.pdmodel"
    exe = Path(sys.executable).with_name("paddle2onnx")
    cmd = [str(exe) if exe.exists() else "paddle2onnx", "--model_dir", str(model_dir), "--model_filename", prog,
           "--params_filename", "inference.pdiparams", "--save_file", str(out), "--opset_version", "14"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for t in SHAPES:
        ap.add_argument(f"--{t}", type=Path, help=f"Paddle {t} inference model folder")
        ap.add_argument(f"--{t}-onnx", type=Path, help=f"pre-exported ONNX for {t} (skips paddle2onnx)")
        ap.add_argument(f"--{t}-native", type=Path, help=f"already converted native folder for {t}")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import onnxruntime as ort

    from ocrconvert.native import convert_to_transformers, load_native

    torch.set_num_threads(args.threads)
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_native_"))
    for task, shape in SHAPES.items():
        src = getattr(args, task)
        native = getattr(args, f"{task}_native")
        onnx_path = getattr(args, f"{task}_onnx")
        if src is None and native is None:
            continue
        if native is None:
            native = tmp / f"{task}_native"
            convert_to_transformers(src, native)
        if onnx_path is None and src is not None:
            onnx_path = paddle_to_onnx(src, tmp / f"{task}.onnx")
        x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
        res = {}
        eager = load_native(native, fused=False)
        fused = load_native(native, fused=True)
        with torch.inference_mode():
            ref = fused(x)
            res["native eager (unfused)"] = _time(lambda: eager(x), args.runs, args.warmup)
            res["native fused"] = _time(lambda: fused(x), args.runs, args.warmup)
        if not args.no_compile:
            comp = torch.compile(fused, fullgraph=True)
            with torch.inference_mode():
                comp(x)  # compile outside the timing
                res["native fused + torch.compile"] = _time(lambda: comp(x), args.runs, args.warmup)
        if onnx_path is not None:
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name
            xn = x.numpy()
            y = sess.run(None, {name: xn})[0]
            diff = float(np.abs(y - ref.numpy()).max())
            res["onnxruntime (paddle2onnx)"] = _time(lambda: sess.run(None, {name: xn}), args.runs, args.warmup)
        else:
            diff = float("nan")
        rows.append((task, shape, res, diff))

    ortkey = "onnxruntime (paddle2onnx)"
    print(f"\nCPU, {args.threads} threads, median of {args.runs} runs (ms); ratio = latency / ONNX Runtime latency\n")
    print("| model | input | variant | median ms | vs ORT |")
    print("|---|---|---|---:|---:|")
    for task, shape, res, diff in rows:
        base = res.get(ortkey)
        for k, v in res.items():
            ratio = f"{v / base:.2f}x" if base else "-"
            print(f"| {task} | {'x'.join(map(str, shape))} | {k} | {v:.1f} | {ratio} |")
        print(f"| {task} | | max abs fused vs ORT | {diff:.2e} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
