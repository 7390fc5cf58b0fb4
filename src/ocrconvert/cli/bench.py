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


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(artifacts: Annotated[list[Path], typer.Argument(help="Paddle folders, .onnx, torch folders, .pt2, .engine")],
              device: Annotated[str, typer.Option("--device", help="cpu | cuda | cuda:N (refused, exit 2, where no such CUDA device is visible)")] = "cpu",
              shape: Annotated[Optional[str], typer.Option("--shape", help="Input shape, e.g. 8x3x48x320 (default by family)")] = None,
              runs: Annotated[int, typer.Option("--runs", min=1, help="Timed calls per variant, all rounds together.")] = 20,
              rounds: Annotated[Optional[int], typer.Option("--rounds", min=1, help="Interleaved rounds the runs are split into (default: 5, at most --runs).")] = None,
              warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed calls before the first round (one more opens each later round when > 0).")] = 3,
              threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads of every runtime, every variant pinned to the same N CPUs (default: each runtime's own threads, no pinning).")] = None,
              no_compile: Annotated[bool, typer.Option("--no-compile", help="Skip torch.compile variants.")] = False,
              compile_mode: Annotated[str, typer.Option("--compile-mode", help="torch.compile mode: default, reduce-overhead, max-autotune")] = "default",
              half: Annotated[bool, typer.Option("--half", help="Add fp16 variants of the native PyTorch model.")] = False,
              seed: Annotated[int, typer.Option("--seed", help="Seed of the random input.")] = 0,
              json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """Median latency (p10–p90), throughput, peak memory and ratios of every backend on one input.

        Every variant runs in its own process, in interleaved rounds; its peak memory is its own.

        Exit 0: every variant ran.

        Exit 2 (before any work): bad options, --device cuda with no visible CUDA device, a backend that cannot run there.

        Exit 5: one or more variants failed (or all did); the others are still measured and reported.
        """
        from ..bench import run_bench

        with progress(not json) as say:
            report = run_bench(artifacts, shape=_shape(shape), device=device, runs=runs, rounds=rounds, warmup=warmup,
                               threads=threads, compile_=not no_compile, half=half, compile_mode=compile_mode,
                               seed=seed, progress=say)
        if json:
            emit_json(report.to_dict())
        else:
            render(report)
        return int(report.exit_code)
