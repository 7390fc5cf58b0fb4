"""Split a batch into N CI shards: deterministic, balanced by expected cost, groups kept whole.

Units that never split: the jobs of one model set (every target of a ``set:`` entry pulls and hashes the
same stages), and jobs whose output slots are the same folder or nest (one job's output inside another's:
two shards would both sweep and commit there). Each unit costs the sum of its jobs' expected seconds: from
``COST_TABLE`` (per target and family, measured on 2 CPU cores, docs/benchmarks.md) or, given a previous
``report.json``, from its timings (jobs it does not list are costed by the table, scaled to its units).
Units go, most expensive first (ties by first job id), to the least-loaded shard (ties to the lowest
index). The split depends only on the config and the timings, so every CI shard computes the same plan
and takes its own part; ``plan_sha256`` in each shard's report lets ``merge`` prove they did.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ...errors import UsageError
from .config import BatchConfig, JobSpec, is_zoo_name

# expected seconds of one job on 2 CPU cores, per config target and model family ("*": any other family)
COST_TABLE: dict[str, dict[str, float]] = {
    "onnx": {"*": 7.0, "cls": 4.0, "det-db": 7.0, "rec-ctc": 8.0},
    "torch": {"*": 14.0, "cls": 10.0, "det-db": 16.0, "rec-ctc": 15.0, "generic": 9.0},
    "torch-native": {"*": 30.0, "cls": 15.0, "det-db": 29.0, "rec-ctc": 35.0},
    "torch-aot": {"*": 60.0},    # not measured on CPU: a guess, refined by --timings
    "tensorrt": {"*": 120.0},    # engine builds; a guess, refined by --timings
}
SET_PIPELINE_COST = 30.0  # a set job's end-to-end parity on rendered pages, on top of its stages
SET_STAGE_FAMILY = {"det": "det-db", "rec": "rec-ctc", "cls": "cls"}
_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"K/N"`` with 1 <= K <= N; anything else is a usage error (exit 2)."""
    m = _SHARD.fullmatch(str(text))
    hint = "Write --shard K/N with 1 <= K <= N, e.g. --shard 1/4 ... --shard 4/4 on four CI runners."
    if not m:
        raise UsageError(f"--shard {text!r} is not K/N", hint=hint)
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= k <= n:
        raise UsageError(f"--shard {text}: K must be between 1 and N (N >= 1)", hint=hint)
    return Shard(k, n)


# ------------------------------------------------------------------------------------------- costs
def _family(model: str, family: str | None) -> str:
    if family:
        return family
    if is_zoo_name(model):
        from ..fetch import get_entry

        return get_entry(model).family
    return "*"


def _table(target: str, family: str) -> float:
    row = COST_TABLE.get(target, {"*": 30.0})
    return row.get(family, row["*"])


def table_cost(job: JobSpec) -> float:
    """The job's expected seconds from ``COST_TABLE``."""
    if job.kind == "set":
        stages = [(s, ref) for s, ref in job.stages or () if s != "dict"] or [(s, "") for s in SET_STAGE_FAMILY]
        return SET_PIPELINE_COST + sum(_table(job.target, _family(ref, SET_STAGE_FAMILY[s]) if ref else SET_STAGE_FAMILY[s])
                                       for s, ref in stages)
    return _table(job.target, _family(job.model, job.family))


def read_report(path: Path) -> dict:
    """A batch ``report.json`` (or a folder holding one), checked enough to be used; else exit 2."""
    from .reports import REPORT_SCHEMA_VERSION

    path = Path(path)
    file = path / "report.json" if path.is_dir() else path
    hint = "Give a batch report folder (holding report.json) or a report.json written by `ocrconvert batch`."
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{file} does not exist", hint=hint) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"cannot read {file} as a batch report: {exc}", hint=hint) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), list) or \
            not all(isinstance(j, dict) and isinstance(j.get("id"), str) for j in doc["jobs"]):
        raise UsageError(f"{file} is not a batch report (no list of jobs)", hint=hint)
    if doc.get("schema_version") != REPORT_SCHEMA_VERSION:
        raise UsageError(f"{file}: report schema {doc.get('schema_version')!r} is not {REPORT_SCHEMA_VERSION}",
                         hint="Merge and cost only reports written by this version of ocrconvert.")
    return doc


def load_timings(path: Path) -> dict[str, float]:
    """Seconds per job id from a previous report (jobs that ran: resumed ones took no time)."""
    doc = read_report(path)
    return {j["id"]: float(j["seconds"]) for j in doc["jobs"]
            if j.get("status") not in ("resumed", "pending") and isinstance(j.get("seconds"), (int, float))
            and not isinstance(j.get("seconds"), bool) and j["seconds"] > 0}


def job_costs(jobs: list[JobSpec], timings: dict[str, float] | None = None) -> dict[str, float]:
    """Expected seconds per job id: the timings where given, else the table (scaled to the timings' units)."""
    table = {j.id: table_cost(j) for j in jobs}
    timings = {k: v for k, v in (timings or {}).items() if k in table}
    known = sum(table[k] for k in timings)
    scale = sum(timings.values()) / known if known else 1.0
    return {k: round(timings.get(k, table[k] * scale), 6) for k in table}


# ------------------------------------------------------------------------------------------- units
def _nested(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def units(jobs: list[JobSpec]) -> list[list[JobSpec]]:
    """Jobs that must run in one shard, in config order: one model set's jobs, nested or shared output slots."""
    parent = list(range(len(jobs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    outs = [Path(j.output).resolve() for j in jobs]
    for i, a in enumerate(jobs):
        for j in range(i + 1, len(jobs)):
            b = jobs[j]
            if _nested(outs[i], outs[j]) or (a.kind == b.kind == "set" and a.model == b.model):
                join(i, j)
    groups: dict[int, list[JobSpec]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(root(i), []).append(job)
    return list(groups.values())


def split(jobs: list[JobSpec], count: int, timings: dict[str, float] | None = None) -> list[list[JobSpec]]:
    """The N shards' jobs (each in config order): longest-processing-time-first over the units."""
    costs = job_costs(jobs, timings)
    order = {j.id: i for i, j in enumerate(jobs)}
    loads = [0.0] * count
    shards: list[list[JobSpec]] = [[] for _ in range(count)]
    for unit in sorted(units(jobs), key=lambda u: (-sum(costs[j.id] for j in u), order[u[0].id])):
        k = min(range(count), key=lambda i: (loads[i], i))
        loads[k] += sum(costs[j.id] for j in unit)
        shards[k].extend(unit)
    return [sorted(s, key=lambda j: order[j.id]) for s in shards]


def config_digest(config: BatchConfig) -> str:
    """The config's identity across CI runners: its file's bytes (else its jobs, for a config built in code)."""
    try:
        return hashlib.sha256(Path(config.path).read_bytes()).hexdigest()
    except OSError:
        jobs = [(j.id, j.model, j.settings()) for j in config.jobs]
        return hashlib.sha256(json.dumps(jobs, sort_keys=True, default=str).encode()).hexdigest()


def shard_config(config: BatchConfig, shard: Shard, timings_path: Path | None = None,
                 overrides: dict | None = None) -> tuple[BatchConfig, dict]:
    """The config holding only ``shard``'s jobs, and the block its report records for ``merge``."""
    timings = load_timings(timings_path) if timings_path is not None else None
    plan = split(config.jobs, shard.count, timings)
    costs = job_costs(config.jobs, timings)
    ids = [[j.id for j in s] for s in plan]
    mine = plan[shard.index - 1]
    block = {"index": shard.index, "count": shard.count, "config_sha256": config_digest(config),
             "plan_sha256": hashlib.sha256(json.dumps(ids).encode()).hexdigest(),
             "costs_from": "timings" if timings else "table",
             "expected_seconds": round(sum(costs[j.id] for j in mine), 3),
             "overrides": overrides or {}, "jobs": ids[shard.index - 1], "all_jobs": [j.id for j in config.jobs]}
    return replace(config, jobs=mine, shard=block), block


__all__ = ["Shard", "parse_shard", "COST_TABLE", "table_cost", "job_costs", "load_timings", "read_report", "units",
           "split", "config_digest", "shard_config"]
