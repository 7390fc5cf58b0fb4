"""Rendering only: rich tables and lines on the right stream, JSON for machines."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager

from rich.console import Console
from rich.table import Table

def _console(stderr: bool) -> Console:
    c = Console(stderr=stderr, soft_wrap=True)
    if not c.is_terminal:  # logs and CI: wide enough that tables do not fold
        c = Console(stderr=stderr, soft_wrap=True, width=200)
    return c


out = _console(False)  # results
err = _console(True)   # logs, progress, errors


def emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.3e}"
    return str(x)


def report_table(report) -> Table:
    t = Table(title=f"parity: {report.target_backend} vs {report.source_backend} · family {report.family}",
              title_justify="left")
    for col in ("case", "output", "max abs", "mean abs", "max rel", "p99.9 abs", "cosine", "atol", "task", "", "signal"):
        t.add_column(col, justify="right" if col not in ("case", "output", "task", "signal") else "left")
    for case in report.cases:
        task = f"{case.task.name} {case.task.value:.4g}" if case.task else ""
        for i, o in enumerate(case.outputs):
            mark = "[green]ok[/]" if o.passed else f"[red]FAIL[/] {o.problem}"
            t.add_row(case.label if i == 0 else "", o.name, _fmt(o.max_abs), _fmt(o.mean_abs), _fmt(o.max_rel),
                      _fmt(o.p999_abs), f"{o.cosine:.6f}" if o.cosine == o.cosine else "-", _fmt(o.atol),
                      task if i == 0 else "", mark if (case.task is None or case.task.passed) else "[red]FAIL[/] task",
                      ("yes" if case.informative else f"[yellow]none[/]: {case.uninformative}") if i == 0 else "")
    return t


def print_report(report) -> None:
    for r in [report, *report.extra_reports]:
        out.print(report_table(r))
    for case in report.cases:
        if case.task and case.task.detail.get("ground_truth") and case.kind == "rendered":
            src = case.task.detail["source_text"]
            gt = case.task.detail["ground_truth"]
            hits = sum(a == b for a, b in zip(src, gt))
            out.print(f"source model reads {hits}/{len(gt)} rendered lines exactly as written")
    line = report.summary_line()
    color = {"PASSED": "green", "FAILED": "red"}.get(report.verdict, "yellow")
    out.print(f"[bold {color}]{line}[/]")


def finish(result, as_json: bool, wrote: str, manifest) -> int:
    """Print a conversion result (JSON, or the parity table + what was written); return its exit code."""
    from ..errors import ExitCode

    if as_json:
        emit_json(result.to_dict())
    else:
        if result.report is not None:
            print_report(result.report)
        out.print(wrote)
        err.print(f"manifest: {manifest}", highlight=False)
    return int(ExitCode.OK if result.passed else ExitCode.PARITY_FAILED)


def print_error(exc, as_json: bool) -> None:
    if as_json:
        emit_json(exc.to_dict())
        return
    err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
    if exc.hint:
        err.print(f"[dim]hint:[/] {exc.hint}", highlight=False)


@contextmanager
def progress(enabled: bool = True):
    """Yield a ``say(msg)`` callback: a spinner on a TTY stderr, nothing otherwise."""
    if not enabled or not err.is_terminal:
        yield lambda msg: None
        return
    with err.status("working…") as status:
        yield lambda msg: status.update(msg)
