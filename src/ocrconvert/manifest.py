"""The JSON sidecar beside every artifact: provenance, every hop, options, versions, parity.

``schema_version`` is bumped on any incompatible change. Sidecar location: ``FOLDER/ocrconvert.json``
for folder artifacts, ``FILE.ocrconvert.json`` beside file artifacts.
"""
from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from pathlib import Path

from .errors import CorruptModelError, UsageError
from .formats import MANIFEST_FILE
from .specs import TensorSpec

SCHEMA_VERSION = 1
_ENV_PACKAGES = ("ocrconvert", "numpy", "onnx", "onnxruntime", "onnxslim", "torch", "onnx2torch",
                 "paddlepaddle", "paddle2onnx", "transformers", "safetensors", "tensorrt")


def manifest_path(artifact_path: Path) -> Path:
    artifact_path = Path(artifact_path)
    if artifact_path.is_dir() or artifact_path.suffix == "":
        return artifact_path / MANIFEST_FILE
    return artifact_path.with_name(artifact_path.name + ".ocrconvert.json")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_artifact(path: Path) -> str:
    """Digest of a file, or of a folder's files (names + contents, manifest excluded)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file() and q.name != MANIFEST_FILE):
        h.update(str(p.relative_to(path)).encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def environment() -> dict:
    from ._compat import version_of

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {p: v for p in _ENV_PACKAGES if (v := version_of(p))},
    }


def read_yaml_config(path: Path | None) -> dict:
    """A model's ``inference.yml`` (PaddleX layout), parsed with ``yaml.safe_load`` only."""
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise CorruptModelError(f"{path} is not valid YAML: {type(exc).__name__}: {str(exc)[:300]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CorruptModelError(f"{path} should hold a mapping, not {type(data).__name__}")
    return paddlex_config(data, path)


_NUMBER, _NONE = (int, float), type(None)
_NUMBERS3 = ((list,), 3, "a list of 3 numbers")
# what ocrconvert reads of a PaddleX config: op of PreProcess.transform_ops -> {argument: (types, length, in words)}
_OP_ARGS = {
    "NormalizeImage": {"mean": _NUMBERS3, "std": _NUMBERS3, "scale": ((*_NUMBER, str), None, "a number")},
    "DetResizeForTest": {"resize_long": (_NUMBER, None, "a number"), "limit_side_len": (_NUMBER, None, "a number"),
                         "limit_type": ((str,), None, "a word")},
    "RecResizeImg": {"image_shape": _NUMBERS3},
    "ResizeImage": {"size": ((int, list), None, "a number or a list of numbers")},
}
_POST_ARGS = {"name": ((str, _NONE), "a name"), "thresh": (_NUMBER, "a number"), "box_thresh": (_NUMBER, "a number"),
              "unclip_ratio": (_NUMBER, "a number"), "max_candidates": ((int,), "a whole number"),
              "character_dict": ((str, list, _NONE), "a file name or a list of characters"),
              "score_mode": ((str,), "a word"), "Topk": ((dict, _NONE), "a mapping")}


def paddlex_config(config: dict, where) -> dict:
    """A PaddleX config (``inference.yml``, or one carried in metadata or a reference) with the layout every
    reader of it expects: PreProcess/PostProcess/Hpi mappings, each transform op a mapping of arguments, the
    arguments ocrconvert reads of the right types. Empty (null) sections are dropped; anything else that does
    not fit is a CorruptModelError naming the key."""
    def check(key: str, value, types, want: str, length: int | None = None, numbers: bool = False) -> None:
        fits = isinstance(value, types) and not isinstance(value, bool)
        if fits and numbers and isinstance(value, list):
            fits = (length is None or len(value) == length) and all(
                isinstance(v, _NUMBER) and not isinstance(v, bool) for v in value)
        if not fits:
            kind = "null" if value is None else type(value).__name__
            raise CorruptModelError(f"{where}: {key} should be {want}, not {kind} {str(value)[:60]}",
                                    hint="The model's inference.yml is damaged; fetch the model again.")

    out = {k: v for k, v in config.items() if not (k in ("PreProcess", "PostProcess", "Hpi") and v is None)}
    for section in ("PreProcess", "PostProcess", "Hpi"):
        if section in out:
            check(section, out[section], (dict,), "a mapping")
    ops = (out.get("PreProcess") or {}).get("transform_ops") or []
    check("PreProcess.transform_ops", ops, (list,), "a list")
    for op in ops:
        check("PreProcess.transform_ops[]", op, (dict,), "a mapping of an op name to its arguments")
        for name, args in op.items():
            check(f"PreProcess.transform_ops {name}", args, (dict, _NONE), "a mapping of arguments")
            for arg, (types, length, want) in _OP_ARGS.get(name, {}).items():
                if arg in (args or {}):
                    check(f"{name}.{arg}", args[arg], types, want, length, numbers=True)
    post = out.get("PostProcess") or {}
    for arg, (types, want) in _POST_ARGS.items():
        if arg in post:
            check(f"PostProcess.{arg}", post[arg], types, want)
    backends = (out.get("Hpi") or {}).get("backend_configs") or {}
    check("Hpi.backend_configs", backends, (dict,), "a mapping")
    for name, backend in backends.items():
        check(f"Hpi.backend_configs.{name}", backend, (dict, _NONE), "a mapping")
    return out


def source_record(source) -> dict:
    """Path, format and digest of a source; a VLM tower built from seeded random weights has no file."""
    path = Path(source.path)
    # a VLM tower with seeded random weights has no file: a same-named folder in the cwd is not it
    exists = path.exists() and not (source.format.value == "vlm-tower" and not source.meta.get("checkpoint"))
    return {"path": str(path.resolve()) if exists else str(path), "format": source.format.value,
            "sha256": sha256_artifact(path) if exists else None,
            **({"model": source.meta["model"]} if "model" in source.meta else {})}


def new_manifest(source, *, options: dict | None = None) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": source_record(source),
        "hops": [],
        "options": options or {},
        "environment": environment(),
        "verification": None,
    }


def write_manifest(path: Path, manifest: dict) -> Path:
    mp = manifest_path(path)
    tmp = mp.with_name(mp.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str))
    tmp.replace(mp)
    return mp


def read_manifest(path: Path) -> dict | None:
    mp = manifest_path(Path(path))
    if not mp.is_file() and Path(path).is_file():  # a file inside a folder artifact (a TensorRT plan folder)
        mp = Path(path).parent / MANIFEST_FILE
    if not mp.is_file():
        return None
    try:
        data = json.loads(mp.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise UsageError(f"{mp} is not a valid manifest: {type(exc).__name__}: {str(exc)[:200]}",
                         hint=_DAMAGED) from None
    if not isinstance(data, dict):
        return None
    problem = _layout_problem(data)
    if problem:
        raise UsageError(f"{mp} is not a valid manifest: {problem}", hint=_DAMAGED)
    return data


_DAMAGED = "The sidecar manifest is damaged or was not written by ocrconvert; convert again (--force)."
_OPT_STR = (str, type(None))
_RECORD = {"path": str, "format": _OPT_STR, "sha256": _OPT_STR, "model": _OPT_STR}  # every record names a path


def _fields(value, types: dict, where: str) -> str | None:
    """None when ``value`` is a mapping whose listed keys, where present, have the listed types."""
    if not isinstance(value, dict):
        return f"{where} should be an object, not {type(value).__name__}"
    for key, want in types.items():
        if key in value and not isinstance(value[key], want):
            return f"{where}.{key} should not be {type(value[key]).__name__}"
    return None


def _layout_problem(man: dict) -> str | None:
    """The fields the readers use (load, describe, runners, batch resume, original_source), checked here once
    so that none of them meets a value of the wrong type; None when the layout is sound."""
    for key in ("source", "artifact", "input", "verified_against"):
        if man.get(key) is not None and (why := _fields(man[key], _RECORD, key)):
            return why
    for key in ("status", "precision", "created"):
        if not isinstance(man.get(key), _OPT_STR):
            return f"{key} should be a string, not {type(man[key]).__name__}"
    for key in ("verification", "engine", "aot", "tensorrt_plan", "options", "environment"):
        if man.get(key) is not None and not isinstance(man[key], dict):
            return f"{key} should be an object, not {type(man[key]).__name__}"
    if (why := _fields(man.get("verification") or {}, {"passed": (bool, type(None)), "summary": _OPT_STR},
                       "verification")):
        return why
    hops = man.get("hops", [])
    if not isinstance(hops, list):
        return f"hops should be a list, not {type(hops).__name__}"
    for i, hop in enumerate(hops):
        if (why := _fields(hop, {"converter": _OPT_STR, "options": dict, "produced": dict}, f"hops[{i}]")):
            return why
    meta = man.get("model_metadata") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        return "model_metadata should be an object of strings"
    io = man.get("io") or {}
    if (why := _fields(io, {"inputs": list, "outputs": list}, "io")):
        return why
    for key in ("inputs", "outputs"):
        for spec in io.get(key) or []:
            try:
                TensorSpec.from_dict(spec)
            except ValueError as exc:
                return f"io.{key}: {exc}"
    aot = man.get("aot") or {}
    if (why := _fields(aot, {"device": _OPT_STR, "example_shape": (list, type(None)), "dynamic_axes": list}, "aot")):
        return why
    return None
