"""The runner contract (after Polygraphy): lazy load, then ``infer(feed) -> dict[str, ndarray]``."""
from __future__ import annotations

import hashlib
import logging
import os
from functools import cached_property

import numpy as np

from ..errors import CorruptModelError, UsageError
from ..families.base import ModelInfo, TensorSpec
from ..formats import Artifact

log = logging.getLogger(__name__)


def default_threads() -> int:
    """Intra-op threads of a runtime: ``OMP_NUM_THREADS`` when set (the batch shares the cores out among its
    workers this way; more threads than cores thrash), else up to 4."""
    try:
        n = int(os.environ.get("OMP_NUM_THREADS") or 0)
    except ValueError:
        n = 0
    return n if n > 0 else min(4, os.cpu_count() or 1)


class Runner:
    backend = "base"

    def __init__(self, artifact: Artifact):
        self.artifact = artifact

    # -- subclasses implement -------------------------------------------------------------
    def _load(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _infer(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    @cached_property
    def inputs(self) -> list[TensorSpec]:  # pragma: no cover
        raise NotImplementedError

    @cached_property
    def outputs(self) -> list[TensorSpec]:  # pragma: no cover
        raise NotImplementedError

    def metadata(self) -> dict:
        return {}

    # -- shared ---------------------------------------------------------------------------
    @cached_property
    def session(self):
        return self._load()

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def _checked_feed(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in feed]
        if missing and len(feed) == len(self.inputs) == 1:
            feed = {self.input_names[0]: next(iter(feed.values()))}  # single-input models: any name
        elif missing:
            raise UsageError(f"missing input(s) {missing}; the model takes {self.input_names}")
        return {k: np.ascontiguousarray(v) for k, v in feed.items()}

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self._infer(self._checked_feed(feed))
        return {name: np.asarray(o) for name, o in zip(self.output_names, outs)}

    def infer_best(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
        """``(ids, probs, classes)`` of the first output: the best class at every position (argmax over the last
        axis, the first maximum on ties), its value, and the class count — all CTC decoding reads. Torch runners
        reduce on their device, so two small arrays cross to the host instead of ``[N, T, classes]`` floats."""
        return self._best(self._checked_feed(feed))

    def _best(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
        scores = np.asarray(self._infer(feed)[0])
        return best_class(scores.astype(np.float32, copy=False) if scores.dtype.kind == "f" else scores)

    @cached_property
    def _described(self) -> tuple[dict, dict, list[str] | None]:
        """(config, metadata, dictionary), read from disk once per runner."""
        from ..families import load_dictionary
        from ..manifest import read_yaml_config

        meta = self.metadata()
        config = read_yaml_config(self.artifact.files.get("config"))
        if not config and meta.get("ocrconvert.config"):
            config = _config_from_metadata(self.artifact, meta["ocrconvert.config"])
        return config, meta, load_dictionary(config, meta, self.artifact.files.get("dict"))

    def info(self) -> ModelInfo:
        """A fresh record each call (callers may override its dictionary), from one read."""
        config, meta, dictionary = self._described
        return ModelInfo(self.inputs, self.outputs, dict(config), list(dictionary) if dictionary else None, dict(meta))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.artifact.path})"


def _config_from_metadata(artifact: Artifact, text: str) -> dict:
    """The model's inference.yml, carried as JSON in its 'ocrconvert.config' metadata."""
    import json

    try:
        config = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CorruptModelError(f"{artifact.path}: its 'ocrconvert.config' metadata is not valid JSON: "
                                f"{type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(config, dict):
        raise CorruptModelError(f"{artifact.path}: its 'ocrconvert.config' metadata should hold an object, "
                                f"not {type(config).__name__}")
    from ..manifest import paddlex_config

    return paddlex_config(config, f"{artifact.path} ('ocrconvert.config' metadata)")


def best_class(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """``(argmax, value at the argmax, class count)`` over the last axis: one pass for the ids, a gather for the
    values (``max`` would be a second full pass over ``[N, T, classes]``)."""
    ids = scores.argmax(axis=-1)
    return ids, np.take_along_axis(scores, ids[..., None], axis=-1)[..., 0], int(scores.shape[-1])


def best_class_torch(scores) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`best_class` of a torch tensor, reduced where it lives (``argmax`` takes the first maximum)."""
    ids = scores.argmax(dim=-1)
    top = scores.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return ids.cpu().numpy(), top.float().cpu().numpy(), int(scores.shape[-1])


def feed_digest(feed: dict[str, np.ndarray]) -> str:
    """Names, shapes, dtypes and bytes of a feed: the key of a recorded or memoized answer."""
    h = hashlib.sha256()
    for k in sorted(feed):
        a = np.ascontiguousarray(feed[k])
        h.update(k.encode() + str(a.shape).encode() + str(a.dtype).encode() + a.tobytes())
    return h.hexdigest()


class MemoizedRunner:
    """Wraps a runner so the same feed is computed once (the source of several verifications)."""

    def __init__(self, runner: Runner):
        self.runner = runner
        self._memo: dict[str, dict[str, np.ndarray]] = {}

    def __getattr__(self, name):
        return getattr(self.runner, name)

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        key = feed_digest({k: np.asarray(v) for k, v in feed.items()})
        if key not in self._memo:
            self._memo[key] = self.runner.infer(feed)
        return dict(self._memo[key])
