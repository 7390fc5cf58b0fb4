"""``ocrconvert triton-repo SET -o REPO [--backend onnxruntime|tensorrt|python]``: a Triton model repository."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import DebugOpt, ForceOpt, JsonOpt, OutputOpt
from .render import emit_json, err, out

SetArg = Annotated[Path, typer.Argument(help="A model set: a convert-set folder, a PaddleOCR model-set folder or a "
                                             "YAML naming each stage.")]
BackendOpt = Annotated[str, typer.Option("--backend", help="Stage models on Triton's onnxruntime backend (ONNX sets), "
                                                           "as tensorrt_plan (engine sets), or python (any artifact "
                                                           "through ocrconvert.load()).")]
MaxSideOpt = Annotated[int, typer.Option("--max-image-side", help="The ocr model refuses images larger than this "
                                                                  "on a side (pixels).")]
InstancesOpt = Annotated[int, typer.Option("--ocr-instances", min=1, help="Instances of the ocr BLS model.")]


def register(app: typer.Typer) -> None:
    @app.command("triton-repo")
    def triton_repo(model_set: SetArg, output: OutputOpt, backend: BackendOpt = "python",
                    max_image_side: MaxSideOpt = 8192, ocr_instances: InstancesOpt = 2, force: ForceOpt = False,
                    json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """Write a Triton Inference Server model repository: one model per stage, and `ocr` (encoded image in,
        boxes / texts / scores out) running the OCR pipeline over them; every config.pbtxt schema-checked."""
        from ..serving import write_repository

        def say(msg: str) -> None:
            err.print(msg, highlight=False, markup=False)

        result = write_repository(model_set, output, backend=backend, force=force, max_image_side=max_image_side,
                                  ocr_instances=ocr_instances, progress=say)
        if json:
            emit_json(result.to_dict())
        else:
            for name, m in result.models.items():
                shapes = ", ".join(f"{k}{v}" for k, v in (m.get("inputs") or {}).items())
                out.print(f"  {name:4s} {m['backend']:11s} {m.get('family', 'bls (OcrPipeline)'):12s} "
                          f"max_batch {m.get('max_batch_size', 0):<3} {shapes}", highlight=False, markup=False)
            out.print(f"PASSED | every config.pbtxt follows Triton's model configuration schema | wrote {result.path}",
                      highlight=False, markup=False)
        return 0
