"""A batch SIGKILLed at every named point (the batch process, or one worker), then ``--resume``:
no job fails because of leftovers, none remain, finished jobs are not redone, the warm run is fast.

The kill points are deterministic hooks (``OCRCONVERT_BATCH_KILL_AT``, see
``ocrconvert.zoo.batch.killpoints``), not a sleep. Jobs skip verification: parity is not the point here.
"""
from __future__ import annotations

import signal
from pathlib import Path

import pytest
from _batch_helpers import assert_fast, batch, leftovers, live_processes, wait_until, write_config
from _cli_helpers import needs_paddle, needs_torch

pytestmark = [pytest.mark.torch, pytest.mark.paddle, pytest.mark.zoo, needs_torch, needs_paddle,
              pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")]

WARM_S = 2.0
# a file target (paddle2onnx, which runs in a child process of its own) and a folder target (onnx2torch)
FILE_JOB = ("{model: ppocrv4-cls, name: victim, targets: [onnx]}", "victim.onnx", "victim/onnx/model.onnx")
FOLDER_JOB = ("{model: ppocrv4-cls-onnx, name: victim, targets: [torch]}", "victim.torch", "victim/torch")


def _artifact_mtime(out: Path, rel: str) -> int:
    p = out / rel
    return (p / "model.safetensors" if p.is_dir() else p).stat().st_mtime_ns


def _converged(tmp_path: Path, cfg: Path, jobs) -> None:
    """After the resume: every job verified on disk, nothing left behind, no process of ours alive,
    and a warm run resumes everything within WARM_S."""
    from ocrconvert.zoo.batch import load_config, verified_on_disk

    for job in load_config(cfg).jobs:
        assert verified_on_disk(job) is None, job.id
    assert leftovers(tmp_path) == []
    warm = batch(cfg, "--resume")
    assert warm.code == 0, warm.stderr[-3000:]
    assert set(warm.status.values()) == {"resumed"} and len(warm.status) == len(jobs)
    assert_fast(warm, WARM_S)
    assert leftovers(tmp_path) == []
    assert live_processes(tmp_path) == []


@pytest.mark.parametrize("point, job, redone", [
    ("started", FILE_JOB, True),          # the worker is up, nothing done
    ("staged", FILE_JOB, True),           # the output's staging folder exists (and its lock)
    ("before-commit", FILE_JOB, True),    # artifact + manifest staged, not renamed into place
    ("committed", FOLDER_JOB, False),     # artifact in place, no result reported, no state record
    ("collected", FILE_JOB, False),       # batch process: result read, state record not written
], ids=lambda v: v if isinstance(v, str) else None)
def test_batch_killed_then_resumed(tmp_path, zoo_model, point, job, redone):
    entry, job_id, artifact = job
    cfg = write_config(tmp_path, zoo_model, f"defaults: {{verify: false}}\nmodels:\n  - {entry}\n")
    out = tmp_path / "out"

    killed = batch(cfg, kill_at=f"batch:{point}@{job_id}")
    assert killed.code == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "report" / "report.json").exists()
    # the workers follow the batch down on their own (the resume would reap them as well)
    wait_until(lambda: not live_processes(tmp_path), 20, "the orphaned worker to die")
    before = _artifact_mtime(out, artifact) if not redone else None

    res = batch(cfg, "--resume")
    assert res.code == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert res.status == {job_id: "passed" if redone else "resumed"}
    if not redone:  # finished by the killed run: adopted, not converted again
        assert _artifact_mtime(out, artifact) == before
    _converged(tmp_path, cfg, [job_id])


def test_batch_killed_between_jobs_then_resumed_and_tampering_is_caught(tmp_path, zoo_model):
    cfg = write_config(tmp_path, zoo_model, """
defaults: {verify: false}
models:
  - {model: ppocrv4-cls, name: first, targets: [onnx]}
  - {model: ppocrv4-cls, name: second, targets: [onnx]}
""")
    first = tmp_path / "out" / "first" / "onnx" / "model.onnx"
    killed = batch(cfg, "-j", "1", kill_at="batch:between-jobs@first.onnx")
    assert killed.code == -signal.SIGKILL
    mtime = first.stat().st_mtime_ns
    assert not (tmp_path / "out" / "second").exists()  # never half an artifact

    res = batch(cfg, "--resume")
    assert res.code == 0, res.stderr[-3000:]
    assert res.status == {"first.onnx": "resumed", "second.onnx": "passed"}
    assert first.stat().st_mtime_ns == mtime
    _converged(tmp_path, cfg, ["first.onnx", "second.onnx"])

    # an artifact changed behind the batch's back is never trusted: it is redone, the other resumed
    first.write_bytes(first.read_bytes()[:1000])
    res = batch(cfg, "--resume")
    assert res.code == 0, res.stderr[-3000:]
    assert res.status == {"first.onnx": "passed", "second.onnx": "resumed"}


def test_workers_killed_at_every_point_and_a_timeout_then_resume(tmp_path, zoo_model):
    """Workers die alone (the batch goes on and reports each as crashed) or run past their timeout;
    the batch leaves nothing behind; --resume redoes what was unfinished and adopts what was committed."""
    cfg = write_config(tmp_path, zoo_model, """
defaults: {verify: false}
models:
  - {model: ppocrv4-cls, name: w-started, targets: [onnx]}
  - {model: ppocrv4-cls, name: w-staged, targets: [onnx]}
  - {model: ppocrv4-cls-onnx, name: w-before-commit, targets: [torch]}
  - {model: ppocrv4-cls, name: w-committed, targets: [onnx]}
  - {model: ppocrv4-cls-onnx, name: slow, targets: [{target: torch, timeout: 1, verify: true}]}  # onnx2torch + its check: the batch cache makes a second paddle2onnx of one source instant
  - {model: ppocrv4-cls, name: fine, targets: [onnx]}
""")
    points = ",".join(f"worker:{p}@w-{p}.{t}" for p, t in
                      (("started", "onnx"), ("staged", "onnx"), ("before-commit", "torch"), ("committed", "onnx")))
    run = batch(cfg, "-j", "2", kill_at=points)
    assert run.code == 5, run.stderr[-3000:]
    st = run.status
    for p in ("started", "staged", "before-commit", "committed"):
        job = run.job(next(k for k in st if k.startswith(f"w-{p}.")))
        assert job["status"] == "crashed" and "SIGKILL" in job["error"]["message"], job
    assert st["slow.torch"] == "timeout" and "timeout of 1 s" in run.job("slow.torch")["error"]["message"]
    assert st["fine.onnx"] == "passed"
    junit = (tmp_path / "report" / "junit.xml").read_text()
    assert junit.count("<failure") == 5
    # a dead worker's staging, swap and lock files are swept by the batch at once
    assert [p for p in leftovers(tmp_path) if not p.endswith(".job.json")] == []
    assert not (tmp_path / "out" / "w-staged" / "onnx" / "model.onnx").exists()
    assert not (tmp_path / "out" / "w-before-commit" / "torch").exists()
    committed = tmp_path / "out" / "w-committed" / "onnx" / "model.onnx"
    mtime = committed.stat().st_mtime_ns

    res = batch(cfg, "-j", "2", "--resume", "--timeout", "300")
    assert res.code == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.status == {"w-started.onnx": "passed", "w-staged.onnx": "passed", "w-before-commit.torch": "passed",
                          "w-committed.onnx": "resumed", "slow.torch": "passed", "fine.onnx": "resumed"}
    assert committed.stat().st_mtime_ns == mtime
    _converged(tmp_path, cfg, list(res.status))
