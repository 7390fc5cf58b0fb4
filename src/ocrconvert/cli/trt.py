"""``ocrconvert trt-build SOURCE -o OUT.engine | --export-only DIR [...]``: parse -> ``pipeline.convert``
(route ``trt-build`` or ``trt-export``) -> render."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import (DebugOpt, FamilyOpt, ForceOpt, ImagesOpt, JsonOpt, NoVerifyOpt, PlanMaxEvalsOpt, PlanMinMetricOpt,
                      PlanOpt, SeedOpt, given)
from .render import finish, progress


def _summary(result, export_only: bool) -> str:
    """What was written, and for a plan how to build it; INT8's random cases (loose gates) are listed first."""
    from ..tensorrt.profiles import ShapeProfile

    lines = []
    report = result.report
    for case in (c for c in (report.cases if report is not None else []) if c.gate):
        worst = max((o.max_abs for o in case.outputs), default=float("nan"))
        lines.append(f"  loose INT8 gate (random noise): {case.label}: max abs {worst:.3g} "
                     f"({'ok' if case.passed else 'FAILED'})")
    precision = result.manifest.get("precision")
    if export_only:
        plan = result.manifest["tensorrt_plan"]
        lines.append(f"wrote {result.artifact.path} ({precision}); TensorRT not run")
        lines += [f"  profile {ShapeProfile.from_dict(p).spec()}  ({p['origin']})" for p in plan["profiles"]]
        lines.append(f"  build it with: {plan['trtexec']}")
    else:
        lines.append(f"wrote {result.artifact.path} (tensorrt {precision})")
    plan = result.manifest.get("precision_plan")
    if plan is not None:
        search = plan.get("search") or {}
        kept = len(search.get("kept_units") or plan["keep_fp32"])
        lines.append(f"  precision plan ({plan['origin']}): {kept} layer(s) "
                     f"kept fp32, {plan['fp32_flop_share'] if plan['fp32_flop_share'] is not None else '?'} of the "
                     f"FLOPs; {search.get('evaluations', 0)} candidate(s) judged"
                     + ("" if plan.get("passed") is not False else f"; the gate FAILED: {search.get('failure', '')}"))
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("trt-build")
    def trt_build(
        source: Annotated[Path, typer.Argument(help="The ONNX model.")],
        output: Annotated[Optional[Path], typer.Option("-o", "--output", help="The engine file (.engine).")] = None,
        fp16: Annotated[bool, typer.Option("--fp16", help="FP16 engine (TRT 10: builder flag; TRT 11: FP16-cast ONNX).")] = False,
        int8: Annotated[bool, typer.Option("--int8", help="INT8 engine (TRT 10: entropy calibrator; TRT 11: Q/DQ ONNX).")] = False,
        calib_images: Annotated[Optional[Path], typer.Option("--calib-images", help="Folder of real images to calibrate INT8 on.")] = None,
        calib_limit: Annotated[Optional[int], typer.Option("--calib-limit", help="Use at most this many calibration images.")] = None,
        calib_cache: Annotated[Optional[Path], typer.Option("--calib-cache", help="TRT 10 INT8 calibration cache file: read when present, written after calibrating.")] = None,
        calib_method: Annotated[Optional[str], typer.Option("--calib-method", help="Q/DQ calibration: percentile (default), minmax, entropy.")] = None,
        shapes: Annotated[Optional[list[str]], typer.Option("--shapes", help="NAME:MIN:OPT:MAX, each like 1x3x48x320 (repeatable).")] = None,
        timing_cache: Annotated[Optional[Path], typer.Option("--timing-cache", help="Timing cache file, read and updated.")] = None,
        workspace: Annotated[Optional[float], typer.Option("--workspace", help="Builder workspace limit in GiB.")] = None,
        plan: PlanOpt = None,
        plan_min_metric: PlanMinMetricOpt = None,
        plan_max_evals: PlanMaxEvalsOpt = None,
        export_only: Annotated[Optional[Path], typer.Option("--export-only", help="Write the prepared ONNX + profiles + manifest to DIR; no TensorRT needed.")] = None,
        no_verify: NoVerifyOpt = False, images: ImagesOpt = None, family: FamilyOpt = None, seed: SeedOpt = 0,
        force: ForceOpt = False, json: JsonOpt = False, debug: DebugOpt = False,
    ) -> int:
        """ONNX -> TensorRT engine for this GPU, verified against the ORIGINAL source. Exit 4 without TensorRT."""
        from ..errors import UsageError
        from ..pipeline import available_converters, convert
        from ..runners.tensorrt import tensorrt_missing

        if fp16 and int8:
            raise UsageError("choose one of --fp16 and --int8",
                             hint="--int8 already lets layers INT8 cannot take run in FP16.")
        if export_only is None and output is None:
            raise UsageError("give -o OUT.engine, or --export-only DIR to prepare without TensorRT")
        if export_only is not None and output is not None:
            raise UsageError("-o and --export-only exclude each other")
        if output is not None and output.suffix != ".engine":
            raise UsageError(f"-o {output} should end in .engine", hint="e.g. -o model.fp16.engine")
        route, target = ("trt-export", "tensorrt-plan") if export_only is not None else ("trt-build", "tensorrt")
        options = given(precision="int8" if int8 else "fp16" if fp16 else None, calib_images=calib_images,
                        calib_limit=calib_limit, calib_cache=calib_cache, calib_method=calib_method, shapes=shapes or None,
                        timing_cache=timing_cache, workspace_gib=workspace, family=family, plan=plan,
                        plan_min_metric=plan_min_metric, plan_max_evals=plan_max_evals)
        spec = next(s for s in available_converters() if s.key.name == route)
        spec.parse_options(options)  # a value the route cannot honour is exit 2, even where TensorRT is absent
        if not spec.available:
            raise tensorrt_missing()  # exit 4 naming the install, before anything is read or written
        with progress(not json) as say:
            result = convert(source, export_only or output, target=target, route=route, verify=not no_verify,
                             options=options, images=images, family=family, seed=seed, force=force, progress=say)
        return finish(result, json, _summary(result, export_only is not None), result.manifest_path)
