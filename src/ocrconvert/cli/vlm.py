"""VLM vision encoders: ``vlm-export`` (the vlm-onnx / vlm-aot routes of the spine) and ``vlm-embed``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import DebugOpt, ForceOpt, JsonOpt, NoVerifyOpt, OpsetOpt, given

TARGETS = {".onnx": ("onnx", "vlm-onnx"), ".pt2": ("torch-aot", "vlm-aot")}


def register(app: typer.Typer) -> None:
    @app.command("vlm-export")
    def vlm_export(model: Annotated[str, typer.Argument(help="Which VLM: hunyuan-ocr | paddleocr-vl")],
                   output: Annotated[Path, typer.Option("-o", "--output", help="encoder.onnx, or encoder.pt2 (AOTInductor); a folder with --parts all")],
                   checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="Checkpoint folder (config.json + safetensors; transformers or original naming). Default: seeded random weights.")] = None,
                   layers: Annotated[Optional[int], typer.Option("--layers", help="Keep only the first N encoder blocks.")] = None,
                   opset: OpsetOpt = None,
                   fp16: Annotated[bool, typer.Option("--fp16", help="FP16 weights, fp32 I/O.")] = False,
                   bf16: Annotated[bool, typer.Option("--bf16", help="BF16 inside (.pt2 on CUDA only).")] = False,
                   interpolation: Annotated[Optional[str], typer.Option("--interpolation", help="Position-grid convention: transformers (output size, default) | original (scale factor, as the original code and vLLM).")] = None,
                   block: Annotated[Optional[int], typer.Option("--block", help="ONNX: query rows per attention block (bounds memory; default 512).")] = None,
                   sizes: Annotated[Optional[list[str]], typer.Option("--size", help="Verification size HxW (repeatable; default hunyuan-ocr 512x512, 640x960, 1024x768; paddleocr-vl 448x448, 616x924, 1036x784).")] = None,
                   export_size: Annotated[Optional[str], typer.Option("--export-size", help="Size traced at export (HxW; default 512x512, paddleocr-vl 448x448).")] = None,
                   device: Annotated[Optional[str], typer.Option("--device", help=".pt2 packages: cpu (default) | cuda")] = None,
                   reference_device: Annotated[Optional[str], typer.Option("--reference-device", help="Where the fp32 transformers reference runs: cpu (default) | cuda (TF32 off).")] = None,
                   images: Annotated[Optional[list[Path]], typer.Option("--image", help="Also verify on this image file (repeatable).")] = None,
                   no_verify: NoVerifyOpt = False,
                   seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights (no --checkpoint) and of the verification inputs.")] = 0,
                   parts: Annotated[str, typer.Option("--parts", help="encoder (one file) | all: encoder + token embedding + decoder with KV cache into the folder -o, verified by greedy generation against transformers.")] = "encoder",
                   new_tokens: Annotated[int, typer.Option("--new-tokens", help="--parts all: greedy tokens compared per verification size.")] = 64,
                   prompt_ids: Annotated[Optional[str], typer.Option("--prompt-ids", help="--parts all: the verification prompt as token ids (default: seeded ids after the image).")] = None,
                   force: ForceOpt = False, json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """VLM vision tower -> ONE ONNX model (or .pt2) for any image size, verified against transformers;
        --parts all: the whole VLM (encoder, embedding, KV-cache decoder) as ONNX in one folder."""
        from ..errors import UsageError
        from ..pipeline import convert
        from ..vlm import tower_source
        from .render import finish, progress

        if fp16 and bf16:
            raise UsageError("--fp16 and --bf16 exclude each other")
        if parts not in ("encoder", "all"):
            raise UsageError(f"--parts {parts!r} is not encoder or all")
        if parts == "all":
            return _export_all(model, output, checkpoint=checkpoint, layers=layers, opset=opset, fp16=fp16, bf16=bf16,
                               unsupported={"--interpolation": interpolation, "--block": block, "--export-size": export_size,
                                            "--device": device, "--reference-device": reference_device, "--image": images},
                               sizes=sizes, new_tokens=new_tokens, prompt_ids=prompt_ids, seed=seed, verify=not no_verify,
                               force=force, json=json)
        if output.suffix not in TARGETS:
            raise UsageError(f"{output.name}: the output must end in .onnx or .pt2",
                             hint="e.g. -o encoder.onnx, or -o encoder.pt2 for an AOTInductor package")
        target, route = TARGETS[output.suffix]
        source = tower_source(model, checkpoint)
        options = given(layers=layers, opset=opset, precision="fp16" if fp16 else "bf16" if bf16 else None,
                        interpolation=interpolation, block=block, device=device, reference_device=reference_device,
                        seed=seed or None, export_size=export_size, sizes=sizes,
                        images=[str(p) for p in images] if images else None)
        with progress(not json) as say:
            result = convert(source, output, target=target, route=route, verify=not no_verify, options=options,
                             force=force, progress=say)
        convention = result.manifest["interpolation"]["convention"]
        return finish(result, json, f"wrote {result.artifact.path} (interpolation: {convention})", result.manifest_path)

    @app.command("vlm-generate")
    def vlm_generate(folder: Annotated[Path, typer.Argument(help="A folder written by vlm-export --parts all")],
                     image: Annotated[Path, typer.Argument(help="Image file")],
                     prompt: Annotated[Optional[str], typer.Option("--prompt", help="Prompt text (needs the checkpoint's tokenizer in the folder).")] = None,
                     prompt_ids: Annotated[Optional[str], typer.Option("--prompt-ids", help="Prompt as token ids, e.g. 1,2,3 (the image token marks where the image goes; without it the image comes first).")] = None,
                     max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Greedy tokens at most (stops at EOS).")] = 128,
                     json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """Image + prompt -> greedy tokens with the exported VLM in ONNX Runtime (no PyTorch)."""
        from ..vlm.generate import generate_cli
        from .render import emit_json, err, out, progress

        with progress(not json) as say:
            info = generate_cli(folder, image, prompt=prompt, prompt_ids=prompt_ids, max_new_tokens=max_new_tokens,
                                progress=say)
        if json:
            emit_json(info)
        else:
            out.print(info["text"] if info.get("text") is not None else ",".join(map(str, info["tokens"])),
                      highlight=False, markup=False)
            err.print(f"{info['new_tokens']} tokens, prompt {info['prompt_length']} ({info['image_tokens']} image), "
                      f"{info['seconds']['total']:.2f} s", highlight=False)
        return 0

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


def _export_all(model, output, *, checkpoint, layers, opset, fp16, bf16, unsupported, sizes, new_tokens, prompt_ids,
                seed, verify, force, json) -> int:
    from ..errors import UsageError
    from ..pipeline import convert_vlm
    from ..vlm.generate import parse_ids
    from .render import emit_json, err, out, print_report, progress

    if bf16:
        raise UsageError("--bf16 is not available for --parts all", hint="fp32 (default) or --fp16")
    given_flags = [flag for flag, value in unsupported.items() if value]
    if given_flags:
        raise UsageError(f"{', '.join(given_flags)} apply to the encoder alone", hint="Use --parts encoder for them.")
    with progress(not json) as say:
        result = convert_vlm(model, output, checkpoint=checkpoint, layers=layers, precision="fp16" if fp16 else "fp32",
                             opset=opset or 18, sizes=sizes or (), new_tokens=new_tokens,
                             prompt_ids=parse_ids(prompt_ids) if prompt_ids else None, seed=seed, verify=verify,
                             force=force, progress=say)
    if json:
        emit_json(result.to_dict())
    else:
        if result.report is not None:
            print_report(result.report)
        out.print(f"wrote {result.path}", highlight=False)
        err.print(result.summary_line(), highlight=False, markup=False)
    from ..errors import ExitCode

    return int(ExitCode.OK if result.passed else ExitCode.PARITY_FAILED)
