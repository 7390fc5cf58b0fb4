"""GPU deployment commands that need no TensorRT: ``aot-build``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .convert import SourceArg, run_conversion
from .options import (AtolOpt, DebugOpt, ForceOpt, ImagesOpt, JsonOpt, NoVerifyOpt, PlanMaxEvalsOpt,
                      PlanMinMetricOpt, PlanOpt, RtolOpt, SeedOpt, given)


def register(app: typer.Typer) -> None:
    @app.command("aot-build")
    def aot_build(source: SourceArg,
                  output: Annotated[Path, typer.Option("-o", "--output", help="Package path (.pt2).")],
                  fp16: Annotated[bool, typer.Option("--fp16", help="fp16 inside, fp32 I/O (CUDA only).")] = False,
                  device: Annotated[Optional[str], typer.Option("--device", help="cuda | cpu (default: cuda when present)")] = None,
                  reference: Annotated[Optional[Path], typer.Option("--reference", help="Recorded reference (.npz) to verify against instead of the source model.")] = None,
                  autotune: Annotated[bool, typer.Option("--autotune", help="Inductor max-autotune (slow build).")] = False,
                  freezing: Annotated[Optional[bool], typer.Option("--freezing/--no-freezing", help="Inductor freezing: weights as constants, oneDNN conv prepacking (default: on for --device cpu).")] = None,
                  plan: PlanOpt = None, plan_min_metric: PlanMinMetricOpt = None,
                  plan_max_evals: PlanMaxEvalsOpt = None,
                  no_verify: NoVerifyOpt = False, images: ImagesOpt = None, atol: AtolOpt = None, rtol: RtolOpt = None,
                  seed: SeedOpt = 0, force: ForceOpt = False, json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """Native PyTorch model (or Paddle folder, via the native route) -> AOTInductor package, verified."""
        from ..errors import UsageError

        if output.suffix != ".pt2":
            raise UsageError("the AOTInductor package must end in .pt2", hint="e.g. -o det.pt2")
        return run_conversion(source, output, target="torch-aot", route="aot-build",
                              options=given(precision="fp16" if fp16 else None, device=device, autotune=autotune,
                                            plan=plan, plan_min_metric=plan_min_metric,
                                            plan_max_evals=plan_max_evals)
                              | ({} if freezing is None else {"freezing": freezing}),  # given() drops False
                              no_verify=no_verify, images=images, atol=atol, rtol=rtol, as_json=json,
                              reference=reference, seed=seed, force=force)
