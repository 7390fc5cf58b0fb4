"""Issue 16 (1): the CPU deployment forms of PP-OCRv4 det / rec / cls against ONNX Runtime, one isolated
``ocrconvert bench`` run per model and shape, written to docs/cpu-runs/cpu-16-<model>.json with the date, machine,
versions and the exact command (scripts/make_benchmarks_md.py turns them into docs/benchmarks.md).

    python scripts/bench_cpu_deploy.py WORK [--models cls,rec,det640,det960] [--runs 20] [--threads 1]

WORK holds, per model ``m`` in cls / rec / det: ``v4m-native`` (``ocrconvert paddle2torch MODEL -o WORK/v4m-native``)
and ``v4m-cpu.pt2`` (``ocrconvert aot-build WORK/v4m-native -o WORK/v4m-cpu.pt2 --device cpu``). Each run benches, in
this order (the first is the ratios' baseline): ONNX Runtime on the zoo's ONNX twin, Paddle Inference (reference
settings, then oneDNN), the native folder (eager trainable and fused) and the AOT package.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = {  # key: (model, shape)
    "cls": ("cls", "8x3x48x192"),
    "rec": ("rec", "8x3x48x320"),
    "det640": ("det", "1x3x640x640"),
    "det960": ("det", "1x3x960x960"),
}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "onnxruntime", "paddlepaddle", "ocrconvert"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--models", default=",".join(RUNS))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "cpu-runs")
    ap.add_argument("--extra", action="append", default=[], metavar="KEY=PATH",
                    help="another artifact benched in KEY's run (e.g. cls=WORK/v4cls-cpu-cl.pt2, a channels_last build)")
    args = ap.parse_args(argv)
    from ocrconvert.zoo import pull

    for key in args.models.split(","):
        model, shape = RUNS[key]
        work = args.work.resolve()
        onnx = pull(f"ppocrv4-{model}-onnx") / "model.onnx"
        cmd = [sys.executable, "-m", "ocrconvert", "bench", str(onnx), str(pull(f"ppocrv4-{model}")),
               str(work / f"v4{model}-native"), str(work / f"v4{model}-cpu.pt2"),
               *[e.split("=", 1)[1] for e in args.extra if e.split("=", 1)[0] == key], "--shape", shape,
               "--threads", str(args.threads), "--runs", str(args.runs), "--rounds", str(args.rounds),
               "--no-compile", "--json"]
        shown = "ocrconvert " + " ".join(shlex.quote(c) for c in cmd[3:])
        print(f"[{key}] {shown}", file=sys.stderr, flush=True)
        load = os.getloadavg()
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        try:
            doc = json.loads(proc.stdout)
        except ValueError:
            print(f"[{key}] bench printed no JSON (exit {proc.returncode}): {proc.stderr[-500:]}", file=sys.stderr)
            return 1
        doc.update({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0)),
                    "machine": f"{_cpu_model()}, {os.cpu_count()} CPUs, load average {load[0]:.1f} at start",
                    "versions": _versions(), "command": shown, "wall_s": round(time.time() - t0, 1)})
        args.out.mkdir(parents=True, exist_ok=True)
        dest = args.out / f"cpu-16-v4{key}.json"
        dest.write_text(json.dumps(doc, indent=1) + "\n")
        base = doc.get("baseline")
        for r in doc["results"]:
            print(f"[{key}] {r['variant']:55s} {r['median_ms'] or float('nan'):10.2f} ms  x{r['ratio'] or float('nan'):.2f}"
                  f"  {r['error'][:80]}", file=sys.stderr)
        print(f"[{key}] baseline {base}; wrote {dest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
