"""Glue shared by converters: model metadata carried along every hop."""
from __future__ import annotations

import json

from ..families import resolve_family
from ..families.base import ModelInfo


def carry_metadata(model, info: ModelInfo, source_desc: str) -> None:
    """Store dictionary, pre/post-processing config and family in ONNX ``metadata_props``."""
    family = resolve_family(info)
    meta = {p.key: p.value for p in model.metadata_props}
    if info.dictionary and "character" not in meta:
        meta["character"] = "\n".join(info.dictionary)
    if info.config and "ocrconvert.config" not in meta:
        cfg = dict(info.config)
        post = dict(cfg.get("PostProcess", {}) or {})
        post.pop("character_dict", None)  # already under "character"
        if post:
            cfg["PostProcess"] = post
        meta["ocrconvert.config"] = json.dumps(cfg, ensure_ascii=False, default=str)
    meta.setdefault("ocrconvert.family", family.name)
    meta.setdefault("ocrconvert.source", source_desc)
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v


def example_inputs(runner):
    """One concrete input per model input from the family's random cases, batch > 1 preferred:
    exporters specialise a dimension traced at size 1 into a constant."""
    from ..families import resolve_family

    family = resolve_family(runner.info())
    feeds = [f for _, f in family.random_feeds(seed=0)]
    feed = next((f for f in feeds if all(v.shape[0] > 1 for v in f.values() if v.ndim)), feeds[0])
    return family, feed
