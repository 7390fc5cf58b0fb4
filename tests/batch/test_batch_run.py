"""Real batch runs on small zoo models: SIGKILL mid-run then --resume, a crashing job, a timeout."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _cli_helpers import needs_paddle, needs_torch

pytestmark = [pytest.mark.torch, pytest.mark.zoo]

CLI = "from ocrconvert.cli.app import main; main()"


def _write_config(tmp: Path, zoo_model, body: str) -> Path:
    zoo_model("ppocrv4-cls-onnx"), zoo_model("ppocrv4-det-onnx"), zoo_model("ppocrv4-cls")  # fetched once, cached
    cfg = tmp / "batch.yaml"
    cfg.write_text(f"output: {tmp / 'out'}\nreport_dir: {tmp / 'report'}\n{body}")
    return cfg


def _start(cfg: Path, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLI, "batch", str(cfg), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _workers(job_file: Path) -> list[int]:
    """pids of live processes whose command line names ``job_file`` (Linux /proc)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
                state = (d / "stat").read_text().split(")")[-1].split()[0]
            except OSError:
                continue
            if str(job_file).encode() in cmd and state != "Z":
                pids.append(int(d.name))
    return pids


def _wait_for(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".partial", ".tmp", ".old"))]


needs_proc = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")


@needs_torch
@needs_paddle
@needs_proc
@pytest.mark.paddle
def test_sigkill_mid_run_then_resume(tmp_path, zoo_model):
    from ocrconvert.zoo.batch import STATE_DIR, load_config, verified_on_disk

    cfg = _write_config(tmp_path, zoo_model, """
models:
  - {model: ppocrv4-cls, targets: [onnx]}
  - {model: ppocrv4-cls-onnx, targets: [torch]}
  - {model: ppocrv4-det-onnx, targets: [torch]}
""")
    state = tmp_path / "out" / STATE_DIR
    proc = _start(cfg, "-j", "1")
    # first job finished and recorded; the second one is running
    _wait_for(lambda: (state / "ppocrv4-cls.onnx.json").exists(), 120, "the first job to finish")
    second = state / "ppocrv4-cls-onnx.torch.job.json"
    _wait_for(lambda: _workers(second), 60, "the second job to start")
    time.sleep(1.0)
    first_art = tmp_path / "out" / "ppocrv4-cls" / "onnx" / "model.onnx"
    first_mtime = first_art.stat().st_mtime_ns
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # the job processes (their own sessions) follow the batch down
    _wait_for(lambda: not _workers(second), 15, "the orphaned job to die")
    assert not (tmp_path / "report" / "report.json").exists()
    assert not (tmp_path / "out" / "ppocrv4-cls-onnx" / "torch").exists()  # never half an artifact

    res = subprocess.run([sys.executable, "-c", CLI, "batch", str(cfg), "-j", "2", "--resume", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    report = json.loads(res.stdout)
    status = {j["id"]: j["status"] for j in report["jobs"]}
    assert status == {"ppocrv4-cls.onnx": "resumed", "ppocrv4-cls-onnx.torch": "passed",
                      "ppocrv4-det-onnx.torch": "passed"}
    assert first_art.stat().st_mtime_ns == first_mtime  # not redone
    assert json.loads((tmp_path / "report" / "report.json").read_text())["exit_code"] == 0
    for job in load_config(cfg).jobs:
        assert verified_on_disk(job) is None, job.id
    assert not _leftovers(tmp_path / "out")

    # a tampered artifact is never trusted: it is redone, the others stay resumed
    onnx_file = tmp_path / "out" / "ppocrv4-cls" / "onnx" / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:1000])
    res = subprocess.run([sys.executable, "-c", CLI, "batch", str(cfg), "--resume", "--json"],
                         capture_output=True, text=True, timeout=300)
    status = {j["id"]: j["status"] for j in json.loads(res.stdout)["jobs"]}
    assert status == {"ppocrv4-cls.onnx": "passed", "ppocrv4-cls-onnx.torch": "resumed",
                      "ppocrv4-det-onnx.torch": "resumed"}, res.stderr[-2000:]


@needs_torch
@needs_proc
def test_crash_and_timeout_do_not_stop_the_others(tmp_path, zoo_model):
    """One job dies of SIGSEGV, one runs past its timeout; the third passes; batch exits 5."""
    from ocrconvert.zoo.batch import STATE_DIR

    cfg = _write_config(tmp_path, zoo_model, """
models:
  - {model: ppocrv4-cls-onnx, name: crashing, targets: [torch]}
  - {model: ppocrv4-det-onnx, name: slow, targets: [{target: torch, timeout: 3}]}
  - {model: ppocrv4-cls-onnx, targets: [torch]}
""")
    proc = _start(cfg, "-j", "2", "--json")
    job_file = tmp_path / "out" / STATE_DIR / "crashing.torch.job.json"
    pids = _wait_for(lambda: _workers(job_file), 60, "the crashing job to start")
    time.sleep(1.0)
    for pid in pids:
        os.kill(pid, signal.SIGSEGV)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 5, err[-3000:]
    jobs = {j["id"]: j for j in json.loads(out)["jobs"]}
    assert jobs["crashing.torch"]["status"] == "crashed"
    assert "SIGSEGV" in jobs["crashing.torch"]["error"]["message"]
    assert jobs["slow.torch"]["status"] == "timeout" and jobs["slow.torch"]["exit_code"] == 5
    assert "timeout of 3 s" in jobs["slow.torch"]["error"]["message"]
    assert jobs["ppocrv4-cls-onnx.torch"]["status"] == "passed"
    junit = (tmp_path / "report" / "junit.xml").read_text()
    assert junit.count("<failure") == 2
    assert not (tmp_path / "out" / "crashing" / "torch").exists() and not (tmp_path / "out" / "slow" / "torch").exists()
    assert not _leftovers(tmp_path / "out")


@needs_torch
def test_expected_failure_reports_ops_and_passes(tmp_path, zoo_model):
    zoo_model("slanet-plus-onnx")
    cfg = _write_config(tmp_path, zoo_model, """
models:
  - model: slanet-plus-onnx
    targets:
      - {target: torch, expect: {exit_code: 3, unsupported_ops: [Loop]}, reason: no Loop converter}
""")
    res = subprocess.run([sys.executable, "-c", CLI, "batch", str(cfg), "--json"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    job = json.loads(res.stdout)["jobs"][0]
    assert job["status"] == "xfail" and job["exit_code"] == 3
    assert job["error"]["unsupported_ops"] == ["Loop"]
    md = (tmp_path / "report" / "summary.md").read_text()
    assert "no Loop converter" in md
