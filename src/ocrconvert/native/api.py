"""Public entry points of the native PyTorch route; every architecture question goes to the registry."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..errors import UnsupportedModelError
from ..formats import Artifact, Format, detect
from ..paddle_program import PaddleProgram, read_program
from . import architectures
from .architectures import Recognised
from .errors import NativeMappingError
from .mapping import MappingReport

REPORT_FILE = "ocrconvert_native.json"


def _program(source: Artifact | str | Path) -> PaddleProgram:
    art = source if isinstance(source, Artifact) else detect(source)
    if art.format not in (Format.PADDLE_LEGACY, Format.PADDLE_PIR):
        raise UnsupportedModelError(f"{art.path} is {art.format.value}, not a Paddle inference program or ONNX")
    return read_program(art)


def _onnx_layers(art: Artifact):
    from ..onnx_io import load_onnx
    from .onnx_layers import read_onnx_layers

    return read_onnx_layers(load_onnx(art.files.get("model", art.path)), art.path)


def _recognised(source: Artifact | str | Path):
    """(recognised architecture, source weights by name, source format) of a Paddle program or an ONNX graph."""
    art = source if isinstance(source, Artifact) else detect(source)
    if art.format is Format.ONNX:
        layers = _onnx_layers(art)
        return architectures.recognise_onnx(layers), layers.weights, art.format.value
    program = _program(art)
    return architectures.recognise(program), program.weights(), program.format.value


def recognise(source: Artifact | str | Path) -> Recognised | None:
    """The architecture of a Paddle program or ONNX graph, identified from its layers and weight shapes (never
    from names); None if unknown."""
    try:
        return _recognised(source)[0]
    except NativeMappingError:
        return None


def convert_to_transformers(source: Artifact | str | Path, out_dir: Path, *, allow_partial: bool = False) -> MappingReport:
    """Paddle inference model or ONNX model -> transformers folder (config.json + model.safetensors),
    trainable form."""
    found, weights, source_format = _recognised(source)
    arch = found.architecture
    model = arch.build(found.config)
    report = arch.fill(model, found.layers, weights)
    if not report.complete and not allow_partial:
        raise NativeMappingError(
            f"incomplete mapping: {len(report.unmapped_source)} unmapped source params "
            f"{report.unmapped_source[:5]}, {len(report.unset_target)} unset target tensors {report.unset_target[:5]}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with architectures.quiet_transformers():
        model.save_pretrained(out_dir, safe_serialization=True)
    meta = {"architecture": arch.name, "task": arch.task, "source_format": source_format,
            "report": report.to_dict(), "output": arch.output}
    (out_dir / REPORT_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return report


class _OutputTensor(nn.Module):
    """Unfused form: the transformers model, returning the raw output tensor."""

    def __init__(self, model: nn.Module, finish=None):
        super().__init__()
        self.model = model
        self.finish = finish

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values)
        out = out if isinstance(out, torch.Tensor) else out.last_hidden_state
        return out if self.finish is None else self.finish(out)


def trainable_module(folder: Path) -> nn.Module:
    """The training form (a transformers class, or ours for cls), loaded from a converted folder.

    rec/det return the transformers ``ModelOutput`` (``.last_hidden_state``); cls returns the tensor.
    Call ``.train()`` for fine-tuning (BatchNorm then uses batch statistics, as in any fine-tuning)."""
    folder = Path(folder)
    model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    return architectures.for_model_type(model_type).load_trainable(folder)


@torch.no_grad()
def fuse_model(model: nn.Module) -> nn.Module:
    """The fused inference form of a trainable model (frozen, eval mode)."""
    fused = architectures.for_model_type(model.config.model_type).fuse(model.eval())
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused.eval()


def load_native(folder: Path, *, fused: bool = True) -> nn.Module:
    """Inference module: ``forward(pixel_values) -> Tensor`` equal to the Paddle inference output.

    fused=True folds every rep-layer into one conv, BatchNorm into convs and the learnable affine blocks
    into adjacent convs where exact; fused=False runs the training-form graph."""
    model = trainable_module(folder)
    if fused:
        return fuse_model(model)
    return _OutputTensor(model, architectures.for_model_type(model.config.model_type).finish).eval()
