"""Greedy generation with an exported VLM folder (``vlm-export --parts all``) in ONNX Runtime — no PyTorch.

The steps follow transformers' ``HunYuanVLForConditionalGeneration``: the processor's preprocessing, the
encoder (``image_embeds``: begin, rows of merged patches each followed by the newline embedding, end), the
prompt's image placeholder repeated to that length and its embeddings replaced by the image's, XD-RoPE
positions (rows: sequence index, patch column, patch row, image index; text tokens carry their index on all
four), one prefill, then one token at a time with the KV cache the decoder returns.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CorruptModelError, UsageError

BUNDLE_FILE = "ocrconvert-vlm.json"
PARTS = ("encoder.onnx", "embed.onnx", "decoder.onnx")


@dataclass
class Generation:
    """What one greedy run produced: new tokens, the prefill's last logits and final hidden states, timings."""
    tokens: list[int]
    prompt_length: int
    image_tokens: int
    logits: np.ndarray = field(repr=False)           # prefill, last position [vocab]
    hidden_states: np.ndarray = field(repr=False)    # prefill, after the final norm [L, D]
    seconds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "prompt_length": self.prompt_length, "image_tokens": self.image_tokens,
                "new_tokens": len(self.tokens), "seconds": self.seconds}


def read_bundle(folder: Path) -> dict:
    folder = Path(folder)
    path = folder / BUNDLE_FILE
    if not folder.is_dir() or not path.is_file():
        raise UsageError(f"{folder} is not a folder written by `ocrconvert vlm-export --parts all`",
                         hint=f"It needs {BUNDLE_FILE} beside {', '.join(PARTS)}.")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptModelError(f"{path} is not valid JSON: {exc}") from None
    missing = [p for p in PARTS if not (folder / p).is_file()]
    if missing:
        raise CorruptModelError(f"{folder} lacks {', '.join(missing)}")
    return info


def parse_ids(text: str) -> list[int]:
    try:
        ids = [int(t) for t in str(text).replace(" ", "").split(",") if t]
    except ValueError:
        raise UsageError(f"--prompt-ids {text!r} is not a comma-separated list of token ids",
                         hint="e.g. --prompt-ids 1,2,3") from None
    if not ids:
        raise UsageError("--prompt-ids is empty")
    return ids


def expand_prompt(prompt_ids, image_tokens: int, tokens: dict) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, mm_token_type_ids): the image placeholder repeated ``image_tokens`` times, as the processor
    does; without a placeholder the image goes first as ``im_start, image x n, im_end`` (the chat template's form)."""
    img = tokens["image_token_id"]
    ids = [int(t) for t in prompt_ids]
    vocab = tokens["vocab_size"]
    bad = [t for t in ids if not 0 <= t < vocab]
    if bad:
        raise UsageError(f"prompt token ids {bad[:5]} are outside the vocabulary (0..{vocab - 1})")
    if ids.count(img) > 1:
        raise UsageError(f"the prompt holds the image token {img} {ids.count(img)} times; one image is supported")
    if img not in ids:
        ids = [tokens["im_start_id"], img, tokens["im_end_id"], *ids]
    at = ids.index(img)
    ids = ids[:at] + [img] * image_tokens + ids[at + 1:]
    mm = np.zeros(len(ids), np.int64)
    mm[at:at + image_tokens] = 1
    return np.asarray(ids, np.int64), mm


def position_ids(mm: np.ndarray, grid_hw: tuple[int, int], merge: int, axes: int = 4) -> tuple[np.ndarray, int]:
    """XD-RoPE positions [axes, 1, L] and the decode offset (transformers ``get_rope_index`` on one image)."""
    length = len(mm)
    pos = np.tile(np.arange(length, dtype=np.int64), (axes, 1))
    span = np.flatnonzero(mm)
    if len(span):
        h, w = grid_hw[0] // merge, grid_hw[1] // merge
        rows, cols = np.meshgrid(np.arange(h), np.arange(w + 1), indexing="ij")
        grid_tokens = rows.size
        if len(span) == grid_tokens + 2:
            start = span[0] + 1
        elif len(span) == grid_tokens:
            start = span[0]
        else:
            raise CorruptModelError(f"image span of {len(span)} tokens does not match the {h}x{w} merged grid")
        off = axes - 3
        pos[off, start:start + grid_tokens] = cols.ravel()
        pos[off + 1, start:start + grid_tokens] = rows.ravel()
        pos[off + 2, start:start + grid_tokens] = 0
    return pos[:, None, :], int(pos.max() + 1 - length)


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """The processors' target size: sides multiples of ``factor``, pixels within [min, max], aspect kept."""
    import math

    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def preprocess_image(image, prep: dict) -> np.ndarray:
    """``pixel_values`` [1, 3, H, W] as transformers' ``HunYuanVLImageProcessorPil`` makes them (PIL bicubic to the
    smart-resized size, x/255 in float64 then float32, CLIP mean/std), in NumPy: no torch, no transformers."""
    from PIL import Image

    rgb = _open_rgb(image)
    h, w = smart_resize(rgb.height, rgb.width, prep["factor"], prep["min_pixels"], prep["max_pixels"])
    px = np.asarray(rgb.resize((w, h), resample=Image.Resampling.BICUBIC), dtype=np.uint8)
    x = (px.astype(np.float64) * prep["rescale"]).astype(np.float32)
    x = (x - np.asarray(prep["mean"], np.float32)) / np.asarray(prep["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def _open_rgb(image):
    """The one image reader (families.imaging), with the processors' aspect limit (as ``hunyuan.open_rgb``)."""
    from PIL import Image

    from ..families.imaging import open_image

    rgb = image.convert("RGB") if isinstance(image, Image.Image) else open_image(Path(image))
    w, h = rgb.size
    if min(w, h) < 1 or max(w, h) / min(w, h) > 200:
        raise UsageError(f"image {image} is {w}x{h}: a VLM reads images whose long side is at most 200x the short one",
                         hint="Crop or pad the image to a less extreme aspect ratio.")
    return rgb


class VlmGenerator:
    """An exported VLM folder in ONNX Runtime: ``generate(image | pixel_values, prompt_ids, max_new_tokens)``."""

    def __init__(self, folder: str | Path, *, threads: int | None = None, providers=None):
        import onnxruntime as ort

        self.folder = Path(folder)
        self.info = read_bundle(self.folder)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        providers = providers or ["CPUExecutionProvider"]
        try:
            self.encoder, self.embed, self.decoder = (
                ort.InferenceSession(str(self.folder / p), opts, providers=providers) for p in PARTS)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own error types
            raise CorruptModelError(f"{self.folder}: an exported part does not load: {str(exc).splitlines()[0][:300]}") from None
        self.past_names = [i.name for i in self.decoder.get_inputs() if i.name.startswith("past_")]
        self.present_names = [n.replace("past_", "present_") for n in self.past_names]
        t = self.info["text"]
        self.kv_shape = (1, t["num_key_value_heads"], 0, t["head_dim"])

    def preprocess(self, image) -> np.ndarray:
        return preprocess_image(image, self.info["preprocess"])

    def generate(self, image=None, prompt_ids=(), *, pixel_values: np.ndarray | None = None, max_new_tokens: int = 64,
                 min_new_tokens: int = 0, progress=lambda msg: None) -> Generation:
        if (image is None) == (pixel_values is None):
            raise UsageError("pass an image or pixel_values")
        if max_new_tokens < 1:
            raise UsageError("--max-new-tokens must be >= 1")
        t0 = time.perf_counter()
        x = self.preprocess(image) if pixel_values is None else np.ascontiguousarray(pixel_values, np.float32)
        t_pre = time.perf_counter()
        image_embeds = self.encoder.run(["image_embeds"], {"pixel_values": x})[0][0]
        t_enc = time.perf_counter()
        tok, patch, merge = self.info["tokens"], self.info["patch_size"], self.info["merge_size"]
        grid = (x.shape[2] // patch, x.shape[3] // patch)
        ids, mm = expand_prompt(prompt_ids, image_embeds.shape[0], tok)
        pos, delta = position_ids(mm, grid, merge, self.info["rope_axes"])
        embeds = self.embed.run(None, {"input_ids": ids[None]})[0]
        embeds[0, mm.astype(bool)] = image_embeds                      # the image's rows replace its placeholders
        past = {n: np.zeros(self.kv_shape, np.float32) for n in self.past_names}
        out = self.decoder.run(None, {"inputs_embeds": embeds, "position_ids": pos, **past})
        logits, hidden, presents = out[0][0], out[1][0], out[2:]
        t_prefill = time.perf_counter()
        eos = set(self.info["eos_token_ids"])
        tokens: list[int] = []
        step_logits = logits
        for step in range(max_new_tokens):
            scores = step_logits.copy()
            if step < min_new_tokens and eos:
                scores[list(eos)] = -np.inf
            nxt = int(np.argmax(scores))
            tokens.append(nxt)
            if nxt in eos or step == max_new_tokens - 1:
                break
            p = len(ids) + step + delta
            e = self.embed.run(None, {"input_ids": np.asarray([[nxt]], np.int64)})[0]
            feed = {"inputs_embeds": e, "position_ids": np.full((self.info["rope_axes"], 1, 1), p, np.int64),
                    **dict(zip(self.past_names, presents))}
            out = self.decoder.run(None, feed)
            step_logits, presents = out[0][0], out[2:]
            if step % 16 == 15:
                progress(f"{step + 1} tokens")
        t_end = time.perf_counter()
        secs = {"preprocess": t_pre - t0, "encoder": t_enc - t_pre, "prefill": t_prefill - t_enc,
                "decode": t_end - t_prefill, "total": t_end - t0}
        return Generation(tokens, len(ids), image_embeds.shape[0], logits, hidden,
                          {k: round(v, 4) for k, v in secs.items()})


def generate_cli(folder, image, *, prompt: str | None = None, prompt_ids: str | None = None,
                 max_new_tokens: int = 128, progress=lambda msg: None) -> dict:
    """What ``vlm-generate`` runs: the folder, one image, a prompt (text with the folder's tokenizer, or ids)."""
    folder, image = Path(folder), Path(image)
    if (prompt is None) == (prompt_ids is None):
        raise UsageError("give exactly one of --prompt and --prompt-ids")
    if not image.is_file():
        raise UsageError(f"{image} is not a file")
    gen = VlmGenerator(folder)
    tokenizer = _tokenizer(folder)
    if prompt is not None:
        if tokenizer is None:
            raise UsageError(f"{folder} holds no tokenizer, so --prompt cannot be tokenized",
                             hint="Pass the prompt as token ids (--prompt-ids 1,2,3), or export from a checkpoint "
                                  "that carries tokenizer.json.")
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    else:
        ids = parse_ids(prompt_ids)
    result = gen.generate(image, ids, max_new_tokens=max_new_tokens, progress=progress)
    info = result.to_dict()
    info["text"] = tokenizer.decode(result.tokens, skip_special_tokens=True) if tokenizer is not None else None
    return info


def _tokenizer(folder: Path):
    if not (folder / "tokenizer.json").is_file() and not (folder / "tokenizer_config.json").is_file():
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise CorruptModelError(f"{folder}: the tokenizer does not load: {str(exc).splitlines()[0][:300]}") from None
