"""HunyuanOCR's language side (transformers ``HunYuanVLForConditionalGeneration``): token embedding and the
decoder with an explicit KV cache, as modules torch.onnx exports, plus transformers' own ``generate`` as the
reference they are verified against.

Why a wrapper: the transformers text model keeps its cache in a ``DynamicCache`` object and derives the causal
mask and the XD-RoPE positions from Python state. :class:`HunyuanDecoderStep` takes everything as tensors —
``inputs_embeds`` [1, S, D], ``position_ids`` [4, 1, S] (sequence index, patch column, patch row, image index;
each rotating a quarter of the head dimension) and per layer ``past_key_i`` / ``past_value_i`` [1, kv_heads, P,
head_dim] — and returns the last position's ``logits``, the final ``hidden_states`` and the ``present_*`` caches
(P + S long). The layers' own modules (projections, q/k RMSNorm after rotary, MLP, rotary frequencies) are used
unchanged; only the cache concatenation and the causal mask (query i sees keys 0..P+i) are written here.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CorruptModelError, UsageError

# the public tencent/HunyuanOCR text config (transformers field names); a checkpoint's config.json wins
TEXT_CONFIG = {
    "vocab_size": 120818, "hidden_size": 1024, "intermediate_size": 3584, "num_hidden_layers": 24,
    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "hidden_act": "silu",
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
    "rope_parameters": {"rope_type": "dynamic", "rope_theta": 10000.0, "alpha": 1000.0, "factor": 1.0,
                        "mrope_section": [16, 16, 16, 16]},
    "pad_token_id": 120002, "bos_token_id": 120000, "eos_token_id": 120020,
}
TOKEN_IDS = {"image_token_id": 120120, "im_start_id": 120118, "im_end_id": 120119, "im_newline_id": 120121}


def full_config(checkpoint: Path | None = None, *, layers: int | None = None, vision_layers: int | None = None):
    """The whole model's ``HunYuanVLConfig``: a checkpoint's config.json, or the public HunyuanOCR one."""
    from transformers.models.hunyuan_vl.configuration_hunyuan_vl import HunYuanVLConfig

    from .hunyuan import VISION_CONFIG

    if checkpoint is None:
        cfg = HunYuanVLConfig(text_config=dict(TEXT_CONFIG), vision_config=dict(VISION_CONFIG), **TOKEN_IDS)
    else:
        path = Path(checkpoint) / "config.json"
        if not path.is_file():
            raise UsageError(f"{checkpoint} has no config.json", hint="Pass the HunyuanOCR checkpoint folder.")
        try:
            cfg = HunYuanVLConfig(**json.loads(path.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptModelError(f"{path} is not valid JSON: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise CorruptModelError(f"{path} is not a HunYuanVL config: {' '.join(str(exc).split())[:300]}") from None
    for sub, n, flag in ((cfg.text_config, layers, "--layers"), (cfg.vision_config, vision_layers, "--vision-layers")):
        if n is not None:
            if not 1 <= n <= sub.num_hidden_layers:
                raise UsageError(f"{flag} {n} is outside 1..{sub.num_hidden_layers}")
            sub.num_hidden_layers = n
    return cfg


def build_model(checkpoint: Path | None = None, *, layers: int | None = None, vision_layers: int | None = None,
                seed: int = 0):
    """``HunYuanVLForConditionalGeneration`` in fp32 eval mode: seeded random weights, or a checkpoint's
    (transformers or original naming; the first ``layers`` decoder / ``vision_layers`` encoder blocks)."""
    import logging as _logging

    from transformers import logging as hf_logging
    from transformers.models.hunyuan_vl.modeling_hunyuan_vl import HunYuanVLForConditionalGeneration

    quiet_progress()
    cfg = full_config(checkpoint, layers=layers, vision_layers=vision_layers)
    cfg._attn_implementation = "eager"
    cfg.text_config._attn_implementation = "eager"
    cfg.vision_config._attn_implementation = "sdpa"
    if checkpoint is None:
        torch.manual_seed(seed)
        model = HunYuanVLForConditionalGeneration(cfg)
    else:
        if not list(Path(checkpoint).glob("*.safetensors")):
            raise UsageError(f"{checkpoint} holds no .safetensors weights",
                             hint="Pass a folder with config.json and model*.safetensors.")
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity(_logging.ERROR)  # "some weights not used" for the blocks --layers drops
        try:
            model, info = HunYuanVLForConditionalGeneration.from_pretrained(str(checkpoint), use_safetensors=True,
                                                                            config=cfg, dtype=torch.float32,
                                                                            output_loading_info=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise CorruptModelError(f"{checkpoint} does not load as HunYuanVL: {' '.join(str(exc).split())[:400]}") from None
        finally:
            hf_logging.set_verbosity(verbosity)
        missing = [k for k in info.get("missing_keys", ()) if not k.startswith("lm_head.")]
        if missing:
            raise CorruptModelError(f"checkpoint does not fit its config: {len(missing)} missing (e.g. {missing[:3]})")
    model = model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def quiet_progress() -> None:
    """transformers' "Loading weights" / "Writing model shards" bars would land on our stderr."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


class HunyuanDecoderStep(nn.Module):
    """One prefill or decode step with an explicit KV cache (see the module docstring)."""

    def __init__(self, model):
        super().__init__()
        lm = model.model.language_model
        self.layers, self.norm, self.rotary_emb = lm.layers, lm.norm, lm.rotary_emb
        self.lm_head = model.lm_head
        cfg = lm.config
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = lm.layers[0].self_attn.head_dim

    def forward(self, inputs_embeds, position_ids, *past):
        from transformers.models.hunyuan_vl.modeling_hunyuan_vl import apply_rotary_pos_emb, repeat_kv

        s = inputs_embeds.shape[1]
        p = past[0].shape[2]
        cos, sin = self.rotary_emb(inputs_embeds, position_ids)
        q_pos = torch.arange(s, device=inputs_embeds.device) + p
        k_pos = torch.arange(p + s, device=inputs_embeds.device)
        blocked = (k_pos[None, :] > q_pos[:, None])[None, None]           # [1, 1, S, P+S]
        x, presents = inputs_embeds, []
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            shape = (1, s, -1, self.head_dim)
            q = attn.q_proj(h).view(shape).transpose(1, 2)
            k = attn.k_proj(h).view(shape).transpose(1, 2)
            v = attn.v_proj(h).view(shape).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            q, k = attn.query_layernorm(q), attn.key_layernorm(k)
            k = torch.cat([past[2 * i], k], dim=2)
            v = torch.cat([past[2 * i + 1], v], dim=2)
            presents += [k, v]
            kr, vr = repeat_kv(k, attn.num_key_value_groups), repeat_kv(v, attn.num_key_value_groups)
            w = torch.matmul(q, kr.transpose(2, 3)) * attn.scaling
            w = w.masked_fill(blocked, torch.finfo(w.dtype).min)
            w = torch.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
            o = torch.matmul(w, vr).transpose(1, 2).reshape(1, s, -1)
            x = x + attn.o_proj(o)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        x = self.norm(x)
        return (self.lm_head(x[:, -1]), x, *presents)


def cache_names(layers: int) -> tuple[list[str], list[str]]:
    past = [f"past_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]
    return past, [n.replace("past_", "present_") for n in past]


class _Fp32Boundary(nn.Module):
    """fp32 in and out, ``dtype`` inside the decoder step (a copy); the position ids pass through."""

    def __init__(self, inner, dtype):
        super().__init__()
        self.inner, self.dtype = inner.to(dtype), dtype

    def forward(self, inputs_embeds, position_ids, *past):   # the decoder step's signature (export's dynamic shapes)
        out = self.inner(inputs_embeds.to(self.dtype), position_ids, *(p.to(self.dtype) for p in past))
        return tuple(o.float() for o in out)


def check_decoder_size(model, precision: str) -> None:
    """One ONNX file holds < 2 GiB: refuse a decoder over it before any export work (exit 2)."""
    from .export import ONNX_LIMIT

    width = 2 if precision == "fp16" else 4
    lm = model.model.language_model
    weight_bytes = width * (sum(p.numel() for p in lm.layers.parameters()) + model.lm_head.weight.numel())
    if weight_bytes > ONNX_LIMIT:
        raise UsageError(f"the decoder's weights ({weight_bytes / 1024 ** 3:.2f} GiB at {precision}) exceed what one "
                         "ONNX file holds (2 GiB); external data is not committed by the output contract yet",
                         hint="Export with --fp16 (the full HunyuanOCR decoder is ~1.1 GB at fp16), or fewer --layers.")


def export_text_parts(model, folder: Path, *, precision: str = "fp32", opset: int = 18,
                      external_data: bool = False) -> dict:
    """``embed.onnx`` and ``decoder.onnx`` (+ the facts of the export) into ``folder``; ``external_data``: the
    decoder's weights in ``decoder.onnx.data`` (what a full-depth fp32 decoder needs; not for the CLI's slot)."""
    import copy

    import onnx

    from .._compat import require

    require("onnxscript", "torch.onnx's dynamo exporter")
    from torch.export import Dim

    cfg = model.config.text_config
    n = cfg.num_hidden_layers
    dtype = {"fp32": torch.float32, "fp16": torch.float16}[precision]
    if not external_data:
        check_decoder_size(model, precision)
    step = HunyuanDecoderStep(model).eval()
    if dtype is not torch.float32:
        step = _Fp32Boundary(copy.deepcopy(step), dtype).eval()
    s, p = 5, 3
    kv = (1, cfg.num_key_value_heads, p, model.model.language_model.layers[0].self_attn.head_dim)
    gen = torch.Generator().manual_seed(0)
    example = (torch.randn(1, s, cfg.hidden_size, generator=gen), torch.arange(s).add(p).view(1, 1, s).expand(4, 1, s).contiguous(),
               *(torch.randn(*kv, generator=gen) for _ in range(2 * n)))
    seq, past_len = Dim("seq", min=1, max=32768), Dim("past", min=0, max=32768)
    past_names, present_names = cache_names(n)
    facts = {"opset": opset, "precision": precision, "decoder_layers": n}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.onnx: "axis name seq will not be used" (one name for both)
        prog = torch.onnx.export(step, example, dynamo=True, opset_version=opset,
                                 verbose=False, input_names=["inputs_embeds", "position_ids", *past_names],
                                 output_names=["logits", "hidden_states", *present_names],
                                 dynamic_shapes=({1: seq}, {2: seq}, tuple({2: past_len} for _ in range(2 * n))))
        if external_data:  # over protobuf's 2 GiB: weights in decoder.onnx.data (scripts; not the CLI's slot)
            prog.save(str(folder / "decoder.onnx"), external_data=True)
            onnx.checker.check_model(str(folder / "decoder.onnx"))
        else:
            _write(prog.model_proto, folder / "decoder.onnx", onnx)
    _write(embedding_model(model, dtype, opset), folder / "embed.onnx", onnx)
    return facts


def embedding_model(model, dtype, opset: int):
    """``embed.onnx``: one Gather on the embedding table (+ a Cast to fp32 for an fp16 table), written directly."""
    from onnx import TensorProto, helper, numpy_helper

    table = model.model.language_model.embed_tokens.weight.detach().to(dtype).numpy()
    nodes = [helper.make_node("Gather", ["embed_tokens.weight", "input_ids"],
                              ["inputs_embeds" if dtype is torch.float32 else "embeds_half"], axis=0)]
    if dtype is not torch.float32:
        nodes.append(helper.make_node("Cast", ["embeds_half"], ["inputs_embeds"], to=TensorProto.FLOAT))
    graph = helper.make_graph(
        nodes, "token_embedding",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "seq"])],
        [helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, [1, "seq", table.shape[1]])],
        [numpy_helper.from_array(table, "embed_tokens.weight")])
    # IR 8 (opset <= 18 needs no more): make_model's default is the newest IR, which older ONNX Runtimes refuse
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="ocrconvert",
                             ir_version=8)


def _write(proto, path: Path, onnx) -> None:
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


# ---------------------------------------------------------------------------------------------------
# the reference: transformers' own generate on the same model
# ---------------------------------------------------------------------------------------------------
def reference_generate(model, pixel_values: np.ndarray, input_ids: np.ndarray, mm_token_type_ids: np.ndarray,
                       *, max_new_tokens: int, min_new_tokens: int = 0) -> dict:
    """Greedy ``model.generate`` on one image ([1, 3, H, W]) and its expanded prompt; also the prefill's
    last-position logits and final hidden states."""
    from transformers import GenerationConfig

    from .hunyuan import patchify

    flat, grid = patchify(torch.from_numpy(pixel_values), model.config.vision_config.patch_size)
    ids = torch.from_numpy(np.asarray(input_ids, np.int64))[None]
    kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=flat, image_grid_thw=grid,
              mm_token_type_ids=torch.from_numpy(np.asarray(mm_token_type_ids, np.int64))[None])
    with torch.no_grad():
        hidden = model.model(**kw, return_dict=True).last_hidden_state          # after the final norm
        logits = model.lm_head(hidden[:, -1])
        gen = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                               eos_token_id=model.config.text_config.eos_token_id,
                               pad_token_id=model.config.text_config.pad_token_id)
        model.model.rope_deltas = None
        tokens = model.generate(**kw, generation_config=gen)
    return {"tokens": tokens[0, ids.shape[1]:].numpy(), "logits": logits[0].numpy(), "hidden_states": hidden[0].numpy()}
