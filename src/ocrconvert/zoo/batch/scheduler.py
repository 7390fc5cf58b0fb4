"""Run a batch: ``parallel`` jobs at once, each in an isolated worker process, state for ``--resume``.

The default executor is the local pool (``pool.py``): long-lived workers that import torch/Paddle once and
run job after job; a worker that dies has its job recorded as crashed and is replaced.

Files under ``OUTPUT/.ocrconvert-batch/`` (the state folder; one batch at a time holds its lock):
``JOB.job.json``, the intent (the worker's job spec and fingerprint), written before a worker is given the job;
``JOB.result.json``, the worker's result; ``JOB.json``, the state record, written once a job finished
and was recorded ok (passed, or failed exactly as expected).

Killed at any moment (the batch or a worker, SIGKILL), a later ``--resume`` converges: orphaned
workers of the killed run are reaped, a job whose worker finished or committed its artifact after its
intent was written is adopted instead of redone, every other unfinished job runs again, and the
output slot of every job is swept under its lock (stale staging, swap folders and lock files).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from ...atomic import FileLock
from ...errors import ExitCode, OcrConvertError, UsageError
from . import killpoints
from .config import BatchConfig, JobSpec, is_zoo_name
from .fingerprint import (DigestCache, artifact_path, fingerprint, is_file_target, set_digest, source_digest,
                          tool_versions, verified_on_disk)
from .reports import REPORT_FILES, BatchResult, JobRecord, stale_temps, write_reports, write_text

log = logging.getLogger(__name__)

STATE_DIR = ".ocrconvert-batch"
LOCK_FILE = "batch.lock"
DIGESTS_FILE = "digests.json"
EventHandler = Callable[[str, JobRecord], None]
# runs the pending jobs and records each (``record_outcome``); ``_run`` (local workers) or ``ray_executor``
Executor = Callable[["RunContext", "list[tuple[JobSpec, object]]", "dict[str, JobRecord]"], None]


@dataclass(frozen=True)
class RunContext:
    """What every step of one batch run needs (no module state: two runs never share anything)."""
    parallel: int                 # jobs at once
    threads: int                  # OpenMP/MKL threads of each worker: the cores shared out
    state_dir: Path
    logs_dir: Path
    versions: dict
    resume: bool
    kill: tuple[killpoints.KillPoint, ...]
    emit: EventHandler
    digests: DigestCache

    def state(self, job: JobSpec) -> Path:
        return self.state_dir / f"{job.id}.json"

    def intent(self, job: JobSpec) -> Path:
        return self.state_dir / f"{job.id}.job.json"

    def result(self, job: JobSpec) -> Path:
        return self.state_dir / f"{job.id}.result.json"


def run_batch(config: BatchConfig, *, jobs: int = 1, resume: bool = False, timeout: float | None = None,
              seed: int | None = None, report_dir: Path | None = None,
              on_event: EventHandler | None = None, executor: Executor | None = None) -> BatchResult:
    """Run every job of ``config``; write ``report.json``, ``junit.xml``, ``summary.md``; return the result.

    ``timeout`` and ``seed`` override every job's. ``on_event(kind, record)`` is called with ``start``,
    ``done`` (after a run) or ``skip`` (resumed: recorded before, or finished by a killed run).
    ``executor`` runs the jobs to run (default: local worker processes, ``parallel`` at once).
    """
    parallel = max(1, int(jobs))
    report_dir = Path(report_dir).resolve() if report_dir else config.report_dir
    state_dir = config.output / STATE_DIR
    logs_dir = report_dir / "logs"
    for d in (state_dir, logs_dir):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {d}: {exc.strerror}", hint="Choose another output or report folder.") from None
    specs = [replace(j, timeout=timeout or j.timeout, seed=j.seed if seed is None else seed) for j in config.jobs]
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t_start = time.monotonic()
    with FileLock(state_dir / LOCK_FILE, busy=f"another batch is running on {config.output}",
                  hint="Wait for it to finish, or give this config another output."):
        ctx = RunContext(parallel, max(1, (os.cpu_count() or 1) // parallel), state_dir, logs_dir, tool_versions(),
                         resume, killpoints.armed(), on_event or (lambda kind, rec: None),
                         DigestCache(state_dir / DIGESTS_FILE))
        _sweep_state(ctx, specs, report_dir)
        records = {j.id: JobRecord(j.id, j.model, j.target, options=j.options, seed=j.seed, reason=j.reason,
                                   expected=asdict(j.expect) if j.expect else None, kind=j.kind) for j in specs}
        ran = _to_run(ctx, specs, records)
        (executor or _run)(ctx, ran, records)
        _remember_digests(ctx, [job for job, _ in ran if records[job.id].ok])
        result = BatchResult(config.path, config.output, report_dir, [records[j.id] for j in specs],
                             time.monotonic() - t_start, started, ctx.versions, shard=config.shard)
        write_reports(result)
    return result


def batch_cache(ctx: RunContext) -> Path:
    """What the batch's jobs share (``pipeline.convert(batch_cache=)``): the ORIGINALs' answers recorded once and
    reusable hops' outputs; one folder per set of tool versions (another Paddle or ONNX Runtime starts afresh)."""
    tools = hashlib.sha256(json.dumps(ctx.versions, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return ctx.state_dir / "cache" / tools


def _to_run(ctx: RunContext, specs: list[JobSpec], records: dict[str, JobRecord]) -> list[tuple[JobSpec, object]]:
    """Fingerprint every job; the ones to run, with their sources (the others are recorded already)."""
    pending = []
    for job in specs:
        rec = records[job.id]
        try:
            src = _resolve_source(job)
            rec.source = str(src) if job.kind != "set" else str(src.origin.path if src.origin else job.model)
            digest = set_digest(src, ctx.digests) if job.kind == "set" else source_digest(src, ctx.digests)
            rec.fingerprint = fingerprint(job, digest, ctx.versions)
        except (OcrConvertError, OSError) as exc:
            err = exc if isinstance(exc, OcrConvertError) else UsageError(
                f"cannot read {exc.filename or job.model}: {exc.strerror or exc}", hint="Check the model's path.")
            _finish(rec, job, {"exit_code": int(err.exit_code), "error": err.to_dict()}, 0.0)
            ctx.emit("done", rec)
            continue
        if ctx.resume and (_resume_recorded(ctx, job, rec) or _adopt(ctx, job, rec)):
            _sweep_slot(job)
            ctx.emit("skip", rec)
            continue
        pending.append((job, src))
    ctx.digests.save()
    return pending


def _remember_digests(ctx: RunContext, done: list[JobSpec]) -> None:
    """Hash the new artifacts now, so the next ``--resume`` finds them in the digest cache."""
    for job in done:
        art = artifact_path(job)
        try:
            if art.exists():
                ctx.digests.artifact(art)
        except OSError:
            continue
    ctx.digests.save()


# ------------------------------------------------------------------------------------ resuming
def _read_json(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _resume_recorded(ctx: RunContext, job: JobSpec, rec: JobRecord) -> bool:
    """The job's state record still holds: same fingerprint, and its artifact is intact on disk."""
    prev = _read_json(ctx.state(job))
    if not prev or prev.get("fingerprint") != rec.fingerprint or not prev.get("ok"):
        return False
    if prev.get("status") in ("passed", "resumed"):
        why = verified_on_disk(job, ctx.digests)
        if why:
            log.info("%s: running again: %s", job.id, why)
            return False
    elif prev.get("status") != "xfail":
        return False
    for k in ("artifact", "manifest", "route", "summary", "worst_max_abs", "error", "exit_code", "log", "stages",
              "pipeline"):
        setattr(rec, k, prev.get(k))
    rec.status, rec.ok, rec.seconds = ("resumed" if prev["status"] != "xfail" else "xfail"), True, 0.0
    _forget_run(ctx, job)
    return True


def _adopt(ctx: RunContext, job: JobSpec, rec: JobRecord) -> bool:
    """A killed run finished this job but never recorded it: take its result, or its committed artifact.

    Only for the same fingerprint, and only an artifact committed after that run's intent was written
    (an older artifact at the same path proves nothing about this job)."""
    intent = ctx.intent(job)
    spec = _read_json(intent)
    if not spec or spec.get("fingerprint") != rec.fingerprint:
        return False
    result = _read_json(ctx.result(job))
    found = replace(rec)
    if result is not None:
        _finish(found, job, result, 0.0)
        if not found.ok or (found.status == "passed" and verified_on_disk(job, ctx.digests)):
            return False
    else:
        art = artifact_path(job)
        try:
            newer = art.stat().st_mtime_ns >= intent.stat().st_mtime_ns
        except OSError:
            return False
        if job.expect or not newer or verified_on_disk(job, ctx.digests):
            return False
        _from_set_record(found, art) if job.kind == "set" else _from_manifest(found, art)
    log.info("%s: adopting what the interrupted run finished", job.id)
    found.status = "resumed" if found.status == "passed" else found.status
    found.seconds = 0.0
    for k, v in asdict(found).items():
        setattr(rec, k, v)
    write_text(ctx.state(job), json.dumps(rec.to_dict(), indent=2))
    _forget_run(ctx, job)
    return True


def _from_manifest(rec: JobRecord, art: Path) -> None:
    from ...manifest import manifest_path, read_manifest

    man = read_manifest(art) or {}
    ver = man.get("verification") or {}
    rec.artifact, rec.manifest = str(art), str(manifest_path(art))
    rec.route = [h.get("converter") for h in man.get("hops", [])]
    rec.summary = ver.get("summary") or "not verified (verify: false)"
    mabs = ver.get("worst_max_abs_random")
    rec.worst_max_abs = float(mabs) if isinstance(mabs, (int, float)) else None
    rec.exit_code, rec.error, rec.status, rec.ok = 0, None, "passed", True


def _from_set_record(rec: JobRecord, folder: Path) -> None:
    import yaml

    from ...formats import SET_FILE

    record = yaml.safe_load((folder / SET_FILE).read_text(encoding="utf-8"))
    pipe = record.get("pipeline_verification") or {}
    rec.artifact, rec.manifest = str(folder), str(folder / SET_FILE)
    rec.route = [f"{k}: {' -> '.join(v.get('route') or [])}" for k, v in record["stages"].items()]
    rec.stages = {k: v.get("verdict") for k, v in record["stages"].items()}
    rec.pipeline = pipe.get("verdict")
    rec.summary = pipe.get("summary") or "not verified (verify: false)"
    rec.exit_code, rec.error, rec.status, rec.ok = 0, None, "passed", True


def _forget_run(ctx: RunContext, job: JobSpec) -> None:
    ctx.result(job).unlink(missing_ok=True)
    ctx.intent(job).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------ sweeping
def _sweep_state(ctx: RunContext, jobs: list[JobSpec], report_dir: Path) -> None:
    """Before any job: reap workers a killed run left, drop half-written state and reports."""
    for p in [*ctx.state_dir.glob(".*.tmp"), *ctx.state_dir.glob("cache/**/.*.tmp")]:
        if p.is_dir():  # a kept hop output being written
            import shutil

            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    for name in REPORT_FILES:
        for p in stale_temps(report_dir / name):
            p.unlink(missing_ok=True)
    from .pool import pool_tag

    _reap(pool_tag(ctx.state_dir))  # the pool's workers, by the tag in their command line
    ids = {j.id for j in jobs}
    for intent in ctx.state_dir.glob("*.job.json"):
        _reap(intent)
        job_id = intent.name[: -len(".job.json")]
        if job_id not in ids:  # a job no longer in the config
            intent.unlink(missing_ok=True)
            (ctx.state_dir / f"{job_id}.result.json").unlink(missing_ok=True)


def _sweep_slot(job: JobSpec) -> None:
    """Remove what a killed run left beside the job's artifact (staging, swap, lock) under its lock."""
    from ...atomic import OutputSlot

    art = artifact_path(job)
    if not art.parent.is_dir():
        return
    try:
        with OutputSlot(art, is_dir=not is_file_target(job), force=True):
            pass
    except OcrConvertError as exc:
        log.warning("%s: could not sweep leftovers beside %s: %s", job.id, art, exc.message)


def _reap(job_file: Path, wait: float = 10.0) -> None:
    """SIGKILL the process groups of workers still running ``job_file`` (orphans of a killed batch)."""
    needle = str(job_file).encode()
    proc = Path("/proc")
    if not proc.is_dir():
        return

    def workers() -> list[int]:
        pids = []
        for d in proc.iterdir():
            if d.name.isdigit():
                try:
                    if needle in (d / "cmdline").read_bytes() and (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                        pids.append(int(d.name))
                except (OSError, IndexError):
                    continue
        return pids

    end = time.monotonic() + wait
    while (pids := workers()) and time.monotonic() < end:
        for pid in pids:
            log.info("reaping worker %d of an interrupted run (%s)", pid, job_file.name)
            _kill_group(pid)
        time.sleep(0.05)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # a worker leads its own group
    except (ProcessLookupError, PermissionError):
        pass


# ------------------------------------------------------------------------------------- running
def _resolve_source(job: JobSpec):
    """The job's source: a model path, or for a set job its ``ModelSet`` (stages given as zoo names pulled)."""
    if job.kind == "set":
        from ...ocr.modelset import SetOrigin, from_stages, read_set

        if not job.stages:
            return read_set(job.model)
        from ..fetch import pull

        paths = {k: (v if k == "dict" or not is_zoo_name(v) else str(pull(v))) for k, v in job.stages}
        # the stages' families are checked by the job's worker (reading them here imports Paddle: ~5 s a warm run)
        return from_stages(paths["det"], paths["rec"], paths.get("cls"), dictionary=paths.get("dict"),
                           origin=SetOrigin("batch", Path(job.model)), where=f"job {job.id}", check=False)
    if is_zoo_name(job.model):
        from ..fetch import pull

        return pull(job.model)
    return Path(job.model)


def _run(ctx: RunContext, pending: list[tuple[JobSpec, object]], records: dict[str, JobRecord]) -> None:
    """The default executor: the local pool of long-lived workers (``pool.py``)."""
    from .pool import run_pool

    run_pool(ctx, pending, records)


def write_intent(ctx: RunContext, job: JobSpec, rec: JobRecord, src) -> Path:
    """The job's worker spec, written as its intent before any worker starts; the job's log path set."""
    ctx.state(job).unlink(missing_ok=True)  # the old verdict no longer holds
    ctx.result(job).unlink(missing_ok=True)
    source = {"source": str(src)} if job.kind != "set" else {
        "source": rec.source, "set": {"det": str(src.det), "rec": str(src.rec),
                                      "cls": str(src.cls) if src.cls else None,
                                      "dictionary": str(src.dictionary) if src.dictionary else None,
                                      "params": src.params}}
    spec = {"job": job.id, "kind": job.kind, "to": job.target, "fingerprint": rec.fingerprint, **source,
            "output": str(job.output),
            "target": job.pipeline_target, "route": job.route, "options": job.options, "atol": job.atol,
            "rtol": job.rtol, "seed": job.seed, "verify": job.verify, "family": job.family, "dict": job.dict,
            "images": job.images, "parent_pid": os.getpid(), "batch_cache": str(batch_cache(ctx))}
    intent = ctx.intent(job)
    write_text(intent, json.dumps(spec))
    rec.log = str(ctx.logs_dir / f"{job.id}.log")
    return intent


def record_outcome(ctx: RunContext, job: JobSpec, rec: JobRecord, code: int, timed_out: bool, seconds: float,
                   crash: str | None = None) -> None:
    """Record a finished worker: its result file, else a timeout or a crash (``crash``: why, if known)."""
    if timed_out:
        result = {"exit_code": int(ExitCode.CONVERSION_FAILED), "status": "timeout",
                  "error": {"error": "Timeout", "message": f"the job ran past its timeout of {job.timeout:g} s and was killed",
                            "hint": "Raise timeout for this job in the config, or --timeout.", "exit_code": 5}}
    else:
        result = _read_json(ctx.result(job))
        if result is None:
            why = crash or (f"killed by signal {signal.Signals(-code).name}" if code < 0
                            else f"exited with {code} without a result")
            result = {"exit_code": int(ExitCode.CONVERSION_FAILED), "status": "crashed",
                      "error": {"error": "Crash", "message": f"the job process crashed: {why}",
                                "hint": f"See the job log {rec.log}.", "exit_code": 5}}
    _finish(rec, job, result, seconds)
    died = result.get("status") in ("timeout", "crashed")
    if died:
        _sweep_slot(job)  # a killed worker never ran its own cleanup
    killpoints.in_batch(ctx.kill, "collected", job.id)
    if rec.ok:
        write_text(ctx.state(job), json.dumps(rec.to_dict(), indent=2))
    ctx.result(job).unlink(missing_ok=True)
    if not died:  # a worker that died after its commit stays adoptable by --resume
        ctx.intent(job).unlink(missing_ok=True)
    killpoints.in_batch(ctx.kill, "between-jobs", job.id)


def _finish(rec: JobRecord, job: JobSpec, result: dict, seconds: float) -> None:
    rec.seconds = round(seconds, 3)
    rec.exit_code = int(result.get("exit_code", 1))
    rec.error = result.get("error")
    for k in ("artifact", "manifest", "route", "summary", "worst_max_abs", "stages", "pipeline", "timings"):
        if k in result:
            setattr(rec, k, result[k])
    if rec.exit_code == 0:
        rec.status, rec.ok = "passed", True
        if job.expect:
            rec.ok = False
            rec.status = "failed"
            rec.exit_code = int(ExitCode.CONVERSION_FAILED)
            rec.error = {"error": "UnexpectedPass", "exit_code": 5,
                         "message": f"expected to fail with exit {job.expect.exit_code}, but it passed",
                         "hint": "Remove 'expect' for this target from the config."}
        return
    rec.status = result.get("status") or "failed"
    if job.expect and job.expect.matches({"exit_code": rec.exit_code, "error": rec.error}):
        rec.status, rec.ok = "xfail", True


__all__ = ["run_batch", "RunContext", "STATE_DIR", "Executor", "write_intent", "record_outcome"]
