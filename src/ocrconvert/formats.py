"""Format detection and the ``Artifact`` record.

``detect(path)`` looks at file names and magic bytes only (cheap, never executes or unpickles
anything); deeper checks happen in the runners and converters' preflight.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .errors import CorruptModelError, ModelNotFoundError, UnsupportedModelError, from_os_read_error


class Format(str, Enum):
    PADDLE_LEGACY = "paddle-legacy"
    PADDLE_PIR = "paddle-pir"
    ONNX = "onnx"
    TORCH_GRAPH = "torch-graph"      # graph description (ONNX proto, no weights) + safetensors
    TORCH_NATIVE = "torch-native"    # transformers-style folder: config.json + model.safetensors
    TORCH_AOT = "torch-aot"          # AOTInductor package (.pt2)
    TENSORRT = "tensorrt"            # serialized engine
    REFERENCE = "reference"          # recorded source inputs + outputs (.npz, no pickle)
    VLM_TOWER = "vlm-tower"          # a VLM vision tower named by family (+ optional checkpoint folder)

    @property
    def family(self) -> str:
        """The coarse format a route targets: paddle, onnx, torch or tensorrt."""
        return self.value.split("-")[0]


TORCH_GRAPH_FILE = "graph.onnx"
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "ocrconvert.json"
SET_FILE = "ocrconvert-set.yaml"      # the record of a model-set folder (``convert-set``)
_YML_NAMES = ("inference.yml", "inference.yaml")
_DICT_GLOBS = ("*dict*.txt", "*keys*.txt", "dict.txt")


@dataclass
class Artifact:
    path: Path
    format: Format
    files: dict[str, Path] = field(default_factory=dict)   # role -> file
    meta: dict = field(default_factory=dict)

    @property
    def model_dir(self) -> Path:
        return self.path if self.path.is_dir() else self.path.parent

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "format": self.format.value,
            "files": {k: str(v) for k, v in self.files.items()},
        }


def _need_nonempty(p: Path) -> Path:
    try:
        size = p.stat().st_size
    except OSError as exc:  # a link that leads nowhere or loops (glob lists it, is_file() says no)
        raise CorruptModelError(f"cannot read {p}: {exc.strerror or type(exc).__name__}",
                                hint="A model file is a link to nowhere; fetch the model again.") from None
    if size == 0:
        raise CorruptModelError(f"{p} is empty")
    return p


def _side_files(folder: Path, files: dict[str, Path]) -> None:
    for name in _YML_NAMES:
        if (folder / name).is_file():
            files["config"] = folder / name
            break
    for pattern in _DICT_GLOBS:
        hits = sorted(folder.glob(pattern))
        if hits:
            files["dict"] = hits[0]
            break


def _paddle_in_dir(folder: Path) -> Artifact | None:
    params = sorted(folder.glob("*.pdiparams"))
    for prog_ext, fmt in ((".json", Format.PADDLE_PIR), (".pdmodel", Format.PADDLE_LEGACY)):
        for p in params:
            prog = p.with_suffix(prog_ext)
            if prog.is_file():
                files = {"program": _need_nonempty(prog), "params": _need_nonempty(p)}
                _side_files(folder, files)
                return Artifact(folder, fmt, files)
    progs = sorted(folder.glob("*.pdmodel")) + [
        p for p in sorted(folder.glob("*.json")) if p.name == "inference.json"
    ]
    if progs:
        raise CorruptModelError(
            f"{progs[0]} has no matching .pdiparams weights file beside it",
            hint="A Paddle inference model is a program file plus a .pdiparams file with the same stem.",
        )
    return None


def detect(path: str | Path) -> Artifact:
    """Return the ``Artifact`` for a model path, or raise a user error saying why not."""
    try:
        p = Path(path).expanduser()
    except RuntimeError:  # ~name of a user the system does not know
        raise ModelNotFoundError(f"{path} does not exist: its home folder is unknown") from None
    try:
        return _detect(p)
    except OSError as exc:  # a name too long, no permission: the path cannot be read, nothing was written
        raise from_os_read_error(exc, str(exc.filename or p)) from None


def _detect(p: Path) -> Artifact:
    if not p.exists():
        raise ModelNotFoundError(f"{p} does not exist")
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".onnx":
            _need_nonempty(p)
            files = {"model": p}
            _side_files(p.parent, files)
            return Artifact(p, Format.ONNX, files)
        if suffix in (".pdmodel", ".pdiparams") or p.name == "inference.json":
            art = _paddle_in_dir(p.parent)
            if art:
                return art
        if suffix in (".engine", ".plan", ".trt"):
            return Artifact(p, Format.TENSORRT, {"engine": _need_nonempty(p)})
        if suffix == ".npz":
            return Artifact(p, Format.REFERENCE, {"reference": _need_nonempty(p)})
        if suffix == ".pt2":
            return Artifact(p, Format.TORCH_AOT, {"package": _need_nonempty(p)})
        if suffix in (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"):
            raise UnsupportedModelError(
                f"{p} is a pickle-based checkpoint; ocrconvert never unpickles files",
                hint="Export it to ONNX, .pt2 or safetensors first.",
            )
        raise UnsupportedModelError(
            f"{p} is not a model format ocrconvert knows ({suffix or 'no extension'})",
            hint="Supported: Paddle inference folders, .onnx, ocrconvert torch folders, .pt2, .engine.",
        )
    # a folder
    if (p / TORCH_GRAPH_FILE).is_file() and (p / WEIGHTS_FILE).is_file():
        files = {"graph": p / TORCH_GRAPH_FILE, "weights": _need_nonempty(p / WEIGHTS_FILE)}
        _side_files(p, files)
        return Artifact(p, Format.TORCH_GRAPH, files)
    if (p / "config.json").is_file() and (p / WEIGHTS_FILE).is_file():
        try:
            cfg = json.loads((p / "config.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise CorruptModelError(f"{p / 'config.json'} is not valid JSON: "
                                    f"{type(exc).__name__}: {str(exc)[:200]}") from None
        if not isinstance(cfg, dict):
            raise CorruptModelError(f"{p / 'config.json'} should hold a JSON object, not {type(cfg).__name__}")
        files = {"config_json": p / "config.json", "weights": _need_nonempty(p / WEIGHTS_FILE)}
        _side_files(p, files)
        return Artifact(p, Format.TORCH_NATIVE, files, {"model_type": cfg.get("model_type")})
    art = _paddle_in_dir(p)
    if art:
        return art
    onnx_files = sorted(p.glob("*.onnx"))
    if len(onnx_files) == 1:
        return _detect(onnx_files[0])
    if len(onnx_files) > 1:
        raise ModelNotFoundError(
            f"{p} holds {len(onnx_files)} .onnx files; which one?",
            hint="Pass the .onnx file itself.",
        )
    raise ModelNotFoundError(f"{p} holds no model ocrconvert recognises")
