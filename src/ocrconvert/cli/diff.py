"""``ocrconvert diff SOURCE TARGET``: the first layer where TARGET leaves SOURCE."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ExitCode
from .options import DebugOpt, FamilyOpt, ImagesOpt, JsonOpt, PrecisionOpt, SeedOpt
from .render import emit_json, out, progress

ReportOpt = Annotated[Optional[Path], typer.Option("--report", help="Write a self-contained HTML report "
                                                                     "(error against depth) here.")]


def register(app: typer.Typer) -> None:
    @app.command("diff")
    def diff(source: Annotated[Path, typer.Argument(help="The reference model (e.g. the ORIGINAL Paddle model).")],
             target: Annotated[Path, typer.Argument(help="The model to localise against it.")],
             images: ImagesOpt = None, family: FamilyOpt = None, precision: PrecisionOpt = None, seed: SeedOpt = 0,
             report: ReportOpt = None, json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """Run both with their intermediate outputs, align the layers and name the first one whose error leaves
        its tolerance. Exit 6 when one does."""
        from ..errors import UsageError
        from ..verification.diff import diff_artifacts

        if report is not None and report.suffix.lower() not in (".html", ".htm"):
            raise UsageError("--report must name an .html file")
        with progress(not json) as say:
            result = diff_artifacts(source, target, images=images, family=family, precision=precision, seed=seed,
                                    progress=say)
        if report is not None:
            tmp = report.with_name(report.name + ".tmp")
            tmp.write_text(result.to_html(), encoding="utf-8")
            tmp.replace(report)
        if json:
            emit_json(result.to_dict())
        else:
            _render(result, report)
        return int(ExitCode.OK if result.passed else ExitCode.PARITY_FAILED)


def _render(result, report_path: Path | None) -> None:
    from rich.table import Table

    first = result.first
    shown = result.neighbours(first, 3) + [first] if first is not None else sorted(
        [r for r in result.layers if not r.suspect], key=lambda r: -r.rel if r.rel == r.rel else 0)[:5]
    shown = sorted(shown, key=lambda r: r.depth)
    title = "around the first divergence" if first is not None else "largest errors"
    t = Table(title=f"diff: {result.target_backend} vs {result.source_backend} · {result.family} · "
                    f"{result.precision} · {title}", title_justify="left")
    for col in ("depth", "source", "target", "op", "shape", "max abs", "scale", "error/scale", "cosine", ""):
        t.add_column(col, justify="left" if col in ("source", "target", "op", "shape", "") else "right")
    for r in shown:
        mark = "[red]FIRST[/]" if r is first else ("[yellow]suspect[/]" if r.suspect else
                                                   "[red]over[/]" if r.exceeded else "[green]ok[/]")
        t.add_row(str(r.depth), r.source, r.target, r.op, "x".join(map(str, r.shape)), f"{r.max_abs:.3g}",
                  f"{r.scale:.3g}", f"{r.rel:.3g}", f"{r.cosine:.6f}", mark)
    out.print(t)
    out.print(f"aligned {len(result.layers)} layers by {result.alignment}; tolerance {result.tolerance:g} of scale",
              highlight=False)
    for note in result.notes:
        out.print(f"note: {note}", highlight=False)
    if report_path is not None:
        out.print(f"report: {report_path}", highlight=False)
    color = {"PASSED": "green", "FAILED": "red"}.get(result.verdict, "yellow")
    out.print(f"[bold {color}]{result.summary_line()}[/]", highlight=False)
