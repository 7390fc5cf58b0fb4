"""The whole VLM as one folder (``vlm-export MODEL --parts all -o DIR``): the language parts, the files that
travel with them, and the end-to-end verifier.

The encoder comes through the spine (the ``vlm-onnx`` route, verified against the transformers tower);
:func:`export_language_parts` adds ``embed.onnx`` and ``decoder.onnx`` (:mod:`.hunyuan_lm`), the model's
``config.json``, ``generation_config.json``, ``preprocessor_config.json`` and ``ocrconvert-vlm.json`` (what
:class:`.generate.VlmGenerator` reads). :func:`verify_generation` runs the folder in ONNX Runtime against
transformers' own ``generate`` on the same weights: at each image size the prefill (final hidden states and
last logits) and the greedy tokens.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import UsageError
from ..families.base import TaskResult
from ..verification.compare import Tolerances, compare_arrays
from ..verification.report import CaseResult, ParityReport
from .generate import BUNDLE_FILE, VlmGenerator

log = logging.getLogger(__name__)

SUPPORTED = ("hunyuan-ocr",)
# fp16 judged by tokens and logits' direction: a half-precision decoder may flip a near-tie argmax
FP16_RULE = {"min_token_agreement": 0.9, "min_logit_cosine": 0.999}
FP32_ATOL = 1e-4


def check_model(model: str) -> None:
    if model not in SUPPORTED:
        raise UsageError(f"--parts all is not available for {model} yet", hint=f"One of: {', '.join(SUPPORTED)}; "
                         "or export its encoder alone (--parts encoder).")


def export_language_parts(model, folder: Path, *, precision: str, opset: int, encoder_manifest: str | None,
                          external_data: bool = False) -> dict:
    """Everything but the encoder, into ``folder``; returns the facts of the export."""
    from .hunyuan import PREPROCESS
    from .hunyuan_lm import export_text_parts

    facts = export_text_parts(model, folder, precision=precision, opset=opset, external_data=external_data)
    cfg = model.config
    text = cfg.text_config
    eos = text.eos_token_id
    info = {
        "model": "hunyuan-ocr", "precision": precision, "parts": {"encoder": "encoder.onnx", "embed": "embed.onnx",
                                                                    "decoder": "decoder.onnx"},
        "text": {"num_hidden_layers": text.num_hidden_layers, "num_key_value_heads": text.num_key_value_heads,
                 "head_dim": model.model.language_model.layers[0].self_attn.head_dim, "hidden_size": text.hidden_size,
                 "vocab_size": text.vocab_size},
        "tokens": {"image_token_id": cfg.image_token_id, "im_start_id": cfg.im_start_id, "im_end_id": cfg.im_end_id,
                   "vocab_size": text.vocab_size},
        "eos_token_ids": list(eos) if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else []),
        "pad_token_id": text.pad_token_id,
        "rope_axes": len(text.rope_parameters["mrope_section"]),
        "patch_size": cfg.vision_config.patch_size, "merge_size": cfg.vision_config.spatial_merge_size,
        "preprocess": PREPROCESS,
        "io": {"decoder": {"inputs": ["inputs_embeds [1, S, D] float32", "position_ids [4, 1, S] int64 (XD-RoPE)",
                                      "past_key_i / past_value_i [1, kv_heads, P, head_dim] float32"],
                           "outputs": ["logits [1, vocab] (last position)", "hidden_states [1, S, D] (final norm)",
                                       "present_key_i / present_value_i [1, kv_heads, P+S, head_dim]"]},
               "embed": {"inputs": ["input_ids [1, S] int64"], "outputs": ["inputs_embeds [1, S, D] float32"]}},
        "encoder_manifest": encoder_manifest,
    }
    (folder / BUNDLE_FILE).write_text(json.dumps(info, indent=2))
    cfg.to_json_file(str(folder / "config.json"))
    gen = {"do_sample": False, "eos_token_id": eos, "pad_token_id": text.pad_token_id,
           "bos_token_id": text.bos_token_id}
    (folder / "generation_config.json").write_text(json.dumps(gen, indent=2))
    from transformers.models.hunyuan_vl.image_processing_pil_hunyuan_vl import HunYuanVLImageProcessorPil

    HunYuanVLImageProcessorPil(min_pixels=PREPROCESS["min_pixels"], max_pixels=PREPROCESS["max_pixels"]) \
        .save_pretrained(str(folder))
    return facts


def seeded_prompt(tokens: dict, seed: int, length: int = 6) -> list[int]:
    """A few text token ids after the image (no tokenizer is reachable): seeded, clear of special ids."""
    rng = np.random.default_rng(seed)
    special = {tokens["image_token_id"], tokens["im_start_id"], tokens["im_end_id"]}
    hi = min(tokens["vocab_size"], 100_000)
    return [int(t) for t in rng.integers(3, hi, size=length * 2) if int(t) not in special][:length]


def verify_generation(folder: Path, model, *, sizes, precision: str, new_tokens: int = 64, seed: int = 0,
                      prompt_ids=None, say: Callable[[str], None] = lambda m: None) -> ParityReport:
    """The folder in ONNX Runtime vs transformers ``generate`` on ``model`` (fp32), one case per image size."""
    from .export import seeded_image
    from .hunyuan_lm import reference_generate

    started = time.perf_counter()
    gen = VlmGenerator(folder)
    tokens = gen.info["tokens"]
    prompt = list(prompt_ids) if prompt_ids else seeded_prompt(tokens, seed)
    rule = ({"precision": precision, "atol": FP32_ATOL, "tokens": "identical"} if precision == "fp32"
            else {"precision": precision, **FP16_RULE})
    report = ParityReport(source="transformers HunYuanVLForConditionalGeneration.generate (greedy, fp32, cpu)",
                          target=str(folder), source_backend="transformers (torch eager, fp32, cpu)",
                          target_backend="onnxruntime (CPU): encoder + embed + decoder with KV cache",
                          family=f"vlm-generate hunyuan-ocr, {new_tokens} new tokens", tolerances=rule, seed=seed)
    for h, w in sizes:
        say(f"generate {h}x{w}")
        x = seeded_image(h, w, seed, "hunyuan-ocr")
        ours = gen.generate(prompt_ids=prompt, pixel_values=x, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        ids, mm = _expanded(prompt, ours.image_tokens, tokens)
        ref = reference_generate(model, x, ids, mm, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        ref_tokens = [int(t) for t in ref["tokens"]]
        agree = _agreement(ref_tokens, ours.tokens)
        cos = _cosine(ref["logits"], ours.logits)
        if precision == "fp32":
            tol = Tolerances(precision="fp32", atol=FP32_ATOL, rtol=0.0)
            task = TaskResult("greedy tokens identical", agree, 1.0, ref_tokens == ours.tokens)
        else:  # the prefill judged by direction; the tokens by agreement
            tol = Tolerances(precision="fp16", atol=float("inf"), rtol=0.0, min_cosine=FP16_RULE["min_logit_cosine"])
            task = TaskResult("greedy token agreement", agree, FP16_RULE["min_token_agreement"],
                              agree >= FP16_RULE["min_token_agreement"])
        task.detail = {"tokens_reference": ref_tokens, "tokens_onnx": ours.tokens, "logit_cosine": cos,
                       "first_divergence": _first_divergence(ref_tokens, ours.tokens),
                       "distinct_tokens": len(set(ref_tokens))}
        outs = [compare_arrays("prefill_hidden_states", ref["hidden_states"], ours.hidden_states, tol),
                compare_arrays("prefill_logits", ref["logits"], ours.logits, tol)]
        case = CaseResult(f"{h}x{w}", {"pixel_values": list(x.shape), "input_ids": [1, int(ours.prompt_length)]}, outs,
                          task=task, kind="random")
        passed = case.passed
        report.cases.append(case)
        say(f"{h}x{w}: {'PASSED' if passed else 'FAILED'} (tokens {agree:.3f} agree, logit cosine {cos:.6f})")
    report.seconds = time.perf_counter() - started
    return report


def _expanded(prompt, image_tokens, tokens):
    from .generate import expand_prompt

    return expand_prompt(prompt, image_tokens, tokens)


def _agreement(a: list[int], b: list[int]) -> float:
    n = max(len(a), len(b))
    return sum(x == y for x, y in zip(a, b)) / n if n else 0.0


def _first_divergence(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "chat_template.json", "hy.tiktoken", "tokenizer.model")


def carry_tokenizer(checkpoint: Path | None, folder: Path) -> list[str]:
    """A checkpoint's tokenizer files travel into the folder (``vlm-generate --prompt`` needs them)."""
    import shutil

    copied = []
    for name in TOKENIZER_FILES if checkpoint is not None else ():
        if (Path(checkpoint) / name).is_file():
            shutil.copy(Path(checkpoint) / name, folder / name)
            copied.append(name)
    return copied


def record_verdict(folder: Path, record: dict) -> None:
    """The export's record (status, facts, the generation report) joins ``ocrconvert-vlm.json``."""
    path = folder / BUNDLE_FILE
    info = json.loads(path.read_text())
    info.update(record)
    path.write_text(json.dumps(info, indent=2))
