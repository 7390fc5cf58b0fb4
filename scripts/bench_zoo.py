#!/usr/bin/env python
"""Benchmark the whole-zoo batch: cold (empty output folder) then warm (``--resume``, all cached).

Models must already be in $OCRCONVERT_CACHE (``ocrconvert zoo pull all``): download time is not
measured. Prints a Markdown table (and per-job seconds / max abs) for docs/benchmarks.md::

    python scripts/bench_zoo.py [--config configs/zoo/ppocr.yaml] [-j 2] [--output /tmp/bench-zoo]

``--kill-after S`` measures recovery instead: the cold run is SIGKILLed S seconds in (the batch
process, as ``kill -9`` would; its workers follow it), then ``--resume`` finishes it, then a warm
``--resume``. It reports jobs that failed, were redone after finishing, and anything left behind
(staging, swap, lock, temporary and intent files)::

    python scripts/bench_zoo.py --kill-after 25 -j 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

COLD_TARGET_S, WARM_TARGET_S = 120.0, 2.0
CLI = "from ocrconvert.cli.app import main; main()"
LEFTOVER_SUFFIXES = (".partial", ".tmp", ".old", ".lock", ".job.json", ".result.json")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


CPU: dict[str, float] = {}  # run name -> CPU seconds of the batch and its workers (the load of others excluded)
LOAD: dict[str, float] = {}  # run name -> 1-minute load average at its end (other processes on the machine)


def run(config: Path, jobs: int, resume: bool, kill_after: float | None = None,
        name: str = "") -> tuple[float, dict | None, int]:
    cmd = [sys.executable, "-c", CLI, "batch", str(config), "-j", str(jobs), "--json"]
    if resume:
        cmd.append("--resume")
    c0 = _cpu()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        return time.perf_counter() - t0, None, proc.returncode
    wall = time.perf_counter() - t0
    CPU[name], LOAD[name] = _cpu() - c0, os.getloadavg()[0]
    try:
        report = json.loads(out)
    except ValueError:
        sys.stderr.write(out[-2000:] + err[-4000:])
        raise SystemExit(f"batch failed to report (exit {proc.returncode})")
    return wall, report, proc.returncode


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.startswith(".ocx-") or p.name.endswith(LEFTOVER_SUFFIXES))


def finished(out: Path) -> dict[str, int]:
    """Jobs recorded as finished (state records) and their artifacts' mtimes, to catch redone work."""
    state = out / ".ocrconvert-batch"
    done = {}
    for rec in state.glob("*.json"):
        if rec.name.endswith((".job.json", ".result.json")):
            continue
        art = json.loads(rec.read_text()).get("artifact")
        if art and Path(art).exists():
            p = Path(art)
            done[rec.stem] = max(q.stat().st_mtime_ns for q in ([p] if p.is_file() else p.rglob("*")))
    return done


def counts(r: dict) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(r["counts"].items()))


def verdict(s: float, target: float) -> str:
    return "met" if s <= target else f"missed by {s - target:.1f} s"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=Path("configs/zoo/ppocr.yaml"))
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--output", type=Path, default=None, help="output root (default: a fresh temporary folder)")
    ap.add_argument("--kill-after", type=float, default=None, metavar="S",
                    help="SIGKILL the cold run after S seconds, then resume it (recovery benchmark)")
    args = ap.parse_args(argv)

    out = (args.output or Path(tempfile.mkdtemp(prefix="bench-zoo-"))).resolve()
    shutil.rmtree(out, ignore_errors=True)  # cold: nothing converted yet
    doc = yaml.safe_load(args.config.read_text())
    doc["output"] = str(out)
    doc.pop("report_dir", None)
    cfg = out.parent / f".{out.name}.bench.yaml"
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    rows, failures = [], []
    try:
        if args.kill_after is None:
            cold_s, cold, cold_rc = run(cfg, args.jobs, resume=False, name="cold")
            rows.append(("cold", cold_s, COLD_TARGET_S, cold_rc, counts(cold)))
        else:
            killed_s, _, killed_rc = run(cfg, args.jobs, resume=False, kill_after=args.kill_after)
            before = finished(out)
            time.sleep(1.0)  # the orphaned workers die with the batch (the resume would reap them anyway)
            rows.append((f"cold, SIGKILLed at {args.kill_after:g} s", killed_s, None, killed_rc,
                         f"{len(before)} finished, {len(leftovers(out))} leftover files"))
            cold_s, cold, cold_rc = run(cfg, args.jobs, resume=True, name="resume (`--resume`)")
            redone = [j["id"] for j in cold["jobs"] if j["id"] in before and j["status"] != "resumed"]
            failures += [f"redone after it finished: {j}" for j in redone]
            rows.append(("resume (`--resume`)", cold_s, None, cold_rc, counts(cold)))
        failures += [f"{j['id']}: {j['status']} ({(j.get('error') or {}).get('message', '')[:120]})"
                     for j in cold["jobs"] if not j["ok"]]
        warm_s, warm, warm_rc = run(cfg, args.jobs, resume=True, name="warm (`--resume`)")
        rows.append(("warm (`--resume`)", warm_s, WARM_TARGET_S, warm_rc, counts(warm)))
        left = leftovers(out)
        failures += [f"left behind: {p}" for p in left]
    finally:
        cfg.unlink(missing_ok=True)

    date = time.strftime("%Y-%m-%d")
    print(f"Measured {date} on {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"python {platform.python_version()}; models already in the cache (download not timed).\n")
    kill = f" --kill-after {args.kill_after:g}" if args.kill_after is not None else ""
    print(f"Command: `python scripts/bench_zoo.py --config {args.config} -j {args.jobs}{kill}`\n")
    print("| run | wall s | CPU s | load (1 min) | target | verdict | exit | jobs |")
    print("|---|---:|---:|---:|---:|---|---:|---|")
    for name, s, target, rc, what in rows:
        tgt, verd = (f"≤ {target:g}", verdict(s, target)) if target else ("-", "-")
        cpu = f"{CPU[name]:.1f}" if name in CPU else "-"
        load = f"{LOAD[name]:.1f}" if name in LOAD else "-"
        print(f"| {name} | {s:.2f} | {cpu} | {load} | {tgt} | {verd} | {rc} | {what} |")
    print(f"\nA load above {os.cpu_count()} means other processes shared the cores: wall times stretch, CPU times "
          "do not.\n")
    print("| job | status | exit | s | worker imports s | convert s | verify s | max abs vs original |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for j in cold["jobs"]:
        mabs = f"{j['worst_max_abs']:.3g}" if isinstance(j.get("worst_max_abs"), float) else "-"
        status = j["status"] + (f" ({(j.get('error') or {}).get('message', '')[:90]})"
                                if j["status"] not in ("passed", "resumed") else "")
        t = j.get("timings") or {}
        cells = " | ".join(f"{t[k]:.1f}" if isinstance(t.get(k), (int, float)) else "-"
                           for k in ("worker_imports", "convert", "verify"))
        print(f"| {j['id']} | {status} | {j['exit_code']} | {j['seconds']:.1f} | {cells} | {mabs} |")
    timed = [j.get("timings") or {} for j in cold["jobs"]]
    total = {k: sum(float(t.get(k) or 0.0) for t in timed) for k in ("job", "worker_imports", "convert", "verify")}
    print(f"\nSum of job seconds: {sum(j['seconds'] for j in cold['jobs']):.0f} s over {args.jobs} parallel jobs; "
          f"in the workers: {total['job']:.0f} s, of which worker imports {total['worker_imports']:.0f} s, "
          f"converting {total['convert']:.0f} s, verifying {total['verify']:.0f} s.")
    if total["job"]:
        print(f"Verification overhead: {100 * total['verify'] / total['job']:.0f} % of the job time "
              f"({100 * total['verify'] / max(total['convert'], 1e-9):.0f} % of the conversion hops' time).")
    if failures:
        print("\nProblems:\n" + "\n".join(f"- {f}" for f in failures))
    return 0 if not failures and cold_rc == 0 and warm_rc == 0 and warm_s <= WARM_TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main(argv=None))
