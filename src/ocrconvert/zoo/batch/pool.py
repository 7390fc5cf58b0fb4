"""The local executor: ``parallel`` long-lived worker processes, each running job after job.

A worker (``worker.serve``) imports the spine, torch and Paddle once; the batch hands it one job at a time
(its intent, written by ``scheduler.write_intent``) over a pipe and waits for its answer line. A job's
worker is chosen by its source when it can be (the worker that ran a model's last job takes its next one, so
the ORIGINAL's recorded outputs and loaded runtimes are warm there).

Each worker leads its own process group. A job past its timeout has its worker's whole group SIGKILLed;
a worker that dies (a crash, a kill point, the OOM killer) has its job recorded as crashed from what it
left (``scheduler.record_outcome``: a result file written before the death still counts) and is replaced by
a fresh one for the next job. A worker retires after ``MAX_JOBS`` jobs or once its memory passes
``MAX_RSS_MB``. Killed itself, the batch takes its workers down (they die with it) and a ``--resume``
reaps any left, by the pool tag in their command line.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from .config import JobSpec
from .reports import JobRecord

POOL_TAG = ".worker-pool"   # in every pool worker's command line: STATE_DIR/.worker-pool
MAX_JOBS = 16               # a worker retires after this many jobs (bounds what leaks across jobs)
MAX_RSS_MB = 6144           # ... or once its resident memory passes this


def pool_tag(state_dir: Path) -> Path:
    return state_dir / POOL_TAG


class _Worker:
    """One pool worker process and the job it runs (None when idle)."""

    def __init__(self, ctx):
        cmd_r, cmd_w = os.pipe()
        ack_r, ack_w = os.pipe()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # parallel jobs share the cores: without this each one spawns a thread per core and they thrash
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, str(ctx.threads))
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads must not spin on shared cores
        env["OCRCONVERT_WORKER_SPAWNED"] = repr(time.time())  # its first job reports the start-up it paid
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ocrconvert.zoo.batch.worker", "--serve", str(cmd_r), str(ack_w),
                 str(os.getpid()), str(pool_tag(ctx.state_dir))],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                pass_fds=(cmd_r, ack_w), start_new_session=True)
        finally:
            os.close(cmd_r)
            os.close(ack_w)
        self.cmd = os.fdopen(cmd_w, "w", encoding="utf-8")
        self.ack = ack_r
        os.set_blocking(ack_r, False)
        self.buf = b""
        self.job: JobSpec | None = None
        self.record: JobRecord | None = None
        self.source: str | None = None
        self.runs = 0
        self.t0 = self.deadline = 0.0
        self.timed_out = False

    # -- a job ----------------------------------------------------------------------------
    def give(self, ctx, job: JobSpec, rec: JobRecord, src) -> None:
        from .scheduler import write_intent

        intent = write_intent(ctx, job, rec, src)
        with open(rec.log, "w", encoding="utf-8") as f:
            f.write(f"# ocrconvert batch job {job.id}: {job.model} -> {job.target} (worker {self.proc.pid}, "
                    f"job {self.runs + 1} of this worker)\n")
        self.job, self.record, self.source = job, rec, rec.source
        self.t0 = time.monotonic()
        self.deadline, self.timed_out = self.t0 + job.timeout, False
        try:
            self.cmd.write(json.dumps({"intent": str(intent), "result": str(ctx.result(job)), "log": rec.log}) + "\n")
            self.cmd.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker is gone: seen as its exit, the job recorded as crashed

    def answered(self) -> bool:
        """The worker's answer line for its job has arrived (reads what the pipe holds; never blocks)."""
        try:
            chunk = os.read(self.ack, 4096)
        except BlockingIOError:
            return False
        except OSError:
            return False
        self.buf += chunk
        return b"\n" in self.buf

    def exited(self) -> bool:
        """It exited; it stays a zombie (not reaped), so its group id cannot be reused yet."""
        try:
            return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def rss_mb(self) -> float:
        try:
            return int(Path(f"/proc/{self.proc.pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError, IndexError):
            return 0.0

    def stop(self) -> int:
        """SIGKILL its process group (children that outlived a job go too), reap it; its exit code."""
        from .scheduler import _kill_group

        _kill_group(self.proc.pid)
        code = self.proc.wait()
        for closing in (self.cmd.close, lambda: os.close(self.ack)):
            try:
                closing()
            except OSError:
                pass
        return code


def _expected_cost(job: JobSpec) -> float:
    """The job's expected seconds (the CI shards' cost table): the longest jobs start first, so a long one (a
    set's end-to-end parity) does not start last and leave one core idle."""
    from .shards import table_cost

    try:
        return float(table_cost(job))
    except Exception:  # noqa: BLE001 - an order is only an optimisation
        return 0.0


def run_pool(ctx, pending: list[tuple[JobSpec, object]], records: dict[str, JobRecord]) -> None:
    """The default executor: every pending job through the pool, each recorded by ``record_outcome``."""
    from .scheduler import _kill_group, _sweep_slot, record_outcome

    pending = sorted(pending, key=lambda p: -_expected_cost(p[0]))  # longest first (stable: config order on ties)
    slots: list[_Worker | None] = [None] * ctx.parallel

    def finish(i: int, w: _Worker, code: int | None, retire: bool) -> None:
        """Record the worker's job (``code`` None: the worker died; its exit code then); retire the worker."""
        job, rec, seconds = w.job, w.record, time.monotonic() - w.t0
        w.job = w.record = None
        if retire:
            slots[i] = None
            stopped = w.stop()
            code = stopped if code is None else code
        record_outcome(ctx, job, rec, code, w.timed_out, seconds)
        ctx.emit("done", rec)

    try:
        while pending or any(w is not None and w.job is not None for w in slots):
            for i in range(len(slots)):
                w = slots[i]
                if not pending or (w is not None and w.job is not None):
                    continue
                if w is not None and w.exited():  # an idle worker that died: replaced
                    w.stop()
                    w = slots[i] = None
                k = next((n for n, (job, _) in enumerate(pending) if w is not None
                          and records[job.id].source == w.source), 0)
                job, src = pending.pop(k)
                if w is None:
                    w = slots[i] = _Worker(ctx)
                w.give(ctx, job, records[job.id], src)
                ctx.emit("start", records[job.id])
            busy = [w for w in slots if w is not None and w.job is not None]
            if busy:
                select.select([w.ack for w in busy], [], [], 0.05)
            for i, w in enumerate(slots):
                if w is None or w.job is None:
                    continue
                if w.answered():
                    w.buf = w.buf.split(b"\n", 1)[1]
                    w.runs += 1
                    finish(i, w, 0, retire=w.runs >= MAX_JOBS or w.rss_mb() > MAX_RSS_MB)
                    continue
                if w.exited():  # crashed, killed at a kill point, or killed for its timeout
                    finish(i, w, None, retire=True)
                    continue
                if time.monotonic() > w.deadline and not w.timed_out:
                    w.timed_out = True
                    _kill_group(w.proc.pid)  # the whole group: the job's children too
    finally:
        for w in slots:  # done or interrupted: take the workers with us, and what a running job left
            if w is None:
                continue
            job = w.job
            w.stop()
            if job is not None:
                _sweep_slot(job)


__all__ = ["run_pool", "pool_tag", "POOL_TAG", "MAX_JOBS", "MAX_RSS_MB"]
