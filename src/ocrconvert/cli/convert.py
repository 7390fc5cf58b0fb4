"""Route commands, all of one shape: ``ocrconvert ROUTE SOURCE -o OUTPUT [options] [--json]``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import (AtolOpt, DebugOpt, DictOpt, FamilyOpt, ForceOpt, ImagesOpt, JsonOpt, NoVerifyOpt, OpsetOpt,
                      OutputOpt, RtolOpt, SeedOpt, given, parse_tolerance)
from .render import finish, progress

SourceArg = Annotated[Path, typer.Argument(help="Source model: Paddle folder, .onnx, or ocrconvert artifact.")]


def run_conversion(source, output, *, target, route=None, options=None, no_verify=False, images=None, atol=None,
                   rtol=None, family=None, dictionary=None, as_json=False, seed=0, precision=None, reference=None,
                   force=False) -> int:
    from ..pipeline import convert
    from ..verification import Tolerances

    tol = Tolerances(precision=precision, atol=parse_tolerance(atol, "--atol"), rtol=parse_tolerance(rtol, "--rtol"))
    with progress(not as_json) as say:
        result = convert(source, output, target=target, route=route, verify=not no_verify, options=options or {},
                         images=images, tolerances=tol, family=family, dictionary=dictionary, progress=say,
                         reference=reference, seed=seed, force=force)
    return finish(result, as_json, f"wrote {result.artifact.path} ({result.artifact.format.value}) via "
                                   f"{' -> '.join(result.route)}", result.manifest_path)


def register(app: typer.Typer) -> None:
    @app.command("paddle2onnx")
    def paddle2onnx(source: SourceArg, output: OutputOpt, opset: OpsetOpt = None, no_verify: NoVerifyOpt = False,
                    images: ImagesOpt = None, atol: AtolOpt = None, rtol: RtolOpt = None, family: FamilyOpt = None,
                    dictionary: DictOpt = None, seed: SeedOpt = 0, force: ForceOpt = False, json: JsonOpt = False,
                    debug: DebugOpt = False) -> int:
        """Paddle inference model -> ONNX (paddle2onnx), verified against Paddle."""
        return run_conversion(source, output, target="onnx", route="paddle2onnx", options=given(opset=opset),
                              no_verify=no_verify, images=images, atol=atol, rtol=rtol, family=family,
                              dictionary=dictionary, as_json=json, seed=seed, force=force)

    @app.command("onnx2torch")
    def onnx2torch(source: SourceArg, output: OutputOpt,
                   route: Annotated[Optional[str], typer.Option("--route", help="graph (default: onnxslim + onnx2torch) | native (transformers classes, when the graph is a known architecture)")] = None,
                   allow_partial: Annotated[bool, typer.Option("--allow-partial", help="Native route: accept unmapped parameters.")] = False,
                   no_verify: NoVerifyOpt = False, images: ImagesOpt = None,
                   atol: AtolOpt = None, rtol: RtolOpt = None, family: FamilyOpt = None, dictionary: DictOpt = None,
                   seed: SeedOpt = 0, force: ForceOpt = False, json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """ONNX -> PyTorch: graph artifact (onnxslim + onnx2torch) or native modules, verified against the ONNX."""
        from ..errors import UsageError

        prefer = {"native": "native", "graph": "onnx2torch", None: "onnx2torch"}.get(route, "?")
        if prefer == "?":
            raise UsageError(f"--route {route!r} is not native or graph")
        return run_conversion(source, output, target="torch", route=prefer,
                              options=given(allow_partial=allow_partial), no_verify=no_verify, images=images,
                              atol=atol, rtol=rtol, family=family, dictionary=dictionary, as_json=json, seed=seed,
                              force=force)

    @app.command("torch2onnx")
    def torch2onnx(source: SourceArg, output: OutputOpt, opset: OpsetOpt = None,
                   no_slim: Annotated[bool, typer.Option("--no-slim", help="Skip onnxslim.")] = False,
                   no_verify: NoVerifyOpt = False, images: ImagesOpt = None, atol: AtolOpt = None, rtol: RtolOpt = None,
                   family: FamilyOpt = None, dictionary: DictOpt = None, seed: SeedOpt = 0, force: ForceOpt = False,
                   json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """ocrconvert PyTorch artifact -> ONNX, verified against the artifact's original source."""
        return run_conversion(source, output, target="onnx", route="torch2onnx",
                              options=given(opset=opset, slim=False if no_slim else None), no_verify=no_verify,
                              images=images, atol=atol, rtol=rtol, family=family, dictionary=dictionary, as_json=json,
                              seed=seed, force=force)

    @app.command("paddle2torch")
    def paddle2torch(source: SourceArg, output: OutputOpt,
                     route: Annotated[Optional[str], typer.Option("--route", help="native | graph (default: native when the architecture is recognised)")] = None,
                     allow_partial: Annotated[bool, typer.Option("--allow-partial", help="Native route: accept unmapped parameters.")] = False,
                     opset: OpsetOpt = None, no_verify: NoVerifyOpt = False, images: ImagesOpt = None,
                     atol: AtolOpt = None, rtol: RtolOpt = None, family: FamilyOpt = None, dictionary: DictOpt = None,
                     seed: SeedOpt = 0, force: ForceOpt = False, json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """Paddle inference model -> PyTorch, verified against Paddle inference (not the intermediate ONNX)."""
        from ..errors import UsageError

        prefer = {"native": "native", "graph": "onnx2torch", None: None}.get(route, "?")
        if prefer == "?":
            raise UsageError(f"--route {route!r} is not native or graph")
        return run_conversion(source, output, target="torch", route=prefer,
                              options=given(opset=opset, allow_partial=allow_partial), no_verify=no_verify,
                              images=images, atol=atol, rtol=rtol, family=family, dictionary=dictionary,
                              as_json=json, seed=seed, force=force)
