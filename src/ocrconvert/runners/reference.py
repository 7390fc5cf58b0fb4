"""A recorded reference: the ORIGINAL source's inputs and outputs, saved once, compared anywhere.

Lets a machine without the source framework (a GPU box without Paddle) verify an artifact against
the original model's own outputs. Stored as ``.npz`` (numpy arrays, ``allow_pickle=False``) plus a
JSON header; never unpickled.
"""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import CorruptModelError, UsageError
from ..families.base import ModelInfo, TensorSpec
from .base import Runner, feed_digest as _digest

HEADER_KEY = "__ocrconvert_reference__"


def save_reference(path: Path, info: ModelInfo, family: str, source: dict, cases: list[dict]) -> None:
    """``cases``: dicts with kind, label, feed, outputs, labels (ground truth or None)."""
    arrays: dict[str, np.ndarray] = {}
    header = {"schema_version": 1, "family": family, "source": source,
              "inputs": [s.to_dict() for s in info.inputs], "outputs": [s.to_dict() for s in info.outputs],
              "config": info.config, "dictionary": info.dictionary, "metadata": info.metadata, "cases": []}
    for i, case in enumerate(cases):
        for k, v in case["feed"].items():
            arrays[f"c{i}/in/{k}"] = v
        for k, v in case["outputs"].items():
            arrays[f"c{i}/out/{k}"] = v
        header["cases"].append({"kind": case["kind"], "label": case["label"], "labels": case.get("labels"),
                                "inputs": list(case["feed"]), "outputs": list(case["outputs"])})
    arrays[HEADER_KEY] = np.frombuffer(json.dumps(header, default=str).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def _spec(d: dict) -> TensorSpec:
    return TensorSpec.from_dict(d)  # the header's layout was checked on reading


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz, never unpickled; a damaged zip, member or array header is a CorruptModelError
    (numpy and zipfile raise a dozen kinds of exception for those)."""
    import struct
    import tokenize
    import zipfile
    import zlib

    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError, SyntaxError, NotImplementedError, zipfile.BadZipFile,
            zlib.error, struct.error, tokenize.TokenError) as exc:
        raise CorruptModelError(f"{path} is not an ocrconvert reference: {type(exc).__name__}: {exc}") from None


def _header_problem(header, arrays: dict) -> str | None:
    """None when the header has the layout save_reference writes and names only arrays the file holds."""
    if not isinstance(header, dict):
        return f"the header should be an object, not {type(header).__name__}"
    if not isinstance(header.get("family"), (str, type(None))):
        return "family should be a name"
    for key in ("source", "config", "metadata"):
        if not isinstance(header.get(key), (dict, type(None))):
            return f"{key} should be an object"
    if not all(isinstance(v, str) for v in (header.get("source") or {}).values()):
        return "source should map names to strings"
    if not all(isinstance(v, str) for v in (header.get("metadata") or {}).values()):
        return "metadata should map names to strings"
    dictionary = header.get("dictionary")
    if dictionary is not None and not (isinstance(dictionary, list) and all(isinstance(c, str) for c in dictionary)):
        return "dictionary should be a list of strings"
    for key in ("inputs", "outputs"):
        if not isinstance(header.get(key), list):
            return f"{key} should be a list"
        for d in header[key]:
            try:
                TensorSpec.from_dict(d)
            except ValueError as exc:
                return f"{key}: {exc}"
    cases = header.get("cases")
    if not isinstance(cases, list):
        return "cases should be a list"
    for i, c in enumerate(cases):
        if not isinstance(c, dict) or not isinstance(c.get("kind"), str) or not isinstance(c.get("label"), str):
            return f"case {i} should be an object with a kind and a label"
        labels = c.get("labels")
        if labels is not None and not (isinstance(labels, list)
                                       and all(isinstance(t, (str, type(None))) for t in labels)):
            return f"case {i}: labels should be a list of strings"
        for part in ("inputs", "outputs"):
            names = c.get(part)
            if not isinstance(names, list) or not all(isinstance(k, str) for k in names):
                return f"case {i}: {part} should be a list of names"
            short = "in" if part == "inputs" else "out"
            missing = [k for k in names if f"c{i}/{short}/{k}" not in arrays]
            if missing:
                return f"case {i}: no recorded array for {part[:-1]} {missing[0]!r}"
    return None


class ReferenceRunner(Runner):
    backend = "reference"

    @cached_property
    def _data(self):
        arrays = _read_npz(self.artifact.path)
        try:
            header = json.loads(arrays.pop(HEADER_KEY).tobytes().decode())
        except (KeyError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise CorruptModelError(f"{self.artifact.path} is not an ocrconvert reference: no readable header "
                                    f"({type(exc).__name__})") from None
        problem = _header_problem(header, arrays)
        if problem:
            raise CorruptModelError(f"{self.artifact.path} is not an ocrconvert reference: {problem}")
        if header.get("config"):
            from ..manifest import paddlex_config

            header["config"] = paddlex_config(header["config"], f"{self.artifact.path} (recorded config)")
        return header, arrays

    @property
    def header(self) -> dict:
        return self._data[0]

    @cached_property
    def inputs(self):
        return [_spec(d) for d in self.header["inputs"]]

    @cached_property
    def outputs(self):
        return [_spec(d) for d in self.header["outputs"]]

    @property
    def backend_label(self) -> str:
        return f"reference({(self.header.get('source') or {}).get('backend', '?')})"

    def info(self) -> ModelInfo:
        h = self.header
        return ModelInfo(self.inputs, self.outputs, h.get("config") or {}, h.get("dictionary"), h.get("metadata") or {})

    @cached_property
    def recorded_cases(self) -> list[tuple[str, str, dict, list | None]]:
        header, arrays = self._data
        out = []
        for i, c in enumerate(header["cases"]):
            feed = {k: arrays[f"c{i}/in/{k}"] for k in c["inputs"]}
            out.append((c["kind"], c["label"], feed, c.get("labels")))
        return out

    @cached_property
    def _index(self) -> dict[str, dict]:
        header, arrays = self._data
        idx = {}
        for i, c in enumerate(header["cases"]):
            feed = {k: arrays[f"c{i}/in/{k}"] for k in c["inputs"]}
            idx[_digest(feed)] = {k: arrays[f"c{i}/out/{k}"] for k in c["outputs"]}
        return idx

    def _load(self):
        return self._index

    def infer(self, feed):
        hit = self._index.get(_digest({k: np.asarray(v) for k, v in feed.items()}))
        if hit is None:
            raise UsageError("this input was not recorded in the reference",
                             hint="A reference answers only the inputs it recorded; verify with it as the SOURCE.")
        return dict(hit)
