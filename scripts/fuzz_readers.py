#!/usr/bin/env python
"""Fuzz every reader of user-supplied files: no input may raise anything but an ``OcrConvertError``.

An ``OcrConvertError`` subclass is a clean user error (one message, a hint, a documented exit code); any
other exception escaping a reader is a bug, and so is a reader that kills its process or hangs.

Inputs are mutations of real model files from the zoo cache (bit flips, byte edits, truncations, splices
with another model, insertions; structural edits of protobufs, JSON, YAML, NPZ and safetensors headers)
and generated garbage. Every input is derived from ``(seed, target, index)`` alone, so one line replays
it. Targets (each a chain of what the product does with such a file):

  detect          formats.detect on folders of odd names, symlinks, empty and mutated files
  onnx            onnx_io.load_onnx (external data included) + graph_inputs/outputs, metadata, opset
  paddle-legacy   detect -> paddle_program.read_program -> PaddleProgram.weights() (.pdmodel + .pdiparams)
  paddle-pir      the same for PIR programs (inference.json + .pdiparams)
  paddle-graph    ... -> PaddleProgram.graph() (Paddle's C++ deserialiser; always in a worker process)
  manifest        manifest.read_manifest and its readers: load(), pipeline.original_source, describe, the
                  torch-native runner's I/O, batch resume (verified_on_disk, the scheduler's manifest adoption)
  reference       a recorded .npz reference through detect -> ReferenceRunner (header, cases, infer)
  inference-yml   manifest.read_yaml_config -> load_dictionary -> resolve_family -> the family's use of it
  batch-config    zoo.batch.load_config -> jobs -> fingerprint
  images          families.imaging.load_images -> every family's image_feeds; TensorRT calibration_batches;
                  the VLM image reader (vlm.hunyuan.preprocess)
  dict            families.rec.read_dictionary_file / load_dictionary -> ctc_labels -> the rec family
  safetensors     torch_graph.read_graph_artifact + describe of the graph folder
  inspect         describe.describe (``ocrconvert inspect``) on mutated ONNX files and Paddle folders

Usage::

    python scripts/fuzz_readers.py --count 10000 --jobs 2            # every target, 10,000 inputs each
    python scripts/fuzz_readers.py --target onnx --count 500 --seed 7
    python scripts/fuzz_readers.py --seed 7 --replay onnx:123 [--save DIR]   # one input, with its traceback

The seed is printed first (``--seed`` or ``$OCRCONVERT_FUZZ_SEED`` to replay a run); the report ends with
``PASSED | ...`` or ``FAILED | ...``, each uncaught exception grouped by where it was raised, with the first
input's recipe, the replay command and a saved copy of the input (``--crash-dir``). Exit status 1 when
anything escaped. Workers (``--jobs N``) isolate crashes and hangs; ``--jobs 0`` runs in this process.
"""
from __future__ import annotations

import argparse
import copy
import io
import json
import marshal
import os
import random
import secrets
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "ocrconvert"
SEED_ENV = "OCRCONVERT_FUZZ_SEED"


def fresh_seed() -> int:
    """``$OCRCONVERT_FUZZ_SEED`` when set (a replay), else a new random 32-bit seed."""
    env = os.environ.get(SEED_ENV, "").strip()
    return int(env) if env else secrets.randbits(32)


# ============================================================================================ corpus
ZOO_SEEDS = {  # role -> zoo models whose files seed it (the small ones first; mutations are cheap on them)
    "onnx": ["ppocrv4-cls-onnx", "ppocrv6-tiny-det-onnx", "ppocrv4-det-onnx", "ppocrv4-rec-onnx"],
    "legacy": ["ppocrv4-cls", "ppocrv4-det", "ppocrv4-rec"],
    "pir": ["ppocrv5-mobile-det", "ppocrv5-mobile-rec"],
    "yml": ["ppocrv5-mobile-det", "ppocrv6-tiny-det-onnx", "ppocrv6-tiny-rec-onnx"],
    "dict": ["ppocrv4-rec", "ppocrv5-mobile-rec-onnx"],
}

# what a det, rec and cls model look like to the families (the zoo models' own specs)
FAMILY_SPECS = {
    "det-db": ([("x", (None, 3, None, None))], [("sigmoid_0.tmp_0", (None, 1, None, None))]),
    "rec-ctc": ([("x", (None, 3, 48, None))], [("softmax_5.tmp_0", (None, None, 6625))]),
    "cls": ([("x", (None, 3, 48, 192))], [("softmax_0.tmp_0", (None, 2))]),
}


class Corpus:
    """Seed files: real ones from the zoo cache (``find(name) -> folder``) and generated ones. Everything is
    deterministic, so ``(seed, target, index)`` names the same input in every process."""

    def __init__(self, find: Callable[[str], Path] | None = None):
        self._find = find
        self._folders: dict[str, Path | None] = {}
        self.missing: list[str] = []
        self._cache: dict[str, Any] = {}

    # -- the zoo --------------------------------------------------------------------------------
    def folder(self, name: str) -> Path | None:
        if name not in self._folders:
            path = None
            try:
                if self._find is not None:
                    path = Path(self._find(name))
                else:
                    from ocrconvert.zoo import pull

                    path = pull(name)
            except Exception:  # noqa: BLE001 - no network, no cache: generated seeds only
                self.missing.append(name)
            self._folders[name] = path
        return self._folders[name]

    def _memo(self, key: str, build: Callable[[], Any]):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def real_files(self) -> list[str]:
        """``model/file`` of every real seed in use (for the report)."""
        out = []
        for role in ("onnx", "legacy", "pir", "yml", "dict"):
            for label, *_ in getattr(self, role)():
                out.append(label)
        return sorted(set(out))

    # -- ONNX -------------------------------------------------------------------------------------
    def onnx(self) -> list[tuple[str, bytes]]:
        def build():
            out = []
            for name in ZOO_SEEDS["onnx"]:
                d = self.folder(name)
                if d is not None and (d / "model.onnx").is_file():
                    out.append((f"{name}/model.onnx", (d / "model.onnx").read_bytes()))
            return out
        return self._memo("onnx", build)

    def tiny_onnx(self) -> list[tuple[str, bytes]]:
        return self._memo("tiny_onnx", _tiny_onnx_models)

    # -- Paddle -----------------------------------------------------------------------------------
    def _paddle(self, role: str, program: str) -> list[tuple[str, Path, Path, Path | None]]:
        out = []
        for name in ZOO_SEEDS[role]:
            d = self.folder(name)
            if d is not None and (d / program).is_file() and (d / "inference.pdiparams").is_file():
                dicts = sorted(d.glob("*dict*.txt")) + sorted(d.glob("*keys*.txt"))
                out.append((f"{name}/{program}", d / program, d / "inference.pdiparams", dicts[0] if dicts else None))
        return out

    def legacy(self):
        return self._memo("legacy", lambda: self._paddle("legacy", "inference.pdmodel"))

    def read(self, path: Path) -> bytes:
        """A seed file's bytes, read once."""
        return self._memo(f"bytes:{path}", path.read_bytes)

    def parsed(self, key: str, parse: Callable[[], Any]):
        """A fresh copy of a parsed seed document (parsed once)."""
        return _copy_tree(self._memo(f"doc:{key}", parse))

    def pir(self):
        return self._memo("pir", lambda: self._paddle("pir", "inference.json"))

    # -- text files ---------------------------------------------------------------------------------
    def yml(self) -> list[tuple[str, bytes]]:
        def build():
            out = []
            for name in ZOO_SEEDS["yml"]:
                d = self.folder(name)
                if d is not None and (d / "inference.yml").is_file():
                    out.append((f"{name}/inference.yml", (d / "inference.yml").read_bytes()))
            out.append(("generated/inference.yml", _GENERATED_YML.encode()))
            return out
        return self._memo("yml", build)

    def dict(self) -> list[tuple[str, bytes]]:
        def build():
            out = []
            for name in ZOO_SEEDS["dict"]:
                d = self.folder(name)
                for p in (sorted(d.glob("*dict*.txt")) + sorted(d.glob("*keys*.txt"))) if d else []:
                    out.append((f"{name}/{p.name}", p.read_bytes()))
                    break
            out.append(("generated/dict.txt", "a\nb\nc\n中\n文\n \n".encode()))
            return out
        return self._memo("dict", build)

    def batch_configs(self) -> list[tuple[str, bytes]]:
        def build():
            out = [(f"configs/zoo/{p.name}", p.read_bytes()) for p in sorted((REPO / "configs" / "zoo").glob("*.yaml"))]
            return out or [("generated/batch.yaml", b"output: out\ndefaults: {targets: [onnx]}\nmodels: [ppocrv4-cls]\n")]
        return self._memo("batch", build)

    # -- generated binary seeds ----------------------------------------------------------------------
    def images(self) -> list[tuple[str, str, bytes]]:
        return self._memo("images", _generated_images)

    def reference(self) -> bytes:
        return self._memo("reference", _generated_reference)

    def safetensors(self) -> bytes:
        return self._memo("safetensors", _generated_safetensors)

    def manifest(self) -> dict:
        return _realistic_manifest()

    def any_bytes(self, rng: random.Random) -> tuple[str, bytes]:
        """Any seed file at all (for wrong-type inputs: a PNG named .onnx, a dictionary named .pdmodel)."""
        pools = [self.onnx() or self.tiny_onnx(), self.tiny_onnx(), self.yml(), self.dict(), self.batch_configs(),
                 [(f"generated/{n}", b) for n, _, b in self.images()], [("generated/ref.npz", self.reference())],
                 [("generated/model.safetensors", self.safetensors())]]
        pool = rng.choice([p for p in pools if p])
        return rng.choice(pool)


def _tiny_onnx_models() -> list[tuple[str, bytes]]:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    w = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4), "w")
    add = helper.make_model(helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y],
                                              initializer=[w]), opset_imports=[helper.make_opsetid("", 17)])
    add.metadata_props.add(key="character", value="a\nb\nc")
    add.metadata_props.add(key="ocrconvert.family", value="rec-ctc")
    # a subgraph (If) and a Constant holding the weights, as Paddle exports them
    c = helper.make_node("Constant", [], ["w2"], value=numpy_helper.from_array(np.ones((1, 4), np.float32), "w2"))
    then_g = helper.make_graph([helper.make_node("Add", ["x", "w2"], ["t"])], "then", [], [
        helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 4])])
    else_g = helper.make_graph([helper.make_node("Sub", ["x", "w2"], ["e"])], "else", [], [
        helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 4])])
    cond = numpy_helper.from_array(np.array(True), "cond")
    branchy = helper.make_model(helper.make_graph(
        [c, helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)], "g", [x], [y],
        initializer=[cond]), opset_imports=[helper.make_opsetid("", 17)])
    # weights in an external file beside the model
    ext = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1, 4])
    ext.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "weights.bin"), ("offset", "0"), ("length", "16")):
        e = ext.external_data.add()
        e.key, e.value = k, v
    external = helper.make_model(helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y],
                                                   initializer=[ext]), opset_imports=[helper.make_opsetid("", 17)])
    return [("generated/add.onnx", add.SerializeToString()), ("generated/if.onnx", branchy.SerializeToString()),
            ("generated/external.onnx", external.SerializeToString())]


_GENERATED_YML = """Global:
  model_name: PP-OCRv4_mobile_rec
PreProcess:
  transform_ops:
  - DecodeImage: {channel_first: false, img_mode: BGR}
  - NormalizeImage: {mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], scale: 1./255., order: hwc}
  - DetResizeForTest: {resize_long: 960, limit_side_len: 736}
  - RecResizeImg: {image_shape: [3, 48, 320]}
PostProcess:
  name: CTCLabelDecode
  thresh: 0.3
  character_dict: [a, b, c]
Hpi:
  backend_configs:
    tensorrt:
      dynamic_shapes:
        x: [[1, 3, 48, 160], [1, 3, 48, 320], [8, 3, 48, 3200]]
"""


def _deterministic_npz(arrays: dict[str, Any], compress: bool = True) -> bytes:
    """``np.savez`` without its wall-clock timestamps (so a seed file is the same bytes in every process)."""
    import numpy as np

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in arrays.items():
            info = zipfile.ZipInfo(k + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            with z.open(info, "w") as f:
                np.lib.format.write_array(f, np.asanyarray(v), allow_pickle=True)
    return buf.getvalue()


def _reference_arrays() -> dict[str, Any]:
    """What ``save_reference`` writes for a cls model with two random cases and one rendered case."""
    import numpy as np

    rng = np.random.default_rng(0)
    header = {"schema_version": 1, "family": "cls",
              "source": {"path": "/models/ppocrv4-cls", "format": "paddle-legacy", "sha256": "0" * 64, "backend": "paddle"},
              "inputs": [{"name": "x", "shape": ["?", 3, 48, 192], "dtype": "float32"}],
              "outputs": [{"name": "softmax_0.tmp_0", "shape": ["?", 2], "dtype": "float32"}],
              "config": {"PostProcess": {"name": "ClsPostProcess", "label_list": ["0", "180"]}},
              "dictionary": None, "metadata": {}, "cases": []}
    arrays: dict[str, Any] = {}
    for i, (kind, batch) in enumerate((("random", 1), ("random", 2), ("rendered", 3))):
        arrays[f"c{i}/in/x"] = rng.standard_normal((batch, 3, 48, 32)).astype(np.float32)
        arrays[f"c{i}/out/softmax_0.tmp_0"] = rng.random((batch, 2)).astype(np.float32)
        header["cases"].append({"kind": kind, "label": f"{kind} {batch}", "labels": ["0"] * batch if kind == "rendered" else None,
                                "inputs": ["x"], "outputs": ["softmax_0.tmp_0"]})
    arrays["__ocrconvert_reference__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    return arrays


def _generated_reference() -> bytes:
    return _deterministic_npz(_reference_arrays())


def _generated_safetensors() -> bytes:
    import numpy as np
    from safetensors.numpy import save

    return save({"w": np.arange(4, dtype=np.float32).reshape(1, 4)}, metadata={"format": "ocrconvert-torch-graph"})


def _generated_images() -> list[tuple[str, str, bytes]]:
    """(name, suffix, bytes): every mode x format PIL writes, small, with some ink; plus hand-made oddities."""
    from PIL import Image, ImageDraw

    out = []
    formats = {".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".webp": "WEBP"}
    for mode in ("RGB", "RGBA", "L", "LA", "P", "1", "I", "I;16", "F", "CMYK", "PA"):
        base = Image.new("RGB", (37, 19), "white")
        ImageDraw.Draw(base).text((2, 3), "Ab1", fill=(10, 20, 30))
        im = base.convert(mode) if mode not in ("I;16", "PA") else (base.convert("L").convert("I;16") if mode == "I;16"
                                                                      else base.convert("P").convert("PA"))
        if mode == "P":
            im.info["transparency"] = 0
        for suffix, fmt in formats.items():
            buf = io.BytesIO()
            try:
                im.save(buf, format=fmt)
            except (OSError, ValueError, KeyError):
                continue
            out.append((f"{mode.replace(';', '')}{suffix}", suffix, buf.getvalue()))
    # a multi-frame GIF named .png, an animated WEBP, a 1x1 and a 1x400 strip, a huge-canvas PNG header
    frames = [Image.new("L", (8, 8), c) for c in (0, 128, 255)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out.append(("anim.gif-as.png", ".png", buf.getvalue()))
    buf = io.BytesIO()
    frames[0].convert("RGB").save(buf, format="WEBP", save_all=True, append_images=[f.convert("RGB") for f in frames[1:]])
    out.append(("anim.webp", ".webp", buf.getvalue()))
    for w, h in ((1, 1), (400, 1), (1, 400)):
        buf = io.BytesIO()
        Image.new("RGB", (w, h), "black").save(buf, format="PNG")
        out.append((f"{w}x{h}.png", ".png", buf.getvalue()))
    out.append(("bomb.png", ".png", _png_header_only(40000, 40000)))
    out.append(("wide.png", ".png", _png_header_only(1 << 20, 1)))
    return out


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG that declares a w x h canvas (valid CRCs) over a tiny compressed stream."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _realistic_manifest() -> dict:
    """The keys and types of a manifest the spine writes (paddle2onnx, verified)."""
    return {
        "schema_version": 1, "created": "2026-01-01T00:00:00Z",
        "source": {"path": "SOURCE", "format": "paddle-legacy", "sha256": "0" * 64},
        "hops": [{"converter": "paddle2onnx", "from": "paddle", "to": "onnx", "tool": "paddle2onnx",
                  "versions": {"paddle2onnx": "2.0.1"}, "options": {"opset": 14}, "produced": {"opset": 14, "precision": "fp32"},
                  "seconds": 1.5}],
        "options": {"opset": 14}, "precision": "fp32", "status": "verified",
        "environment": {"python": "3.11.7", "platform": "Linux", "packages": {"onnx": "1.17.0"}},
        "artifact": {"path": "ARTIFACT", "sha256": "0" * 64},
        "io": {"inputs": [{"name": "x", "shape": ["?", 4], "dtype": "float32"}],
               "outputs": [{"name": "y", "shape": ["?", 4], "dtype": "float32"}]},
        "model_metadata": {"ocrconvert.family": "cls"},
        "verification": {"passed": True, "verdict": "PASSED", "informative_cases": 2, "min_informative": 1,
                         "summary": "PASSED | onnxruntime vs paddle (cls)", "seed": 0, "worst_max_abs_random": 1e-6,
                         "tolerances": {"precision": "fp32", "atol": 1e-4}, "target": "ARTIFACT",
                         "cases": [{"label": "random 1x3x48x192", "kind": "random", "passed": True, "informative": True,
                                    "input_shapes": {"x": [1, 3, 48, 192]},
                                    "outputs": [{"name": "y", "max_abs": 1e-6, "mean_abs": 1e-7, "passed": True}],
                                    "task": None}]},
    }


# ========================================================================================= mutators
INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f",
               b"\x00\x00\x00\x80", b"\xff" * 8, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x01\x00\x00\x00",
               b"\x00\x00\x00\x00\x00\x00\xf0\x7f", b"\xff\xff\xff\xff\x0f"]
BYTE_OPS = ("flip", "flip", "set", "interesting", "truncate", "insert", "delete", "duplicate", "splice", "zero")


def _pos(rng: random.Random, n: int) -> int:
    """A position, biased to the header (where formats keep their lengths and magic)."""
    if n <= 0:
        return 0
    return rng.randrange(min(n, 512)) if rng.random() < 0.4 else rng.randrange(n)


def mutate_bytes(rng: random.Random, data: bytes, note: Callable[[str], None], others: list[bytes] = (),
                 ops: int | None = None) -> bytes:
    """1..8 byte-level edits, each written to the recipe."""
    buf = bytearray(data)
    for _ in range(ops or rng.choice((1, 1, 1, 2, 2, 3, 5, 8))):
        n = len(buf)
        op = rng.choice(BYTE_OPS)
        if op == "flip" and n:
            at = _pos(rng, n)
            bit = rng.randrange(8)
            buf[at] ^= 1 << bit
            note(f"flip bit {bit} of byte {at}")
        elif op == "set" and n:
            at, v = _pos(rng, n), rng.randrange(256)
            buf[at] = v
            note(f"byte {at} = {v}")
        elif op == "interesting" and n:
            at, v = _pos(rng, n), rng.choice(INTERESTING)
            buf[at:at + len(v)] = v
            note(f"bytes {at}.. = {v.hex()}")
        elif op == "truncate":
            keep = rng.randrange(n + 1) if rng.random() < 0.7 else max(0, n - rng.randrange(1, 64))
            del buf[keep:]
            note(f"truncate to {keep} of {n} bytes")
        elif op == "insert":
            at, blob = _pos(rng, n), rng.randbytes(rng.choice((1, 4, 16, 256)))
            buf[at:at] = blob
            note(f"insert {len(blob)} random bytes at {at}")
        elif op == "delete" and n:
            at = _pos(rng, n)
            k = rng.randint(1, max(1, min(n - at, rng.choice((1, 8, 512)))))
            del buf[at:at + k]
            note(f"delete {k} bytes at {at}")
        elif op == "duplicate" and n:
            a = _pos(rng, n)
            b = min(n, a + rng.choice((4, 64, 4096)))
            at = rng.randrange(n + 1)
            buf[at:at] = buf[a:b]
            note(f"copy bytes {a}:{b} to {at}")
        elif op == "splice" and others:
            j = rng.randrange(len(others))
            other = others[j]
            at, src = rng.randrange(n + 1), rng.randrange(len(other) + 1)
            buf[at:] = other[src:src + rng.choice((64, 4096, 1 << 20))]
            note(f"splice: from {at}, bytes of seed #{j} at {src}")
        elif op == "zero" and n:
            a = _pos(rng, n)
            k = rng.choice((4, 64, 4096))
            buf[a:a + k] = bytes(len(buf[a:a + k]))
            note(f"zero {k} bytes at {a}")
    return bytes(buf)


def _copy_tree(doc):
    try:
        return marshal.loads(marshal.dumps(doc))
    except ValueError:
        return copy.deepcopy(doc)


WEIRD_STRINGS = ["", " ", "\x00", "a\x00b", "../../../etc/passwd", "/", ".", "..", "~nosuchuser/x", "~", "💥" * 3,
                 "x" * 5000, "\ud800", "NaN", "-1", "1e400", "0x10", "true", "null", "{}", "[]", "%s%n", "\\\\?\\C:",
                 "C:\\model.onnx", "\n", "\r\n", "pd_op.conv2d", "1.pd_op.data", "0.t_f32", "fp16", "ppocrv4-cls"]
PB_STRINGS = [s for s in WEIRD_STRINGS if s != "\ud800"]  # protobuf strings must be valid UTF-8
WEIRD_NUMBERS = [0, -1, 1, 2, 3, 7, 255, 256, 65535, 2 ** 31 - 1, 2 ** 31, -2 ** 31, 2 ** 63 - 1, 2 ** 64, -2 ** 63, 10 ** 30,
                 0.0, -0.0, 0.5, 1e-30, 1e308, float("inf"), float("-inf"), float("nan")]


def random_value(rng: random.Random, vocab: list[str], depth: int = 0):
    r = rng.random()
    if depth > 3 or r < 0.45:
        kind = rng.randrange(6)
        if kind == 0:
            return None
        if kind == 1:
            return rng.random() < 0.5
        if kind == 2:
            return rng.choice(WEIRD_NUMBERS)
        if kind == 3:
            return rng.randint(-10, 100)
        if kind == 4:
            return rng.choice(WEIRD_STRINGS)
        return rng.choice(vocab) if vocab else "x"
    if r < 0.7:
        return [random_value(rng, vocab, depth + 1) for _ in range(rng.choice((0, 1, 2, 4)))]
    return {rng.choice(vocab) if vocab and rng.random() < 0.8 else rng.choice(WEIRD_STRINGS[:12]):
            random_value(rng, vocab, depth + 1) for _ in range(rng.choice((0, 1, 2, 4)))}


def _walk_to(rng: random.Random, doc) -> list:
    """A random path into ``doc`` (keys / indices), stopping at a random depth."""
    path, node = [], doc
    while isinstance(node, (dict, list)) and node and rng.random() < 0.88:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append(key)
        node = node[key]
    return path


def mutate_tree(rng: random.Random, doc, note: Callable[[str], None], vocab: list[str], ops: int | None = None):
    """Structural edits of a JSON/YAML document: replace, delete, retype, add unknown keys, empty, duplicate."""
    for _ in range(ops or rng.choice((1, 1, 2, 3, 6))):
        path = _walk_to(rng, doc)
        if not path:
            if rng.random() < 0.15:
                doc = random_value(rng, vocab)
                note("whole document -> random value")
            elif isinstance(doc, dict):
                k = rng.choice(vocab)
                doc[k] = random_value(rng, vocab)
                note(f"add key {k!r} at the top")
            continue
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        key, node = path[-1], parent[path[-1]]
        where = "/".join(str(k) for k in path)[:120]
        op = rng.choice(("replace", "replace", "delete", "retype", "number", "add", "empty", "duplicate"))
        if op == "replace":
            parent[key] = random_value(rng, vocab)
            note(f"{where} -> {str(parent[key])[:60]!s}")
        elif op == "delete":
            del parent[key]
            note(f"delete {where}")
        elif op == "retype":
            parent[key] = rng.choice((lambda v: [v], lambda v: {"x": v}, str, lambda v: None,
                                      lambda v: list(v) if isinstance(v, (dict, str)) else v))(node)
            note(f"retype {where} to {type(parent[key]).__name__}")
        elif op == "number":
            parent[key] = rng.choice(WEIRD_NUMBERS) if not isinstance(node, (int, float)) or rng.random() < 0.5 else \
                rng.choice((-node, node * 1000003, node + 1, node - 1, 0))
            note(f"{where} = {parent[key]!r}")
        elif op == "add" and isinstance(node, dict):
            k = rng.choice(vocab) if rng.random() < 0.8 else rng.choice(WEIRD_STRINGS)
            node[k] = random_value(rng, vocab)
            note(f"{where}: add key {k[:30]!r}")
        elif op == "add" and isinstance(node, list):
            node.insert(rng.randrange(len(node) + 1), random_value(rng, vocab))
            note(f"{where}: insert an item")
        elif op == "empty":
            parent[key] = type(node)() if isinstance(node, (dict, list, str)) else None
            note(f"empty {where}")
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(key, _copy_tree(node))
            note(f"duplicate {where}")
    return doc


def special_text(rng: random.Random, note: Callable[[str], None], kind: str = "json") -> bytes:
    """Texts parsers choke on: deep nesting, encodings, NULs, YAML tags and anchors, huge numbers."""
    choice = rng.randrange(12)
    depth = rng.choice((50, 2000, 100000))
    if choice == 0:
        note(f"nested {depth} deep ([)")
        return b"[" * depth + b"]" * depth
    if choice == 1:
        note(f"nested {depth} deep ({{a:)")
        return (b'{"a":' * depth + b"1" + b"}" * depth) if kind == "json" else (b"{a: " * depth + b"1" + b"}" * depth)
    if choice == 2:
        note("UTF-16 with BOM")
        return '{"a": "b", "program": 1}\n'.encode("utf-16")
    if choice == 3:
        note("UTF-8 BOM + document")
        return b"\xef\xbb\xbf" + b'{"output": "o", "models": ["a"]}'
    if choice == 4:
        note("invalid UTF-8")
        return b'{"a": "\xff\xfe\xc3("}'
    if choice == 5:
        note("NUL bytes")
        return b"\x00" * rng.choice((1, 100))
    if choice == 6:
        note("empty")
        return b""
    if choice == 7:
        note("YAML python tag")
        return b"!!python/object/apply:os.system ['echo PWNED']\n"
    if choice == 8:
        note("YAML anchors (billion laughs)")
        lines = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, "
                                                          f"*{chr(97 + i)}, *{chr(97 + i)}]" for i in range(9)]
        return ("\n".join(lines) + "\nPostProcess: *j\nmodels: *j\n").encode()
    if choice == 9:
        note("huge numbers")
        return b'{"a": 1e999999, "b": -1e400, "c": 123456789012345678901234567890, "d": NaN}'
    if choice == 10:
        note("self-referencing YAML")
        return b"&a [*a]\n" if rng.random() < 0.5 else b"PostProcess: &p {name: CTCLabelDecode, x: *p}\n"
    note("random bytes")
    return rng.randbytes(rng.choice((1, 16, 300)))


# ================================================================================ trials and targets
class Trial:
    """One input: its recipe (for the reproducer), the reader stage running, and each call's outcome."""

    def __init__(self):
        self.recipe: list[str] = []
        self.stage = "build"
        self.outcomes: list[str] = []

    def note(self, text: str) -> None:
        self.recipe.append(text)

    def call(self, stage: str, fn, *args, **kwargs):
        """Run one reader call; an OcrConvertError is a clean outcome (returns None), anything else escapes."""
        from ocrconvert.errors import OcrConvertError

        self.stage = stage
        try:
            out = fn(*args, **kwargs)
        except OcrConvertError as exc:
            self.outcomes.append(f"{stage}: {type(exc).__name__}")
            return None
        self.outcomes.append(f"{stage}: ok")
        return out


@dataclass
class Target:
    name: str
    build: Callable[[random.Random, Corpus, Path, Trial], Any]   # writes the input below the folder
    read: Callable[[Any, Trial, Corpus], None]                     # drives the readers
    needs: tuple[str, ...] = ()                                      # modules; a target without them is skipped
    isolate: bool = False                                           # may abort in C++: workers only


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _link_or_write(path: Path, original: Path, data: bytes | None) -> None:
    """An unmutated seed is linked (large weights stay unread); a mutated one is written."""
    if data is None:
        path.symlink_to(original)
    else:
        _write(path, data)


def _garbage(rng: random.Random, c: Corpus, t: Trial) -> bytes:
    r = rng.random()
    if r < 0.35:
        n = rng.choice((0, 1, 8, 64, 1024, 65536))
        t.note(f"{n} random bytes")
        return rng.randbytes(n)
    if r < 0.7:
        label, data = c.any_bytes(rng)
        t.note(f"another kind of file: {label}")
        return data if rng.random() < 0.5 else mutate_bytes(rng, data, t.note)
    return special_text(rng, t.note)


# ---------------------------------------------------------------------------------------------- detect
DETECT_NAMES = ["inference.pdmodel", "inference.pdiparams", "inference.json", "inference.yml", "inference.yaml",
                "model.onnx", "b.onnx", "graph.onnx", "model.safetensors", "config.json", "ocrconvert.json", "model.pt2",
                "model.engine", "m.plan", "x.trt", "ref.npz", "model.pt", "w.pkl", "pytorch_model.bin", "ppocr_keys_v1.txt",
                "dict.txt", "en_dict.txt", "MODEL.ONNX", "inference.PDMODEL", "noext", ".hidden.onnx", "other.pdiparams",
                "model.onnx.ocrconvert.json", "ünïcødé.onnx", "x" * 200 + ".onnx", "a b.pdmodel", "inference.json.bak"]


def build_detect(rng, c, folder, t):
    root = folder / "m"
    root.mkdir()
    made: list[Path] = []
    for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 4, 6))):
        name = rng.choice(DETECT_NAMES) if rng.random() < 0.9 else rng.choice(WEIRD_STRINGS[5:12]).strip("/.\x00") or "w"
        p = root / name.replace("/", "_").replace("\x00", "_")[:240]
        if p.exists() or p.is_symlink():
            continue
        kind = rng.choice(("file", "file", "file", "file", "empty", "dir", "dangling", "loop", "link"))
        if kind == "file":
            if p.name == "config.json" and rng.random() < 0.7:
                data = json.dumps(random_value(rng, ["model_type", "architectures", "x"])).encode()
            else:
                data = _garbage(rng, c, t)[:65536]
            _write(p, data)
        elif kind == "empty":
            p.touch()
        elif kind == "dir":
            p.mkdir()
            if rng.random() < 0.5:
                (p / rng.choice(DETECT_NAMES[:12])).write_bytes(b"x")
        elif kind == "dangling":
            p.symlink_to(root / "nowhere")
        elif kind == "loop":
            p.symlink_to(p)
        elif made:
            p.symlink_to(rng.choice(made))
        else:
            continue
        t.note(f"{kind} {name[:40]!r}")
        made.append(p)
    paths: list[Any] = [root, *made]
    if rng.random() < 0.15:
        weird = rng.choice(["~nosuchuser/model.onnx", "", "\x00", "/dev/null", "/proc/self", "a" * 5000, str(root) + "/"])
        t.note(f"also the path {weird[:40]!r}")
        paths.append(weird)
    return paths


def read_detect(paths, t, c):
    from ocrconvert.formats import detect

    for p in paths:
        t.call("detect", detect, p)


# ------------------------------------------------------------------------------------------------ onnx
EXT_LOCATIONS = ["weights.bin", "sub/weights.bin", "../outside.bin", "/etc/hostname", "", ".", "sub", "a\x00b",
                 "weights.bin/..", "~/w.bin", "%2e%2e/w.bin", "x" * 300, "weights.bin\n"]
EXT_NUMBERS = ["0", "16", "-5", "abc", "", "99999999999", "1e3", " 4", "0x10", str(2 ** 64)]


def _mutate_onnx_proto(rng, data: bytes, t: Trial) -> bytes:
    import onnx
    from onnx import TensorProto

    m = onnx.load_from_string(data)
    g = m.graph
    for _ in range(rng.choice((1, 1, 2, 3))):
        op = rng.randrange(10)
        tensors = list(g.initializer) + [a.t for n in g.node for a in n.attribute if a.HasField("t")]
        if op == 0 and tensors:
            tensor = rng.choice(tensors)
            tensor.data_location = TensorProto.EXTERNAL
            del tensor.external_data[:]
            for k in ("location", "offset", "length") if rng.random() < 0.8 else ("location",):
                e = tensor.external_data.add()
                e.key = k
                e.value = rng.choice(EXT_LOCATIONS) if k == "location" else rng.choice(EXT_NUMBERS)
            t.note(f"tensor {tensor.name[:30]!r} -> external data {[(e.key, e.value[:20]) for e in tensor.external_data]}")
        elif op == 1 and tensors:
            tensor = rng.choice(tensors)
            tensor.dims[:] = [rng.choice((-1, 0, 1, 3, 2 ** 31, 2 ** 40)) for _ in range(rng.randrange(5))]
            t.note(f"tensor {tensor.name[:30]!r} dims -> {list(tensor.dims)}")
        elif op == 2 and tensors:
            tensor = rng.choice(tensors)
            tensor.data_type = rng.choice((0, 8, 12, 16, 17, 23, 99))
            t.note(f"tensor {tensor.name[:30]!r} data_type -> {tensor.data_type}")
        elif op == 3 and g.node:
            node = rng.choice(g.node)
            node.op_type, node.domain = rng.choice((("Loop", ""), ("Frobnicate", "com.acme"), ("", ""), ("Conv", "x" * 300)))
            t.note(f"node {node.name[:30]!r} -> {node.domain}::{node.op_type}")
        elif op == 4 and g.node:
            del g.node[rng.randrange(len(g.node)):]
            t.note(f"keep {len(g.node)} nodes")
        elif op == 5 and (g.input or g.output):
            v = rng.choice(list(g.input) + list(g.output))
            v.type.tensor_type.elem_type = rng.choice((0, 7, 16, 99))
            dims = v.type.tensor_type.shape.dim
            if dims:
                d = rng.choice(dims)
                if rng.random() < 0.5:
                    d.dim_value = rng.choice((-7, 0, 2 ** 40))
                else:
                    d.dim_param = rng.choice(PB_STRINGS)
            t.note(f"value {v.name[:30]!r} type edited")
        elif op == 6:
            del m.opset_import[:]
            for domain, version in rng.sample([("", 1), ("", 99), ("", -1), ("ai.onnx", 17), ("com.acme", 1), ("", 2 ** 62)],
                                              rng.randint(0, 3)):
                m.opset_import.add(domain=domain, version=version)
            t.note(f"opsets -> {[(o.domain, o.version) for o in m.opset_import]}")
        elif op == 7:
            m.metadata_props.add(key=rng.choice(("character", "ocrconvert.family", "ocrconvert.config", "x")),
                                 value=rng.choice(PB_STRINGS + ['{"PostProcess": 5}', "[1, 2]", "det-db"]))
            t.note(f"metadata {m.metadata_props[-1].key} = {m.metadata_props[-1].value[:30]!r}")
        elif op == 8:
            del (g.input if rng.random() < 0.5 else g.output)[:]
            t.note("graph inputs or outputs removed")
        else:
            m.ir_version = rng.choice((0, 1, 3, 99, 2 ** 62))
            t.note(f"ir_version -> {m.ir_version}")
    return m.SerializeToString()


def build_onnx(rng, c, folder, t):
    d = folder / "model"
    d.mkdir()
    real, tiny = c.onnx(), c.tiny_onnx()
    r = rng.random()
    if r < 0.5 and (real or tiny):
        pool = real if real and rng.random() < 0.8 else tiny
        label, data = rng.choices(pool, weights=[1 / (len(b) ** 0.5) for _, b in pool])[0]
        t.note(f"seed {label}")
        data = mutate_bytes(rng, data, t.note, [b for _, b in pool])
    elif r < 0.9:
        small = [s for s in real + tiny if len(s[1]) < 2_000_000]
        label, data = rng.choice(small)
        t.note(f"seed {label}, protobuf edits")
        data = _mutate_onnx_proto(rng, data, t)
        if rng.random() < 0.2:
            data = mutate_bytes(rng, data, t.note, ops=1)
    else:
        data = _garbage(rng, c, t)
    _write(d / "model.onnx", data)
    if rng.random() < 0.6:  # external data files for the tensors that point out of the model
        n = rng.choice((0, 8, 16, 1 << 16))
        _write(d / rng.choice(("weights.bin", "sub/weights.bin")), rng.randbytes(n))
        _write(folder / "outside.bin", bytes(16))
        t.note(f"weights.bin of {n} bytes beside it")
    if rng.random() < 0.1:
        (d / "linked.bin").symlink_to(folder / "outside.bin")
    return d / "model.onnx", rng.random() < 0.7


def read_onnx(arg, t, c):
    from ocrconvert import onnx_io

    path, weights = arg
    model = t.call("load_onnx", onnx_io.load_onnx, path, load_weights=weights)
    if model is not None:
        t.call("graph_inputs", onnx_io.graph_inputs, model)
        t.call("graph_outputs", onnx_io.graph_outputs, model)
        t.call("metadata", onnx_io.metadata, model)
        t.call("opset", onnx_io.opset, model)


# ---------------------------------------------------------------------------------------------- paddle
PIR_VOCAB = ["program", "regions", "blocks", "ops", "#", "A", "O", "I", "TT", "D", "N", "AT", "base_code", "magic",
             "version", "trainable", "1.pd_op.data", "1.pd_op.fetch", "p", "0.t_f32", "0.t_dtensor", "name", "shape"]


def _mutate_legacy_proto(rng, data: bytes, t: Trial) -> bytes:
    from paddle.base.proto import framework_pb2

    desc = framework_pb2.ProgramDesc()
    desc.ParseFromString(data)
    for _ in range(rng.choice((1, 1, 2, 3))):
        blk = desc.blocks[rng.randrange(len(desc.blocks))] if desc.blocks else desc.blocks.add()
        op = rng.randrange(8)
        if op == 0 and blk.vars:
            v = rng.choice(blk.vars)
            if v.type.HasField("dense_tensor"):
                dims = v.type.dense_tensor.tensor.dims
                dims[:] = [rng.choice((-1, 0, 1, 3, 2 ** 31, -2 ** 40, 2 ** 62)) for _ in range(rng.randrange(5))]
                t.note(f"var {v.name[:30]!r} dims -> {list(dims)}")
        elif op == 1 and blk.vars:
            v = rng.choice(blk.vars)
            if v.type.HasField("dense_tensor"):
                v.type.dense_tensor.tensor.data_type = rng.choice(framework_pb2.VarType.Type.values())
                t.note(f"var {v.name[:30]!r} data type -> {v.type.dense_tensor.tensor.data_type}")
        elif op == 2 and blk.vars:
            v = rng.choice(blk.vars)
            v.persistable = not v.persistable
            t.note(f"var {v.name[:30]!r} persistable flipped")
        elif op == 3 and blk.vars:
            v = rng.choice(blk.vars)
            old, v.name = v.name, rng.choice(("feed", "fetch", "", blk.vars[0].name, "x" * 500))
            t.note(f"var {old[:30]!r} renamed {v.name[:30]!r}")
        elif op == 4 and blk.ops:
            o = rng.choice(blk.ops)
            o.type = rng.choice(("feed", "fetch", "", "conv2d", "while", "frobnicate"))
            t.note(f"an op -> {o.type!r}")
        elif op == 5 and blk.ops:
            del blk.ops[rng.randrange(len(blk.ops)):]
            t.note(f"keep {len(blk.ops)} ops")
        elif op == 6 and blk.vars:
            i = rng.randrange(len(blk.vars))
            t.note(f"var {blk.vars[i].name[:30]!r} deleted")
            del blk.vars[i]
        else:
            b = desc.blocks.add()
            b.idx, b.parent_idx = rng.choice(((1, 0), (0, -1), (5, 7), (-1, -1)))
            t.note(f"an empty block added (idx {b.idx}, parent {b.parent_idx})")
    return desc.SerializeToString()


def _build_paddle(rng, c, folder, t, fmt: str):
    seeds = c.legacy() if fmt == "legacy" else c.pir()
    root = folder / "m"
    root.mkdir()
    if not seeds:
        raise RuntimeError(f"no {fmt} Paddle seed model in the zoo cache")
    label, prog, params, dict_file = rng.choices(seeds, weights=[1 / (len(c.read(p)) ** 0.5) for _, _, p, _ in seeds])[0]
    t.note(f"seed {label}")
    what = rng.choices(("program", "params", "both", "swap", "none"), weights=(50, 25, 15, 8, 2))[0]
    prog_data = params_data = None
    if what in ("program", "both"):
        raw = c.read(prog)
        r = rng.random()
        if fmt == "pir" and r < 0.7:
            doc = c.parsed(str(prog), lambda: json.loads(raw))
            t.note("JSON edits:")
            prog_data = json.dumps(mutate_tree(rng, doc, t.note, PIR_VOCAB)).encode()
        elif fmt == "legacy" and r < 0.6:
            prog_data = _mutate_legacy_proto(rng, raw, t)
        elif r < 0.95:
            prog_data = mutate_bytes(rng, raw, t.note)
        else:
            prog_data = special_text(rng, t.note)
    if what in ("params", "both"):
        raw = c.read(params)
        others = [c.read(p) for _, _, p, _ in seeds if p != params][:1]
        params_data = mutate_bytes(rng, raw, t.note, others)
    program_name = "inference.json" if fmt == "pir" else "inference.pdmodel"
    _link_or_write(root / program_name, prog, prog_data)
    if what == "swap":
        other = rng.choice(c.legacy() + c.pir())
        t.note(f"weights of {other[0]}")
        (root / "inference.pdiparams").symlink_to(other[2])
    elif rng.random() < 0.03:
        t.note("weights: a folder")
        (root / "inference.pdiparams").mkdir()
    else:
        _link_or_write(root / "inference.pdiparams", params, params_data)
    if dict_file is not None and rng.random() < 0.5:
        (root / dict_file.name).symlink_to(dict_file)
    return root


def build_legacy(rng, c, folder, t):
    return _build_paddle(rng, c, folder, t, "legacy")


def build_pir(rng, c, folder, t):
    return _build_paddle(rng, c, folder, t, "pir")


def build_paddle_graph(rng, c, folder, t):
    return _build_paddle(rng, c, folder, t, rng.choice(("legacy", "pir")))


def _read_paddle(root, t, graph: bool):
    from ocrconvert.formats import detect
    from ocrconvert.paddle_program import read_program

    art = t.call("detect", detect, root)
    program = art and t.call("read_program", read_program, art)
    if program is None:
        return
    t.call("summary", lambda: (program.inputs, program.outputs, dict(program.ops), program.parameter_count))
    weights = t.call("weights", program.weights)
    if graph and weights is not None:
        t.call("graph", program.graph)


def read_paddle(root, t, c):
    _read_paddle(root, t, graph=False)


def read_paddle_graph(root, t, c):
    _read_paddle(root, t, graph=True)


# -------------------------------------------------------------------------------------------- manifest
MANIFEST_VOCAB = ["schema_version", "source", "path", "format", "sha256", "hops", "converter", "options", "produced",
                  "verification", "passed", "verdict", "cases", "outputs", "status", "failed-verification", "verified",
                  "unverified", "artifact", "summary", "worst_max_abs_random", "io", "inputs", "precision", "aot",
                  "model_metadata", "verified_against", "onnx", "paddle-legacy", "reference"]


def _tiny_graph_folder(c: Corpus, folder: Path) -> None:
    import onnx

    from ocrconvert.torch_graph import split_weights

    desc, _ = split_weights(onnx.load_from_string(c.tiny_onnx()[0][1]))
    folder.mkdir(parents=True)
    onnx.save(desc, str(folder / "graph.onnx"))
    (folder / "model.safetensors").write_bytes(c.safetensors())


def build_manifest(rng, c, folder, t):
    from ocrconvert.formats import MANIFEST_FILE

    kind = rng.choice(("onnx", "graph-folder", "file-in-folder", "native-folder"))
    if kind == "native-folder":  # a transformers-style folder: its runner takes its I/O from the manifest
        art = folder / "out" / "native"
        _write(art / "config.json", b'{"model_type": "pp_ocrv5_mobile_rec"}')
        _write(art / "model.safetensors", c.safetensors())
        man = art / MANIFEST_FILE
    elif kind == "onnx":
        art = _write(folder / "out" / "model.onnx", c.tiny_onnx()[0][1])
        man = art.with_name(art.name + ".ocrconvert.json")
    elif kind == "graph-folder":
        art = folder / "out" / "torch"
        _tiny_graph_folder(c, art)
        man = art / MANIFEST_FILE
    else:
        art = _write(folder / "out" / "plan" / "model.fp16.onnx", c.tiny_onnx()[0][1])
        man = art.parent / MANIFEST_FILE
    t.note(f"artifact: {kind}")
    src = _write(folder / "src" / "model.onnx", c.tiny_onnx()[0][1])
    r = rng.random()
    if r < 0.7:
        doc = c.manifest()
        doc["source"]["path"], doc["artifact"]["path"] = str(src), str(art)
        doc["verification"]["target"] = str(art)
        t.note("manifest edits:")
        vocab = MANIFEST_VOCAB + [str(src), str(art), str(folder), "/"]
        data = json.dumps(mutate_tree(rng, doc, t.note, vocab)).encode()
    elif r < 0.85:
        data = mutate_bytes(rng, json.dumps(c.manifest()).encode(), t.note)
    elif r < 0.95:
        data = json.dumps(random_value(rng, MANIFEST_VOCAB)).encode()
        t.note("random JSON")
    else:
        data = special_text(rng, t.note)
    _write(man, data)
    return art, kind, folder


def read_manifest_target(arg, t, c):
    from ocrconvert.describe import describe
    from ocrconvert.formats import detect
    from ocrconvert.manifest import read_manifest
    from ocrconvert.pipeline import original_source
    from ocrconvert.runners import load, runner_for
    from ocrconvert.zoo.batch.config import JobSpec
    from ocrconvert.zoo.batch.fingerprint import verified_on_disk
    from ocrconvert.zoo.batch.reports import JobRecord
    from ocrconvert.zoo.batch.scheduler import _from_manifest

    art, kind, folder = arg
    t.call("read_manifest", read_manifest, art)
    t.call("load", load, art)
    found = t.call("detect", detect, art)
    if found is not None:
        t.call("original_source", original_source, found)
    t.call("describe", describe, art)
    if kind == "native-folder":
        runner = found and t.call("runner_for", runner_for, found)
        if runner is not None:
            t.call("runner.inputs", lambda: runner.inputs)
            t.call("runner.outputs", lambda: runner.outputs)
            t.call("runner.metadata", runner.metadata)
    if kind == "graph-folder":
        for verify in (True, False):
            job = JobSpec(id="m.torch", model=str(folder / "src" / "model.onnx"), target="torch", output=art, verify=verify)
            t.call("verified_on_disk", verified_on_disk, job)
        t.call("adopt", _from_manifest, JobRecord("m.torch", "m", "torch"), art)


# ------------------------------------------------------------------------------------------- reference
REF_VOCAB = ["schema_version", "family", "source", "backend", "inputs", "outputs", "name", "shape", "dtype", "config",
             "dictionary", "metadata", "cases", "kind", "label", "labels", "random", "rendered", "x", "softmax_0.tmp_0",
             "cls", "rec-ctc", "det-db", "?"]


def build_reference(rng, c, folder, t):
    import numpy as np

    path = folder / rng.choice(("ref.npz", "ref.NPZ"))
    r = rng.random()
    if r < 0.35:
        data = mutate_bytes(rng, c.reference(), t.note)
    elif r < 0.9:
        arrays = _reference_arrays()
        header = json.loads(arrays["__ocrconvert_reference__"].tobytes())
        if rng.random() < 0.7:
            t.note("header edits:")
            header = mutate_tree(rng, header, t.note, REF_VOCAB)
        arrays["__ocrconvert_reference__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        for _ in range(rng.choice((0, 0, 1, 2))):
            key = rng.choice(sorted(arrays))
            op = rng.randrange(6)
            if op == 0:
                del arrays[key]
                t.note(f"member {key} removed")
            elif op == 1:
                arrays[key] = np.zeros(rng.choice(((0,), (2, 2), (1, 3, 48, 32), ())), rng.choice(("f4", "f2", "i8", "u1", "?")))
                t.note(f"member {key} -> {arrays[key].dtype} {arrays[key].shape}")
            elif op == 2:
                arrays[key] = np.array([{"pickled": 1}], dtype=object)
                t.note(f"member {key} -> an object array (pickle)")
            elif op == 3:
                arrays[rng.choice(("c9/in/x", "c0/in/y", "c0/out/", "/", "../x"))] = arrays[key]
                t.note(f"member {key} copied under another name")
            elif op == 4:
                arrays[key] = np.asarray(arrays[key]).astype(">f4") if np.asarray(arrays[key]).dtype.kind == "f" else arrays[key]
                t.note(f"member {key} big-endian")
            else:
                arrays[key] = np.asarray(arrays[key]).reshape(-1)[: rng.randrange(4)]
                t.note(f"member {key} cut short")
        data = _deterministic_npz(arrays, compress=rng.random() < 0.5)
    else:
        data = _garbage(rng, c, t)
    return _write(path, data)


def read_reference(path, t, c):
    import numpy as np

    from ocrconvert.families import resolve_family
    from ocrconvert.formats import detect
    from ocrconvert.runners import runner_for

    art = t.call("detect", detect, path)
    runner = art and t.call("runner_for", runner_for, art)
    if runner is None:
        return
    t.call("header", lambda: runner.header)
    t.call("inputs", lambda: runner.inputs)
    t.call("outputs", lambda: runner.outputs)
    t.call("backend_label", lambda: runner.backend_label)
    info = t.call("info", runner.info)
    if info is not None:
        t.call("resolve_family", lambda: resolve_family(info, getattr(runner, "header", {}).get("family")))
    cases = t.call("recorded_cases", lambda: runner.recorded_cases)
    for _, _, feed, _ in (cases or [])[:2]:
        t.call("infer", runner.infer, feed)
    t.call("infer(unrecorded)", runner.infer, {"x": np.ones((1, 3, 48, 32), np.float32)})


# -------------------------------------------------------------------------------------- inference.yml
YML_VOCAB = ["Global", "PreProcess", "PostProcess", "transform_ops", "NormalizeImage", "mean", "std", "scale", "order",
             "DetResizeForTest", "resize_long", "limit_side_len", "RecResizeImg", "image_shape", "name", "thresh",
             "box_thresh", "character_dict", "CTCLabelDecode", "DBPostProcess", "ClsPostProcess", "label_list", "Hpi",
             "backend_configs", "tensorrt", "dynamic_shapes", "x", "model_name", "DecodeImage"]


def _yaml_dump(doc) -> bytes:
    import yaml

    try:
        text = yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), allow_unicode=True, sort_keys=False)
    except UnicodeEncodeError:  # a lone surrogate: the pure-Python emitter writes it as an escape
        text = yaml.dump(doc, Dumper=yaml.SafeDumper, allow_unicode=False, sort_keys=False)
    return text.encode("utf-8", "surrogatepass")


def _yaml_load(data: bytes):
    import yaml

    return yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def build_yml(rng, c, folder, t):
    label, seed = rng.choices(c.yml(), weights=[1 / len(b) ** 0.5 for _, b in c.yml()])[0]
    t.note(f"seed {label}")
    family = "rec-ctc" if "rec" in label else "det-db" if "det" in label else rng.choice(list(FAMILY_SPECS))
    r = rng.random()
    if r < 0.6:
        t.note("YAML edits:")
        data = _yaml_dump(mutate_tree(rng, c.parsed(label, lambda: _yaml_load(seed)), t.note, YML_VOCAB))
    elif r < 0.85:
        data = mutate_bytes(rng, seed, t.note)
    elif r < 0.93:
        data = _yaml_dump(random_value(rng, YML_VOCAB))
        t.note("random YAML")
    else:
        data = special_text(rng, t.note, "yaml")
    if rng.random() < 0.1:
        family = rng.choice(list(FAMILY_SPECS))
    t.note(f"as a {family} model")
    return _write(folder / "inference.yml", data), family


def _model_info(family: str, config, dictionary, classes: int | None = None):
    """A det/rec/cls model's I/O specs; a rec model's class count fits its dictionary unless ``classes``."""
    from ocrconvert.families.base import ModelInfo, TensorSpec

    ins, outs = FAMILY_SPECS[family]
    outs = [TensorSpec(n, s) for n, s in outs]
    if family == "rec-ctc":
        n = classes or (len(dictionary) + 2 if isinstance(dictionary, list) and dictionary else 6625)
        outs[0] = TensorSpec(outs[0].name, (None, None, n))
    return ModelInfo([TensorSpec(n, s) for n, s in ins], outs, config, dictionary, {})


def _exercise_family(fam, t: Trial) -> None:
    """What verification, calibration and TensorRT ask of a family (each reads the model's config)."""
    import numpy as np

    from ocrconvert.families.imaging import render_line, render_page

    spec = fam.info.inputs[0]
    t.call("family.trt_profile", fam.trt_profile, spec)
    t.call("family.random_feeds", fam.random_feeds, 0)
    t.call("family.synthetic_feeds", fam.synthetic_feeds, 0)
    img = render_page(["Ab 12"], size=(96, 64), font_size=16) if fam.task == "det" else render_line("Ab 12", size=20)
    t.call("family.image_feeds", fam.image_feeds, [("img", img, None)])
    t.call("family.calibration_input", fam.calibration_input, img, (1, 3, 64, 96) if fam.task == "det" else (1, 3, 48, 192))
    out = np.zeros((1, 1, 8, 8) if fam.task == "det" else (1, 4, 6625) if fam.task == "rec" else (1, 2), np.float32)
    t.call("family.uninformative", fam.uninformative, {fam.info.outputs[0].name: out}, 1e-4)


def read_yml(arg, t, c):
    from ocrconvert.families import load_dictionary, resolve_family
    from ocrconvert.manifest import read_yaml_config

    path, family = arg
    config = t.call("read_yaml_config", read_yaml_config, path)
    if config is None:
        return
    dictionary = t.call("load_dictionary", load_dictionary, config, {}, None)
    fam = t.call("resolve_family", resolve_family, _model_info(family, config, dictionary))
    if fam is not None:
        _exercise_family(fam, t)


# ---------------------------------------------------------------------------------------- batch config
BATCH_VOCAB = ["version", "output", "report_dir", "defaults", "models", "model", "targets", "target", "timeout", "atol",
               "rtol", "precision", "seed", "verify", "options", "family", "dict", "images", "expect", "exit_code",
               "unsupported_ops", "message", "reason", "name", "onnx", "torch", "torch-native", "torch-aot", "tensorrt",
               "ppocrv4-cls", "ppocrv4-cls-onnx", "fp16", "fp32", "int8", "bf16", "opset", "device", "cpu", "cuda",
               "allow_partial", "autotune", "2024-01-01", "Loop", "det-db", "model.onnx", "out", ""]


def build_batch(rng, c, folder, t):
    label, seed = rng.choice(c.batch_configs())
    t.note(f"seed {label}")
    r = rng.random()
    if r < 0.7:
        t.note("YAML edits:")
        data = _yaml_dump(mutate_tree(rng, c.parsed(label, lambda: _yaml_load(seed)), t.note, BATCH_VOCAB))
    elif r < 0.85:
        data = mutate_bytes(rng, seed, t.note)
    elif r < 0.93:
        data = _yaml_dump(random_value(rng, BATCH_VOCAB))
        t.note("random YAML")
    else:
        data = special_text(rng, t.note, "yaml")
    _write(folder / "model.onnx", c.tiny_onnx()[0][1])   # a path model that exists
    return _write(folder / "batch.yaml", data)


def read_batch(path, t, c):
    from ocrconvert.zoo.batch import fingerprint, load_config
    from ocrconvert.zoo.batch.fingerprint import artifact_path, is_file_target

    cfg = t.call("load_config", load_config, path)
    for job in (cfg.jobs if cfg else [])[:8]:
        t.call("job.settings", job.settings)
        t.call("fingerprint", fingerprint, job, "src", {"ocrconvert": "0"})
        t.call("artifact_path", artifact_path, job)
        t.call("is_file_target", is_file_target, job)


# ---------------------------------------------------------------------------------------------- images
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def build_images(rng, c, folder, t):
    d = folder / "images"
    d.mkdir()
    pool = c.images()
    for i in range(rng.choice((1, 1, 2, 3))):
        name, suffix, data = rng.choice(pool)
        r = rng.random()
        if r < 0.5:
            data = mutate_bytes(rng, data, t.note, [b for _, _, b in pool])
            t.note(f"^ of {name}")
        elif r < 0.85:
            t.note(f"{name} as is")
        else:
            data = _garbage(rng, c, t)
        if rng.random() < 0.15:
            suffix = rng.choice(IMAGE_SUFFIXES + (".txt", ".PNG"))
            t.note(f"named {suffix}")
        _write(d / f"img{i}{suffix}", data)
    return d


def _families():
    from ocrconvert.families import resolve_family

    return [resolve_family(_model_info(f, {}, ["a", "b", "c"] if f == "rec-ctc" else None), f) for f in FAMILY_SPECS]


def read_images(d, t, c):
    from ocrconvert.families.imaging import load_images
    from ocrconvert.tensorrt.calibration import calibration_batches
    from ocrconvert.tensorrt.profiles import ShapeProfile

    images = t.call("load_images", load_images, d)
    for fam in _families():
        if images is not None:
            t.call(f"{fam.name}.image_feeds", fam.image_feeds, [(n, im, None) for n, im in images])
        opt = (1, 3, 64, 96) if fam.task == "det" else (1, 3, 48, 192)
        t.call(f"{fam.name}.calibration_batches", calibration_batches, d, fam, [ShapeProfile("x", opt, opt, opt)])
    try:
        from ocrconvert.vlm import hunyuan
    except ImportError:
        return
    for p in sorted(d.iterdir())[:1]:
        t.call("vlm.preprocess", hunyuan.preprocess, p)


# ------------------------------------------------------------------------------------------ dictionary
def build_dict(rng, c, folder, t):
    label, seed = rng.choice(c.dict())
    t.note(f"seed {label}")
    r = rng.random()
    if r < 0.5:
        data = mutate_bytes(rng, seed, t.note)
    elif r < 0.75:
        lines = seed.split(b"\n")
        for _ in range(rng.choice((1, 2, 4))):
            op = rng.randrange(6)
            at = rng.randrange(len(lines) + 1)
            if op == 0:
                lines.insert(at, b"")
                t.note(f"empty line at {at}")
            elif op == 1:
                lines = [ln + b"\r" for ln in lines]
                t.note("CRLF endings")
            elif op == 2:
                lines.insert(at, rng.choice((b"\x00", b"\xef\xbb\xbf", b"\xff\xfe", b"\xed\xa0\x80", b"x" * 100000, b" ")))
                t.note(f"odd line at {at}")
            elif op == 3:
                lines = lines[: rng.randrange(len(lines) + 1)]
                t.note(f"keep {len(lines)} lines")
            elif op == 4:
                lines.insert(0, b"\xef\xbb\xbf" + (lines.pop(0) if lines else b""))
                t.note("UTF-8 BOM")
            else:
                lines += lines[: rng.randrange(len(lines) + 1)]
                t.note("lines repeated")
        data = b"\n".join(lines)
    elif r < 0.9:
        data = _garbage(rng, c, t)
    else:
        data = special_text(rng, t.note)
    path = folder / "dict.txt"
    if rng.random() < 0.03:
        path.mkdir()
        t.note("dict.txt is a folder")
    else:
        _write(path, data)
    return path, rng.choice(("+1", "+2", "random")), rng.randrange(1, 50)


def read_dict(arg, t, c):
    import numpy as np

    from ocrconvert.families import load_dictionary, resolve_family
    from ocrconvert.families.rec import ctc_greedy_decode, ctc_labels, read_dictionary_file

    path, fit, classes = arg
    chars = t.call("read_dictionary_file", read_dictionary_file, path)
    t.call("load_dictionary(file)", load_dictionary, {}, {}, path)
    t.call("load_dictionary(config)", load_dictionary, {"PostProcess": {"character_dict": str(path)}}, {}, None)
    text = path.read_bytes().decode("utf-8", "replace") if path.is_file() else ""
    t.call("load_dictionary(metadata)", load_dictionary, {}, {"character": text}, None)
    if not chars:
        return
    n = len(chars) + (1 if fit == "+1" else 2 if fit == "+2" else 0) or classes
    labels = t.call("ctc_labels", ctc_labels, chars, n)
    probs = np.zeros((1, 12, n), np.float32)
    probs[0, np.arange(12), np.arange(12) % n] = 1.0
    t.call("ctc_greedy_decode", ctc_greedy_decode, probs, labels)
    fam = t.call("rec family", resolve_family, _model_info("rec-ctc", {}, chars, n), "rec-ctc")
    if fam is not None:
        t.call("synthetic_images", fam.synthetic_images)
        out = {fam.info.outputs[0].name: probs}
        t.call("task_metric", fam.task_metric, out, out, ["Ab"])


# ------------------------------------------------------------------------------------------- safetensors
ST_VOCAB = ["w", "dtype", "shape", "data_offsets", "__metadata__", "format", "F32", "F16", "BF16", "I64", "I8", "U8",
            "BOOL", "F8_E4M3", "F64", "pt"]


def build_safetensors(rng, c, folder, t):
    art = folder / "art"
    _tiny_graph_folder(c, art)
    seed = c.safetensors()
    r = rng.random()
    if r < 0.5:
        data = mutate_bytes(rng, seed, t.note)
    elif r < 0.9:
        (n,) = struct.unpack("<Q", seed[:8])
        header = json.loads(seed[8:8 + n])
        t.note("header edits:")
        header = mutate_tree(rng, header, t.note, ST_VOCAB)
        h = json.dumps(header).encode()
        length = len(h) if rng.random() < 0.9 else rng.choice((0, len(h) + 1, 2 ** 63, 7))
        data = struct.pack("<Q", length) + h + seed[8 + n:]
    else:
        data = _garbage(rng, c, t)
    (art / "model.safetensors").write_bytes(data)
    return art


def read_safetensors(art, t, c):
    from ocrconvert.describe import describe
    from ocrconvert.torch_graph import read_graph_artifact

    t.call("read_graph_artifact", read_graph_artifact, art)
    t.call("describe", describe, art)


# ----------------------------------------------------------------------------------------------- inspect
def build_inspect(rng, c, folder, t):
    r = rng.random()
    if r < 0.4 and (c.legacy() or c.pir()):
        root = _build_paddle(rng, c, folder, t, rng.choice([f for f, s in (("legacy", c.legacy()), ("pir", c.pir())) if s]))
        if rng.random() < 0.5:
            label, seed = rng.choice(c.yml())
            t.note(f"inference.yml: edits of {label}:")
            (root / "inference.yml").unlink(missing_ok=True)
            _write(root / "inference.yml", _yaml_dump(mutate_tree(rng, c.parsed(label, lambda: _yaml_load(seed)), t.note,
                                                                  YML_VOCAB)))
        return root
    path, _ = build_onnx(rng, c, folder, t)
    return path


def read_inspect(path, t, c):
    from ocrconvert.describe import describe

    t.call("describe", describe, path)


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("detect", build_detect, read_detect),
    Target("onnx", build_onnx, read_onnx, needs=("onnx",)),
    Target("paddle-legacy", build_legacy, read_paddle, needs=("paddle",)),
    Target("paddle-pir", build_pir, read_paddle, needs=("paddle",)),
    Target("paddle-graph", build_paddle_graph, read_paddle_graph, needs=("paddle",), isolate=True),
    Target("manifest", build_manifest, read_manifest_target, needs=("onnx", "safetensors")),
    Target("reference", build_reference, read_reference),
    Target("inference-yml", build_yml, read_yml),
    Target("batch-config", build_batch, read_batch, needs=("onnx",)),
    Target("images", build_images, read_images, needs=("PIL",)),
    Target("dict", build_dict, read_dict),
    Target("safetensors", build_safetensors, read_safetensors, needs=("onnx", "safetensors")),
    Target("inspect", build_inspect, read_inspect, needs=("onnx",)),
]}


# ============================================================================================== engine
def _rng(seed: int, target: str, index: int) -> random.Random:
    return random.Random(f"{seed}/{target}/{index}")


def build_input(target: Target, seed: int, index: int, corpus: Corpus, folder: Path) -> tuple[Any, Trial]:
    trial = Trial()
    Path(folder).mkdir(parents=True, exist_ok=True)
    return target.build(_rng(seed, target.name, index), corpus, Path(folder), trial), trial


def _frames(tb) -> tuple[str, str]:
    """(innermost frame in ocrconvert, innermost frame overall) as ``file:line (function)``."""
    import ocrconvert

    package = str(Path(ocrconvert.__file__).resolve().parent) + os.sep
    frames = traceback.extract_tb(tb)
    ours = [f for f in frames if str(Path(f.filename).resolve()).startswith(package)]

    def fmt(f) -> str:
        name = f.filename
        if str(Path(name).resolve()).startswith(package):   # src/ocrconvert/..., wherever the checkout is
            name = os.path.relpath(Path(name).resolve(), Path(package).parents[1])
        elif name.startswith(str(REPO)):
            name = os.path.relpath(name, REPO)
        elif "site-packages/" in name:
            name = name.split("site-packages/", 1)[1]
        return f"{name}:{f.lineno} ({f.name})"
    return (fmt(ours[-1]) if ours else "(outside ocrconvert)"), (fmt(frames[-1]) if frames else "?")


def run_one(target: Target, seed: int, index: int, corpus: Corpus, base: Path) -> dict:
    """Build input ``index`` of ``target`` and drive its readers. Never raises (but may crash the process)."""
    folder = Path(tempfile.mkdtemp(dir=base))
    trial = Trial()
    t0 = time.process_time()
    try:
        try:
            arg = target.build(_rng(seed, target.name, index), corpus, folder, trial)
        except Exception as exc:  # noqa: BLE001 - a bug of this script, reported apart from the readers'
            return {"status": "generator-error", "type": type(exc).__name__, "message": str(exc)[:300],
                    "traceback": traceback.format_exc(limit=-6)}
        try:
            target.read(arg, trial, corpus)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the contract under test: this must not happen
            ours, raised = _frames(exc.__traceback__)
            return {"status": "uncaught", "type": type(exc).__name__, "message": str(exc)[:400].replace(str(folder), "$TMP"),
                    "where": ours, "raised_in": raised, "stage": trial.stage, "recipe": trial.recipe,
                    "outcomes": trial.outcomes, "traceback": traceback.format_exc(limit=-12),
                    "seconds": time.process_time() - t0}
        return {"status": "ok", "outcomes": trial.outcomes, "seconds": time.process_time() - t0}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class FuzzResult:
    seed: int
    counts: dict[str, int] = field(default_factory=dict)           # target -> inputs run
    times: dict[str, float] = field(default_factory=dict)          # target -> CPU seconds (build + read)
    outcomes: dict[str, Counter] = field(default_factory=dict)     # target -> "stage: outcome" -> calls
    crashes: list[dict] = field(default_factory=list)              # uncaught exceptions, process deaths, hangs
    generator_errors: list[dict] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)          # target -> why
    seconds: float = 0.0
    corpus: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def passed(self) -> bool:
        return not self.crashes and not self.generator_errors

    def add(self, target: str, index: int, res: dict) -> None:
        self.counts[target] = self.counts.get(target, 0) + 1
        self.times[target] = self.times.get(target, 0.0) + res.get("seconds", 0.0)
        self.outcomes.setdefault(target, Counter()).update(res.get("outcomes", []))
        if res["status"] in ("uncaught", "crash", "hang"):
            self.crashes.append({"target": target, "index": index, **res})
        elif res["status"] == "generator-error":
            self.generator_errors.append({"target": target, "index": index, **res})

    def groups(self) -> list[tuple[tuple, list[dict]]]:
        """Crashes grouped by (target, kind, where raised), most frequent first."""
        by: dict[tuple, list[dict]] = {}
        for c in self.crashes:
            by.setdefault((c["target"], c["type"], c.get("where", "")), []).append(c)
        return sorted(by.items(), key=lambda kv: -len(kv[1]))

    def to_dict(self) -> dict:
        return {"passed": self.passed, "seed": self.seed, "inputs": self.total, "seconds": round(self.seconds, 1),
                "interrupted": self.interrupted, "cpu_seconds": {k: round(v, 1) for k, v in self.times.items()},
                "counts": self.counts, "uncaught": len(self.crashes),
                "unique_uncaught": len(self.groups()), "skipped": self.skipped, "corpus": self.corpus,
                "missing_seeds": self.missing,
                "outcomes": {k: dict(v.most_common()) for k, v in self.outcomes.items()},
                "crashes": [{"target": k[0], "type": k[1], "where": k[2], "inputs": len(v),
                             "first": {x: v[0].get(x) for x in ("index", "message", "raised_in", "stage", "recipe",
                                                                "traceback", "saved")}}
                            for k, v in self.groups()],
                "generator_errors": self.generator_errors[:5]}


def available_targets(names) -> tuple[list[Target], dict[str, str]]:
    import importlib.util

    out, skipped = [], {}
    for name in names:
        t = TARGETS[name]
        missing = [m for m in t.needs if importlib.util.find_spec(m) is None]
        if missing:
            skipped[name] = f"{', '.join(missing)} not installed"
        else:
            out.append(t)
    return out, skipped


def _schedule(targets: list[Target], counts: dict[str, int]):
    """Inputs interleaved across targets, so every target advances together."""
    queues = {t.name: iter(range(counts[t.name])) for t in targets}
    while queues:
        for name in list(queues):
            i = next(queues[name], None)
            if i is None:
                del queues[name]
            else:
                yield name, i


def fuzz(counts: dict[str, int], seed: int, *, jobs: int = 0, corpus: Corpus | None = None, timeout: float = 120.0,
         progress: Callable[[str], None] | None = None, find: Callable[[str], Path] | None = None,
         crash_dir: Path | None = None, allow_isolated_inprocess: bool = False) -> FuzzResult:
    """Run ``counts[target]`` inputs of each target; ``jobs`` > 0 runs them in worker processes."""
    t0 = time.perf_counter()
    corpus = corpus or Corpus(find)
    targets, skipped = available_targets(counts)
    if jobs == 0 and not allow_isolated_inprocess:
        for t in [t for t in targets if t.isolate]:
            skipped[t.name] = "runs in worker processes only (--jobs >= 1)"
        targets = [t for t in targets if not t.isolate]
    result = FuzzResult(seed, skipped=skipped)
    result.corpus = corpus.real_files()
    result.missing = sorted(set(corpus.missing))
    work = _schedule(targets, counts)
    tmp_root = Path(tempfile.mkdtemp(prefix="ocx-fuzz-", dir=_tmp_base()))
    last = time.monotonic()
    try:
        if jobs == 0:
            import warnings

            warnings.simplefilter("ignore")
            by_name = {t.name: t for t in targets}
            for name, i in work:
                result.add(name, i, run_one(by_name[name], seed, i, corpus, tmp_root))
                if progress and time.monotonic() - last > 10:
                    last = time.monotonic()
                    progress(f"[{time.perf_counter() - t0:.0f} s] {result.total} inputs, {len(result.crashes)} uncaught")
        else:
            _run_workers(work, result, seed, jobs, timeout, tmp_root, progress, t0, find)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: report what ran
        result.interrupted = True
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    result.seconds = time.perf_counter() - t0
    if crash_dir is not None and result.crashes:
        save_crashes(result, corpus, crash_dir)
    return result


def _tmp_base() -> str | None:
    """tmpfs when there is one: every input is a few files written, read and removed."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 << 30 else None


# ----------------------------------------------------------------------------------- worker processes
class _Worker:
    def __init__(self, seed: int, tmp_root: Path, find_root: str | None):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "GLOG_minloglevel": "3",
               "FLAGS_call_stack_level": "0"}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--seed", str(seed), "--tmp", str(tmp_root)]
        if find_root:
            cmd += ["--models", find_root]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env, start_new_session=True, text=True, bufsize=1)
        self.task: tuple[str, int] | None = None
        self.started = 0.0

    def send(self, name: str, index: int) -> None:
        self.task, self.started = (name, index), time.monotonic()
        self.proc.stdin.write(f"{name} {index}\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()


def _run_workers(work, result: FuzzResult, seed, jobs, timeout, tmp_root, progress, t0, find) -> None:
    find_root = getattr(find, "models_root", None)
    workers = [_Worker(seed, tmp_root, find_root) for _ in range(jobs)]
    pending = iter(work)
    last = time.monotonic()
    try:
        for w in workers:
            nxt = next(pending, None)
            if nxt:
                w.send(*nxt)
        while any(w.task for w in workers):
            busy = {w.proc.stdout: w for w in workers if w.task}
            ready, _, _ = select.select(list(busy), [], [], 1.0)
            now = time.monotonic()
            for f in ready:
                w = busy[f]
                line = f.readline()
                name, index = w.task
                if not line:  # the worker died with this input
                    code = w.proc.wait()
                    why = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
                    result.add(name, index, {"status": "crash", "type": "process death", "message": why,
                                             "where": f"(worker {why})", "stage": "?", "recipe": []})
                    workers[workers.index(w)] = w = _Worker(seed, tmp_root, find_root)
                else:
                    result.add(name, index, json.loads(line))
                w.task = None
                nxt = next(pending, None)
                if nxt:
                    w.send(*nxt)
            for i, w in enumerate(workers):
                if w.task and now - w.started > timeout:
                    name, index = w.task
                    w.kill()
                    result.add(name, index, {"status": "hang", "type": "timeout", "where": f"(no answer in {timeout:g} s)",
                                             "message": f"no answer in {timeout:g} s", "stage": "?", "recipe": []})
                    workers[i] = w = _Worker(seed, tmp_root, find_root)
                    nxt = next(pending, None)
                    if nxt:
                        w.send(*nxt)
            if progress and now - last > 15:
                last = now
                progress(f"[{time.perf_counter() - t0:.0f} s] {result.total} inputs, {len(result.crashes)} uncaught")
    finally:
        for w in workers:
            try:
                w.proc.stdin.close()
            except OSError:
                pass
            w.kill()


def worker_main(seed: int, tmp: Path, models: str | None) -> int:
    """Answer ``TARGET INDEX`` lines with one JSON line each; readers' own prints go to stderr."""
    import warnings

    warnings.simplefilter("ignore")
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    corpus = Corpus(_folder_finder(models) if models else None)
    base = Path(tempfile.mkdtemp(dir=tmp))
    for line in sys.stdin:
        name, index = line.split()
        proto.write(json.dumps(run_one(TARGETS[name], seed, int(index), corpus, base), default=str) + "\n")
    return 0


def _folder_finder(root: str):
    def find(name: str) -> Path:
        p = Path(root) / name
        if not p.is_dir():
            raise FileNotFoundError(p)
        return p
    find.models_root = root
    return find


# ------------------------------------------------------------------------------------------- reporting
def save_crashes(result: FuzzResult, corpus: Corpus, crash_dir: Path) -> None:
    """The first input of each crash group, rebuilt into ``crash_dir/TARGET-INDEX/`` (with its recipe)."""
    for (target, _, _), items in result.groups():
        first = items[0]
        dest = crash_dir / f"{target}-{first['index']}"
        try:
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            _, trial = build_input(TARGETS[target], result.seed, first["index"], corpus, dest)
            first["recipe"] = trial.recipe
            (dest / "RECIPE.txt").write_text(_printable("\n".join(first["recipe"]) + "\n"))
            first["saved"] = str(dest)
        except Exception as exc:  # noqa: BLE001 - a report without this copy beats no report
            first["saved"] = f"(not saved: {exc!r})"


def _printable(text: str) -> str:
    """Recipes may hold lone surrogates (weird strings are the point): escape them for files and terminals."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def replay_command(seed: int, target: str, index: int) -> str:
    return f"python scripts/fuzz_readers.py --seed {seed} --replay {target}:{index}"


def render(result: FuzzResult) -> str:
    lines = [f"seed {result.seed} (replay this run: --seed {result.seed}, or {SEED_ENV}={result.seed})",
             f"corpus: {len(result.corpus)} real seed files from the zoo cache"
             + (f"; missing zoo models: {', '.join(result.missing)}" if result.missing else ""),
             "", f"{'target':<15}{'inputs':>8}{'uncaught':>10}{'cpu each':>10}   reader calls that succeeded / clean errors (top)"]
    for name, n in result.counts.items():
        unc = sum(c["target"] == name for c in result.crashes)
        oc = result.outcomes.get(name, Counter())
        ok = sum(v for k, v in oc.items() if k.endswith(": ok"))
        errs = Counter()
        for k, v in oc.items():
            if not k.endswith(": ok"):
                errs[k.split(": ", 1)[1]] += v
        top = ", ".join(f"{k} {v}" for k, v in errs.most_common(3))
        ms = 1000 * result.times.get(name, 0.0) / max(n, 1)
        lines.append(f"{name:<15}{n:>8}{unc:>10}{ms:>7.0f} ms   {ok} reader calls ok; {top}")
    for name, why in result.skipped.items():
        lines.append(f"{name:<15}{'-':>8}{'-':>10}   skipped: {why}")
    lines += ["", "how deep the inputs went (reader call: outcome x calls):"]
    for name, oc in result.outcomes.items():
        stages: dict[str, list[str]] = {}
        for k, v in oc.items():
            stage, outcome = k.split(": ", 1)
            stages.setdefault(stage, []).append(f"{outcome} {v}")
        lines.append(f"  {name}: " + "; ".join(f"{st}: {', '.join(sorted(v))}" for st, v in stages.items()))
    groups = result.groups()
    for k, ((target, kind, where), items) in enumerate(groups, 1):
        c = items[0]
        lines += ["", f"UNCAUGHT {k}/{len(groups)}: {kind} at {where} - {len(items)} input(s) of {target}, stage {c.get('stage')}",
                  f"  message: {c.get('message', '')[:300]}", f"  raised in: {c.get('raised_in', '?')}",
                  f"  first input: {target} #{c['index']}: " + "; ".join(c.get("recipe") or [])[:600],
                  f"  reproduce: {replay_command(result.seed, target, c['index'])}"]
        if c.get("saved"):
            lines.append(f"  saved: {c['saved']}")
    for g in result.generator_errors[:3]:
        lines += ["", f"GENERATOR ERROR (a bug of this script) {g['target']} #{g['index']}: {g['type']}: {g['message']}"]
    verdict = "PASSED" if result.passed else "FAILED"
    tail = (f"{len(result.crashes)} uncaught ({len(groups)} unique)" if result.crashes else "0 uncaught")
    if result.interrupted:
        lines += ["", "INTERRUPTED: the counts above are what ran"]
    lines += ["", f"{verdict} | fuzz_readers | {result.total} inputs, {len(result.counts)} targets, {result.seconds:.0f} s "
              f"| {tail} | seed {result.seed}"]
    return _printable("\n".join(lines))


def replay(target: str, index: int, seed: int, save: Path | None, find) -> int:
    """One input, in this process, with the full traceback."""
    import warnings

    from ocrconvert.errors import OcrConvertError

    warnings.simplefilter("ignore")
    corpus = Corpus(find)
    t = TARGETS[target]
    folder = Path(save) if save else Path(tempfile.mkdtemp(prefix="ocx-replay-"))
    folder.mkdir(parents=True, exist_ok=True)
    arg, trial = build_input(t, seed, index, corpus, folder)
    print(f"{target} #{index} (seed {seed}): " + "; ".join(trial.recipe), file=sys.stderr)
    print(f"input written under {folder}", file=sys.stderr)
    try:
        t.read(arg, trial, corpus)
    except OcrConvertError:  # pragma: no cover - Trial.call catches these
        raise
    except BaseException:
        print(f"stage {trial.stage}; calls before it: {trial.outcomes}", file=sys.stderr)
        raise
    print(f"no uncaught exception; calls: {trial.outcomes}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1000, help="inputs per target (default 1000)")
    ap.add_argument("--target", choices=sorted(TARGETS), action="append", help="default: every target")
    ap.add_argument("--seed", type=int, default=None, help=f"default: ${SEED_ENV} or a fresh random seed")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (0: this process)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds one input may take in a worker")
    ap.add_argument("--crash-dir", type=Path, default=Path("fuzz-crashes"), help="where failing inputs are saved")
    ap.add_argument("--models", help="a folder of zoo model folders (default: the zoo cache, pulled when missing)")
    ap.add_argument("--replay", metavar="TARGET:INDEX", help="run one input here, with its traceback")
    ap.add_argument("--save", type=Path, help="with --replay: write the input into this folder")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    ap.add_argument("--report", type=Path, help="also write the report to this file (and its JSON beside it)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else fresh_seed()
    find = _folder_finder(args.models) if args.models else None
    if args.worker:
        return worker_main(seed, args.tmp, args.models)
    if args.replay:
        target, index = args.replay.rsplit(":", 1)
        return replay(target, int(index), seed, args.save, find)
    print(f"fuzz_readers: seed {seed}", file=sys.stderr, flush=True)

    def _interrupt(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _interrupt)
    counts = {name: args.count for name in (args.target or TARGETS)}
    result = fuzz(counts, seed, jobs=args.jobs, timeout=args.timeout, find=find, crash_dir=args.crash_dir,
                  progress=lambda s: print(s, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print(render(result))
    if args.report:
        args.report.write_text(render(result) + "\n")
        (args.report.with_suffix(".json")).write_text(json.dumps(result.to_dict(), indent=2, default=str))
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
