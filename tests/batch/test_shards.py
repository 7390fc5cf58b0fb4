"""CI shards: the split (deterministic, balanced, groups kept whole) and the merge (the unsharded report,
or a refusal naming what is wrong). A config is run unsharded and as two shards, each in its own
checkout-like folder (same config bytes, its own output), as CI runners would: cheaply in this process on jobs
that fail before any worker starts, and (slow) as three CLI runs at once on the real classifier."""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _cli_helpers import needs_paddle, needs_torch

from ocrconvert.errors import UsageError
from ocrconvert.zoo.batch import load_config, parse_config
from ocrconvert.zoo.batch.merge import MergeError, merge_reports
from ocrconvert.zoo.batch.shards import (COST_TABLE, Shard, job_costs, load_timings, parse_shard, shard_config,
                                         split, table_cost, units)

REPO = Path(__file__).resolve().parents[2]
CLI = "from ocrconvert.cli.app import main; main()"

# two targets of the real classifier, a job expected to fail (its model is not there) and one that fails
REAL = """\
output: out
report_dir: report
models:
  - model: ppocrv4-cls
    targets: [onnx, torch]
  - {model: missing/model.onnx, name: absent, targets: [{target: torch, expect: {exit_code: 2}, reason: not fetched}]}
  - {model: missing/other.onnx, name: broken, targets: [torch]}
"""
# every job fails (or fails as expected) while the batch fingerprints it: no worker, no model, milliseconds
CHEAP = """\
output: out
report_dir: report
models:
  - {model: missing/a.onnx, name: a, targets: [torch, {target: torch-native, expect: {exit_code: 2}, reason: gone}]}
  - {model: missing/b.onnx, name: b, targets: [{target: torch, expect: {exit_code: 3}}]}
  - {model: missing/c.onnx, name: c, targets: [{target: torch, expect: {exit_code: 2, message: does not exist}}]}
  - {model: missing/d.onnx, name: d, targets: [torch-native]}
"""


# ------------------------------------------------------------------------------------------ the split
@pytest.mark.parametrize("text, shard", [("1/2", Shard(1, 2)), (" 3 / 3 ", Shard(3, 3)), ("1/1", Shard(1, 1))])
def test_parse_shard(text, shard):
    assert parse_shard(text) == shard


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "0/0", "2", "a/b", "1/2/3", "-1/2", "", "1.5/2"])
def test_bad_shard_is_a_usage_error(text):
    with pytest.raises(UsageError, match="--shard"):
        parse_shard(text)


def _zoo_config():
    return load_config(REPO / "configs" / "zoo" / "ppocr.yaml")


@pytest.mark.parametrize("count", [1, 2, 3, 7, 40])
def test_split_covers_every_job_once_balanced_and_deterministic(count):
    cfg = _zoo_config()
    shards = split(cfg.jobs, count)
    assert len(shards) == count
    ids = [j.id for s in shards for j in s]
    assert sorted(ids) == sorted(j.id for j in cfg.jobs) and len(ids) == len(set(ids))
    assert [[j.id for j in s] for s in split(_zoo_config().jobs, count)] == [[j.id for j in s] for s in shards]
    costs = job_costs(cfg.jobs)
    loads = [sum(costs[j.id] for j in s) for s in shards]
    biggest = max(sum(costs[j.id] for j in u) for u in units(cfg.jobs))
    # LPT: no shard exceeds the lightest by more than one unit (the classic bound of the greedy)
    assert max(loads) - min(loads) <= biggest + 1e-9, loads
    if count == 2:  # the zoo (29 jobs, ~440 s by the table) splits within 5 %
        assert max(loads) / (sum(loads) / 2) < 1.05, loads


def test_sets_and_nested_output_slots_stay_together(tmp_path):
    doc = {"output": "out", "models": [
        {"set": {"det": "ppocrv4-det", "rec": "ppocrv4-rec"}, "name": "v4set", "targets": ["onnx", "torch"]},
        {"model": "ppocrv4-det", "name": "a", "targets": ["onnx"]},
        {"model": "ppocrv4-rec", "name": "a/onnx", "targets": ["torch"]},   # out/a/onnx/torch: inside out/a/onnx
        *({"model": "ppocrv4-cls", "name": f"c{i}", "targets": ["onnx", "torch"]} for i in range(6))]}
    cfg = parse_config(doc, tmp_path / "b.yaml", base=tmp_path)
    groups = {frozenset(j.id for j in u) for u in units(cfg.jobs)}
    assert frozenset({"v4set.onnx", "v4set.torch"}) in groups
    assert frozenset({"a.onnx", "a/onnx.torch"}) in groups
    assert sum(len(g) == 1 for g in groups) == 12
    for count in (2, 3, 4, 5):
        where = {j.id: k for k, s in enumerate(split(cfg.jobs, count)) for j in s}
        assert where["v4set.onnx"] == where["v4set.torch"] and where["a.onnx"] == where["a/onnx.torch"]
    # the set costs its stages plus the pipeline parity: the dearest unit, alone on the first shard
    first = split(cfg.jobs, 4)[0]
    assert [j.id for j in first][:2] == ["v4set.onnx", "v4set.torch"]


def test_previous_timings_rebalance_the_split(tmp_path):
    cfg = _zoo_config()
    table = split(cfg.jobs, 2)
    # a previous run where every ONNX export took 100 s and the rest their table cost
    prev = {"schema_version": 1, "jobs": [
        {"id": j.id, "status": "passed", "seconds": 100.0 if j.target == "onnx" else COST_TABLE[j.target]["*"]}
        for j in cfg.jobs] + [{"id": "gone.onnx", "status": "passed", "seconds": 5.0},
                              {"id": "ppocrv4-det.onnx", "status": "resumed", "seconds": 0.0}]}
    prev["jobs"] = [j for j in prev["jobs"] if not (j["id"] == "ppocrv4-det.onnx" and j["status"] == "passed")]
    (tmp_path / "report.json").write_text(json.dumps(prev))
    timings = load_timings(tmp_path)
    assert "ppocrv4-det.onnx" not in timings and timings["ppocrv4-rec.onnx"] == 100.0  # resumed jobs took no time
    costs = job_costs(cfg.jobs, timings)
    assert costs["ppocrv4-rec.onnx"] == 100.0
    timed = [j for j in cfg.jobs if j.id in timings]  # gone.onnx is no job of the config: ignored
    scale = sum(timings[j.id] for j in timed) / sum(table_cost(j) for j in timed)
    assert scale > 1.5  # not timed: the table, scaled to the units of the run
    assert costs["ppocrv4-det.onnx"] == pytest.approx(COST_TABLE["onnx"]["det-db"] * scale)
    timed = split(cfg.jobs, 2, timings)
    assert [[j.id for j in s] for s in timed] != [[j.id for j in s] for s in table]
    onnx_per_shard = [sum(j.target == "onnx" for j in s) for s in timed]
    assert abs(onnx_per_shard[0] - onnx_per_shard[1]) <= 1, onnx_per_shard  # the dear jobs spread out
    (tmp_path / "bad.json").write_text("{\"jobs\": 3}")
    with pytest.raises(UsageError, match="not a batch report"):
        load_timings(tmp_path / "bad.json")


def test_shard_block_names_config_plan_and_jobs(tmp_path):
    cfg = _zoo_config()
    one, b1 = shard_config(cfg, Shard(1, 3))
    _, b1t = shard_config(cfg, Shard(1, 3), overrides={"seed": 3, "timeout": None})
    _, b2 = shard_config(cfg, Shard(2, 3))
    assert [j.id for j in one.jobs] == b1["jobs"] and one.shard is b1 and cfg.shard is None
    assert b1["plan_sha256"] == b2["plan_sha256"] and b1["config_sha256"] == b2["config_sha256"]
    assert b1t["overrides"] == {"seed": 3, "timeout": None}
    assert not set(b1["jobs"]) & set(b2["jobs"]) and b1["all_jobs"] == [j.id for j in cfg.jobs]
    other = tmp_path / "z.yaml"
    other.write_text((REPO / "configs" / "zoo" / "ppocr.yaml").read_text() + "\n# a comment\n")
    assert shard_config(load_config(other), Shard(1, 3))[1]["config_sha256"] != b1["config_sha256"]


# ------------------------------------------------------------------- runs: unsharded and two shards
RUNS = (("all", None), ("s1", "1/2"), ("s2", "2/2"))


@pytest.fixture(scope="module")
def cheap_runs(tmp_path_factory):
    """CHEAP run in this process (library calls), unsharded and as shards. {name: (folder, exit code)}."""
    import yaml

    from ocrconvert.zoo.batch import run_batch

    root, out = tmp_path_factory.mktemp("cheap"), {}
    for name, shard in RUNS:
        (root / name).mkdir()
        (root / name / "b.yaml").write_text(CHEAP)
        cfg = parse_config(yaml.safe_load(CHEAP), root / name / "b.yaml", base=root / name)
        if shard:
            cfg, _ = shard_config(cfg, parse_shard(shard), overrides={"seed": None, "timeout": None})
        out[name] = (root / name, run_batch(cfg).exit_code)
    return out


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory, zoo):
    """REAL through the CLI, the three runs at once (one process each). {name: (folder, exit code)}."""
    zoo("ppocrv4-cls")
    root, procs, out = tmp_path_factory.mktemp("real"), {}, {}
    env = {k: v for k, v in os.environ.items() if k != "OCRCONVERT_BATCH_KILL_AT"}
    t0 = time.perf_counter()
    for name, shard in RUNS:
        (root / name).mkdir()
        (root / name / "b.yaml").write_text(REAL)
        procs[name] = subprocess.Popen([sys.executable, "-c", CLI, "batch", "b.yaml", "--json",
                                        *(("--shard", shard) if shard else ())], cwd=root / name, env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for name, p in procs.items():
        _, stderr = p.communicate(timeout=900)
        assert "Traceback" not in stderr, stderr[-3000:]
        out[name] = (root / name, p.returncode)
    print(f"three batch runs at once: {time.perf_counter() - t0:.1f} s")
    return out


def _norm(text: str, *roots: Path) -> str:
    for root in roots:
        text = text.replace(str(root), "<root>")
    return text


def _normal_report(doc: dict, *roots: Path) -> dict:
    """A report without its timings, paths, nodes and shard bookkeeping."""
    doc = json.loads(_norm(json.dumps(doc), *roots))
    for k in ("seconds", "started", "config", "output", "shard", "merged_from"):
        doc.pop(k, None)
    for job in doc["jobs"]:
        for k in ("seconds", "timings", "log", "artifact", "manifest", "source", "node"):
            job.pop(k, None)
    return doc


def _normal_junit(text: str, *roots: Path) -> str:
    return re.sub(r' (time|timestamp)="[^"]*"', "", _norm(text, *roots))


def _summary_rows(text: str, *roots: Path) -> list[str]:
    """The summary table's rows without the seconds column."""
    rows = [r for r in _norm(text, *roots).splitlines() if r.startswith("| ")]
    return ["|".join(c for i, c in enumerate(r.split("|")) if i != 6) for r in rows]


def _report(folder: Path) -> dict:
    return json.loads((folder / "report" / "report.json").read_text())


REAL_EXPECTED = ({"ppocrv4-cls.onnx": "passed", "ppocrv4-cls.torch": "passed", "absent.torch": "xfail",
                  "broken.torch": "failed"},
                 # table costs 14, 14, 10, 4: one real conversion in each shard
                 [["ppocrv4-cls.torch", "absent.torch"], ["ppocrv4-cls.onnx", "broken.torch"]], (0, 5))
CHEAP_EXPECTED = ({"a.torch": "failed", "a.torch-native": "xfail", "b.torch": "failed", "c.torch": "xfail",
                   "d.torch-native": "failed"},
                  [["a.torch", "a.torch-native", "c.torch"], ["b.torch", "d.torch-native"]], (5, 5))


@pytest.mark.parametrize("which", [
    "cheap_runs",
    pytest.param("real_runs", marks=[pytest.mark.slow, pytest.mark.zoo, pytest.mark.paddle, pytest.mark.torch,
                                     needs_paddle, needs_torch]),
])
def test_two_shards_merged_equal_the_unsharded_run(which, request, cli_here, tmp_path):
    runs = request.getfixturevalue(which)
    statuses, parts_ids, part_codes = REAL_EXPECTED if which == "real_runs" else CHEAP_EXPECTED
    (all_dir, all_code), (s1, c1), (s2, c2) = runs["all"], runs["s1"], runs["s2"]
    ref = _report(all_dir)
    assert all_code == ref["exit_code"] == 5
    assert {j["id"]: j["status"] for j in ref["jobs"]} == statuses
    # each shard ran its part only
    parts = [_report(s1), _report(s2)]
    assert [[j["id"] for j in p["jobs"]] for p in parts] == parts_ids
    assert (c1, c2) == part_codes and tuple(p["exit_code"] for p in parts) == part_codes
    assert [p["shard"]["index"] for p in parts] == [1, 2] and "shard" not in ref
    if which == "real_runs":  # each shard converted its own job only
        assert not (s1 / "out" / "ppocrv4-cls" / "onnx").exists() and not (s2 / "out" / "ppocrv4-cls" / "torch").exists()

    res = cli_here("batch", "merge", s1 / "report", s2 / "report", "-o", tmp_path / "merged", "--json")
    assert res.code == all_code, res.stderr  # non-zero exactly as the unsharded run
    merged = json.loads((tmp_path / "merged" / "report.json").read_text())
    assert json.loads(res.stdout) == merged
    assert [m["index"] for m in merged["merged_from"]] == [1, 2]
    assert _normal_report(merged, s1, s2) == _normal_report(ref, all_dir)
    assert _normal_junit((tmp_path / "merged" / "junit.xml").read_text(), s1, s2) == \
        _normal_junit((all_dir / "report" / "junit.xml").read_text(), all_dir)
    rows = _summary_rows((tmp_path / "merged" / "summary.md").read_text(), s1, s2)
    assert rows == _summary_rows((all_dir / "report" / "summary.md").read_text(), all_dir)
    assert len(rows) == 1 + len(statuses)
    # every job's log came along, beside the merged report
    for job in merged["jobs"]:
        if job["log"]:
            assert Path(job["log"]).parent == tmp_path / "merged" / "logs" and Path(job["log"]).is_file()


def _copy(src: Path, dst: Path, edit=None) -> Path:
    shutil.copytree(src, dst)
    if edit:
        doc = json.loads((dst / "report.json").read_text())
        edit(doc)
        (dst / "report.json").write_text(json.dumps(doc))
    return dst


def _claim(doc: dict) -> None:  # shard 1 also claims a job shard 2 ran
    doc["jobs"].append({**doc["jobs"][0], "id": "d.torch-native"})


@pytest.mark.parametrize("damage, fragment", [
    ("twice", "shard 1/2 is given twice"),
    ("missing", "shard(s) 2/2 missing"),
    ("config", "shards of different configs"),
    ("count", "different shard counts"),
    ("plan", "different splits of the config"),
    ("seed", "different --seed/--timeout overrides"),
    ("versions", "different tool versions (onnx)"),
    ("overlap", "job d.torch-native is in two shards"),
    ("lost", "no shard ran c.torch"),
    ("unsharded", "is the report of an unsharded run"),
    ("into-input", "is one of the shard reports"),
    ("schema", "report schema 99 is not 1"),
    ("record", "its shard report is damaged"),
])
def test_merge_refuses_what_is_not_one_sharded_run(cheap_runs, tmp_path, damage, fragment):
    s1, s2, full = (cheap_runs[n][0] / "report" for n in ("s1", "s2", "all"))
    edits = {"config": lambda d: d["shard"].update(config_sha256="0" * 64),
             "count": lambda d: d["shard"].update(count=3),
             "plan": lambda d: d["shard"].update(plan_sha256="0" * 64),
             "seed": lambda d: d["shard"].update(overrides={"seed": 1, "timeout": None}),
             "versions": lambda d: d["versions"].update(onnx="0.0"),
             "overlap": _claim,
             "lost": lambda d: d["jobs"].pop(),
             "schema": lambda d: d.update(schema_version=99),
             "record": lambda d: d["jobs"][0].pop("target")}
    one = _copy(s1, tmp_path / "one", edits.get(damage))
    two = _copy(s2, tmp_path / "two")
    out = two if damage == "into-input" else tmp_path / "merged"
    inputs = {"twice": [one, s1], "missing": [one], "unsharded": [one, full]}.get(damage, [one, two])
    before = (two / "report.json").read_bytes()
    with pytest.raises(UsageError) as exc:
        merge_reports(inputs, out)
    assert fragment in exc.value.message and exc.value.hint
    assert not (tmp_path / "merged").exists() and (two / "report.json").read_bytes() == before
    assert merge_reports([one if damage not in edits else s1, s2], tmp_path / "ok").exit_code == 5  # undamaged: merges


def test_cli_refusals_are_exit_2_without_traceback(cheap_runs, cli_here, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the config's relative output
    s1 = cheap_runs["s1"][0] / "report"
    res = cli_here("batch", "merge", s1, "-o", tmp_path / "m")
    assert res.code == 2 and "shard(s) 2/2 missing" in res.stderr and "hint" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout and not (tmp_path / "m").exists()
    res = cli_here("batch", "merge", s1, tmp_path / "nothing", "-o", tmp_path / "m", "--json")
    assert res.code == 2 and json.loads(res.stdout)["exit_code"] == 2 and "does not exist" in res.stdout
    cfg = cheap_runs["s1"][0] / "b.yaml"
    for bad in ("3/2", "x", "0/0"):
        res = cli_here("batch", cfg, "--shard", bad, "--json")
        assert res.code == 2 and "--shard" in json.loads(res.stdout)["message"], res.stdout
    res = cli_here("batch", cfg, "--timings", s1)
    assert res.code == 2 and "--timings only balances shards" in res.stderr and "Traceback" not in res.stderr
    # `batch run CONFIG` is `batch CONFIG`; --shard through the CLI records its block (the cwd's output)
    res = cli_here("batch", "run", cfg, "--shard", "2/2", "--seed", "4", "--report-dir", tmp_path / "r", "--json")
    doc = json.loads(res.stdout)
    assert res.code == 5 and [j["id"] for j in doc["jobs"]] == ["b.torch", "d.torch-native"]
    assert doc["shard"]["overrides"] == {"seed": 4, "timeout": None} and doc["shard"]["index"] == 2
    assert doc["output"] == str(tmp_path / "out")


def test_more_shards_than_units_some_empty_still_merge_to_the_unsharded_run(cheap_runs, tmp_path):
    """7 shards of 5 units: two run nothing and pass; all seven merge into the unsharded report."""
    import yaml

    from ocrconvert.zoo.batch import run_batch

    (tmp_path / "b.yaml").write_text(CHEAP)
    full = parse_config(yaml.safe_load(CHEAP), tmp_path / "b.yaml", base=tmp_path)
    dirs, codes = [], []
    for k in range(1, 8):
        cfg, _ = shard_config(full, Shard(k, 7), overrides={"seed": None, "timeout": None})
        codes.append(run_batch(cfg, report_dir=tmp_path / f"r{k}").exit_code)
        dirs.append(tmp_path / f"r{k}")
    jobs = [[j["id"] for j in json.loads((d / "report.json").read_text())["jobs"]] for d in dirs]
    # costs 30, 30, 14, 14, 14: one unit each on shards 1-5, the last two empty (and passing)
    assert jobs == [["a.torch-native"], ["d.torch-native"], ["a.torch"], ["b.torch"], ["c.torch"], [], []]
    assert codes == [0, 5, 5, 5, 0, 0, 0]
    merged = merge_reports(list(reversed(dirs)), tmp_path / "merged")  # any order
    ref_dir, _ = cheap_runs["all"]
    assert _normal_report(merged.to_dict(), tmp_path) == _normal_report(_report(ref_dir), ref_dir)


def test_ci_example_in_the_docs_is_a_complete_matrix():
    """docs/ci-shards.md's workflow: valid YAML, its matrix shards cover the zoo config once, merge runs last."""
    import yaml

    text = (REPO / "docs" / "ci-shards.md").read_text()
    flow = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))
    convert, merge = flow["jobs"]["convert"], flow["jobs"]["merge"]
    shards = convert["strategy"]["matrix"]["shard"]
    run = next(s["run"] for s in convert["steps"] if "--shard" in s.get("run", ""))
    n = int(re.search(r"--shard \$\{\{ matrix.shard \}\}/(\d+)", run).group(1))
    assert shards == list(range(1, n + 1)) and convert["strategy"]["fail-fast"] is False
    config = re.search(r"batch (\S+\.yaml)", run).group(1)
    cfg = load_config(REPO / config)
    parts = [shard_config(cfg, parse_shard(f"{k}/{n}"))[1]["jobs"] for k in shards]
    assert sorted(j for p in parts for j in p) == sorted(j.id for j in cfg.jobs) and all(parts)
    assert merge["needs"] == "convert" and merge["if"] == "always()"
    assert any("ocrconvert batch merge reports/report-* -o merged" in s.get("run", "") for s in merge["steps"])
