from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .options import DebugOpt, JsonOpt
from .render import emit_json, out, progress


def _shape(text: str | None):
    from ..errors import UsageError

    if not text:
        return None
    try:
        dims = tuple(int(v) for v in text.lower().split(":")[-1].split("x"))
    except ValueError:
        raise UsageError(f"--shape {text!r} is not like 8x3x48x320") from None
    if not dims or any(d <= 0 for d in dims):
        raise UsageError(f"--shape {text!r} has a non-positive dimension")
    return dims


def _num(v, fmt: str) -> str:
    return fmt.format(v) if v is not None else "-"


def _spread(lo, hi, fmt: str) -> str:
    return f"{fmt.format(lo)}–{fmt.format(hi)}" if lo is not None and hi is not None else "-"


def render(report) -> None:
    shape = "x".join(map(str, report.shape))
    gpu = any(r.gpu_peak_mb is not None for r in report.results)
    t = Table(title=f"bench on {report.device}, input {shape}, {report.runs} runs per variant in {report.rounds} "
                    f"interleaved rounds, each variant in its own process", title_justify="left",
              caption=f"ratio: median of the per-round ratios to {report.baseline or '-'}; "
                      "peak MB: the variant's own process (VmHWM)", caption_justify="left")
    for col in ("variant", "median ms", "p10–p90 ms", "img/s", "peak MB", *(["GPU MB"] if gpu else []), "ratio",
                "ratio p10–p90", "note"):
        t.add_column(col, justify="left" if col in ("variant", "note") else "right")
    for r in report.results:
        t.add_row(escape(r.variant), _num(r.median_ms, "{:.2f}"), _spread(r.p10_ms, r.p90_ms, "{:.2f}"),
                  _num(r.throughput, "{:.1f}"), _num(r.peak_mem_mb, "{:.0f}"),
                  *([_num(r.gpu_peak_mb, "{:.0f}")] if gpu else []), _num(r.ratio, "{:.2f}x"),
                  _spread(r.ratio_p10, r.ratio_p90, "{:.2f}"), escape(r.error))
    out.print(t)
    line = escape(report.summary_line())
    out.print(f"[bold green]{line}[/]" if report.passed else f"[bold red]{line}[/]")


def render_pipeline(report) -> None:
    """--pipeline: one row per model set, pages/s and each stage's share of a pass side by side."""
    stages = [s for s in ("det", "crop", "cls", "rec") if any(s in r.stages for r in report.results)]
    t = Table(title=f"bench --pipeline on {report.device}: {len(report.pages)} page(s) per pass, {report.runs} passes "
                    f"per set in {report.rounds} interleaved rounds, each set in its own process",
              title_justify="left",
              caption=f"ms per pass (all pages): median (p10–p90); ratio: median of the per-round ratios to "
                      f"{report.baseline or '-'}; peak MB: the set's own process (VmHWM)", caption_justify="left")
    for col in ("set", "pages/s", "pass ms", *[f"{s} ms" for s in stages], "peak MB", "ratio", "note"):
        t.add_column(col, justify="left" if col in ("set", "note") else "right")
    for r in report.results:
        cells = [f"{_num((r.stages.get(s) or {}).get('median_ms'), '{:.0f}')} "
                 f"({_spread((r.stages.get(s) or {}).get('p10_ms'), (r.stages.get(s) or {}).get('p90_ms'), '{:.0f}')})"
                 for s in stages]
        t.add_row(escape(r.variant), _num(r.throughput, "{:.3g}"),
                  f"{_num(r.median_ms, '{:.0f}')} ({_spread(r.p10_ms, r.p90_ms, '{:.0f}')})", *cells,
                  _num(r.peak_mem_mb, "{:.0f}"), _num(r.ratio, "{:.2f}x"), escape(r.error))
    out.print(t)
    line = escape(report.summary_line())
    out.print(f"[bold green]{line}[/]" if report.passed else f"[bold red]{line}[/]")


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(artifacts: Annotated[list[Path], typer.Argument(help="Paddle folders, .onnx, torch folders, .pt2, .engine; with --pipeline: model sets")],
              device: Annotated[str, typer.Option("--device", help="cpu | cuda | cuda:N (refused, exit 2, where no such CUDA device is visible)")] = "cpu",
              shape: Annotated[Optional[str], typer.Option("--shape", help="Input shape, e.g. 8x3x48x320 (default by family)")] = None,
              runs: Annotated[Optional[int], typer.Option("--runs", min=1, help="Timed calls per variant, all rounds together (default 20; --pipeline: 10 passes).")] = None,
              rounds: Annotated[Optional[int], typer.Option("--rounds", min=1, help="Interleaved rounds the runs are split into (default: 5, at most --runs).")] = None,
              warmup: Annotated[Optional[int], typer.Option("--warmup", min=0, help="Untimed calls before the first round, one more opens each later round when > 0 (default 3; --pipeline: 1 pass).")] = None,
              threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads of every runtime, every variant pinned to the same N CPUs (default: each runtime's own threads, no pinning).")] = None,
              no_compile: Annotated[bool, typer.Option("--no-compile", help="Skip torch.compile variants.")] = False,
              compile_mode: Annotated[str, typer.Option("--compile-mode", help="torch.compile mode: default, reduce-overhead, max-autotune")] = "default",
              half: Annotated[bool, typer.Option("--half", help="Add fp16 variants of the native PyTorch model.")] = False,
              seed: Annotated[int, typer.Option("--seed", help="Seed of the random input.")] = 0,
              pipeline: Annotated[bool, typer.Option("--pipeline", help="ARTIFACTS are OCR model sets: pages/s and per-stage time of each whole set, side by side.")] = False,
              images: Annotated[Optional[Path], typer.Option("--images", help="--pipeline: a folder of page images (default: rendered pages with known text).")] = None,
              json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """Median latency (p10–p90), throughput, peak memory and ratios of every backend on one input.

        Every variant runs in its own process, in interleaved rounds; its peak memory is its own.

        Exit 0: every variant ran.

        Exit 2 (before any work): bad options, --device cuda with no visible CUDA device, a backend that cannot run there.

        Exit 5: one or more variants failed (or all did); the others are still measured and reported.

        With --pipeline, every ARTIFACT is a model set (a set folder or a stage YAML); one timed call is one pass
        over every page; pages/s and det / crop / cls / rec time per set.
        """
        from ..bench import run_bench, run_pipeline_bench
        from ..errors import UsageError

        if pipeline:
            refused = [flag for flag, given in (("--shape", shape), ("--half", half), ("--seed", seed)) if given]
            if refused:
                raise UsageError(f"{', '.join(refused)} do(es) not apply to --pipeline",
                                 hint="A pipeline bench runs pages: pass --images DIR or use the rendered pages.")
            with progress(not json) as say:
                report = run_pipeline_bench(artifacts, images=images, device=device, runs=runs or 10, rounds=rounds,
                                            warmup=1 if warmup is None else warmup, threads=threads, progress=say)
            if json:
                emit_json(report.to_dict())
            else:
                render_pipeline(report)
            return int(report.exit_code)
        if images is not None:
            raise UsageError("--images applies to --pipeline only", hint="Add --pipeline to bench model sets.")

        with progress(not json) as say:
            report = run_bench(artifacts, shape=_shape(shape), device=device, runs=runs or 20, rounds=rounds,
                               warmup=3 if warmup is None else warmup,
                               threads=threads, compile_=not no_compile, half=half, compile_mode=compile_mode,
                               seed=seed, progress=say)
        if json:
            emit_json(report.to_dict())
        else:
            render(report)
        return int(report.exit_code)
