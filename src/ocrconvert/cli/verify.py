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
    def verify(source: Annotated[Path, typer.Argument(help="The ORIGINAL model (reference).")],
               target: Annotated[Path, typer.Argument(help="The converted artifact to check.")],
               images: ImagesOpt = None, atol: AtolOpt = None, rtol: RtolOpt = None, precision: PrecisionOpt = "fp32",
               family: FamilyOpt = None, dictionary: DictOpt = None, seed: SeedOpt = 0,
               no_rendered: Annotated[bool, typer.Option("--no-rendered", help="Skip the rendered text images.")] = False,
               device: Annotated[Optional[str], typer.Option("--device", help="PyTorch target: run it on cpu or cuda.")] = None,
               half: Annotated[bool, typer.Option("--half", help="PyTorch target: run it in fp16 (fp32 I/O).")] = False,
               compile_mode: Annotated[Optional[str], typer.Option("--compile", help="PyTorch target: torch.compile mode (default, reduce-overhead, max-autotune).")] = None,
               json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """Compare TARGET with SOURCE: numeric errors per output and OCR-level agreement. Exit 6 on failure."""
        from ..verification import Tolerances, verify_artifacts

        from ..verification.run import torch_target_runner

        tol = Tolerances(precision=precision, atol=parse_tolerance(atol, "--atol"), rtol=parse_tolerance(rtol, "--rtol"))
        runner = torch_target_runner(target, device=device, half=half, compile=compile_mode)
        with progress(not json) as say:
            report = verify_artifacts(source, target, images=images, rendered=not no_rendered, tolerances=tol,
                                      family=family, dictionary=dictionary, seed=seed, progress=say,
                                      target_runner=runner)
        if json:
            emit_json(report.to_dict())
        else:
            print_report(report)
        return int(ExitCode.OK if report.passed else ExitCode.PARITY_FAILED)


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
