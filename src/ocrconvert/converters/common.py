"""Glue shared by converters: model metadata carried along every hop."""
from __future__ import annotations

import json
import logging

from ..families import resolve_family
from ..families.base import ModelInfo
from ..formats import Artifact, Format
from ..onnx_io import load_onnx

log = logging.getLogger(__name__)


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


# ---- the dictionary and pre/post-processing travel with every artifact --------------------------------
NO_DICTIONARY_NOTE = ("recognition model without a dictionary: its texts are class ids (no dictionary: comparing "
                      "class ids); pass --dict FILE (one entry per line) so the dictionary travels with the artifact")


def carry_processing(source: Artifact, art: Artifact, manifest: dict, *, dictionary=None,
                     native_extra: dict | None = None) -> dict:
    """Make the final artifact carry its dictionary (``dictionary``, the user's ``--dict``, over the source's own)
    and its pre/post-processing config (the source's ``inference.yml``, or for a legacy Paddle program without
    one, one written from the program and the family's defaults), in the form each format keeps them:

    * ONNX: ``metadata_props`` ``character`` (newline-joined, what RapidOCR reads) and ``ocrconvert.config``;
    * torch graph folder: the same keys in ``graph.onnx``, plus ``dict.txt`` / ``inference.yml`` beside it;
    * torch native folder: ``dict.txt`` / ``inference.yml`` and the manifest's ``model_metadata``;
    * AOT package, TensorRT engine: the manifest's ``model_metadata`` (neither file has room for them).

    A recognition artifact left without a dictionary is warned about and noted in the manifest. Returns what was
    carried (recorded as the manifest's ``processing``)."""
    from ..families.rec import ctc_labels, read_dictionary_file
    from ..runners import runner_for

    if art.format is Format.VLM_TOWER or source.format in (Format.VLM_TOWER, Format.REFERENCE):
        return {}
    info = runner_for(source).info()
    chars = read_dictionary_file(dictionary) if dictionary else info.dictionary
    if chars:
        info.dictionary = chars
    family = resolve_family(info)
    facts: dict = {"family": family.name}
    if family.name == "rec-ctc" and chars and info.outputs:
        classes = info.outputs[0].shape[-1]
        if isinstance(classes, int) and classes > 0:
            ctc_labels(chars, classes)  # a dictionary that does not fit the head is refused before it is written
    config, generated = dict(info.config or {}), False
    if not config and source.format is Format.PADDLE_LEGACY:
        config, generated = family.default_config(), True
    updates: dict[str, str] = {}
    if chars:
        updates["character"] = "\n".join(chars)
        facts.update(dictionary="--dict" if dictionary else "source", dictionary_size=len(chars))
    if config:
        post = {k: v for k, v in (config.get("PostProcess") or {}).items() if k != "character_dict"}
        cfg = {**config, **({"PostProcess": post} if post else {})}
        if generated:
            updates["ocrconvert.config"] = json.dumps(cfg, ensure_ascii=False, default=str)
            facts["config"] = f"written from the program and the {family.name} family defaults (no inference.yml)"
        else:
            facts["config"] = "source"
    _stamp(art, updates, config if generated else None, chars if dictionary or generated else None, manifest,
           native_extra)
    if family.name == "rec-ctc" and not chars:
        log.warning("%s: %s", art.path.name, NO_DICTIONARY_NOTE)
        manifest.setdefault("notes", []).append(NO_DICTIONARY_NOTE)
        facts["dictionary"] = None
    manifest["processing"] = facts
    return facts


def _stamp(art: Artifact, updates: dict, config: dict | None, chars: list[str] | None, manifest: dict,
           native_extra: dict | None) -> None:
    """Write ``updates`` (metadata keys) where ``art``'s format keeps them; side files into folders."""
    if art.format in (Format.ONNX, Format.TORCH_GRAPH):
        path = art.files["model" if art.format is Format.ONNX else "graph"]
        model = load_onnx(path, load_weights=False)  # external data stays where it is, referenced as before
        meta = {p.key: p.value for p in model.metadata_props}
        if any(meta.get(k) != v for k, v in updates.items()):
            meta.update(updates)
            del model.metadata_props[:]
            for k, v in meta.items():
                entry = model.metadata_props.add()
                entry.key, entry.value = k, v
            import onnx

            onnx.save(model, str(path))
    elif art.format in (Format.TORCH_AOT, Format.TENSORRT):
        manifest.setdefault("model_metadata", {}).update(updates)
    elif art.format is Format.TORCH_NATIVE and native_extra is not None:
        native_extra.setdefault("model_metadata", {}).update(updates)
        (art.path / "ocrconvert.json").write_text(json.dumps(native_extra))  # the provisional one verification reads
    if art.format in (Format.TORCH_GRAPH, Format.TORCH_NATIVE) and art.path.is_dir():
        import yaml

        if chars:
            (art.path / "dict.txt").write_text("\n".join(chars) + "\n", encoding="utf-8")
        if config and not (art.path / "inference.yml").exists():
            body = dict(config)
            if chars and "PostProcess" in body and body["PostProcess"].get("name") == "CTCLabelDecode":
                body["PostProcess"] = {**body["PostProcess"], "character_dict": list(chars)}
            (art.path / "inference.yml").write_text(
                "# written by ocrconvert: the source program had no inference.yml\n"
                + yaml.safe_dump(body, sort_keys=False, allow_unicode=True), encoding="utf-8")
