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


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(artifacts: Annotated[list[Path], typer.Argument(help="Paddle folders, .onnx, torch folders, .pt2, .engine")],
              device: Annotated[str, typer.Option("--device", help="cpu | cuda")] = "cpu",
              shape: Annotated[Optional[str], typer.Option("--shape", help="Input shape, e.g. 8x3x48x320 (default by family)")] = None,
              runs: Annotated[int, typer.Option("--runs", min=1)] = 20,
              warmup: Annotated[int, typer.Option("--warmup", min=0)] = 3,
              no_compile: Annotated[bool, typer.Option("--no-compile", help="Skip torch.compile variants.")] = False,
              compile_mode: Annotated[str, typer.Option("--compile-mode", help="torch.compile mode: default, reduce-overhead, max-autotune")] = "default",
              half: Annotated[bool, typer.Option("--half", help="Add fp16 variants of the native PyTorch model.")] = False,
              json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """Median latency, throughput, peak memory and ratios of every backend, measured side by side."""
        from ..bench import run_bench

        with progress(not json) as say:
            results = run_bench(artifacts, shape=_shape(shape), device=device, runs=runs, warmup=warmup,
                                compile_=not no_compile, half=half, compile_mode=compile_mode, progress=say)
        if json:
            emit_json([r.to_dict() for r in results])
            return 0
        t = Table("variant", "median ms", "p90 ms", "img/s", "peak MB", "ratio", "note",
                  title=f"bench on {device}, input {'x'.join(map(str, results[0].shape))}, {runs} runs", title_justify="left")
        for r in results:
            f = lambda v, fmt: (fmt.format(v) if v is not None else "-")  # noqa: E731
            t.add_row(escape(r.variant), f(r.median_ms, "{:.2f}"), f(r.p90_ms, "{:.2f}"), f(r.throughput, "{:.1f}"),
                      f(r.peak_mem_mb, "{:.0f}"), f(r.ratio, "{:.2f}x"), escape(r.error))
        out.print(t)
        return 0
