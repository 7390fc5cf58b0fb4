"""The local worker pool: long-lived workers run job after job; a worker that dies (a crash, a job past its
timeout) has its job reported and is replaced; no worker outlives the batch. One small batch (the v4 cls ONNX
twin to torch, unverified: parity is not the point here) drives it all."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from _batch_helpers import batch, leftovers, live_processes, write_config
from _cli_helpers import needs_torch

pytestmark = [pytest.mark.torch, pytest.mark.zoo, needs_torch,
              pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")]

HEADER = re.compile(r"\(worker (\d+), job (\d+) of this worker\)")


def _worker(run, job_id: str) -> tuple[int, int]:
    """(worker pid, how many jobs that worker had run with this one) from the job log's header."""
    m = HEADER.search(Path(run.job(job_id)["log"]).read_text().splitlines()[0])
    assert m, f"no worker header in {job_id}'s log"
    return int(m[1]), int(m[2])


def test_pool_reuses_workers_replaces_dead_ones_and_reports_their_jobs(tmp_path, zoo_model):
    cfg = write_config(tmp_path, zoo_model, """
defaults: {verify: false}
models:
  - {model: ppocrv4-cls-onnx, name: crash, targets: [torch]}
  - {model: ppocrv4-cls-onnx, name: slow, targets: [{target: torch, timeout: 1, verify: true}]}
  - {model: ppocrv4-cls-onnx, name: a, targets: [torch]}
  - {model: ppocrv4-cls-onnx, name: b, targets: [torch]}
""")
    run = batch(cfg, "-j", "1", kill_at="worker:started@crash.torch")
    assert run.code == 5, run.stderr[-3000:]
    assert run.status == {"crash.torch": "crashed", "slow.torch": "timeout", "a.torch": "passed", "b.torch": "passed"}
    assert "SIGKILL" in run.job("crash.torch")["error"]["message"]
    assert "timeout of 1 s" in run.job("slow.torch")["error"]["message"]
    crashed, timed_out, a, b = (_worker(run, j) for j in ("crash.torch", "slow.torch", "a.torch", "b.torch"))
    # a dead worker is replaced by a fresh one; a live one takes the next job (imports paid once)
    assert crashed[1] == timed_out[1] == a[1] == 1
    assert len({crashed[0], timed_out[0], a[0]}) == 3
    assert b == (a[0], 2)
    assert run.job("b.torch")["timings"]["worker_imports"] == 0.0 < run.job("a.torch")["timings"]["worker_imports"]
    for j in ("a.torch", "b.torch"):
        t = run.job(j)["timings"]
        assert t["convert"] > 0 and t["verify"] == 0.0 and t["job"] >= t["convert"], t
    assert not (tmp_path / "out" / "slow" / "torch").exists()
    assert [p for p in leftovers(tmp_path) if not p.endswith(".job.json")] == []
    assert live_processes(tmp_path) == []  # every worker went with the batch
