"""Public entry points of the native PyTorch route."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import NativeMappingError
from .mapping import MappingReport, WeightWriter

log = logging.getLogger(__name__)

REC_ARCH = "pp_ocrv5_mobile_rec"
DET_ARCH = "pp_ocrv5_mobile_det"
CLS_ARCH = "ppocr_mobilenetv3_cls"
REPORT_FILE = "ocrconvert_native.json"


@dataclass
class NativeSpec:
    architecture: str  # "pp_ocrv5_mobile_rec" | "pp_ocrv5_mobile_det" | "ppocr_mobilenetv3_cls"
    task: str  # "rec" | "det" | "cls"
    config: dict[str, Any]  # derived config (transformers config kwargs; backbone as a nested dict)
    source_format: str = ""  # "pir" | "legacy"
    metadata: dict[str, Any] = field(default_factory=dict)


def _parse(prog):
    """Try each supported architecture on the program; return (arch, task, config, parsed, seq) or None."""
    from .layers import LayerSequence  # noqa: PLC0415
    from . import lcnetv3, mobilenetv3_cls  # noqa: PLC0415

    errors = {}
    all_params = set(prog.params)

    def finished(seq):
        if seq.peek() is not None:
            raise NativeMappingError(f"trailing layers not covered: {seq.peek()!r}")
        if seq.used_params != all_params:
            raise NativeMappingError(f"parameters outside the recognised layers: {sorted(all_params - seq.used_params)[:5]}")

    # recognition
    try:
        seq = LayerSequence(prog)
        p = lcnetv3.parse_rec(seq)
        finished(seq)
        n = len(p.backbone.blocks)
        sizes = [1, 2, 2, 5, 4] if n == 14 else [1, 1, 1, 1, n - 4]
        cfg = lcnetv3.rec_config(p)
        cfg["backbone_config"] = lcnetv3.lcnet_backbone_config(
            p.backbone, sizes, ["stage2", "stage3", "stage4", "stage5"], num_features_used=False
        )
        return REC_ARCH, "rec", cfg, p
    except (NativeMappingError, ValueError, KeyError, IndexError, TypeError) as e:
        errors["rec"] = str(e)
    try:
        seq = LayerSequence(prog)
        p = lcnetv3.parse_det(seq, prog)
        finished(seq)
        cfg = lcnetv3.det_config(p)
        cfg["backbone_config"] = lcnetv3.lcnet_backbone_config(p.backbone, p.stage_sizes, ["stage2", "stage3", "stage4", "stage5"])
        return DET_ARCH, "det", cfg, p
    except (NativeMappingError, ValueError, KeyError, IndexError, TypeError) as e:
        errors["det"] = str(e)
    try:
        seq = LayerSequence(prog)
        cfg, p = mobilenetv3_cls.parse_cls(seq)
        finished(seq)
        return CLS_ARCH, "cls", cfg, p
    except (NativeMappingError, ValueError, KeyError, IndexError, TypeError) as e:
        errors["cls"] = str(e)
    log.debug("no native architecture matched: %s", errors)
    return None, errors


def recognise(model_dir: Path) -> NativeSpec | None:
    """Identify the architecture from the Paddle program itself (never from the folder name)."""
    from .paddle_graph import load_program, program_files  # noqa: PLC0415

    if program_files(Path(model_dir)) is None:
        return None
    prog = load_program(Path(model_dir))
    res = _parse(prog)
    if res[0] is None:
        return None
    arch, task, cfg, _ = res
    meta: dict[str, Any] = {"n_params": len(prog.params), "feed_shapes": prog.feed_shapes}
    if prog.yml:
        meta["model_name"] = (prog.yml.get("Global") or {}).get("model_name")
        post = prog.yml.get("PostProcess") or {}
        if "character_dict" in post:
            meta["character_dict_len"] = len(post["character_dict"])
    return NativeSpec(arch, task, cfg, prog.format, meta)


def _build_target(arch: str, cfg: dict):
    cfg = dict(cfg)
    cfg.pop("model_type", None)
    if arch == REC_ARCH:
        from transformers import PPOCRV5MobileRecConfig, PPOCRV5MobileRecForTextRecognition  # noqa: PLC0415

        conf = PPOCRV5MobileRecConfig(**cfg)
        return PPOCRV5MobileRecForTextRecognition(conf)
    if arch == DET_ARCH:
        from transformers import PPOCRV5MobileDetConfig, PPOCRV5MobileDetForObjectDetection  # noqa: PLC0415

        conf = PPOCRV5MobileDetConfig(**cfg)
        return PPOCRV5MobileDetForObjectDetection(conf)
    if arch == CLS_ARCH:
        from .mobilenetv3_cls import PPOCRMobileNetV3ClsConfig, PPOCRMobileNetV3ClsModel  # noqa: PLC0415

        return PPOCRMobileNetV3ClsModel(PPOCRMobileNetV3ClsConfig(**cfg))
    raise NativeMappingError(f"unknown architecture {arch}")


def convert_to_transformers(model_dir: Path, out_dir: Path, *, allow_partial: bool = False) -> MappingReport:
    """Paddle inference model -> transformers folder (config.json + model.safetensors), trainable form."""
    from . import lcnetv3, mobilenetv3_cls  # noqa: PLC0415
    from .paddle_graph import load_program  # noqa: PLC0415

    prog = load_program(Path(model_dir))
    res = _parse(prog)
    if res[0] is None:
        raise NativeMappingError(f"{model_dir}: not a natively supported architecture: {res[1]}")
    arch, task, cfg, parsed = res
    model = _build_target(arch, cfg)
    model.eval()
    report = MappingReport(arch, task)
    w = WeightWriter(model, prog.params, report)
    if arch == REC_ARCH:
        lcnetv3.fill_rec(w, model, parsed)
    elif arch == DET_ARCH:
        lcnetv3.fill_det(w, model, parsed)
    else:
        mobilenetv3_cls.fill_cls(w, model, parsed)
    w.finish(set(prog.params))
    if not report.complete and not allow_partial:
        raise NativeMappingError(
            f"incomplete mapping: {len(report.unmapped_source)} unmapped source params "
            f"{report.unmapped_source[:5]}, {len(report.unset_target)} unset target tensors {report.unset_target[:5]}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    meta = {
        "architecture": arch,
        "task": task,
        "source_format": prog.format,
        "report": report.to_dict(),
        "output": {
            "rec": "[N, T, C] softmax probabilities (CTC, blank = 0)",
            "det": "[N, 1, H, W] probability map (sigmoid)",
            "cls": "[N, C] softmax probabilities",
        }[task],
    }
    (out_dir / REPORT_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return report


class _OutputTensor(nn.Module):
    """Unfused form: the transformers model, returning the raw output tensor."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values)
        return out if isinstance(out, torch.Tensor) else out.last_hidden_state


def _model_type(folder: Path) -> str:
    return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))["model_type"]


def trainable_module(folder: Path) -> nn.Module:
    """The training form (transformers class, or our cls class), loaded from a converted folder.

    rec/det return the transformers ``ModelOutput`` (``.last_hidden_state``); cls returns the tensor.
    Call ``.train()`` for fine-tuning (BatchNorm then uses batch statistics, as in any fine-tuning)."""
    folder = Path(folder)
    mt = _model_type(folder)
    if mt == "pp_ocrv5_mobile_rec":
        from transformers import PPOCRV5MobileRecForTextRecognition  # noqa: PLC0415

        model = PPOCRV5MobileRecForTextRecognition.from_pretrained(folder, use_safetensors=True)  # never a pickle
        eps = getattr(model.config, "ocrconvert_final_norm_eps", None)
        if eps is not None:
            model.head.encoder.norm.eps = float(eps)
    elif mt == "pp_ocrv5_mobile_det":
        from transformers import PPOCRV5MobileDetForObjectDetection  # noqa: PLC0415

        model = PPOCRV5MobileDetForObjectDetection.from_pretrained(folder, use_safetensors=True)  # never a pickle
    else:
        from .mobilenetv3_cls import MODEL_TYPE, PPOCRMobileNetV3ClsModel  # noqa: PLC0415

        if mt != MODEL_TYPE:
            raise NativeMappingError(f"{folder}: unsupported model_type {mt}")
        model = PPOCRMobileNetV3ClsModel.from_pretrained(folder, use_safetensors=True)  # never a pickle
    model.eval()
    return model


def load_native(folder: Path, *, fused: bool = True) -> nn.Module:
    """Inference module: ``forward(pixel_values) -> Tensor`` equal to the Paddle inference output.

    fused=True folds every rep-layer into one conv, BatchNorm into convs and the learnable affine blocks
    into adjacent convs where exact; fused=False runs the training-form graph."""
    model = trainable_module(folder)
    if not fused:
        return _OutputTensor(model).eval()
    from .fused import fuse_model  # noqa: PLC0415

    return fuse_model(model).eval()
