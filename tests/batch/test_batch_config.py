"""Batch config schema, typed route options, fingerprint, kill points, verdict policy and reports
(no model runs here)."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from _cli_helpers import run_cli

from ocrconvert.errors import ExitCode, UsageError
from ocrconvert.options import Precision
from ocrconvert.zoo.batch import (BatchResult, Expectation, JobRecord, fingerprint, load_config, parse_config,
                                  junit_xml, summary_md, write_reports)
from ocrconvert.zoo.batch.killpoints import KillPoint, parse as parse_kill_points

REPO = Path(__file__).resolve().parents[2]


def _cfg(tmp_path: Path, text: str):
    p = tmp_path / "b.yaml"
    p.write_text(text)
    return load_config(p)


def test_zoo_config_covers_every_zoo_model():
    from ocrconvert.zoo import entries

    cfg = load_config(REPO / "configs" / "zoo" / "ppocr.yaml")
    models = {j.model for j in cfg.jobs if j.kind == "model"}
    assert models == set(entries())
    sets = {j.id: dict(j.stages) for j in cfg.jobs if j.kind == "set"}
    assert sets == {"ppocrv4-set.onnx": {"det": "ppocrv4-det", "cls": "ppocrv4-cls", "rec": "ppocrv4-rec"}}
    targets = {(j.model, j.target) for j in cfg.jobs}
    for paddle in ("ppocrv4-det", "ppocrv4-rec", "ppocrv4-cls", "ppocrv5-mobile-det", "ppocrv5-mobile-rec", "slanet-plus"):
        assert {(paddle, "onnx"), (paddle, "torch")} <= targets
    # no expected failures: SLANet-plus's Loop converts to PyTorch (ocrconvert.onnx2torch_ops)
    assert {j.id: j.expect for j in cfg.jobs if j.expect} == {}
    assert {("slanet-plus", "torch"), ("slanet-plus-onnx", "torch")} <= targets
    for onnx_only in ("ppocrv6-small-det-onnx", "ppocrv6-small-rec-onnx", "ppocrv6-tiny-det-onnx",
                      "ppocrv6-tiny-rec-onnx", "doc-orientation-onnx"):  # the native route from ONNX
        assert (onnx_only, "torch-native") in targets


def test_gpu_config_builds_fp16_aot_packages():
    cfg = load_config(REPO / "configs" / "zoo" / "ppocr-gpu.yaml")
    fp16 = [j for j in cfg.jobs if j.precision is Precision.FP16]
    assert fp16 and all(j.target == "torch-aot" and j.options == {"device": "cuda", "precision": "fp16"} for j in fp16)


def test_defaults_model_and_target_options_merge(tmp_path):
    cfg = _cfg(tmp_path, """
output: out
defaults: {targets: [onnx], timeout: 30, atol: 1.0e-3}
models:
  - model: ppocrv4-cls
    rtol: 0.01
    targets: [onnx, {target: torch, atol: {"": 1.0e-4, logits: 1.0e-2}, timeout: 99}]
  - model: some/dir/m.onnx
    name: mine
""")
    jobs = {j.id: j for j in cfg.jobs}
    assert set(jobs) == {"ppocrv4-cls.onnx", "ppocrv4-cls.torch", "mine.onnx"}
    assert jobs["ppocrv4-cls.onnx"].atol == 1e-3 and jobs["ppocrv4-cls.onnx"].rtol == 0.01
    assert jobs["ppocrv4-cls.torch"].atol == {"": 1e-4, "logits": 1e-2} and jobs["ppocrv4-cls.torch"].timeout == 99
    assert jobs["mine.onnx"].model == str(Path.cwd() / "some/dir/m.onnx")
    assert jobs["ppocrv4-cls.torch"].output == (Path.cwd() / "out" / "ppocrv4-cls" / "torch").resolve()
    assert all(j.seed == 0 and j.verify and j.options == {} and j.precision is None for j in jobs.values())


@pytest.mark.parametrize("text, fragment", [
    ("output: o\nmodels: [a]\nextra: 1\n", "unknown key 'extra'"),
    ("output: o\ndefaults: {target: [onnx]}\nmodels: [a]\n", "Did you mean 'targets'"),
    ("output: o\nmodels: [{model: a, targets: [onnx], expect: {code: 3}}]\n", "unknown key 'code'"),
    ("output: o\nmodels: [{model: a, targets: [{target: torch, expect: {exit_code: 0}}]}]\n", "expect.exit_code"),
    ("output: o\nmodels: [{model: a, targets: [onnx], atol: -1}]\n", "atol must be"),
    ("output: o\nmodels: [{model: a, targets: [onnx], precision: fp8}]\n", "'fp8' is not a precision"),
    ("output: o\nmodels: [{model: a, targets: [onnx], seed: -1}]\n", "seed must be a non-negative integer"),
    ("output: o\nmodels: [{model: a, targets: [onnx], verify: 0}]\n", "verify must be true or false"),
    ("output: o\nmodels: [{model: a, targets: [onnx], options: [opset]}]\n", "options must be a mapping"),
    ("output: o\nmodels: [{model: a, targets: [onnx], options: {precision: fp16}}]\n", "precision goes on the job"),
    ("models: [a]\n", "'output'"),
    ("output: o\nversion: 2\nmodels: [a]\n", "version 2"),
    ("output: o\nmodels: [a]\n", "no targets"),
    ("output: o\nmodels: [{model: a, targets: []}]\n", "non-empty list"),
])
def test_config_errors_are_usage_errors(tmp_path, text, fragment):
    with pytest.raises(UsageError) as info:
        _cfg(tmp_path, text)
    assert fragment in info.value.message + info.value.hint
    assert info.value.exit_code == ExitCode.USAGE


def test_yaml_tags_are_refused_not_executed(tmp_path):
    marker = tmp_path / "PWNED"
    with pytest.raises(UsageError, match="not valid YAML"):
        _cfg(tmp_path, f"output: o\nmodels: !!python/object/apply:os.system ['touch {marker}']\n")
    assert not marker.exists()


def _rec(id_, status, code, ok, **kw):
    r = JobRecord(id_, id_.split(".")[0], id_.split(".")[1], status=status, exit_code=code, ok=ok, **kw)
    return r


@pytest.mark.parametrize("records, code", [
    ([_rec("a.onnx", "passed", 0, True), _rec("b.torch", "xfail", 3, True)], 0),
    ([_rec("a.onnx", "passed", 0, True), _rec("b.torch", "failed", 3, False)], 5),
    ([_rec("a.onnx", "crashed", 5, False), _rec("b.torch", "failed", 6, False)], 6),
    ([_rec("a.onnx", "timeout", 5, False)], 5),
    ([_rec("a.onnx", "failed", 4, False)], 5),
    ([_rec("a.onnx", "resumed", 0, True)], 0),
])
def test_batch_exit_code_policy(records, code, tmp_path):
    res = BatchResult(tmp_path / "c.yaml", tmp_path, tmp_path / "r", records, 1.0, "now")
    assert res.exit_code == code


def test_expectation_matching():
    exp = Expectation(3, ("Loop",), None)
    assert exp.matches({"exit_code": 3, "error": {"unsupported_ops": ["Loop"]}})
    assert not exp.matches({"exit_code": 3, "error": {"unsupported_ops": ["Loop", "If"]}})  # a new op is news
    assert not exp.matches({"exit_code": 5, "error": {}})
    assert Expectation(5, None, "Where(16)").matches({"exit_code": 5, "error": {"message": "no Where(16) kernel"}})


def test_reports_are_written_and_parse(tmp_path):
    recs = [_rec("a.onnx", "passed", 0, True, worst_max_abs=1e-6, summary="PASSED | x", seconds=1.25),
            _rec("b.torch", "failed", 3, False, error={"error": "UnsupportedOpsError", "message": "1 op: Loop <&>",
                                                        "unsupported_ops": ["Loop"], "exit_code": 3}),
            _rec("c.torch", "xfail", 3, True, reason="known | gap", error={"message": "Loop"})]
    res = BatchResult(tmp_path / "c.yaml", tmp_path, tmp_path / "rep", recs, 2.5, "2026-01-01T00:00:00Z")
    write_reports(res)
    rep = tmp_path / "rep"
    assert sorted(p.name for p in rep.iterdir()) == ["junit.xml", "report.json", "summary.md"]   # no temporaries

    doc = json.loads((rep / "report.json").read_text())
    assert doc["exit_code"] == 5 and doc["passed"] is False and doc["seconds"] == 2.5
    assert doc["counts"] == {"passed": 1, "failed": 1, "xfail": 1}
    assert [(j["id"], j["model"], j["target"], j["status"], j["exit_code"], j["ok"]) for j in doc["jobs"]] == [
        ("a.onnx", "a", "onnx", "passed", 0, True), ("b.torch", "b", "torch", "failed", 3, False),
        ("c.torch", "c", "torch", "xfail", 3, True)]
    assert doc["jobs"][0]["worst_max_abs"] == 1e-6 and doc["jobs"][1]["error"]["unsupported_ops"] == ["Loop"]

    root = ET.parse(rep / "junit.xml").getroot()
    (suite,) = root.findall("testsuite")
    assert (root.get("tests"), root.get("failures")) == ("3", "1")
    assert [suite.get(k) for k in ("tests", "failures", "skipped", "errors")] == ["3", "1", "1", "0"]
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("ocrconvert.batch.a", "onnx"), ("ocrconvert.batch.b", "torch"), ("ocrconvert.batch.c", "torch")]
    assert cases[0].get("time") == "1.250" and cases[0].find("failure") is None and cases[0].find("skipped") is None
    assert cases[0].find("system-out").text == "PASSED | x"
    failure = cases[1].find("failure")
    assert failure.get("type") == "UnsupportedOpsError" and failure.get("message") == "exit 3: 1 op: Loop <&>"
    assert json.loads(failure.text)["unsupported_ops"] == ["Loop"]        # the escaped body round-trips
    assert cases[2].find("failure") is None and cases[2].find("skipped").get("message") == "expected failure: Loop"

    md = (rep / "summary.md").read_text()
    assert md.splitlines()[0] == "# ocrconvert batch: FAILED (exit 5)"
    assert "1 failed, 1 passed, 1 xfail" in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert rows == ["| a | onnx | passed | 0 | 1e-06 | 1.2 | PASSED \\| x |",
                    "| b | torch | failed | 3 | - | 0.0 | 1 op: Loop <&> |",
                    "| c | torch | xfail | 3 | - | 0.0 | expected: known \\| gap (Loop) |"]
    assert junit_xml(res) == (rep / "junit.xml").read_text() and summary_md(res) == md


def test_parse_config_rejects_non_mapping():
    with pytest.raises(UsageError, match="must be a mapping"):
        parse_config(["a"], Path("x.yaml"))


# ----------------------------------------------------------------------- typed route options
def _one(tmp_path, model: str, target: str, extra: str = "", defaults: str = ""):
    cfg = _cfg(tmp_path, f"output: out\n{defaults}models:\n  - {{model: {model}, targets: [{{target: {target}{extra}}}]}}\n")
    (job,) = cfg.jobs
    return job


@pytest.mark.parametrize("model, target, extra, fragment", [
    # a value the route's own record refuses (paddle2onnx writes opsets 7..21)
    ("ppocrv4-cls", "onnx", ", options: {opset: 99}", "outside what paddle2onnx writes"),
    # a key no hop of the route takes: onnx2torch has no opset
    ("ppocrv4-cls-onnx", "torch", ", options: {opset: 14}", "cannot be honoured"),
    ("ppocrv4-cls-onnx", "torch", ", options: {allow_partial: true}", "cannot be honoured"),
    # a wrong type, caught by the record's typed fields
    ("ppocrv4-cls", "torch-native", ", options: {allow_partial: yes please}", "allow_partial"),
    # a precision a route cannot build: paddle2onnx and onnx2torch build fp32 only
    ("ppocrv4-cls", "onnx", ", precision: fp16", "precision fp16 cannot be built"),
    ("ppocrv4-cls-onnx", "torch", ", precision: int8", "precision int8 cannot be built"),
    # aot-build takes the precision, and refuses fp16 on the CPU (it builds fp16 for CUDA only)
    ("ppocrv4-cls", "torch-aot", ", precision: fp16, options: {device: cpu}", "built for CUDA"),
    ("ppocrv4-cls", "torch-aot", ", precision: bf16", "bf16 is not available"),
])
def test_route_options_are_validated_by_the_route_at_load_time(tmp_path, model, target, extra, fragment):
    with pytest.raises(UsageError) as info:
        _one(tmp_path, model, target, extra)
    assert info.value.exit_code == ExitCode.USAGE
    assert f"job {model}.{target}" in info.value.message  # names the job
    assert fragment in info.value.message + info.value.hint


def test_route_options_reach_the_job(tmp_path):
    assert _one(tmp_path, "ppocrv4-cls", "onnx", ", options: {opset: 13}").options == {"opset": 13}
    assert _one(tmp_path, "ppocrv4-cls", "torch-native", ", options: {allow_partial: true}").options == {"allow_partial": True}
    # the graph route from Paddle runs paddle2onnx first: opset is its option
    assert _one(tmp_path, "ppocrv4-cls", "torch", ", options: {opset: 13}").options == {"opset": 13}
    # options merge key by key: defaults < model < target
    job = _one(tmp_path, "ppocrv4-cls", "torch-aot", ", options: {device: cuda}",
               defaults="defaults: {options: {autotune: true, device: cpu}}\n")
    assert job.options == {"autotune": True, "device": "cuda"}


def test_precision_reaches_the_route_that_builds_in_it(tmp_path):
    job = _one(tmp_path, "ppocrv4-cls", "torch-aot", ", precision: fp16")
    assert job.precision is Precision.FP16 and job.options == {"precision": "fp16"}
    # fp32 on a route that only builds fp32 is what it builds: accepted, nothing to hand the route
    job = _one(tmp_path, "ppocrv4-cls", "onnx", ", precision: fp32")
    assert job.precision is Precision.FP32 and job.options == {}


def test_tensorrt_precision_reaches_trt_build_or_is_refused(tmp_path):
    from ocrconvert import registry
    from ocrconvert.pipeline import available_converters

    available_converters()
    if "precision" in registry.get("trt-build").options_type.field_names():
        assert _one(tmp_path, "ppocrv4-cls-onnx", "tensorrt", ", precision: fp16").options == {"precision": "fp16"}
    else:  # a route that cannot take the precision never silently builds fp32
        with pytest.raises(UsageError, match="precision fp16 cannot be built"):
            _one(tmp_path, "ppocrv4-cls-onnx", "tensorrt", ", precision: fp16")


def test_route_option_at_job_level_points_to_options(tmp_path):
    with pytest.raises(UsageError) as info:
        _cfg(tmp_path, "output: o\nmodels: [{model: ppocrv4-cls, targets: [onnx], opset: 14}]\n")
    assert "unknown key 'opset'" in info.value.message
    assert "options: {opset: ...}" in info.value.hint


def test_bad_route_option_is_exit_2_naming_the_job_from_the_cli(tmp_path):
    cfg = tmp_path / "b.yaml"
    cfg.write_text(f"output: {tmp_path / 'out'}\nmodels:\n  - {{model: ppocrv4-cls, targets: [onnx, "
                   f"{{target: torch-aot, precision: fp16, options: {{device: cpu}}}}]}}\n")
    res = run_cli("batch", cfg, "--json")
    assert res.code == 2, res.stderr
    err = json.loads(res.stdout)
    assert err["error"] == "BatchConfigError" and "job ppocrv4-cls.torch-aot" in err["message"]
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_fingerprint_covers_seed_precision_options_and_verify(tmp_path):
    def fp(extra: str) -> str:
        return fingerprint(_one(tmp_path, "ppocrv4-cls", "torch-aot", extra), "src", {"v": 1})

    base = fp("")
    assert fp("") == base
    changed = [fp(", seed: 7"), fp(", precision: fp16"), fp(", options: {autotune: true}"), fp(", verify: false")]
    assert len({base, *changed}) == 5


# ------------------------------------------------------------------------------- kill points
def test_kill_points_parse():
    assert parse_kill_points(None) == ()
    assert parse_kill_points("batch:staged@m.onnx, worker:committed") == (
        KillPoint("batch", "staged", "m.onnx"), KillPoint("worker", "committed", None))
    for bad in ("staged", "worker:collected", "batch:nowhere", "nobody:staged"):
        with pytest.raises(UsageError):
            parse_kill_points(bad)


# ------------------------------------------------------------------------------ run machinery
def test_one_batch_at_a_time_per_output(tmp_path):
    import fcntl
    import os

    from ocrconvert.zoo.batch import STATE_DIR, BatchConfig, run_batch

    cfg = BatchConfig(tmp_path / "c.yaml", tmp_path / "out", tmp_path / "rep", [])
    lock = tmp_path / "out" / STATE_DIR / "batch.lock"
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(UsageError, match="another batch is running"):
            run_batch(cfg)
    finally:
        os.close(fd)
    assert run_batch(cfg).exit_code == 0
    assert not lock.exists()  # the lock goes with the batch


def test_digest_cache_trusts_unchanged_stat_and_rehashes_a_change(tmp_path):
    import os
    import time

    from ocrconvert.manifest import sha256_file
    from ocrconvert.zoo.batch.fingerprint import DigestCache

    f = tmp_path / "model.onnx"
    f.write_bytes(b"a" * 100)
    past = time.time_ns() - 60 * 10**9
    os.utime(f, ns=(past, past))
    cache = DigestCache(tmp_path / "digests.json")
    assert cache.artifact(f) == sha256_file(f)
    cache.save()
    f.write_bytes(b"b" * 100)  # same size, mtime put back: the stat cannot tell, so the cache answers
    os.utime(f, ns=(past, past))
    assert DigestCache(tmp_path / "digests.json").artifact(f) != sha256_file(f)
    f.write_bytes(b"b" * 99)  # truncated: hashed again
    assert DigestCache(tmp_path / "digests.json").artifact(f) == sha256_file(f)
    fresh = tmp_path / "fresh.onnx"
    fresh.write_bytes(b"c")  # written just now: never cached (a second write could keep its mtime)
    cache = DigestCache(tmp_path / "d2.json")
    cache.artifact(fresh)
    assert not any(k.endswith("fresh.onnx") for k in cache.entries)
