#!/usr/bin/env python
"""Benchmark the whole-zoo batch: cold (empty output folder) then warm (``--resume``, all cached).

Models must already be in $OCRCONVERT_CACHE (``ocrconvert zoo pull all``): download time is not
measured. Prints a Markdown table (and per-job seconds / max abs) for docs/benchmarks.md::

    python scripts/bench_zoo.py [--config configs/zoo/ppocr.yaml] [-j 2] [--output /tmp/bench-zoo]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

COLD_TARGET_S, WARM_TARGET_S = 120.0, 5.0


def run(config: Path, jobs: int, resume: bool) -> tuple[float, dict, int]:
    code = "from ocrconvert.cli.app import main; main()"
    cmd = [sys.executable, "-c", code, "batch", str(config), "-j", str(jobs), "--json"]
    if resume:
        cmd.append("--resume")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"batch failed to report (exit {proc.returncode})")
    return wall, report, proc.returncode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=Path("configs/zoo/ppocr.yaml"))
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--output", type=Path, default=None, help="output root (default: a fresh temporary folder)")
    args = ap.parse_args(argv)

    out = args.output or Path(tempfile.mkdtemp(prefix="bench-zoo-"))
    shutil.rmtree(out, ignore_errors=True)  # cold: nothing converted yet
    doc = yaml.safe_load(args.config.read_text())
    doc["output"] = str(out)
    cfg = out.parent / f".{out.name}.bench.yaml"
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        cold_s, cold, cold_rc = run(cfg, args.jobs, resume=False)
        warm_s, warm, warm_rc = run(cfg, args.jobs, resume=True)
    finally:
        cfg.unlink(missing_ok=True)

    def counts(r):
        return ", ".join(f"{v} {k}" for k, v in sorted(r["counts"].items()))

    def verdict(s, target):
        return "met" if s <= target else f"missed by {s - target:.1f} s"

    date = time.strftime("%Y-%m-%d")
    print(f"Measured {date} on {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"python {platform.python_version()}; models already in the cache (download not timed).\n")
    print(f"Command: `python scripts/bench_zoo.py --config {args.config} -j {args.jobs}` "
          f"(= `ocrconvert batch {args.config} -j {args.jobs}` into an empty folder, then again with `--resume`)\n")
    print("| run | wall s | target | verdict | exit | jobs |")
    print("|---|---:|---:|---|---:|---|")
    print(f"| cold | {cold_s:.1f} | ≤ {COLD_TARGET_S:.0f} | {verdict(cold_s, COLD_TARGET_S)} | {cold_rc} | {counts(cold)} |")
    print(f"| warm (`--resume`) | {warm_s:.2f} | ≤ {WARM_TARGET_S:.0f} | {verdict(warm_s, WARM_TARGET_S)} | {warm_rc} | {counts(warm)} |")
    print("\n| job | status | exit | cold s | max abs vs original |")
    print("|---|---|---:|---:|---:|")
    for j in cold["jobs"]:
        mabs = f"{j['worst_max_abs']:.3g}" if isinstance(j.get("worst_max_abs"), float) else "-"
        status = j["status"] + (f" ({(j.get('error') or {}).get('message', '')[:90]})" if j["status"] != "passed" else "")
        print(f"| {j['id']} | {status} | {j['exit_code']} | {j['seconds']:.1f} | {mabs} |")
    print(f"\nSum of job seconds (cold): {sum(j['seconds'] for j in cold['jobs']):.0f} s over {args.jobs} parallel jobs.")
    return 0 if cold_rc == 0 and warm_rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
