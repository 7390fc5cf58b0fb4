"""``ocrconvert trt-build MODEL.onnx -o OUT.engine [...]``: parse -> ``ocrconvert.trt_prep`` -> render."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ExitCode
from .options import DebugOpt, FamilyOpt, ImagesOpt, JsonOpt, NoVerifyOpt
from .render import emit_json, err, out, print_report, progress


def _print_profiles(profiles) -> None:
    for p in profiles:
        out.print(f"  profile {p.spec()}  [dim]({p.origin})[/]", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("trt-build")
    def trt_build(
        source: Annotated[Path, typer.Argument(help="The ONNX model.")],
        output: Annotated[Optional[Path], typer.Option("-o", "--output", help="The engine file (.engine).")] = None,
        fp16: Annotated[bool, typer.Option("--fp16", help="FP16 engine (TRT 10: builder flag; TRT 11: FP16-cast ONNX).")] = False,
        int8: Annotated[bool, typer.Option("--int8", help="INT8 engine (TRT 10: entropy calibrator; TRT 11: Q/DQ ONNX).")] = False,
        calib_images: Annotated[Optional[Path], typer.Option("--calib-images", help="Folder of real images to calibrate INT8 on.")] = None,
        calib_limit: Annotated[Optional[int], typer.Option("--calib-limit", help="Use at most this many calibration images.")] = None,
        calib_method: Annotated[str, typer.Option("--calib-method", help="Q/DQ calibration: percentile, minmax, entropy.")] = "percentile",
        shapes: Annotated[Optional[list[str]], typer.Option("--shapes", help="NAME:MIN:OPT:MAX, each like 1x3x48x320 (repeatable).")] = None,
        timing_cache: Annotated[Optional[Path], typer.Option("--timing-cache", help="Timing cache file, read and updated.")] = None,
        workspace: Annotated[Optional[float], typer.Option("--workspace", help="Builder workspace limit in GiB.")] = None,
        export_only: Annotated[Optional[Path], typer.Option("--export-only", help="Write the prepared ONNX + profiles + manifest to DIR; no TensorRT needed.")] = None,
        no_verify: NoVerifyOpt = False, images: ImagesOpt = None, family: FamilyOpt = None,
        json: JsonOpt = False, debug: DebugOpt = False,
    ) -> int:
        """ONNX -> TensorRT engine for this GPU, verified against the ORIGINAL source. Exit 4 without TensorRT."""
        from ..errors import UsageError
        from ..trt_prep import TrtBuildOptions, export_prepared, report_dict, trt_build as build

        opts = TrtBuildOptions(fp16=fp16, int8=int8, calib_images=calib_images, calib_limit=calib_limit,
                               calib_method=calib_method, shapes=list(shapes or []), timing_cache=timing_cache,
                               workspace_gib=workspace, family=family).validate()
        if fp16 and int8:
            raise UsageError("choose one of --fp16 and --int8",
                             hint="--int8 already lets layers INT8 cannot take run in FP16.")
        if export_only is None and output is None:
            raise UsageError("give -o OUT.engine, or --export-only DIR to prepare without TensorRT")
        if export_only is not None and output is not None:
            raise UsageError("-o and --export-only exclude each other")
        with progress(not json) as say:
            if export_only is not None:
                res = export_prepared(source, export_only, opts, verify=not no_verify, images=images, progress=say)
            else:
                res = build(source, output, opts, verify=not no_verify, images=images, progress=say)
        if json:
            data = res.to_dict()
            if export_only is None and res.report is not None:
                data["verification"] = report_dict(res.report)
            emit_json(data)
        else:
            if res.report is not None:
                print_report(res.report)
                for case in getattr(res.report, "informational", []):
                    worst = max((o.max_abs for o in case.outputs), default=float("nan"))
                    task = f", {case.task.name} {case.task.value:.4g}" if case.task else ""
                    out.print(f"  not judged (INT8, random noise): {case.label}: max abs {worst:.3g}{task}",
                              highlight=False)
            if export_only is not None:
                out.print(f"wrote {res.folder / res.prepared.onnx_path.name} ({res.prepared.precision}); "
                          "TensorRT not run", highlight=False)
                _print_profiles(res.prepared.profiles)
                out.print(f"  build it with: {res.manifest['tensorrt_plan']['trtexec']}", highlight=False)
            else:
                out.print(f"wrote {res.artifact.path} (tensorrt {res.manifest.get('engine', {}).get('precision')})",
                          highlight=False)
            err.print(f"manifest: {res.manifest_path}", highlight=False)
        return int(ExitCode.OK if res.passed else ExitCode.PARITY_FAILED)
