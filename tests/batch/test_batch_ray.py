"""``ocrconvert batch --executor ray`` on a real two-node Ray cluster started here (a head and a worker node).

One cluster for the module (Ray starts slowly), every one of its servers listening on 127.0.0.1 only
(``python -m ocrconvert.zoo.batch.ray_local_cluster``; checked); one local run of the same config is the reference. A Ray run
gives the same records as the local run (passes, an expected failure, a timeout), on both nodes, with stdout
one JSON document and stderr empty; a job whose Ray worker is SIGKILLed mid-job is retried and gives the same
result; a job killed on every attempt is reported as crashed, never lost.
"""
from __future__ import annotations

import ipaddress
import json
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

# a raylet waits 15 s (by default) for its Python agents, which a loaded 2-core machine may need more for;
# no token auth (a token a local ray.init() left in ~/.ray would be sent to a cluster that does not use one);
# a node address of 127.0.0.1 stays 127.0.0.1 (the batches' drivers too), see ray_local_cluster's docstring
RAY_VARS = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_agent_register_timeout_ms": "120000", "RAY_AUTH_MODE": "disabled",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
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


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def _listeners(pids: set[int]) -> list[tuple[int, str]]:
    """(pid, address) of every TCP socket listening in ``pids`` (from /proc: no psutil, no ss needed)."""
    listening = {}  # socket inode -> local address
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A":  # TCP_LISTEN
                continue
            raw = bytes.fromhex(f[1].split(":")[0])  # 32-bit words in host (little-endian) order
            ip = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
            listening[f[9]] = str(getattr(ip, "ipv4_mapped", None) or ip)
    found = []
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in listening:
                found.append((pid, listening[link[8:-1]]))
    return found


def _not_loopback(pids: set[int]) -> list[tuple[int, str]]:
    return [(pid, addr) for pid, addr in _listeners(pids) if not ipaddress.ip_address(addr).is_loopback]


def test_listener_check_sees_a_socket_on_all_interfaces():
    """The check below is real: a socket listening on 0.0.0.0 in a process is reported, one on 127.0.0.1 is not."""
    with socket.socket() as wide, socket.socket() as local:
        wide.bind(("0.0.0.0", 0))
        wide.listen()
        local.bind(("127.0.0.1", 0))
        local.listen()
        mine = _listeners({os.getpid()})
        assert (os.getpid(), "0.0.0.0") in mine and (os.getpid(), "127.0.0.1") in mine, mine
        assert _not_loopback({os.getpid()}) == [(os.getpid(), "0.0.0.0")]


@pytest.fixture(scope="module")
def ray_cluster():
    """HOST:PORT of a head + one worker node on this machine, one CPU each, every server on 127.0.0.1."""
    temp = Path(tempfile.mkdtemp(prefix="ocxray", dir="/tmp"))  # short: Ray's unix socket paths are limited
    mp = pytest.MonkeyPatch()  # the nodes, and the batches the tests start, see the same Ray settings
    for k, v in RAY_VARS.items():
        mp.setenv(k, v)
    proc = subprocess.Popen([sys.executable, "-m", "ocrconvert.zoo.batch.ray_local_cluster", "--nodes", "2",
                             "--cpus", "1", "--temp-dir", str(temp), "--lifetime", "3000"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 300  # bounded: a loaded machine starts Ray slowly
        while not line.startswith("{") and proc.poll() is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
        assert line.startswith("{"), f"the Ray cluster did not start (exit {proc.poll()})"
        address = json.loads(line)["address"]
        assert address.startswith("127.0.0.1:")
        pids = _descendants(proc.pid)  # the cluster's processes (and later, its workers)
        assert len(_listeners(pids)) >= 3 and _not_loopback(pids) == [], _listeners(pids)
        proc.address = address
        yield proc
    finally:
        proc.terminate()  # the cluster stops every process it started
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
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
        # IP/NODE_ID: the nodes' address is 127.0.0.1
        assert re.fullmatch(r"127\.0\.0\.1/[0-9a-f]{8}", job["node"] or "") and want["node"] is None, job
    assert run.status == {"ppocrv4-cls.onnx": "passed", "ppocrv4-cls.torch": "passed",
                          "ppocrv4-cls.tensorrt": "xfail", "late.torch": "timeout"}
    for job_id in ("ppocrv4-cls.onnx", "ppocrv4-cls.torch"):
        assert Path(run.job(job_id)["artifact"]).exists()


def test_ray_run_equals_local_run_then_resumes(tmp_path, zoo_model, ray_cluster, local_run):
    cfg = write_config(tmp_path, zoo_model, MODELS)
    run = batch(cfg, "--executor", "ray", "--address", ray_cluster.address, timeout=600)
    _same_records(run, local_run)
    assert len({j["node"] for j in run.report["jobs"]}) == 2  # both nodes ran jobs
    assert "# ray node" in Path(run.job("ppocrv4-cls.onnx")["log"]).read_text()
    # nothing the cluster runs listens beyond this machine: its servers, and the Ray workers that ran the jobs
    pids = _descendants(ray_cluster.pid)
    assert _not_loopback(pids) == [], _listeners(pids)
    assert leftovers(tmp_path / "out") == [".ocrconvert-batch/late.torch.job.json"]  # a timeout stays adoptable

    # --resume: the recorded jobs are not run again (only the timed-out one goes back to the cluster)
    again = batch(cfg, "--executor", "ray", "--address", ray_cluster.address, "--resume", timeout=600)
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
    proc = _batch_in_background(cfg, "--executor", "ray", "--address", ray_cluster.address)
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
    proc = _batch_in_background(cfg, "--executor", "ray", "--address", ray_cluster.address)
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
    proc = _batch_in_background(cfg, "--executor", "ray", "--address", ray_cluster.address)
    log = tmp_path / "report" / "logs" / "stopped.onnx.log"
    wait_until(lambda: proc.poll() is None and log.exists() and "[progress]" in log.read_text(), 300,
               "the job to be converting")
    proc.send_signal(signal.SIGINT)
    run = _finish(proc, t0)
    assert run.code == 130 and run.stderr == "", run.stderr[-2000:]
    assert run.report["error"] == "Interrupted"
    wait_until(lambda: live_processes(tmp_path) == [], 60, "the interrupted job's processes to exit")
    assert not (tmp_path / "out" / "stopped" / "onnx" / "model.onnx").exists()


def test_ray_started_by_the_batch_listens_on_loopback_only(tmp_path, zoo_model, monkeypatch):
    """No --address: the Ray the batch starts (GCS, raylet, agents, the driver, the task's worker) is on 127.0.0.1."""
    for k in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
        monkeypatch.delenv(k, raising=False)  # the executor sets what it needs
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    cfg = write_config(tmp_path, zoo_model, "models:\n  - {model: ppocrv4-cls, name: own, targets: [onnx, torch]}\n")
    t0 = time.perf_counter()
    proc = _batch_in_background(cfg, "--executor", "ray", "-j", "1")
    seen: list[tuple[int, str]] = []

    def cmdline(pid: int) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return b""

    def task_running() -> bool:  # a Ray worker (the job's) listens: every kind of Ray server has started
        assert proc.poll() is None, "the batch ended before its Ray worker was seen"
        seen[:] = _listeners(_descendants(proc.pid) | {proc.pid})
        return any(cmdline(pid).startswith(b"ray::") and not cmdline(pid).startswith((b"ray::RuntimeEnv", b"ray::Dash"))
                   for pid, _ in seen)

    try:
        wait_until(task_running, 300, "the batch's job to run in its own Ray")
        pids = _descendants(proc.pid) | {proc.pid}
        assert len(_listeners(pids)) >= 4 and _not_loopback(pids) == [], _listeners(pids)
    finally:
        run = _finish(proc, t0)
    assert run.code == 0 and run.stderr == "", run.stderr[-2000:]
    assert run.status == {"own.onnx": "passed", "own.torch": "passed"}
    assert re.fullmatch(r"127\.0\.0\.1/[0-9a-f]{8}", run.job("own.onnx")["node"] or ""), run.job("own.onnx")
