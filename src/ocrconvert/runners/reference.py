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
    return TensorSpec(d["name"], tuple(x if isinstance(x, int) else None for x in d["shape"]), d.get("dtype", "float32"))


class ReferenceRunner(Runner):
    backend = "reference"

    @cached_property
    def _data(self):
        try:
            with np.load(self.artifact.path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            header = json.loads(arrays.pop(HEADER_KEY).tobytes().decode())
        except (OSError, ValueError, KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptModelError(f"{self.artifact.path} is not an ocrconvert reference: {exc}") from None
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
        return f"reference({self.header['source'].get('backend', '?')})"

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
