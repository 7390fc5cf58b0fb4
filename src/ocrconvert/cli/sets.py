"""Model-set commands: ``ocrconvert convert-set SOURCE_SET -o OUT --to TARGET``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import DebugOpt, ForceOpt, ImagesOpt, JsonOpt, NoVerifyOpt, OpsetOpt, OutputOpt, SeedOpt, given
from .render import emit_json, err, out

SetArg = Annotated[Path, typer.Argument(help="Source model set: a PaddleOCR model-set folder (det/cls/rec model "
                                             "folders and a dictionary), a set folder, or a YAML naming each stage.")]
ToOpt = Annotated[str, typer.Option("--to", help="onnx | torch | torch-native | torch-aot | tensorrt")]
BuildPrecisionOpt = Annotated[Optional[str], typer.Option(
    "--precision", help="Build precision for routes that take one (torch-aot, tensorrt): fp32, fp16, int8.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="Where the converted set runs for the end-to-end check "
                                                         "(cpu, cuda, cuda:N); torch-aot also builds for it.")]


def _render(result) -> None:
    from rich.table import Table

    t = Table(title=f"model set -> {result.record['target']}", title_justify="left")
    for col in ("stage", "artifact", "route", "verdict", "seconds"):
        t.add_column(col, justify="right" if col == "seconds" else "left")
    for name, st in result.record["stages"].items():
        color = {"PASSED": "green", "FAILED": "red"}.get(st["verdict"], "yellow")
        t.add_row(name, st["path"], " -> ".join(st["route"]), f"[{color}]{st['verdict']}[/]", f"{st['seconds']:.1f}")
    out.print(t)
    for name, st in result.record["stages"].items():
        if st.get("summary"):
            out.print(f"  {name}: {st['summary']}", highlight=False)
    pipe = result.record.get("pipeline_verification") or {}
    if pipe.get("summary"):
        out.print(f"  set: {pipe['summary']}", highlight=False)
    color = "green" if result.record["status"] == "verified" else "red" if not result.passed else "yellow"
    out.print(f"[bold {color}]{result.summary_line()}[/]", highlight=False)
    out.print(f"wrote {result.path}", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("convert-set")
    def convert_set(source: SetArg, output: OutputOpt, to: ToOpt, opset: OpsetOpt = None,
                    precision: BuildPrecisionOpt = None, device: DeviceOpt = "cpu", no_verify: NoVerifyOpt = False,
                    images: ImagesOpt = None, seed: SeedOpt = 0, force: ForceOpt = False, json: JsonOpt = False,
                    debug: DebugOpt = False) -> int:
        """Convert a model set (det, cls, rec, dictionary, yml) into one folder with ocrconvert-set.yaml: each
        stage verified against its original, then the whole set end to end against the source set."""
        from ..errors import ExitCode
        from ..pipeline import convert_set as _convert_set

        def say(msg: str) -> None:  # plain lines on stderr: a set takes minutes; stdout stays the result
            err.print(msg, highlight=False, markup=False)

        result = _convert_set(source, output, to=to, verify=not no_verify,
                              options=given(opset=opset, precision=precision), images=images, seed=seed,
                              force=force, device=device, progress=say)
        if json:
            emit_json(result.to_dict())
        else:
            _render(result)
        return int(ExitCode.OK if result.passed else ExitCode.PARITY_FAILED)
