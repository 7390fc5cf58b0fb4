"""The child process of one batch job: ``python -m ocrconvert.zoo.batch.worker JOB_FILE RESULT_FILE``.

It runs the job through the one spine (``pipeline.convert``, ``force`` for the batch's own output),
prints its log to stdout (the batch sends it to the job's log file) and writes its result as JSON.
It leads its own process group and dies with the batch process, taking its children along.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
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
                  dictionary=spec["dict"], seed=spec["seed"], force=True,
                  progress=lambda msg: print(f"[progress] {msg}", flush=True))
    killpoints.in_worker(points, "committed", job, batch_pid)
    rep = res.report
    result = {"exit_code": int(ExitCode.OK if res.passed else ExitCode.PARITY_FAILED),
              "artifact": str(res.artifact.path), "manifest": str(res.manifest_path), "route": res.route,
              "summary": rep.summary_line() if rep is not None else "not verified (verify: false)",
              "worst_max_abs": float(rep.worst_max_abs("random")) if rep is not None else None}
    if rep is not None and not res.passed:
        result["error"] = {"error": "ParityError", "message": rep.summary_line(), "exit_code": 6,
                           "hint": f"See the verification table in {res.manifest_path}."}
    print(result["summary"], flush=True)
    return result


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
              "summary": res.summary_line(), "worst_max_abs": float(max(worst)) if worst else None}
    if not gate:
        why = res.summary_line()
        if res.passed:  # every stage passed, but the pipeline check did not run
            why = f"pipeline parity {pipe.get('verdict', 'NOT RUN')}: {pipe.get('why') or ''}".strip()
        result["error"] = {"error": "ParityError", "message": why, "exit_code": 6,
                           "hint": f"See {res.set_file} and {res.path / 'pipeline-parity.html'}."}
    print(result["summary"], flush=True)
    return result


def main(job_file: Path, result_path: Path) -> int:
    import warnings

    spec = json.loads(job_file.read_text())
    _die_with_parent(int(spec["parent_pid"]))
    killpoints.in_worker(killpoints.armed(), "started", spec["job"], int(spec["parent_pid"]))
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
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
    write_text(result_path, json.dumps(result, default=str))
    return int(result["exit_code"])


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
