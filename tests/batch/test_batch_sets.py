"""``set`` jobs: a model set converted by convert-set in a batch, gated on its end-to-end pipeline parity."""
from __future__ import annotations

from pathlib import Path

import pytest
from _batch_helpers import batch
from _cli_helpers import needs_paddle

from ocrconvert.errors import ExitCode, UsageError
from ocrconvert.zoo.batch import JobRecord, load_config, summary_md
from ocrconvert.zoo.batch.fingerprint import verified_on_disk


def _cfg(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "b.yaml"
    p.write_text(f"output: {tmp_path / 'out'}\nreport_dir: {tmp_path / 'report'}\n{body}")
    return p


def test_set_entries_make_set_jobs(tmp_path):
    cfg = load_config(_cfg(tmp_path, """
models:
  - set: {det: ppocrv4-det, cls: ppocrv4-cls, rec: ppocrv4-rec, dict: keys.txt}
    name: v4
    targets: [onnx, {target: torch, timeout: 1800}]
  - set: some/set-folder
    targets: [onnx]
  - model: ppocrv4-cls
    targets: [onnx]
"""))
    jobs = {j.id: j for j in cfg.jobs}
    assert set(jobs) == {"v4.onnx", "v4.torch", "set-folder.onnx", "ppocrv4-cls.onnx"}
    v4 = jobs["v4.onnx"]
    assert v4.kind == "set" and v4.output == tmp_path / "out" / "v4" / "onnx"
    assert dict(v4.stages) == {"det": "ppocrv4-det", "cls": "ppocrv4-cls", "rec": "ppocrv4-rec",
                               "dict": str(Path.cwd() / "keys.txt")}  # config paths: against the cwd
    assert jobs["v4.torch"].timeout == 1800 and jobs["v4.torch"].route == "onnx2torch"
    assert jobs["set-folder.onnx"].kind == "set" and jobs["set-folder.onnx"].stages is None
    assert jobs["ppocrv4-cls.onnx"].kind == "model"
    # the kind and the stages are part of what a set job's verdict depends on
    assert v4.settings()["kind"] == "set" and "kind" not in jobs["ppocrv4-cls.onnx"].settings()


@pytest.mark.parametrize("entry, fragment", [
    ("{set: {det: ppocrv4-det, rec: ppocrv4-rec}, targets: [onnx]}", "needs a name"),
    ("{set: {det: ppocrv4-det}, name: s, targets: [onnx]}", "names no rec model"),
    ("{set: {det: ppocrv4-det, rec: ppocrv4-rec, layout: x}, name: s, targets: [onnx]}", "unknown key 'layout'"),
    ("{set: x/, model: ppocrv4-det, targets: [onnx]}", "either model or set"),
    ("{set: x/, family: det-db, targets: [onnx]}", "cannot be set on a set job"),
    ("{set: x/, dict: k.txt, targets: [onnx]}", "cannot be set on a set job"),
    ("{set: [1], targets: [onnx]}", "set must be a path or a mapping"),
    ("{set: {det: ppocrv4-det, rec: ppocrv4-rec}, name: s, targets: [torch-native], options: {workspace_gib: 2}}",
     "cannot be honoured"),  # a TensorRT-only option: no route to torch-native takes it
])
def test_set_entry_errors(tmp_path, entry, fragment):
    with pytest.raises(UsageError) as e:
        load_config(_cfg(tmp_path, f"models:\n  - {entry}\n"))
    assert fragment in e.value.message and e.value.exit_code == ExitCode.USAGE


def test_reports_name_set_jobs_with_their_verdicts(tmp_path):
    from ocrconvert.zoo.batch import BatchResult

    rec = JobRecord("v4.onnx", "set(det=ppocrv4-det, rec=ppocrv4-rec)", "onnx", status="passed", ok=True, kind="set",
                    stages={"det": "PASSED", "rec": "PASSED"}, pipeline="PASSED")
    md = summary_md(BatchResult(tmp_path / "b.yaml", tmp_path, tmp_path, [rec], 1.0, "now"))
    assert "| set v4 | onnx | passed |" in md and "det PASSED, rec PASSED; pipeline PASSED" in md
    assert rec.to_dict()["kind"] == "set"


@needs_paddle
@pytest.mark.zoo
@pytest.mark.paddle
@pytest.mark.slow
def test_set_job_runs_gates_and_resumes(tmp_path, zoo_model):
    for name in ("ppocrv4-det", "ppocrv4-rec"):
        zoo_model(name)
    cfg = _cfg(tmp_path, """
models:
  - set: {det: ppocrv4-det, rec: ppocrv4-rec}
    name: v4
    targets: [onnx]
""")
    run = batch(cfg, timeout=1200)
    assert run.code == 0, run.stderr[-3000:]
    job = run.job("v4.onnx")
    assert job["kind"] == "set" and job["status"] == "passed"
    assert job["stages"] == {"det": "PASSED", "rec": "PASSED"} and job["pipeline"] == "PASSED"
    assert job["route"] == ["det: paddle2onnx", "rec: paddle2onnx"]
    assert job["artifact"] == str(tmp_path / "out" / "v4" / "onnx")
    assert Path(job["manifest"]).name == "ocrconvert-set.yaml"
    assert "set v4" in (tmp_path / "report" / "summary.md").read_text()
    spec = load_config(cfg).jobs[0]
    assert verified_on_disk(spec) is None

    again = batch(cfg, "--resume", timeout=600)
    assert again.code == 0 and again.status == {"v4.onnx": "resumed"}, again.stderr[-3000:]
    assert again.job("v4.onnx")["pipeline"] == "PASSED"

    # a stage changed behind the batch's back: the set no longer vouches for itself, --resume runs it again
    onnx = tmp_path / "out" / "v4" / "onnx" / "rec" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    assert "stage rec" in verified_on_disk(spec)
