"""A batch's results: one record per job, the batch verdict, and its reports.

``report.json`` (every record, machine-readable), ``junit.xml`` (one testcase per job: a failure,
an expected failure as skipped) and ``summary.md`` (one table), each written atomically.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from ...errors import ExitCode

REPORT_SCHEMA_VERSION = 1
REPORT_FILES = ("report.json", "junit.xml", "summary.md")


@dataclass
class JobRecord:
    id: str
    model: str
    target: str
    status: str = "pending"    # passed | failed | xfail | resumed | timeout | crashed
    exit_code: int = 0
    ok: bool = False           # counts as a success for the batch verdict
    seconds: float = 0.0
    source: str | None = None
    artifact: str | None = None
    manifest: str | None = None
    route: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    seed: int = 0
    summary: str | None = None
    worst_max_abs: float | None = None
    error: dict | None = None
    expected: dict | None = None
    reason: str | None = None
    fingerprint: str | None = None
    log: str | None = None
    kind: str = "model"        # model | set
    stages: dict | None = None  # a set job: each stage's verdict
    pipeline: str | None = None  # a set job: the end-to-end pipeline verdict
    timings: dict | None = None  # seconds: job (in its worker), convert (the hops), verify, worker_imports
    node: str | None = None    # where it ran, with --executor ray: IP/NODE_ID of the Ray node

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["worst_max_abs"] is not None and d["worst_max_abs"] != d["worst_max_abs"]:
            d["worst_max_abs"] = None  # NaN is not JSON
        return d


@dataclass
class BatchResult:
    config: Path
    output: Path
    report_dir: Path
    records: list[JobRecord]
    seconds: float
    started: str
    versions: dict = field(default_factory=dict)
    shard: dict | None = None         # a CI shard's run: which part of which config (zoo/batch/shards.py)
    merged_from: list | None = None   # a merged report: the shard reports it was made of (zoo/batch/merge.py)

    @property
    def exit_code(self) -> int:
        bad = [r for r in self.records if not r.ok]
        if not bad:
            return int(ExitCode.OK)
        if any(r.exit_code == ExitCode.PARITY_FAILED for r in bad):
            return int(ExitCode.PARITY_FAILED)
        return int(ExitCode.CONVERSION_FAILED)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def to_dict(self) -> dict:
        return {"schema_version": REPORT_SCHEMA_VERSION, "config": str(self.config), "output": str(self.output),
                "started": self.started, "seconds": round(self.seconds, 3), "exit_code": self.exit_code,
                "passed": self.passed, "counts": self.counts(), "versions": self.versions,
                "jobs": [r.to_dict() for r in self.records],
                **({"shard": self.shard} if self.shard else {}),
                **({"merged_from": self.merged_from} if self.merged_from else {})}


def temp_name(path: Path) -> Path:
    """The temporary name ``write_text`` uses for ``path`` (a killed writer's leftover matches ``stale_temps``)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def stale_temps(path: Path) -> list[Path]:
    return list(path.parent.glob(f".{path.name}.*.tmp"))


def write_text(path: Path, text: str) -> None:
    """Write through a temporary name beside ``path``, fsync, rename: a reader sees old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_reports(result: BatchResult) -> None:
    d = result.report_dir
    write_text(d / "report.json", json.dumps(result.to_dict(), indent=2, ensure_ascii=False, default=str))
    write_text(d / "junit.xml", junit_xml(result))
    write_text(d / "summary.md", summary_md(result))


def junit_xml(result: BatchResult) -> str:
    recs = result.records
    failures = sum(not r.ok for r in recs)
    skipped = sum(r.status == "xfail" for r in recs)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<testsuites tests="{len(recs)}" failures="{failures}" time="{result.seconds:.3f}">',
             f'  <testsuite name="ocrconvert-batch" tests="{len(recs)}" failures="{failures}" errors="0" '
             f'skipped="{skipped}" time="{result.seconds:.3f}" timestamp="{result.started}">']
    for r in recs:
        suite = f"set.{r.id.rsplit('.', 1)[0]}" if r.kind == "set" else r.model
        lines.append(f'    <testcase classname={quoteattr("ocrconvert.batch." + suite)} name={quoteattr(r.target)} '
                     f'time="{r.seconds:.3f}">')
        err = r.error or {}
        if not r.ok:
            msg = f"exit {r.exit_code}: {err.get('message', r.status)}"
            body = json.dumps(err, indent=2, ensure_ascii=False)
            lines.append(f'      <failure type={quoteattr(err.get("error", r.status))} message={quoteattr(msg)}>'
                         f'{escape(body)}</failure>')
        elif r.status == "xfail":
            lines.append(f'      <skipped message={quoteattr("expected failure: " + (err.get("message") or ""))}/>')
        out = r.summary or ("resumed: unchanged and verified" if r.status == "resumed" else "")
        if out:
            lines.append(f"      <system-out>{escape(out)}</system-out>")
        lines.append("    </testcase>")
    lines += ["  </testsuite>", "</testsuites>", ""]
    return "\n".join(lines)


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def summary_md(result: BatchResult) -> str:
    verdict = "PASSED" if result.passed else f"FAILED (exit {result.exit_code})"
    counts = ", ".join(f"{v} {k}" for k, v in sorted(result.counts().items()))
    lines = [f"# ocrconvert batch: {verdict}", "",
             f"Config `{result.config}`, started {result.started}, {result.seconds:.1f} s, {counts}.", "",
             *([f"Shard {result.shard['index']}/{result.shard['count']} of the config.", ""] if result.shard else []),
             *([f"Merged from {len(result.merged_from)} shards.", ""] if result.merged_from else []),
             "| model | target | status | exit | max abs | seconds | detail |",
             "|---|---|---|---:|---:|---:|---|"]
    for r in result.records:
        mabs = f"{r.worst_max_abs:.3g}" if isinstance(r.worst_max_abs, float) and r.worst_max_abs == r.worst_max_abs else "-"
        err = r.error or {}
        detail = err.get("message") or r.summary or ""
        if r.status == "xfail" and r.reason:
            detail = f"expected: {r.reason} ({detail})"
        model = f"set {r.id.rsplit('.', 1)[0]}" if r.kind == "set" else r.model
        if r.kind == "set" and r.stages and not err:
            detail = (", ".join(f"{k} {v}" for k, v in r.stages.items()) + f"; pipeline {r.pipeline or 'NOT RUN'}"
                      + (f" ({detail})" if detail else ""))
        lines.append(f"| {_md(model)} | {r.target} | {r.status} | {r.exit_code} | {mabs} | {r.seconds:.1f} "
                     f"| {_md(detail)} |")
    return "\n".join(lines) + "\n"
