"""Typed options shared by commands, validated at the edge."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Verbose logs and full tracebacks.")]
OutputOpt = Annotated[Path, typer.Option("-o", "--output", help="Output path (file or folder).")]
NoVerifyOpt = Annotated[bool, typer.Option("--no-verify", help="Skip the parity check against the source.")]
ImagesOpt = Annotated[Optional[Path], typer.Option("--images", help="Folder of real images to verify on as well.")]
AtolOpt = Annotated[Optional[list[str]], typer.Option("--atol", help="Absolute tolerance: VALUE or OUTPUT=VALUE (repeatable).")]
RtolOpt = Annotated[Optional[list[str]], typer.Option("--rtol", help="Relative tolerance: VALUE or OUTPUT=VALUE (repeatable).")]
FamilyOpt = Annotated[Optional[str], typer.Option("--family", help="Force the model family: rec-ctc, det-db, cls, table, generic.")]
DictOpt = Annotated[Optional[Path], typer.Option("--dict", help="Recognition dictionary file (one entry per line).")]
OpsetOpt = Annotated[Optional[int], typer.Option("--opset", help="ONNX opset (default: the route's; the route refuses one it cannot write).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing artifact at the output path.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the random verification inputs.")]
PrecisionOpt = Annotated[Optional[str], typer.Option("--precision", help="Tolerance defaults: fp32, fp16, bf16, int8 (default: what the artifact was built in).")]


# mixed-precision plans (options.MixedPrecisionOptions), on every command that lowers precision
PlanOpt = Annotated[Optional[str], typer.Option("--plan", help="fp16/int8: 'auto' searches the fewest layers kept in fp32 that pass the family's gate against the ORIGINAL; or a precision-plan.json (or an artifact's manifest) to reuse.")]
PlanMinMetricOpt = Annotated[Optional[float], typer.Option("--plan-min-metric", help="--plan auto: a gate tighter than the family's (e.g. 0.995 det IoU).")]
PlanMaxEvalsOpt = Annotated[Optional[int], typer.Option("--plan-max-evals", help="--plan auto: at most this many candidate plans (default 16).")]


def parse_tolerance(values: list[str] | None, flag: str):
    """``["1e-4"]`` -> 1e-4; ``["1e-4", "logits=1e-3"]`` -> {"": 1e-4, "logits": 1e-3}."""
    if not values:
        return None
    out: dict[str, float] = {}
    for v in values:
        name, _, num = v.rpartition("=")
        try:
            out[name] = float(num)
        except ValueError:
            raise UsageError(f"{flag} {v!r} is not VALUE or OUTPUT=VALUE", hint=f"e.g. {flag} 1e-4 or {flag} logits=1e-3") from None
        if out[name] < 0:
            raise UsageError(f"{flag} must not be negative")
    return out[""] if list(out) == [""] else out


def given(**options) -> dict:
    """The options the user actually gave: None (not given) and False flags are left to the route's
    record, so a route is never handed a value it would have to refuse for nothing."""
    return {k: v for k, v in options.items() if v is not None and v is not False}
