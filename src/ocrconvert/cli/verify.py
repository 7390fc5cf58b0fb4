from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ExitCode
from .options import (AtolOpt, DebugOpt, DictOpt, FamilyOpt, ForceOpt, ImagesOpt, JsonOpt, PrecisionOpt, RtolOpt, SeedOpt,
                      parse_tolerance)
from .render import emit_json, print_report, progress


def register(app: typer.Typer) -> None:
    register_reference(app)

    @app.command("verify")
    def verify(source: Annotated[Path, typer.Argument(help="The ORIGINAL model (reference); with --pipeline its model set.")],
               target: Annotated[Path, typer.Argument(help="The converted artifact to check; with --pipeline its model set.")],
               images: ImagesOpt = None, atol: AtolOpt = None, rtol: RtolOpt = None, precision: PrecisionOpt = "fp32",
               family: FamilyOpt = None, dictionary: DictOpt = None, seed: SeedOpt = 0,
               no_rendered: Annotated[bool, typer.Option("--no-rendered", help="Skip the rendered text images.")] = False,
               device: Annotated[Optional[str], typer.Option("--device", help="PyTorch target: run it on cpu or cuda.")] = None,
               half: Annotated[bool, typer.Option("--half", help="PyTorch target: run it in fp16 (fp32 I/O).")] = False,
               compile_mode: Annotated[Optional[str], typer.Option("--compile", help="PyTorch target: torch.compile mode (default, reduce-overhead, max-autotune).")] = None,
               cuda_graphs: Annotated[bool, typer.Option("--cuda-graphs", help="AOT package target (CUDA): replay it from CUDA graphs, as deployed with load(..., cuda_graphs=True).")] = False,
               pipeline: Annotated[bool, typer.Option("--pipeline", help="SOURCE and TARGET are model sets: run both OCR pipelines end to end and compare boxes, texts and scores.")] = False,
               report_path: Annotated[Optional[Path], typer.Option("--report", help="--pipeline: write a self-contained HTML report here.")] = None,
               json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """Compare TARGET with SOURCE: numeric errors per output and OCR-level agreement. Exit 6 on failure.

        With --pipeline, SOURCE_SET and TARGET_SET are model sets (folders or stage YAMLs): both run end to end on
        --images (default: rendered pages with known text); any text difference, missing or extra box, or box,
        score or det-map difference beyond tolerance fails (exit 6), as does a run where no page had a line."""
        if pipeline:
            refused = [flag for flag, value in (("--atol", atol), ("--rtol", rtol), ("--family", family),
                                                ("--dict", dictionary), ("--seed", seed), ("--no-rendered", no_rendered),
                                                ("--half", half), ("--compile", compile_mode),
                                                ("--cuda-graphs", cuda_graphs)) if value]
            if refused:
                from ..errors import UsageError

                raise UsageError(f"{', '.join(refused)} do(es) not apply to --pipeline",
                                 hint="A set's dictionary is its rec model's (or the set YAML's dict:); tolerances "
                                      "follow --precision.")
            return _verify_pipeline(source, target, images=images, precision=precision, device=device,
                                    report_path=report_path, json=json)
        if report_path is not None:
            from ..errors import UsageError

            raise UsageError("--report is written by --pipeline only", hint="Add --pipeline to compare model sets.")
        from ..verification import Tolerances, verify_artifacts

        from ..verification.run import torch_target_runner

        tol = Tolerances(precision=precision, atol=parse_tolerance(atol, "--atol"), rtol=parse_tolerance(rtol, "--rtol"))
        runner = torch_target_runner(target, device=device, half=half, compile=compile_mode, cuda_graphs=cuda_graphs)
        with progress(not json) as say:
            report = verify_artifacts(source, target, images=images, rendered=not no_rendered, tolerances=tol,
                                      family=family, dictionary=dictionary, seed=seed, progress=say,
                                      target_runner=runner)
        if json:
            emit_json(report.to_dict())
        else:
            print_report(report)
        return int(ExitCode.OK if report.passed else ExitCode.PARITY_FAILED)


def _verify_pipeline(source: Path, target: Path, *, images, precision, device, report_path, json: bool) -> int:
    from ..verification.pipeline_parity import verify_sets

    if report_path is not None and report_path.suffix.lower() not in (".html", ".htm"):
        from ..errors import UsageError

        raise UsageError(f"--report {report_path} must end in .html")
    with progress(not json) as say:
        report = verify_sets(source, target, images, device=device or "cpu", precision=precision,
                             report_path=report_path, progress=lambda label: say(f"page: {label}"))
    if json:
        emit_json({**report.to_dict(), **({"report": str(report_path)} if report_path else {})})
    else:
        print_pipeline_report(report)
        if report_path is not None:
            from .render import err

            err.print(f"report: {report_path}", highlight=False)
    return int(ExitCode.OK if report.passed else ExitCode.PARITY_FAILED)


def print_pipeline_report(report) -> None:
    """One row per page, each differing line under it, then the one PASSED / FAILED / INCONCLUSIVE line."""
    from rich.markup import escape
    from rich.table import Table

    from .render import out

    t = Table(title="pipeline parity", title_justify="left")
    for col in ("page", "source lines", "target lines", "missing", "extra", "texts differ", "max shift px",
                "det map max abs", "verdict"):
        t.add_column(col, justify="left" if col in ("page", "verdict") else "right")
    for p in report.pages:
        shift = p.worst("shift_px")
        t.add_row(escape(p.label), str(p.source_lines), str(p.target_lines), str(p.missing), str(p.extra),
                  str(p.text_differences), "-" if shift is None else f"{shift:.2f}",
                  "-" if p.prob_max_abs is None else f"{p.prob_max_abs:.3g}",
                  "same" if p.passed else ("[red]differs[/]"))
    out.print(t)
    for p in report.pages:
        for ln in p.lines:
            if ln.problems:
                out.print(f"  {escape(p.label)}: {escape('; '.join(ln.problems))}", highlight=False)
        if p.prob_problem:
            out.print(f"  {escape(p.label)}: {escape(p.prob_problem)}", highlight=False)
    color = {"PASSED": "green", "FAILED": "red"}.get(report.verdict, "yellow")
    out.print(f"[bold {color}]{escape(report.summary_line())}[/]")


def register_reference(app: typer.Typer) -> None:
    @app.command("reference")
    def reference(source: Annotated[Path, typer.Argument(help="The ORIGINAL model to record.")],
                  output: Annotated[Path, typer.Option("-o", "--output", help="Reference file (.npz).")],
                  images: ImagesOpt = None, family: FamilyOpt = None, dictionary: DictOpt = None, seed: SeedOpt = 0,
                  force: ForceOpt = False, json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """Record SOURCE's outputs on the verification inputs, to verify against later where SOURCE cannot run."""
        from ..errors import UsageError
        from ..verification import record_reference

        if output.suffix != ".npz":
            raise UsageError("the reference file must end in .npz")
        with progress(not json) as say:
            path = record_reference(source, output, images=images, family=family, dictionary=dictionary, seed=seed,
                                    progress=say, force=force)
        if json:
            emit_json({"reference": str(path)})
        else:
            from .render import out

            out.print(f"wrote {path}")
        return 0
