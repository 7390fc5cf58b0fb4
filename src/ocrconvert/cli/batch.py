"""``ocrconvert batch CONFIG.yaml``: many models × targets, each job isolated; parse → run → render."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import DebugOpt, JsonOpt
from .render import emit_json, err, out

_STYLE = {"passed": "green", "resumed": "cyan", "xfail": "yellow"}


@contextmanager
def _progress(enabled: bool, total: int):
    """Yield ``on_event(kind, record)``: a rich progress bar on a TTY stderr, plain lines otherwise."""
    if not enabled:
        yield lambda kind, rec: None
        return
    if not err.is_terminal:
        def line(kind, rec):
            if kind != "start":
                err.print(f"{rec.id}: {rec.status} (exit {rec.exit_code}, {rec.seconds:.1f} s)", highlight=False)
        yield line
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    running: set[str] = set()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=False) as bar:
        task = bar.add_task("batch", total=total)

        def on_event(kind, rec):
            if kind == "start":
                running.add(rec.id)
            else:
                running.discard(rec.id)
                bar.advance(task)
                style = _STYLE.get(rec.status, "red")
                bar.console.print(f"[{style}]{rec.status:>8}[/] {rec.id} ({rec.seconds:.1f} s)", highlight=False)
            bar.update(task, description=", ".join(sorted(running)) or "batch")

        yield on_event


def _render(result) -> None:
    from rich.table import Table

    t = Table(title=f"batch: {result.config}", title_justify="left")
    for col in ("model", "target", "status", "exit", "max abs", "s", "detail"):
        t.add_column(col, justify="right" if col in ("exit", "max abs", "s") else "left")
    for r in result.records:
        err_ = r.error or {}
        detail = err_.get("message") or r.summary or ""
        mabs = f"{r.worst_max_abs:.3g}" if isinstance(r.worst_max_abs, float) else "-"
        style = _STYLE.get(r.status, "red")
        t.add_row(r.model, r.target, f"[{style}]{r.status}[/]", str(r.exit_code), mabs, f"{r.seconds:.1f}", detail)
    out.print(t)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(result.counts().items()))
    verdict = "PASSED" if result.passed else f"FAILED (exit {result.exit_code})"
    line = f"{verdict} | {len(result.records)} jobs: {counts} | {result.seconds:.1f} s | reports in {result.report_dir}"
    out.print(f"[bold green]{line}[/]" if result.passed else f"[bold red]{line}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("batch")
    def batch(config: Annotated[Path, typer.Argument(help="Batch config (YAML), e.g. configs/zoo/ppocr.yaml.")],
              jobs: Annotated[int, typer.Option("-j", "--jobs", min=1, max=64, help="Jobs run in parallel.")] = 1,
              resume: Annotated[bool, typer.Option("--resume", help="Skip jobs whose source, options and tool "
                                                   "versions are unchanged and whose artifact verified; after an "
                                                   "interrupted run, keep what it finished and redo the rest.")] = False,
              report_dir: Annotated[Optional[Path], typer.Option("--report-dir", help="Where report.json, junit.xml "
                                                                 "and summary.md go (default OUTPUT/report).")] = None,
              timeout: Annotated[Optional[float], typer.Option("--timeout", min=1, help="Per-job timeout in seconds "
                                                               "(overrides the config).")] = None,
              seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="Seed of the random verification "
                                                          "inputs of every job (overrides the config).")] = None,
              json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """Convert and verify every model × target of a config; each job in its own process.

        Exit: 0 all passed (or failed as expected), 6 a job failed parity, 5 any other job failure,
        2 a bad config.
        """
        from ..zoo.batch import load_config, run_batch

        cfg = load_config(config)
        with _progress(not json, len(cfg.jobs)) as on_event:
            result = run_batch(cfg, jobs=jobs, resume=resume, timeout=timeout, seed=seed, report_dir=report_dir,
                               on_event=on_event)
        if json:
            emit_json(result.to_dict())
        else:
            _render(result)
        return result.exit_code
