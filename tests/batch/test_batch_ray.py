"""``ocrconvert batch --executor ray`` on a real two-node Ray cluster started here (a head and a worker node).

One cluster for the module (Ray starts slowly); one local run of the same config is the reference. A Ray run
gives the same records as the local run (passes, an expected failure, a timeout), on both nodes, with stdout
one JSON document and stderr empty; a job whose Ray worker is SIGKILLed mid-job is retried and gives the same
result; a job killed on every attempt is reported as crashed, never lost.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from _batch_helpers import CLI, BatchRun, batch, leftovers, live_processes, wait_until, write_config
from _cli_helpers import needs_paddle, needs_torch

from ocrconvert._compat import available

pytestmark = [pytest.mark.zoo, pytest.mark.paddle, pytest.mark.torch, needs_paddle, needs_torch,
              pytest.mark.skipif(not available("ray"), reason="needs ray (extra 'ray')"),
              pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")]

RAY = str(Path(sys.executable).parent / "ray")
# a raylet waits 15 s (by default) for its Python agents, which a loaded 2-core machine may need more for;
# no token auth (a token a local ray.init() left in ~/.ray would be sent to a cluster that does not use one)
RAY_VARS = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_agent_register_timeout_ms": "120000", "RAY_AUTH_MODE": "disabled"}
# ppocrv4-cls -> ONNX (paddle2onnx) and -> PyTorch (paddle2onnx + onnx2torch), a TensorRT job expected to fail
# (no TensorRT here: exit 4), and a job past its 1 s timeout (onnx2torch + its check: the batch cache cannot
# make it instant, as it makes a second paddle2onnx of the same source)
MODELS = """models:
  - model: ppocrv4-cls
    targets: [onnx, torch, {target: tensorrt, expect: {exit_code: 4}, reason: no TensorRT here}]
  - {model: ppocrv4-cls-onnx, name: late, timeout: 1, targets: [torch]}
"""
KEYS = ("status", "exit_code", "ok", "route", "summary", "worst_max_abs", "options", "seed", "expected")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], capture_output=True, text=True, timeout=timeout)


def _start_node(*args: str) -> None:
    """``ray start ARGS``; Ray gives a raylet 30 s to register, which a loaded 2-core machine may miss: 3 tries."""
    for attempt in range(3):
        res = _ray("start", *args)
        if res.returncode == 0:
            return
        if "--head" in args:
            _ray("stop", "--force")
    raise AssertionError(f"ray start {' '.join(args)} failed 3 times:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")


@pytest.fixture(scope="module")
def ray_cluster():
    """HOST:PORT of a head + one worker node on this machine, one CPU each; ``ray stop --force`` at the end."""
    temp = Path(tempfile.mkdtemp(prefix="ocxray", dir="/tmp"))  # short: Ray's unix socket paths are limited
    port = _free_port()
    address = f"127.0.0.1:{port}"
    store = str(80 * 1024 * 1024)
    mp = pytest.MonkeyPatch()  # the nodes, and the batches the tests start, see the same Ray settings
    for k, v in RAY_VARS.items():
        mp.setenv(k, v)
    try:
        _start_node("--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--include-dashboard", "false",
                    "--num-cpus", "1", "--object-store-memory", store, "--temp-dir", str(temp),
                    "--disable-usage-stats")
        _start_node("--address", address, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                    "--object-store-memory", store)
        yield address
    finally:
        _ray("stop", "--force", timeout=120)
        mp.undo()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, zoo_model) -> BatchRun:
    """The reference: the same config through the local executor."""
    tmp = tmp_path_factory.mktemp("local")
    run = batch(write_config(tmp, zoo_model, MODELS), "-j", "2", timeout=600)
    assert run.code == 5, run.stderr[-3000:]  # the timeout fails the batch
    return run


def _same_records(run: BatchRun, ref: BatchRun) -> None:
    assert run.stdout.lstrip().startswith("{") and run.stderr == "", run.stderr[-3000:]
    assert run.code == ref.code
    assert [j["id"] for j in run.report["jobs"]] == [j["id"] for j in ref.report["jobs"]]
    for job in run.report["jobs"]:
        want = ref.job(job["id"])
        assert {k: job[k] for k in KEYS} == {k: want[k] for k in KEYS}, job["id"]
        assert (job["error"] or {}).get("message") == (want["error"] or {}).get("message"), job["id"]
        # IP/NODE_ID (Ray advertises the machine's address for a node started on 127.0.0.1)
        assert re.fullmatch(r"[0-9.]+/[0-9a-f]{8}", job["node"] or "") and want["node"] is None, job
    assert run.status == {"ppocrv4-cls.onnx": "passed", "ppocrv4-cls.torch": "passed",
                          "ppocrv4-cls.tensorrt": "xfail", "late.torch": "timeout"}
    for job_id in ("ppocrv4-cls.onnx", "ppocrv4-cls.torch"):
        assert Path(run.job(job_id)["artifact"]).exists()


def test_ray_run_equals_local_run_then_resumes(tmp_path, zoo_model, ray_cluster, local_run):
    cfg = write_config(tmp_path, zoo_model, MODELS)
    run = batch(cfg, "--executor", "ray", "--address", ray_cluster, timeout=600)
    _same_records(run, local_run)
    assert len({j["node"] for j in run.report["jobs"]}) == 2  # both nodes ran jobs
    assert "# ray node" in Path(run.job("ppocrv4-cls.onnx")["log"]).read_text()
    assert leftovers(tmp_path / "out") == [".ocrconvert-batch/late.torch.job.json"]  # a timeout stays adoptable

    # --resume: the recorded jobs are not run again (only the timed-out one goes back to the cluster)
    again = batch(cfg, "--executor", "ray", "--address", ray_cluster, "--resume", timeout=600)
    assert again.code == 5 and again.stderr == "", again.stderr[-3000:]
    assert again.status == {"ppocrv4-cls.onnx": "resumed", "ppocrv4-cls.torch": "resumed",
                            "ppocrv4-cls.tensorrt": "xfail", "late.torch": "timeout"}


def _kill_ray_worker_of(out: Path, job_id: str, times: int, proc: subprocess.Popen) -> list[int]:
    """SIGKILL the Ray worker process running ``job_id`` (the parent of its job process), ``times`` times."""
    needle = str(out / ".ocrconvert-batch" / f"{job_id}.job.json")
    killed: list[int] = []

    def job_process() -> int | None:
        assert proc.poll() is None, "the batch ended before the kill"
        for pid in live_processes(out):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if needle.encode() in cmd and b"ocrconvert.zoo.batch.worker" in cmd:
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                try:  # a Ray worker, not one we killed (its orphaned job process may not have died yet)
                    parent = Path(f"/proc/{ppid}/cmdline").read_bytes()
                except OSError:
                    continue
                if parent.startswith(b"ray::") and ppid not in killed:
                    return ppid
        return None

    for _ in range(times):
        ray_worker = wait_until(job_process, 300, f"the job process of {job_id}")
        os.kill(ray_worker, signal.SIGKILL)
        killed.append(ray_worker)
    return killed


def _batch_in_background(cfg: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLI, "batch", str(cfg), *args, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, t0: float) -> BatchRun:
    try:
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        proc.kill()
    return BatchRun(proc.returncode, stdout, stderr, time.perf_counter() - t0, 0.0)


@pytest.mark.slow  # ~100 s; Ray's retry of a killed worker is also in the every-attempt test below (~20 s)
def test_ray_worker_killed_mid_job_is_retried(tmp_path, zoo_model, ray_cluster, local_run):
    cfg = write_config(tmp_path, zoo_model, MODELS)
    t0 = time.perf_counter()
    proc = _batch_in_background(cfg, "--executor", "ray", "--address", ray_cluster)
    log = tmp_path / "report" / "logs" / "ppocrv4-cls.torch.log"
    # mid-job: the conversion has started (the worker logs its progress)
    wait_until(lambda: proc.poll() is None and log.exists() and "[progress]" in log.read_text(), 300,
               "the torch job to be converting")
    _kill_ray_worker_of(tmp_path / "out", "ppocrv4-cls.torch", 1, proc)
    run = _finish(proc, t0)
    _same_records(run, local_run)  # the killed job was retried: same result as the local run
    log = Path(run.job("ppocrv4-cls.torch")["log"]).read_text()
    assert log.count("# ray node") == 2, log[-2000:]
    # a killed Ray worker's job process dies with it (at once, or when it first checks its parent)
    wait_until(lambda: live_processes(tmp_path) == [], 60, "the job processes of killed Ray workers to exit")


def test_ray_job_killed_on_every_attempt_is_reported(tmp_path, zoo_model, ray_cluster):
    from ocrconvert.zoo.batch.ray_executor import RETRIES

    cfg = write_config(tmp_path, zoo_model, "models:\n  - {model: ppocrv4-cls, name: doomed, targets: [onnx]}\n")
    t0 = time.perf_counter()
    proc = _batch_in_background(cfg, "--executor", "ray", "--address", ray_cluster)
    _kill_ray_worker_of(tmp_path / "out", "doomed.onnx", RETRIES + 1, proc)
    run = _finish(proc, t0)
    assert run.code == 5 and run.stderr == "", run.stderr[-3000:]
    job = run.job("doomed.onnx")
    assert job["status"] == "crashed" and job["exit_code"] == 5 and job["node"] is None, job
    assert f"its Ray task failed {RETRIES + 1} times" in job["error"]["message"], job["error"]
    assert not (tmp_path / "out" / "doomed" / "onnx" / "model.onnx").exists()
    # a killed Ray worker's job process dies with it (at once, or when it first checks its parent)
    wait_until(lambda: live_processes(tmp_path) == [], 60, "the job processes of killed Ray workers to exit")


def test_unreachable_cluster_and_address_without_ray_are_usage_errors(tmp_path, zoo_model):
    """No cluster needed: refused before any job starts (exit 2, one message and a hint, JSON on stdout)."""
    cfg = write_config(tmp_path, zoo_model, "models:\n  - {model: ppocrv4-cls, targets: [onnx]}\n")
    run = batch(cfg, "--executor", "ray", "--address", f"127.0.0.1:{_free_port()}", timeout=120)
    assert run.code == 2 and run.stderr == "", run.stderr[-2000:]
    assert "cannot reach the Ray cluster at 127.0.0.1:" in run.report["message"], run.report
    assert "--address" in run.report["hint"]
    assert list((tmp_path / "out" / ".ocrconvert-batch").glob("*.job.json")) == []  # no job was started
    run = batch(cfg, "--address", "127.0.0.1:6379", timeout=120)
    assert run.code == 2 and "executor is local" in run.report["message"], run.report


def test_ray_batch_interrupted_takes_its_tasks_down(tmp_path, zoo_model, ray_cluster):
    """Ctrl-C mid-job: exit 130 with the JSON error, the job's Ray task cancelled and its job process gone."""
    cfg = write_config(tmp_path, zoo_model, "models:\n  - {model: ppocrv4-cls, name: stopped, targets: [onnx]}\n")
    t0 = time.perf_counter()
    proc = _batch_in_background(cfg, "--executor", "ray", "--address", ray_cluster)
    log = tmp_path / "report" / "logs" / "stopped.onnx.log"
    wait_until(lambda: proc.poll() is None and log.exists() and "[progress]" in log.read_text(), 300,
               "the job to be converting")
    proc.send_signal(signal.SIGINT)
    run = _finish(proc, t0)
    assert run.code == 130 and run.stderr == "", run.stderr[-2000:]
    assert run.report["error"] == "Interrupted"
    wait_until(lambda: live_processes(tmp_path) == [], 60, "the interrupted job's processes to exit")
    assert not (tmp_path / "out" / "stopped" / "onnx" / "model.onnx").exists()
