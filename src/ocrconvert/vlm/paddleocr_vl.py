"""PaddleOCR-VL's vision encoder (transformers ``PaddleOCRVisionModel`` + ``PaddleOCRProjector``) as one
single-image module for any image size: the same pattern as :mod:`.hunyuan`.

What differs from HunyuanOCR: a SigLIP tower with patch 14 (sides multiples of 28); a learned 27×27
position grid resampled bilinearly to the output size (one convention); a 2-D axial rotary embedding of
q/k from each patch's (row, col); a final LayerNorm; the 2×2 merge + MLP in a separate projector
(no begin/end/newline tokens).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CorruptModelError, UsageError
from . import attention as _attention
from .hunyuan import interpolate_grid

NAME = "paddleocr-vl"
FACTOR = 28
PATCH = 14
DEFAULT_EXPORT_SIZE = (448, 448)
DEFAULT_SIZES = ((448, 448), (616, 924), (1036, 784))
PREPROCESS = {"min_pixels": 384 * 384, "max_pixels": 1536 * 1536, "factor": FACTOR, "resample": "bicubic",
              "rescale": 1 / 255, "mean": [0.48145466, 0.4578275, 0.40821073],
              "std": [0.26862954, 0.26130258, 0.27577711], "patch_order": "raster (row-major)",
              "layout": "pixel_values [1, 3, H, W] float32, H and W multiples of 28"}
INTERPOLATIONS = {"transformers": "bilinear to the output size (PaddleOCRVisionEmbeddings; the original code's only form)"}
TRT_PROFILE = [[1, 3, 28, 28], [1, 3, 1036, 784], [1, 3, 1540, 1540]]
OUTPUT_DOC = {"image_embeds": "[1, (H/28)·(W/28), text_hidden_size] (projector: LayerNorm, 2×2 merge, MLP)",
              "last_hidden_state": "[1, (H/14)·(W/14), hidden_size], raster patch order (after post_layernorm)"}
CONFIG_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "patch_size",
               "spatial_merge_size", "image_size", "hidden_act")


class Tower(nn.Module):
    """The parts of ``PaddleOCRVLModel`` the encoder needs: ``visual`` and ``projector``."""

    def __init__(self, visual, projector):
        super().__init__()
        self.visual, self.projector = visual, projector
        self.config = visual.config


def build_tower(checkpoint: Path | None = None, *, layers: int | None = None, seed: int = 0,
                attn_implementation: str = "sdpa") -> Tower:
    from transformers.models.paddleocr_vl.configuration_paddleocr_vl import PaddleOCRVLConfig
    from transformers.models.paddleocr_vl.modeling_paddleocr_vl import (
        PaddleOCRProjector,
        PaddleOCRVisionModel,
        PaddleOCRVLForConditionalGeneration,
    )

    torch.manual_seed(seed)
    if checkpoint is None:
        cfg = PaddleOCRVLConfig()
        if layers is not None:
            if not 1 <= layers <= cfg.vision_config.num_hidden_layers:
                raise UsageError(f"--layers {layers} is outside 1..{cfg.vision_config.num_hidden_layers}")
            cfg.vision_config.num_hidden_layers = layers
        cfg.vision_config._attn_implementation = attn_implementation
        tower = Tower(PaddleOCRVisionModel(cfg.vision_config), PaddleOCRProjector(cfg))
        tower.visual.post_init()
    else:
        if not (Path(checkpoint) / "config.json").is_file():
            raise UsageError(f"{checkpoint} has no config.json", hint="Pass the PaddleOCR-VL checkpoint folder.")
        try:  # transformers applies its rename table (original `visual.*` / `mlp_AR.*` naming) on load
            full = PaddleOCRVLForConditionalGeneration.from_pretrained(str(checkpoint), attn_implementation=attn_implementation, use_safetensors=True)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise CorruptModelError(f"cannot load {checkpoint}: {' '.join(str(exc).split())[:300]}") from None
        tower = Tower(full.model.visual, full.model.projector)
        if layers is not None:
            n = len(tower.visual.vision_model.encoder.layers)
            if not 1 <= layers <= n:
                raise UsageError(f"--layers {layers} is outside 1..{n}")
            del tower.visual.vision_model.encoder.layers[layers:]
            tower.config.num_hidden_layers = layers
    tower = tower.eval()
    for p in tower.parameters():
        p.requires_grad_(False)
    return tower


class PaddleOCRVisionEncoder(nn.Module):
    """``pixel_values`` [1, 3, H, W] -> (``image_embeds`` [1, h/2·w/2, D], ``last_hidden_state`` [1, h·w, C])."""

    def __init__(self, tower: Tower, *, interpolation: str = "transformers", attention: str = "blocked", block: int = 512):
        super().__init__()
        if interpolation not in INTERPOLATIONS:
            raise UsageError(f"unknown interpolation {interpolation!r} for {NAME}", hint=f"One of: {', '.join(INTERPOLATIONS)}")
        vm = tower.visual.vision_model
        emb = vm.embeddings
        self.patch_embedding = emb.patch_embedding
        side = emb.num_grid_per_side
        grid = emb.position_embedding.weight.reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
        self.register_buffer("position_grid", grid.contiguous(), persistent=True)
        self.rotary = vm.encoder.rotary_pos_emb
        self.layers = vm.encoder.layers
        self.post_layernorm = vm.post_layernorm
        self.projector = tower.projector
        cfg = tower.config
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // self.heads
        self.merge = cfg.spatial_merge_size
        self.attention, self.block = attention, int(block)

    def _attend(self, attn, x, cos, sin):
        from transformers.models.paddleocr_vl.modeling_paddleocr_vl import apply_rotary_pos_emb_vision

        n = x.shape[0]
        q, k, v = (p(x).view(n, self.heads, self.head_dim) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
        q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
        q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))
        o = _attention.attend(q, k, v, attn.scaling, self.attention, self.block)
        return attn.out_proj(o[0].transpose(0, 1).reshape(n, -1))

    def forward(self, pixel_values: torch.Tensor):
        x = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))       # [1, C, h, w]
        h, w = x.shape[-2], x.shape[-1]
        pos = interpolate_grid(self.position_grid, h, w, "transformers")
        x = (x + pos.to(x.dtype)).flatten(2)[0].transpose(0, 1)                          # [h·w, C] raster
        rows = torch.arange(h, device=x.device)[:, None].expand(h, w).reshape(-1)
        cols = torch.arange(w, device=x.device)[None, :].expand(h, w).reshape(-1)
        cos, sin = self.rotary(x, torch.stack([rows, cols], dim=-1))
        for layer in self.layers:
            x = x + self._attend(layer.self_attn, layer.layer_norm1(x), cos, sin)
            x = x + layer.mlp(layer.layer_norm2(x))
        hidden = self.post_layernorm(x)
        p, m = self.projector, self.merge
        z = p.pre_norm(hidden).reshape(h // m, m, w // m, m, -1).transpose(1, 2).reshape((h // m) * (w // m), -1)
        emb = p.linear_2(p.act(p.linear_1(z)))
        return emb.unsqueeze(0), hidden.unsqueeze(0)


Encoder = PaddleOCRVisionEncoder


def patchify(pixel_values: torch.Tensor, patch: int = PATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """[1, 3, H, W] -> the processor's patches [h·w, 3, p, p] (raster order) and ``grid_thw``."""
    _, c, hh, ww = pixel_values.shape
    h, w = hh // patch, ww // patch
    flat = pixel_values[0].reshape(c, h, patch, w, patch).permute(1, 3, 0, 2, 4).reshape(h * w, c, patch, patch)
    return flat, torch.tensor([[1, h, w]], dtype=torch.int64)


def reference_forward(tower: Tower, pixel_values: torch.Tensor, interpolation: str = "transformers"):
    """transformers' PaddleOCRVisionModel + PaddleOCRProjector on one image: (image_embeds, last_hidden_state)."""
    flat, grid = patchify(pixel_values)
    device = next(tower.parameters()).device
    grid = grid.to(device)
    with torch.no_grad():
        hidden = tower.visual(pixel_values=flat.unsqueeze(0).to(device), grid_thw=grid).last_hidden_state
        hidden = hidden.reshape(-1, hidden.shape[-1])
        emb = tower.projector(hidden, grid)
    return emb.unsqueeze(0).cpu(), hidden.unsqueeze(0).cpu()


def output_tokens(height: int, width: int) -> int:
    return (height // FACTOR) * (width // FACTOR)


def preprocess(image, *, min_pixels: int = PREPROCESS["min_pixels"], max_pixels: int = PREPROCESS["max_pixels"]) -> np.ndarray:
    """An image file / PIL image -> ``pixel_values`` [1, 3, H, W] as ``PaddleOCRVLImageProcessorPil`` prepares it."""
    from transformers.models.paddleocr_vl.image_processing_pil_paddleocr_vl import PaddleOCRVLImageProcessorPil

    from .hunyuan import image_from_patches, open_rgb

    proc = PaddleOCRVLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels)
    feats = proc(images=open_rgb(image), return_tensors="np")
    return image_from_patches(feats["pixel_values"], feats["image_grid_thw"][0], PATCH)
