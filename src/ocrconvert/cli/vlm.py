"""VLM vision encoders: ``vlm-export`` (one dynamic-resolution model, verified) and ``vlm-embed``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import DebugOpt, JsonOpt, NoVerifyOpt, OpsetOpt, SeedOpt


def register(app: typer.Typer) -> None:
    @app.command("vlm-export")
    def vlm_export(model: Annotated[str, typer.Argument(help="Which VLM: hunyuan-ocr | paddleocr-vl")],
                   output: Annotated[Path, typer.Option("-o", "--output", help="encoder.onnx, or encoder.pt2 (AOTInductor)")],
                   checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="Checkpoint folder (config.json + safetensors; transformers or original naming). Default: seeded random weights.")] = None,
                   layers: Annotated[Optional[int], typer.Option("--layers", help="Keep only the first N encoder blocks.")] = None,
                   opset: OpsetOpt = 18,
                   fp16: Annotated[bool, typer.Option("--fp16", help="FP16 weights, fp32 I/O.")] = False,
                   bf16: Annotated[bool, typer.Option("--bf16", help="BF16 inside (.pt2 on CUDA only).")] = False,
                   interpolation: Annotated[str, typer.Option("--interpolation", help="Position-grid convention: transformers (output size) | original (scale factor, as the original code and vLLM).")] = "transformers",
                   block: Annotated[int, typer.Option("--block", help="Query rows per attention block (bounds memory).")] = 512,
                   sizes: Annotated[Optional[list[str]], typer.Option("--size", help="Verification size HxW (repeatable; default hunyuan-ocr 512x512, 640x960, 1024x768; paddleocr-vl 448x448, 616x924, 1036x784).")] = None,
                   export_size: Annotated[Optional[str], typer.Option("--export-size", help="Size traced at export (HxW; default 512x512, paddleocr-vl 448x448).")] = None,
                   device: Annotated[str, typer.Option("--device", help="AOT packages: cpu | cuda")] = "cpu",
                   reference_device: Annotated[str, typer.Option("--reference-device", help="Where the fp32 transformers reference runs: cpu | cuda (TF32 off).")] = "cpu",
                   images: Annotated[Optional[list[Path]], typer.Option("--image", help="Also verify on this image file (repeatable).")] = None,
                   no_verify: NoVerifyOpt = False, seed: SeedOpt = 0, json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """VLM vision tower -> ONE ONNX model (or .pt2) for any image size, verified against transformers."""
        from ..errors import UsageError
        from ..vlm.export import VlmExportOptions, export_encoder, parse_size
        from .render import finish, progress

        if fp16 and bf16:
            raise UsageError("--fp16 and --bf16 exclude each other")
        if checkpoint is not None and not checkpoint.is_dir():
            raise UsageError(f"--checkpoint {checkpoint} is not a folder")
        for img in images or ():
            if not img.is_file():
                raise UsageError(f"--image {img} is not a file")
        opts = VlmExportOptions(model=model, checkpoint=checkpoint, layers=layers, opset=opset,
                                precision="fp16" if fp16 else "bf16" if bf16 else "fp32", interpolation=interpolation,
                                block=block, device=device, reference_device=reference_device, seed=seed, export_size=parse_size(export_size) if export_size else None,
                                sizes=tuple(parse_size(s) for s in sizes) if sizes else None)
        with progress(not json) as say:
            result = export_encoder(output, opts, verify=not no_verify, images=images, say=say)
        return finish(result, json, f"wrote {result.path} (interpolation: {opts.interpolation})",
                      f"{result.path}.ocrconvert.json")

    @app.command("vlm-embed")
    def vlm_embed(encoder: Annotated[Path, typer.Argument(help="An encoder.onnx written by vlm-export")],
                  image: Annotated[Path, typer.Argument(help="Image file")],
                  output: Annotated[Path, typer.Option("-o", "--output", help="Embeddings .npy ([tokens, width])")],
                  json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """Image file -> encoder embeddings: the recorded preprocessing, then the exported model."""
        from ..vlm.embed import embed_image
        from .render import emit_json, out

        info = embed_image(encoder, image, output)
        if json:
            emit_json(info)
        else:
            out.print(f"wrote {output}: {info['shape']} from {info['pixel_values']} pixels")
        return 0
