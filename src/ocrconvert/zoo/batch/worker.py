"""The batch's worker processes, and ``run_spec``: one job spec -> its result dict (every executor's seam).

``python -m ocrconvert.zoo.batch.worker --serve CMD_FD ACK_FD PARENT_PID POOL_TAG`` is a long-lived worker of
the local pool (``pool.py``): it imports torch/Paddle once and runs job after job. Each command is one JSON
line ``{"intent", "result", "log"}`` on ``CMD_FD``; the worker points its stdout and stderr at the job's log,
runs the job through the one spine (``pipeline.convert``, ``force`` for the batch's own output), writes the
result as JSON and answers one line on ``ACK_FD``. ``python -m ocrconvert.zoo.batch.worker JOB_FILE
RESULT_FILE`` runs a single job the same way. A worker leads its own process group and dies with the batch
process, taking its children along.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from ...errors import ExitCode, OcrConvertError
from . import killpoints
from .reports import write_text


def _die_with_parent(parent_pid: int) -> None:
    """When the batch process dies (even SIGKILL), take this job's whole process group down.

    Linux delivers SIGTERM on the parent's death (PR_SET_PDEATHSIG); a watchdog thread covers a main
    thread stuck in native code, and other systems."""
    def die(signum=None, frame=None):
        os.killpg(0, signal.SIGKILL)

    signal.signal(signal.SIGTERM, die)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch():
        while os.getppid() == parent_pid:
            threading.Event().wait(0.5)
        die()

    if os.getppid() != parent_pid:  # the parent died before we got here
        die()
    threading.Thread(target=watch, name="die-with-batch", daemon=True).start()


def run_job(spec: dict) -> dict:
    """The job through ``pipeline.convert``; the result the batch records (exit code, artifact, verdict)."""
    from ...pipeline import convert
    from ...verification import Tolerances

    job, batch_pid = spec["job"], int(spec["parent_pid"])
    points = killpoints.armed()
    killpoints.hook_output_slot(points, job, batch_pid)
    # precision is not pinned here: it reached the route's options, and what the hop built picks the tolerances
    tol = Tolerances(atol=spec["atol"], rtol=spec["rtol"])
    if spec.get("kind") == "set":
        return run_set_job(spec, tol, points)
    res = convert(spec["source"], spec["output"], target=spec["target"], route=spec["route"], verify=spec["verify"],
                  options=spec["options"], images=spec["images"], tolerances=tol, family=spec["family"],
                  dictionary=spec["dict"], seed=spec["seed"], force=True, batch_cache=spec.get("batch_cache"),
                  progress=lambda msg: print(f"[progress] {msg}", flush=True))
    killpoints.in_worker(points, "committed", job, batch_pid)
    rep = res.report
    result = {"exit_code": int(ExitCode.OK if res.passed else ExitCode.PARITY_FAILED),
              "artifact": str(res.artifact.path), "manifest": str(res.manifest_path), "route": res.route,
              "summary": rep.summary_line() if rep is not None else "not verified (verify: false)",
              "worst_max_abs": float(rep.worst_max_abs("random")) if rep is not None else None}
    result["timings"] = _timings([res])
    if rep is not None and not res.passed:
        result["error"] = {"error": "ParityError", "message": rep.summary_line(), "exit_code": 6,
                           "hint": f"See the verification table in {res.manifest_path}."}
    print(result["summary"], flush=True)
    return result


def _timings(results) -> dict:
    """Seconds spent converting (every hop) and verifying (every report, both native forms) by these conversions."""
    convert = sum(float(h.get("seconds") or 0.0) for r in results for h in r.manifest.get("hops", []))
    reports = [x for r in results if r.report is not None for x in (r.report, *r.report.extra_reports)]
    return {"convert": round(convert, 3), "verify": round(sum(float(x.seconds or 0.0) for x in reports), 3)}


def run_set_job(spec: dict, tol, points) -> dict:
    """A model set through ``pipeline.convert_set``: it passes only when every stage passed against its original
    AND the whole set passed end to end against the source set (a pipeline check not run is no pass)."""
    from ...ocr.modelset import SetOrigin, from_stages
    from ...pipeline import convert_set

    job, batch_pid, stages = spec["job"], int(spec["parent_pid"]), spec["set"]
    model_set = from_stages(stages["det"], stages["rec"], stages.get("cls"), dictionary=stages.get("dictionary"),
                            params=stages.get("params") or None, origin=SetOrigin("batch", Path(spec["source"])),
                            where=f"job {job}")
    res = convert_set(model_set, spec["output"], to=spec["to"], verify=spec["verify"], options=spec["options"],
                      images=spec["images"], tolerances=tol, seed=spec["seed"], force=True,
                      batch_cache=spec.get("batch_cache"),
                      progress=lambda msg: print(f"[progress] {msg}", flush=True))
    killpoints.in_worker(points, "committed", job, batch_pid)
    record = res.record
    pipe = record.get("pipeline_verification") or {}
    gate = res.passed and (not spec["verify"] or pipe.get("verdict") == "PASSED")
    worst = [r.report.worst_max_abs("random") for r in res.stages.values() if r.report is not None]
    result = {"exit_code": int(ExitCode.OK if gate else ExitCode.PARITY_FAILED), "artifact": str(res.path),
              "manifest": str(res.set_file),
              "route": [f"{k}: {' -> '.join(v['route'])}" for k, v in record["stages"].items()],
              "stages": {k: v["verdict"] for k, v in record["stages"].items()}, "pipeline": pipe.get("verdict"),
              "summary": res.summary_line(), "worst_max_abs": float(max(worst)) if worst else None,
              "timings": _timings(list(res.stages.values()))}
    if not gate:
        why = res.summary_line()
        if res.passed:  # every stage passed, but the pipeline check did not run
            why = f"pipeline parity {pipe.get('verdict', 'NOT RUN')}: {pipe.get('why') or ''}".strip()
        result["error"] = {"error": "ParityError", "message": why, "exit_code": 6,
                           "hint": f"See {res.set_file} and {res.path / 'pipeline-parity.html'}."}
    print(result["summary"], flush=True)
    return result


def run_spec(spec: dict) -> dict:
    """One job spec (``scheduler.write_intent``) -> the result dict the batch records; never raises for a job's
    own failure (an error is a result). Leaves nothing behind in this process for the next job to inherit."""
    from ... import pipeline

    slot = pipeline.OutputSlot  # kill points hook the slot for this job only
    t0 = time.perf_counter()
    try:
        result = run_job(spec)
    except OcrConvertError as exc:
        print(f"error: {exc.message}\nhint: {exc.hint}", flush=True)
        result = {"exit_code": int(exc.exit_code), "error": exc.to_dict()}
    except Exception as exc:  # noqa: BLE001 - a bug in a job is recorded, with its traceback in the log
        import traceback

        traceback.print_exc(file=sys.stdout)
        result = {"exit_code": int(ExitCode.INTERNAL), "status": "crashed",
                  "error": {"error": type(exc).__name__, "message": f"internal error: {type(exc).__name__}: {exc}",
                            "hint": "This is a bug in ocrconvert; the traceback is in the job log.", "exit_code": 1}}
    finally:
        pipeline.OutputSlot = slot
    result.setdefault("timings", {})["job"] = round(time.perf_counter() - t0, 3)
    return result


def _setup_logging() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)


def main(job_file: Path, result_path: Path) -> int:
    spec = json.loads(job_file.read_text())
    _die_with_parent(int(spec["parent_pid"]))
    killpoints.in_worker(killpoints.armed(), "started", spec["job"], int(spec["parent_pid"]))
    _setup_logging()
    result = run_spec(spec)
    write_text(result_path, json.dumps(result, default=str))
    return int(result["exit_code"])


def _preload() -> float:
    """Import the spine and its converters once, before the first job (torch, Paddle and the other runtimes are
    imported by the first job that needs them, and stay: a worker that only runs ONNX jobs never pays for Paddle).
    The seconds since the pool spawned this worker."""
    from ...pipeline import available_converters

    available_converters()
    try:
        return max(0.0, time.time() - float(os.environ.get("OCRCONVERT_WORKER_SPAWNED", "")))
    except ValueError:
        return 0.0


def serve(cmd_fd: int, ack_fd: int, parent_pid: int) -> int:
    """The pool worker's loop: one job per command line, until the batch closes the command pipe."""
    import gc

    _die_with_parent(parent_pid)
    _setup_logging()
    points = killpoints.armed()
    idle_out, idle_err = os.dup(1), os.dup(2)
    imported = _preload()
    with os.fdopen(cmd_fd, "r", encoding="utf-8") as commands, os.fdopen(ack_fd, "w", encoding="utf-8") as ack:
        for line in commands:
            cmd = json.loads(line)
            spec = json.loads(Path(cmd["intent"]).read_text())
            log_fd = os.open(cmd["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(log_fd, 1), os.dup2(log_fd, 2)  # native code (Paddle's glog) writes there too
            os.close(log_fd)
            try:
                killpoints.in_worker(points, "started", spec["job"], parent_pid)
                result = run_spec(spec)
                result["timings"]["worker_imports"] = round(imported, 3)  # paid once per worker, by its first job
                imported = 0.0
                write_text(Path(cmd["result"]), json.dumps(result, default=str))
            finally:
                sys.stdout.flush(), sys.stderr.flush()
                os.dup2(idle_out, 1), os.dup2(idle_err, 2)
            gc.collect()
            ack.write(json.dumps({"job": spec["job"], "exit_code": result["exit_code"]}) + "\n")
            ack.flush()
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--serve":  # --serve CMD_FD ACK_FD PARENT_PID POOL_TAG (the tag names the pool for reaping)
        sys.exit(serve(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
