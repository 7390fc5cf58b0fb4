"""Run a batch's jobs as Ray tasks: ``ocrconvert batch CONFIG --executor ray [--address ADDR]``.

Each job is one Ray task that runs the local executor's worker entry point (``python -m
ocrconvert.zoo.batch.worker INTENT RESULT``) as a child process in its own process group, on the node
Ray picks: the same isolation, the same timeout (the task kills the group at the job's deadline; time
queued in Ray does not count), the same result file, state records, resume and reports
(``scheduler.write_intent`` / ``record_outcome``). The batch's output and report folders, and the model
cache, must be on a file system every node shares; a task that cannot see them says so.

A task whose Ray worker process or node dies is retried by Ray (``max_retries``): the job starts over and
its output slot sweeps what the dead attempt left. When the retries run out, the job is recorded as
crashed, never lost. Every job's record names the node that ran it (``node``: ``IP/NODE_ID``).
Ray's own output goes to ``REPORT_DIR/logs/ray.log``; the batch's stdout and stderr stay clean.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager, redirect_stdout
from functools import partial
from pathlib import Path

from ...errors import UsageError
from .reports import JobRecord, write_text
from .scheduler import Executor, RunContext, record_outcome, write_intent

log = logging.getLogger(__name__)

RETRIES = 2                   # a job's task runs at most 1 + RETRIES times when its Ray worker or node dies
_FORWARD = ("OCRCONVERT_", "OMP_WAIT_POLICY")  # driver environment the job's worker inherits on any node


def ray_executor(address: str | None = None, *, retries: int = RETRIES) -> Executor:
    """An executor for ``run_batch``: jobs as Ray tasks on the cluster at ``address``.

    ``address``: ``HOST:PORT`` of a running cluster's head (``ray start --head``), or ``auto``; ``None``
    connects to ``RAY_ADDRESS`` if set, else starts a one-machine Ray for this batch (``parallel`` CPUs)."""
    return partial(_run_on_ray, address=address, retries=retries)


# ------------------------------------------------------------------------------------ on a node
def job_task(intent: str, result: str, log_path: str, timeout: float, env: dict) -> dict:
    """The body of one job's Ray task: the worker entry point as a child, killed at the deadline."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    spec_path = Path(intent)
    missing = [p for p in (spec_path, Path(log_path).parent) if not p.exists()]
    if missing:
        return {"node": node, "code": None, "timed_out": False, "seconds": 0.0,
                "crash": f"{missing[0]} is not visible on Ray node {node[:8]}: the batch's output, report folder "
                         "and model cache must be on a file system every node shares"}
    spec = json.loads(spec_path.read_text())
    spec["parent_pid"] = os.getpid()  # the worker dies with this task's process (Ray kills it on a retry/cancel)
    write_text(spec_path, json.dumps(spec))
    child_env = dict(os.environ, PYTHONUNBUFFERED="1", **env)
    with open(log_path, "a", encoding="utf-8") as out:
        out.write(f"# ray node {node} (pid {os.getpid()})\n")
        out.flush()
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "ocrconvert.zoo.batch.worker", intent, result],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=child_env,
                                start_new_session=True)
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # at the deadline, or children that outlived the worker
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
    return {"node": node, "code": proc.returncode, "timed_out": timed_out, "seconds": time.monotonic() - t0}


# ---------------------------------------------------------------------------------- the driver
def _run_on_ray(ctx: RunContext, pending: list, records: dict[str, JobRecord], *, address: str | None,
                retries: int) -> None:
    if not pending:
        return  # everything resumed: no cluster needed
    from ..._compat import require

    if not (address or os.environ.get("RAY_ADDRESS")):
        # the Ray we start listens on 127.0.0.1 only: Ray 2.60 otherwise turns a node's loopback address into
        # the machine's (services.resolve_ip_for_localhost) and its servers listen there; read at Ray's import
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = require("ray", "the Ray executor (--executor ray)")
    ray_log = ctx.logs_dir / "ray.log"
    # the driver prints the cluster's error messages ("(raylet) Task ... failed, retrying") to sys.stdout
    with open(ray_log, "a", encoding="utf-8", buffering=1) as sink, redirect_stdout(sink):
        _drive(ray, ray_log, ctx, pending, records, address, retries)


def _drive(ray, ray_log: Path, ctx: RunContext, pending: list, records: dict[str, JobRecord], address: str | None,
           retries: int) -> None:
    with _quiet(ray_log):
        _connect(ray, address, ctx.parallel)
    try:
        nodes = {}
        task = ray.remote(job_task)
        env = {k: v for k, v in os.environ.items() if k.startswith(_FORWARD)}
        running = {}
        for job, src in pending:
            rec = records[job.id]
            intent = write_intent(ctx, job, rec, src)
            write_text(Path(rec.log), f"# ocrconvert batch job {job.id}: {job.model} -> {job.target} (Ray)\n")
            ref = task.options(num_cpus=1, max_retries=retries, retry_exceptions=False,
                               name=f"ocrconvert-batch:{job.id}").remote(str(intent), str(ctx.result(job)), rec.log,
                                                                          float(job.timeout), env)
            running[ref] = (job, time.monotonic())
            ctx.emit("start", rec)
        while running:
            done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in done:
                job, t0 = running.pop(ref)
                rec = records[job.id]
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the task's worker or node died more than `retries` times
                    out = {"node": None, "code": None, "timed_out": False, "seconds": time.monotonic() - t0,
                           "crash": f"its Ray task failed {retries + 1} times ({type(exc).__name__}: "
                                    f"{_first_line(exc)})"}
                if out["node"]:
                    if out["node"] not in nodes:
                        nodes.update({n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()})
                    rec.node = f"{nodes.get(out['node'], '?')}/{out['node'][:8]}"
                code = out["code"] if out["code"] is not None else -int(signal.SIGKILL)
                record_outcome(ctx, job, rec, code, out["timed_out"], out["seconds"], crash=out.get("crash"))
                ctx.emit("done", rec)
    finally:
        with _quiet(ray_log):
            for ref in running:  # interrupted: the tasks' processes go, and their workers with them
                ray.cancel(ref, force=True)
            ray.shutdown()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def _connect(ray, address: str | None, parallel: int) -> None:
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address != "auto":
        host, _, port = address.rpartition(":")
        try:  # Ray itself retries an unreachable head for minutes
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=10).close()
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot reach the Ray cluster at {address}: {getattr(exc, 'strerror', None) or exc}",
                             hint="Give the head's HOST:PORT (ray start --head --port PORT), or leave --address out "
                                  "to run on a Ray started on this machine.") from None
    # "local": a Ray of our own, never one a `ray start` on this machine left in /tmp/ray/ray_current_cluster
    kwargs = {"address": address} if address else {"address": "local", "num_cpus": parallel,
                                                    "include_dashboard": False}
    if not address:  # the raylet we start waits 15 s for its Python agents by default: too little on a busy machine
        os.environ.setdefault("RAY_agent_register_timeout_ms", "120000")
    try:
        ray.init(**kwargs, namespace="ocrconvert", logging_level=logging.ERROR, log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 - Ray raises bare Exceptions (a raylet slow to register: 30 s, fixed)
        ray.shutdown()  # what it started on this machine
        where = f"the Ray cluster at {address}" if address else "a Ray on this machine"
        raise UsageError(f"cannot connect to {where}: {type(exc).__name__}: {_first_line(exc)}",
                         hint="Start a cluster first (ray start --head) and pass --address HOST:PORT; Ray's own log "
                              "is in the batch's logs folder (ray.log).") from None


@contextmanager
def _quiet(log_file: Path):
    """Ray's processes and C++ core print to fd 1 and 2 at start and stop: into ``log_file`` instead."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(log_file, "a", encoding="utf-8") as f:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


__all__ = ["ray_executor", "job_task", "RETRIES"]
