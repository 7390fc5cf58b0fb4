"""Driving real batches in child processes, and what must never be left behind."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CLI = "from ocrconvert.cli.app import main; main()"
KILL_ENV = "OCRCONVERT_BATCH_KILL_AT"
# staging, swap, lock and temporary names of the output contract and of the batch's own state
_LEFTOVER_SUFFIXES = (".partial", ".tmp", ".old", ".lock", ".job.json", ".result.json")


@dataclass
class BatchRun:
    code: int
    stdout: str
    stderr: str
    seconds: float        # wall clock
    cpu_seconds: float    # user + system time of the batch process (and the workers it waited for)

    @property
    def report(self) -> dict:
        return json.loads(self.stdout)

    @property
    def status(self) -> dict[str, str]:
        return {j["id"]: j["status"] for j in self.report["jobs"]}

    def job(self, job_id: str) -> dict:
        return next(j for j in self.report["jobs"] if j["id"] == job_id)


def write_config(tmp: Path, zoo_model, body: str) -> Path:
    for name in ("ppocrv4-cls", "ppocrv4-cls-onnx"):
        zoo_model(name)  # fetched once, cached
    cfg = tmp / "batch.yaml"
    cfg.write_text(f"output: {tmp / 'out'}\nreport_dir: {tmp / 'report'}\n{body}")
    return cfg


def batch(cfg: Path, *args, kill_at: str | None = None, timeout: float = 300) -> BatchRun:
    """``ocrconvert batch CFG ARGS --json`` in a child process; ``kill_at`` arms a kill point in it."""
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    if kill_at:
        env[KILL_ENV] = kill_at
    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    t0, c0 = time.perf_counter(), cpu()
    proc = subprocess.run([sys.executable, "-c", CLI, "batch", str(cfg), *map(str, args), "--json"],
                          capture_output=True, text=True, timeout=timeout, env=env)
    return BatchRun(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t0, cpu() - c0)


def assert_fast(run: BatchRun, limit: float) -> None:
    """Within ``limit`` seconds of wall clock — stretched by the load other processes put on the
    machine when it is oversubscribed (a CI runner to itself gets the strict limit) — and of CPU."""
    oversubscribed = max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    assert run.cpu_seconds <= limit, f"took {run.cpu_seconds:.2f} s of CPU"
    assert run.seconds <= limit * oversubscribed, \
        f"took {run.seconds:.2f} s (limit {limit} s x load factor {oversubscribed:.1f})"


def leftovers(root: Path) -> list[str]:
    """Everything a killed run may leave: staging, swap and lock files, temporary writes, intents."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.startswith(".ocx-") or p.name.endswith(_LEFTOVER_SUFFIXES))


def live_processes(root: Path) -> list[int]:
    """pids of live processes whose command line names a path under ``root`` (Linux /proc)."""
    needle, pids = str(root).encode(), []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                cmd = (d / "cmdline").read_bytes()
                state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if needle in cmd and state != "Z":
                pids.append(int(d.name))
    return pids


def wait_until(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
