"""Batch config schema, verdict policy and reports (no model runs here)."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ocrconvert.errors import ExitCode, UsageError
from ocrconvert.zoo.batch import (BatchResult, Expectation, JobRecord, load_config, parse_config, junit_xml,
                                  summary_md, write_reports)

REPO = Path(__file__).resolve().parents[2]


def _cfg(tmp_path: Path, text: str):
    p = tmp_path / "b.yaml"
    p.write_text(text)
    return load_config(p)


def test_zoo_config_covers_every_zoo_model():
    from ocrconvert.zoo import entries

    cfg = load_config(REPO / "configs" / "zoo" / "ppocr.yaml")
    models = {j.model for j in cfg.jobs}
    assert models == set(entries())
    targets = {(j.model, j.target) for j in cfg.jobs}
    for paddle in ("ppocrv4-det", "ppocrv4-rec", "ppocrv4-cls", "ppocrv5-mobile-det", "ppocrv5-mobile-rec", "slanet-plus"):
        assert {(paddle, "onnx"), (paddle, "torch")} <= targets
    expected = {j.id: j.expect for j in cfg.jobs if j.expect}
    assert expected["slanet-plus.torch"] == Expectation(3, ("Loop",), None)
    assert expected["slanet-plus-onnx.torch"] == Expectation(3, ("Loop",), None)


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


@pytest.mark.parametrize("text, fragment", [
    ("output: o\nmodels: [a]\nextra: 1\n", "unknown key 'extra'"),
    ("output: o\ndefaults: {target: [onnx]}\nmodels: [a]\n", "Did you mean 'targets'"),
    ("output: o\nmodels: [{model: a, targets: [onnx], expect: {code: 3}}]\n", "unknown key 'code'"),
    ("output: o\nmodels: [{model: a, targets: [{target: torch, expect: {exit_code: 0}}]}]\n", "expect.exit_code"),
    ("output: o\nmodels: [{model: a, targets: [onnx], opset: 99}]\n", "opset must be"),
    ("output: o\nmodels: [{model: a, targets: [onnx], atol: -1}]\n", "atol must be"),
    ("output: o\nmodels: [{model: a, targets: [onnx], precision: fp8}]\n", "precision must be"),
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
    recs = [_rec("a.onnx", "passed", 0, True, worst_max_abs=1e-6, summary="PASSED | x"),
            _rec("b.torch", "failed", 3, False, error={"error": "UnsupportedOpsError", "message": "1 op: Loop <&>",
                                                        "unsupported_ops": ["Loop"], "exit_code": 3}),
            _rec("c.torch", "xfail", 3, True, reason="known | gap")]
    res = BatchResult(tmp_path / "c.yaml", tmp_path, tmp_path / "rep", recs, 2.5, "2026-01-01T00:00:00Z")
    write_reports(res)
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert doc["exit_code"] == 5 and doc["jobs"][1]["error"]["unsupported_ops"] == ["Loop"]
    suite = ET.parse(tmp_path / "rep" / "junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("skipped") == "1"
    failure = suite.findall("testcase")[1].find("failure")
    assert "Loop <&>" in failure.get("message")
    md = (tmp_path / "rep" / "summary.md").read_text()
    assert "FAILED (exit 5)" in md and "known \\| gap" in md
    assert not list((tmp_path / "rep").glob(".*.tmp"))
    assert junit_xml(res) and summary_md(res)


def test_parse_config_rejects_non_mapping():
    with pytest.raises(UsageError, match="must be a mapping"):
        parse_config(["a"], Path("x.yaml"))
