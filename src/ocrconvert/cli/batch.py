"""``ocrconvert batch CONFIG.yaml``: many models × targets, each job isolated; parse → run → render.

``batch CONFIG`` is ``batch run CONFIG`` (optionally one CI shard, ``--shard K/N``); ``batch merge`` merges the
shards' reports."""
from __future__ import annotations

from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from .options import DebugOpt, JsonOpt
from .render import emit_json, err, out

class ExecutorName(str, Enum):
    local = "local"
    ray = "ray"


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


class _RunByDefault(TyperGroup):
    """``batch CONFIG ...`` means ``batch run CONFIG ...``; a first word naming a sub-command picks it."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def register(app: typer.Typer) -> None:
    batch_app = typer.Typer(cls=_RunByDefault, no_args_is_help=True, help=(
        "Convert and verify every model × target of a config (`batch CONFIG` = `batch run CONFIG`), optionally as "
        "one CI shard (--shard K/N); `batch merge` joins the shards' reports. See docs/ci-shards.md."))
    app.add_typer(batch_app, name="batch")

    @batch_app.command("run")
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
              shard: Annotated[Optional[str], typer.Option("--shard", metavar="K/N", help="Run only shard K of N: a "
                                                           "deterministic split balanced by expected cost "
                                                           "(merge the reports with `batch merge`).")] = None,
              timings: Annotated[Optional[Path], typer.Option("--timings", help="With --shard: balance by the job "
                                                              "seconds of a previous report (folder or report.json) "
                                                              "instead of the cost table.")] = None,
              executor: Annotated[ExecutorName, typer.Option("--executor",
                                                    help="Where jobs run: local worker processes, or Ray tasks on a "
                                                         "cluster (output, report folder and model cache on a shared "
                                                         "file system; extra 'ray').")] = ExecutorName.local,
              address: Annotated[Optional[str], typer.Option("--address", help="With --executor ray: the cluster "
                                                             "head HOST:PORT (default RAY_ADDRESS, else a Ray started "
                                                             "on this machine).")] = None,
              json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """Convert and verify every model × target of a config; each job in its own process.

        Exit: 0 all passed (or failed as expected), 6 a job failed parity, 5 any other job failure,
        2 a bad config.
        """
        from ..zoo.batch import load_config, run_batch

        from ..zoo.batch.shards import parse_shard, shard_config

        if timings is not None and shard is None:
            from ..errors import UsageError

            raise UsageError("--timings only balances shards", hint="Add --shard K/N, or drop --timings.")
        part = parse_shard(shard) if shard is not None else None  # a bad K/N is refused before the config is read
        if address is not None and executor is not ExecutorName.ray:
            from ..errors import UsageError

            raise UsageError("--address names a Ray cluster, but the executor is local", hint="Add --executor ray.")
        runner = None
        if executor is ExecutorName.ray:
            from ..zoo.batch.ray_executor import ray_executor

            runner = ray_executor(address)
        cfg = load_config(config)
        if part is not None:
            cfg, _ = shard_config(cfg, part, timings, {"seed": seed, "timeout": timeout})
        with _progress(not json, len(cfg.jobs)) as on_event:
            result = run_batch(cfg, jobs=jobs, resume=resume, timeout=timeout, seed=seed, report_dir=report_dir,
                               on_event=on_event, executor=runner)
        if json:
            emit_json(result.to_dict())
        else:
            _render(result)
        return result.exit_code

    @batch_app.command("merge")
    def merge(reports: Annotated[list[Path], typer.Argument(help="The report folders (or report.json files) of "
                                                             "every shard of one run.")],
              output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the merged report.json, "
                                                   "junit.xml and summary.md.")],
              json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """Merge the reports of a sharded batch into one, as an unsharded run would have written it.

        Exit: as the unsharded run (0 all passed or failed as expected, 6 a job failed parity, 5 any other job
        failure); 2 when the reports are not every shard of one run of one config (nothing is written).
        """
        from ..zoo.batch.merge import merge_reports

        result = merge_reports(reports, output)
        if json:
            emit_json(result.to_dict())
        else:
            _render(result)
        return result.exit_code
