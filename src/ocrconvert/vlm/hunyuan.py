"""HunyuanOCR's vision encoder (transformers ``HunYuanVLVisionTransformer``) as one single-image module
that exports to ONNX / AOTInductor for ANY valid image size.

Why a wrapper: the transformers tower takes flat patches plus ``grid_thw`` and turns the grid into
Python ints (split sizes, interpolation sizes), so an exporter either stops on data-dependent sizes or
bakes the traced size in. :class:`HunyuanVisionEncoder` takes the normalized image ``[1, 3, H, W]``
(sides multiples of 32), derives the patch grid from the tensor shape, interpolates the learned
128×128 position grid with index arithmetic that stays symbolic, and runs attention in exact query
blocks (:mod:`.attention`). Weights are the tower's own modules, unchanged.
"""
from __future__ import annotations

import json
import re
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CorruptModelError, UsageError
from . import attention as _attention


NAME = "hunyuan-ocr"
FACTOR = 32   # image sides: multiples of patch (16) x spatial merge (2)
PATCH = 16
DEFAULT_EXPORT_SIZE = (512, 512)
DEFAULT_SIZES = ((512, 512), (640, 960), (1024, 768))
TRT_PROFILE = [[1, 3, 32, 32], [1, 3, 1024, 768], [1, 3, 2048, 2048]]
OUTPUT_DOC = {"image_embeds": "[1, (H/32)·(W/32+1)+2, text_hidden_size] (patch merger: begin, rows+newline, end)",
              "last_hidden_state": "[1, (H/16)·(W/16), hidden_size], raster patch order"}
CONFIG_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "patch_size",
               "spatial_merge_size", "max_image_size", "text_hidden_size", "interpolate_mode")
# the public tencent/HunyuanOCR vision config (transformers field names)
VISION_CONFIG = {
    "hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
    "patch_size": 16, "spatial_merge_size": 2, "max_image_size": 2048, "text_hidden_size": 1024,
    "out_hidden_size": 1024, "hidden_act": "gelu", "interpolate_mode": "bilinear", "rms_norm_eps": 1e-5,
    "num_channels": 3,
}
# processor: smart resize to sides divisible by patch*merge, within [min_pixels, max_pixels], bicubic,
# rescale 1/255, CLIP mean/std, patches in raster (row-major) order
PREPROCESS = {"min_pixels": 512 * 512, "max_pixels": 2048 * 2048, "factor": 32, "resample": "bicubic",
              "rescale": 1 / 255, "mean": [0.48145466, 0.4578275, 0.40821073],
              "std": [0.26862954, 0.26130258, 0.27577711], "patch_order": "raster (row-major)",
              "layout": "pixel_values [1, 3, H, W] float32, H and W multiples of 32"}
INTERPOLATIONS = {
    "transformers": "bilinear to the output size (transformers HunYuanVLVisionPatchEmbed: size=(h, w))",
    "original": "bilinear by scale factor ((h+0.1)/128, (w+0.1)/128) (the original HunyuanOCR code and vLLM)",
}
ATTENTIONS = ("blocked", "sdpa", "eager")
# original checkpoint naming -> transformers naming (vision tower only)
_RENAMES = [
    (r"mlp\.dense_h_to_4h", "mlp.fc1"), (r"mlp\.dense_4h_to_h", "mlp.fc2"),
    (r"^layers\.(\d+)\.input_layernorm\.", r"layers.\1.layer_norm1."),
    (r"^layers\.(\d+)\.post_attention_layernorm\.", r"layers.\1.layer_norm2."),
    (r"^perceive\.proj\.0\.", "patch_merger.proj_conv."), (r"^perceive\.proj\.2\.", "patch_merger.proj_out."),
    (r"^perceive\.", "patch_merger."),
]
_TOWER_PREFIXES = ("model.vision_tower.", "vision_tower.", "model.vit.", "vit.")


def vision_config(checkpoint: Path | None = None, layers: int | None = None):
    from transformers.models.hunyuan_vl.configuration_hunyuan_vl import HunYuanVLConfig, HunYuanVLVisionConfig

    if checkpoint is None:
        cfg = HunYuanVLVisionConfig(**VISION_CONFIG)
    else:
        path = Path(checkpoint) / "config.json"
        if not path.is_file():
            raise UsageError(f"{checkpoint} has no config.json", hint="Pass the HunyuanOCR checkpoint folder.")
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptModelError(f"{path} is not valid JSON: {exc}") from None
        vis = raw.get("vision_config")
        if not isinstance(vis, dict):
            raise UsageError(f"{path} has no vision_config", hint="Is this a HunyuanOCR / HunYuanVL checkpoint?")
        cfg = HunYuanVLConfig(**raw).vision_config
    if layers is not None:
        if not 1 <= layers <= cfg.num_hidden_layers:
            raise UsageError(f"--layers {layers} is outside 1..{cfg.num_hidden_layers}")
        cfg.num_hidden_layers = layers
    return cfg


def _rename(key: str) -> str | None:
    for prefix in _TOWER_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    else:
        return None
    for pat, rep in _RENAMES:
        key = re.sub(pat, rep, key)
    return key


def read_tower_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """Vision-tower tensors of a checkpoint folder (transformers layout or the original naming)."""
    from safetensors import safe_open

    files = sorted(Path(checkpoint).glob("*.safetensors"))
    if not files:
        raise UsageError(f"{checkpoint} holds no .safetensors weights",
                         hint="Pass a folder with config.json and model*.safetensors.")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as st:
                for key in st.keys():
                    name = _rename(key)
                    if name is not None:
                        out[name] = st.get_tensor(key)
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise CorruptModelError(f"{f} is not a readable safetensors file: {exc}") from None
    if not out:
        raise UsageError(f"{checkpoint} holds no vision-tower weights (looked for {', '.join(_TOWER_PREFIXES)})")
    return out


def build_tower(checkpoint: Path | None = None, *, layers: int | None = None, seed: int = 0,
                attn_implementation: str = "sdpa"):
    """The transformers tower: seeded random weights, or a checkpoint's (first ``layers`` blocks)."""
    from transformers.models.hunyuan_vl.modeling_hunyuan_vl import HunYuanVLVisionTransformer

    cfg = vision_config(checkpoint, layers)
    cfg._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    tower = HunYuanVLVisionTransformer(cfg).eval()
    if checkpoint is not None:
        state = read_tower_weights(checkpoint)
        n = cfg.num_hidden_layers
        state = {k: v for k, v in state.items() if not (m := re.match(r"layers\.(\d+)\.", k)) or int(m.group(1)) < n}
        try:
            missing, unexpected = tower.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise CorruptModelError("checkpoint does not fit the vision config: "
                                    + " ".join(str(exc).split())[:400]) from None
        if missing or unexpected:
            raise CorruptModelError(f"checkpoint does not fit the vision config: {len(missing)} missing "
                                    f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    for p in tower.parameters():
        p.requires_grad_(False)
    return tower


def _source_index(out_len: int, in_len: int, inv_scale: torch.Tensor):
    """PyTorch's bilinear (align_corners=False) source indices and weights, with ``out_len`` symbolic."""
    dst = torch.arange(out_len, device=inv_scale.device, dtype=torch.float32)
    src = ((dst + 0.5) * inv_scale - 0.5).clamp(min=0.0)
    i0 = src.to(torch.int64)
    lam1 = src - i0.to(torch.float32)
    i1 = torch.clamp(i0 + 1, max=in_len - 1)
    return i0, i1, 1.0 - lam1, lam1


def _inverse_scale(n: torch.Tensor, edge: int, convention: str) -> torch.Tensor:
    if convention == "transformers":  # input/output in float32, as upsample computes it without scales
        return torch.full_like(n, float(edge), dtype=torch.float32) / n.to(torch.float32)
    # scale_factor=(n+0.1)/edge: PyTorch uses 1/scale computed in double, then float -- except that an
    # axis whose output size equals the input size is copied unchanged (upsample's identity shortcut)
    inv = (1.0 / ((n.to(torch.float64) + 0.1) / edge)).to(torch.float32)
    return torch.where(n == edge, torch.ones_like(inv), inv)


def interpolate_grid(grid: torch.Tensor, h: int, w: int, convention: str) -> torch.Tensor:
    """``grid`` [1, C, E, E] -> [1, C, h, w], bilinear, equal to ``F.interpolate`` under ``convention``."""
    edge = grid.shape[-1]
    # the sizes as 1-element tensors derived from the shape (not Python ints), so exporters keep them symbolic
    hw = torch.arange(h, device=grid.device)[-1:] + 1, torch.arange(w, device=grid.device)[-1:] + 1
    h0, h1, lh0, lh1 = _source_index(h, edge, _inverse_scale(hw[0], edge, convention))
    w0, w1, lw0, lw1 = _source_index(w, edge, _inverse_scale(hw[1], edge, convention))
    cols = lw0 * grid.index_select(3, w0) + lw1 * grid.index_select(3, w1)            # [1, C, E, w]
    return lh0[:, None] * cols.index_select(2, h0) + lh1[:, None] * cols.index_select(2, h1)


class HunyuanVisionEncoder(nn.Module):
    """``pixel_values`` [1, 3, H, W] -> (``image_embeds`` [1, h/2·(w/2+1)+2, D], ``last_hidden_state`` [1, h·w, C])."""

    def __init__(self, tower, *, interpolation: str = "transformers", attention: str = "blocked", block: int = 512):
        super().__init__()
        if interpolation not in INTERPOLATIONS:
            raise UsageError(f"unknown interpolation {interpolation!r}", hint=f"One of: {', '.join(INTERPOLATIONS)}")
        if attention not in ATTENTIONS:
            raise UsageError(f"unknown attention {attention!r}", hint=f"One of: {', '.join(ATTENTIONS)}")
        emb = tower.embeddings
        self.patch_embedding = emb.patch_embedding
        edge = emb.position_edge
        grid = emb.position_embedding.weight[1:].reshape(1, edge, edge, -1).permute(0, 3, 1, 2).float()
        self.register_buffer("position_grid", grid.contiguous(), persistent=True)
        self.layers = tower.layers
        self.patch_merger = tower.patch_merger
        self.interpolation, self.attention, self.block = interpolation, attention, int(block)
        cfg = tower.config
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // self.heads

    def _attend(self, attn, x):
        b, n, _ = x.shape
        q, k, v = (p(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
                   for p in (attn.q_proj, attn.k_proj, attn.v_proj))
        o = _attention.attend(q, k, v, attn.scaling, self.attention, self.block)
        return attn.o_proj(o.transpose(1, 2).reshape(b, n, -1))

    def forward(self, pixel_values: torch.Tensor):
        x = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))      # [1, C, h, w]
        h, w = x.shape[-2], x.shape[-1]
        pos = interpolate_grid(self.position_grid, h, w, self.interpolation)
        x = (x + pos.to(x.dtype)).flatten(2).transpose(1, 2)                           # [1, h·w, C] raster
        for layer in self.layers:
            x = x + self._attend(layer.self_attn, layer.layer_norm1(x))
            x = x + layer.mlp(layer.layer_norm2(x))
        return self.patch_merger(x, size=(h, w)), x


Encoder = HunyuanVisionEncoder


def patchify(pixel_values: torch.Tensor, patch: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """[1, 3, H, W] -> the processor's flat patches [h·w, 3·p·p] (raster order) and ``grid_thw``."""
    _, c, hh, ww = pixel_values.shape
    h, w = hh // patch, ww // patch
    flat = pixel_values[0].reshape(c, h, patch, w, patch).permute(1, 3, 0, 2, 4).reshape(h * w, c * patch * patch)
    return flat, torch.tensor([[1, h, w]], dtype=torch.int64)


def reference_forward(tower, pixel_values: torch.Tensor, interpolation: str = "transformers"):
    """The transformers tower on one image: (image_embeds, last_hidden_state).

    ``interpolation="original"`` swaps the tower's position interpolation for the original code's
    scale-factor form (as vLLM runs it); everything else is the transformers module as shipped.
    """
    emb = tower.embeddings
    if interpolation == "original":
        def interp(self, embeddings, height, width):
            height, width = int(height), int(width)
            edge = self.position_edge
            grid = self.position_embedding.weight[1:, :].reshape(1, edge, edge, self.embed_dim).permute(0, 3, 1, 2).float()
            out = F.interpolate(grid, scale_factor=((height + 0.1) / edge, (width + 0.1) / edge),
                                mode=self.config.interpolate_mode, align_corners=False)
            return out.permute(0, 2, 3, 1).reshape(1, -1, self.embed_dim).to(embeddings.dtype)
        emb.interpolate_pos_encoding = types.MethodType(interp, emb)
    try:
        flat, grid_thw = patchify(pixel_values, tower.config.patch_size)
        device = next(tower.parameters()).device
        with torch.no_grad():
            out = tower(pixel_values=flat.to(device), grid_thw=grid_thw)
        return out.pooler_output.cpu(), out.last_hidden_state.cpu()
    finally:
        emb.__dict__.pop("interpolate_pos_encoding", None)


def output_tokens(height: int, width: int, patch: int = 16, merge: int = 2) -> int:
    h, w = height // patch // merge, width // patch // merge
    return h * (w + 1) + 2


def preprocess(image, *, min_pixels: int = PREPROCESS["min_pixels"], max_pixels: int = PREPROCESS["max_pixels"]) -> np.ndarray:
    """An image file / PIL image -> ``pixel_values`` [1, 3, H, W] float32, exactly as the HunyuanOCR
    processor prepares it (transformers ``HunYuanVLImageProcessorPil``), in image layout."""
    from transformers.models.hunyuan_vl.image_processing_pil_hunyuan_vl import HunYuanVLImageProcessorPil

    image = open_rgb(image)
    proc = HunYuanVLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels)
    feats = proc(images=image, return_tensors="np")
    return image_from_patches(feats["pixel_values"], feats["image_grid_thw"][0], proc.patch_size)


def image_from_patches(flat: np.ndarray, grid_thw, patch: int) -> np.ndarray:
    """A processor's raster-ordered patches (each channel-major ``[3, p, p]``) -> ``[1, 3, H, W]`` float32."""
    _, h, w = (int(v) for v in grid_thw)
    img = np.asarray(flat).reshape(h, w, 3, patch, patch).transpose(2, 0, 3, 1, 4).reshape(1, 3, h * patch, w * patch)
    return np.ascontiguousarray(img, dtype=np.float32)


MAX_ASPECT = 200  # the VLM processors' smart_resize refuses a longer side over 200x the shorter one


def open_rgb(image):
    """A path or PIL image -> an RGB PIL image a VLM processor takes; unreadable files (the one image reader,
    families.imaging.open_image) and strips thinner than the processors allow are usage errors."""
    from PIL import Image

    from ..families.imaging import open_image

    rgb = image.convert("RGB") if isinstance(image, Image.Image) else open_image(Path(image))
    w, h = rgb.size
    if min(w, h) < 1 or max(w, h) / min(w, h) > MAX_ASPECT:
        raise UsageError(f"image {getattr(image, 'filename', None) or image} is {w}x{h}: a VLM reads images whose "
                         f"long side is at most {MAX_ASPECT}x the short one",
                         hint="Crop or pad the image to a less extreme aspect ratio.")
    return rgb
