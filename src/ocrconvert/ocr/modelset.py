"""Model sets: one det, an optional cls and one rec model, their dictionary and OCR parameters, read as one record.

``read_set(path) -> ModelSet`` accepts three layouts:

* **a set folder** written by ``convert-set``: ``ocrconvert-set.yaml`` names each stage (``det/``, ``cls/``,
  ``rec/``), the dictionary, the formats and routes, the source set and the verdicts;
* **a PaddleOCR model-set folder**: det / cls / rec model folders (or model files) side by side, each stage
  recognised by its model family (``families.resolve_family``: the yml's post-processing, ONNX metadata, output
  shapes), never by its folder name; a dictionary file beside them is the rec stage's;
* **a small YAML** naming each stage: ``det: PATH``, ``rec: PATH``, ``cls: PATH``, ``dict: PATH`` (paths
  relative to the YAML), optionally ``params:`` (OCR parameter overrides, ``det_box_thresh: 0.5`` or nested
  ``det: {box_thresh: 0.5}``).

    import ocrconvert
    ocr = ocrconvert.load_set("out/")          # an OcrPipeline
    page = ocr("page.png")
    for line in page.lines:
        print(line.text, line.score)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CorruptModelError, ModelNotFoundError, ParityError, UnsupportedModelError, UsageError
from ..formats import SET_FILE

log = logging.getLogger(__name__)

SET_SCHEMA = 1
STAGES = ("det", "cls", "rec")
STAGE_OF_FAMILY = {"det-db": "det", "cls": "cls", "rec-ctc": "rec"}
_MODEL_FILE_SUFFIXES = (".onnx", ".pt2", ".engine", ".plan")
_DICT_GLOBS = ("*dict*.txt", "*keys*.txt")
_YAML_HINT = ("Name each stage in a small YAML instead: det: PATH, rec: PATH, cls: PATH, dict: PATH "
              "(paths relative to the YAML), and pass the YAML.")


@dataclass(frozen=True)
class SetOrigin:
    """Where a set was read from: ``kind`` is ``set-folder``, ``paddle-folder`` or ``stage-yaml``."""
    kind: str
    path: Path

    def to_dict(self) -> dict:
        return {"kind": self.kind, "path": str(self.path)}


@dataclass(frozen=True)
class ModelSet:
    """One OCR model set: stage model paths (``cls`` may be None), the dictionary file (None: the rec model's
    own), flat OCR parameter overrides (``{"det_box_thresh": 0.5}``, keys of :meth:`OcrParams.override`), where
    it was read from, and for a set folder its ``ocrconvert-set.yaml`` record."""
    det: Path
    rec: Path
    cls: Path | None = None
    dictionary: Path | None = None
    params: dict = field(default_factory=dict)
    origin: SetOrigin | None = None
    record: dict | None = field(default=None, repr=False)

    @property
    def stages(self) -> dict[str, Path]:
        """``{"det": ..., "cls": ..., "rec": ...}`` in pipeline order, without an absent cls."""
        return {s: p for s in STAGES if (p := getattr(self, s)) is not None}

    @property
    def status(self) -> str | None:
        """A set folder's recorded status (``verified``, ``failed-verification``, ``unverified``), else None."""
        return (self.record or {}).get("status")

    def pipeline(self, device: str = "cpu", *, allow_failed: bool = False, **kwargs):
        """The :class:`OcrPipeline` on this set (each stage through ``ocrconvert.load`` on ``device``).

        ``kwargs`` go to :meth:`OcrPipeline.from_paths` (``params=``, ``keep_prob_map=``, runner options); an
        explicit ``params`` replaces the set's overrides. A set recorded as failed is refused unless
        ``allow_failed`` (kept only so the failure can be examined)."""
        from .pipeline import OcrPipeline

        if self.status == "failed-verification" and not allow_failed:
            raise ParityError(f"{self.origin.path if self.origin else 'this set'} failed verification against its "
                              "source set; it is not loaded",
                              hint="Inspect it with ocrconvert.load_set(path, allow_failed=True), or convert again.")
        if allow_failed:
            kwargs["allow_failed"] = True
        params = kwargs.pop("params", None)
        ocr = OcrPipeline.from_paths(self.det, self.rec, self.cls, device=device, dictionary=self.dictionary,
                                     params=params, **kwargs)
        if params is None and self.params:
            ocr = OcrPipeline(ocr.det_runner, ocr.rec_runner, ocr.cls_runner, dictionary=ocr.dictionary,
                              params=ocr.params.override(**self.params), keep_prob_map=ocr.keep_prob_map)
        return ocr

    def to_dict(self) -> dict:
        return {"det": str(self.det), "cls": None if self.cls is None else str(self.cls), "rec": str(self.rec),
                "dictionary": None if self.dictionary is None else str(self.dictionary), "params": dict(self.params),
                "origin": self.origin.to_dict() if self.origin else None, "status": self.status}


def load_set(path, device: str = "cpu", **kwargs):
    """``read_set(path).pipeline(device, **kwargs)``: the OCR pipeline on a model set."""
    return read_set(path).pipeline(device, **kwargs)


# ---- reading ------------------------------------------------------------------------------------------
def read_set(path) -> ModelSet:
    """The :class:`ModelSet` of a set folder, a PaddleOCR model-set folder, or a stage YAML (usage error, exit 2,
    with a hint when a stage is missing, doubled or unreadable). A :class:`ModelSet` is returned as it is."""
    if isinstance(path, ModelSet):
        return path
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelNotFoundError(f"{p} does not exist", hint="Pass a model-set folder or a YAML naming each stage.")
    if p.is_file():
        if p.suffix.lower() not in (".yaml", ".yml"):
            raise UsageError(f"{p} is not a model set", hint="Pass a model-set folder or a YAML naming each stage.")
        return _from_yaml(p, "stage-yaml")
    if (p / SET_FILE).is_file():
        return _from_yaml(p / SET_FILE, "set-folder")
    return _from_folder(p)


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} should hold a mapping (det: PATH, rec: PATH, ...), not {type(data).__name__}",
                         hint=_YAML_HINT)
    return data


def _flat_params(raw, where) -> dict:
    """``params:`` as the flat mapping ``OcrParams.override`` takes; nested ``det: {...}`` flattened."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: params must be a mapping, not {type(raw).__name__}")
    flat = {}
    for key, value in raw.items():
        if key in STAGES and isinstance(value, dict):
            flat.update({f"{key}_{k}": v for k, v in value.items()})
        else:
            flat[str(key)] = value
    from .params import OcrParams

    OcrParams().override(**flat)  # every key checked now, not at the first page
    return flat


def _from_yaml(path: Path, kind: str) -> ModelSet:
    data = _read_yaml(path)
    base = path.parent
    full = isinstance(data.get("stages"), dict)  # the record convert-set writes; else the short form
    stages = data["stages"] if full else data
    if not full:
        unknown = sorted(str(k) for k in data if k not in (*STAGES, "dict", "dictionary", "params"))
        if unknown:
            raise UsageError(f"{path}: unknown key(s) {unknown}", hint=_YAML_HINT)

    def stage_path(name: str) -> Path | None:
        entry = stages.get(name)
        if entry is None:
            return None
        if isinstance(entry, dict):
            entry = entry.get("path")
        if not isinstance(entry, str) or not entry.strip():
            raise UsageError(f"{path}: stage {name} must name a model path, not {entry!r}", hint=_YAML_HINT)
        p = Path(entry).expanduser()
        return p if p.is_absolute() else base / p

    found = {s: stage_path(s) for s in STAGES}
    dict_entry = data.get("dictionary", data.get("dict"))
    dictionary = None
    if dict_entry is not None:
        if not isinstance(dict_entry, str) or not dict_entry.strip():
            raise UsageError(f"{path}: dict must name a dictionary file, not {dict_entry!r}", hint=_YAML_HINT)
        dictionary = Path(dict_entry).expanduser()
        dictionary = dictionary if dictionary.is_absolute() else base / dictionary
    origin = SetOrigin(kind, base.resolve() if kind == "set-folder" else path.resolve())
    return from_stages(found["det"], found["rec"], found["cls"], dictionary=dictionary,
                       params=_flat_params(data.get("params"), path), origin=origin, record=data if full else None,
                       where=str(path), check=not full)


def from_stages(det, rec, cls=None, *, dictionary=None, params: dict | None = None, origin: SetOrigin | None = None,
                record: dict | None = None, where: str = "the set", check: bool = True) -> ModelSet:
    """A :class:`ModelSet` from stage paths; each must exist and (``check``) be a model of its stage's family (a
    rec model named as det is a usage error). A set folder's own record is trusted: its stages were checked when
    it was written, and reading an engine's family would need TensorRT."""
    stages = {"det": det, "rec": rec, "cls": cls}
    missing = [s for s in ("det", "rec") if stages[s] is None]
    if missing:
        raise UsageError(f"{where} names no {' and no '.join(missing)} model",
                         hint="A set needs a det and a rec model (cls is optional). " + _YAML_HINT)
    paths = {}
    for stage, p in stages.items():
        if p is None:
            continue
        p = Path(p).expanduser()
        if not p.exists():
            raise ModelNotFoundError(f"{where}: the {stage} model {p} does not exist", hint=_YAML_HINT)
        if check:
            _check_stage(stage, p)
        paths[stage] = p
    if dictionary is not None:
        dictionary = Path(dictionary).expanduser()
        if not dictionary.is_file():
            raise ModelNotFoundError(f"{where}: the dictionary {dictionary} does not exist", hint=_YAML_HINT)
    flat = _flat_params(params, Path(where)) if params else {}
    return ModelSet(paths["det"], paths["rec"], paths.get("cls"), dictionary, flat, origin, record)


def stage_of(path: Path) -> tuple[str | None, str]:
    """(stage, family name) of one model, by its family: ``det``, ``cls``, ``rec`` or None (not a text stage)."""
    from ..families import resolve_family
    from ..formats import detect
    from ..runners import runner_for

    info = runner_for(detect(path)).info()
    family = resolve_family(info).name
    return STAGE_OF_FAMILY.get(family), family


def _check_stage(stage: str, path: Path) -> None:
    """A stage named in a YAML must be a model of that stage's family (a rec model named as det is an error)."""
    found, family = stage_of(path)
    if found is not None and found != stage:
        raise UsageError(f"{path} is named as the {stage} model but is a {family} model ({found})",
                         hint="Swap the stage paths in the YAML.")
    if found is None:
        log.warning("%s (the %s model) has no recognised text-stage family (%s)", path, stage, family)


def _candidates(folder: Path) -> list[Path]:
    """Children that may be a model: sub-folders, and model files at the top level."""
    try:
        children = sorted(folder.iterdir())
    except OSError as exc:
        raise UsageError(f"cannot read {folder}: {exc.strerror or type(exc).__name__}") from None
    return [c for c in children if not c.name.startswith(".")
            and (c.is_dir() or c.suffix.lower() in _MODEL_FILE_SUFFIXES)]


def _from_folder(folder: Path) -> ModelSet:
    from ..formats import detect

    try:  # a single model folder passed where a set is expected (not a folder holding one .onnx)
        art = detect(folder)
    except (ModelNotFoundError, UnsupportedModelError):
        art = None
    if art is not None and art.path == folder:
        _, family = stage_of(folder)
        raise UsageError(f"{folder} is one model ({family}), not a model set",
                         hint="Pass the folder that holds the det, cls and rec model folders, or a YAML naming each.")

    by_stage: dict[str, list[tuple[Path, str]]] = {s: [] for s in STAGES}
    ignored: list[str] = []
    for child in _candidates(folder):
        try:
            detect(child)
        except CorruptModelError:
            raise
        except (ModelNotFoundError, UnsupportedModelError):
            continue  # not a model (a fonts folder, a README): not part of the set
        stage, family = stage_of(child)
        if stage is None:
            ignored.append(f"{child.name} ({family})")
            continue
        by_stage[stage].append((child, family))
    for stage, hits in by_stage.items():
        if len(hits) > 1:
            names = ", ".join(p.name for p, _ in hits)
            raise UsageError(f"{folder} holds {len(hits)} {stage} models ({names}); which one?", hint=_YAML_HINT)
    missing = [s for s in ("det", "rec") if not by_stage[s]]
    if missing:
        seen = [f"{p.name} ({s})" for s in STAGES for p, _ in by_stage[s]] + ignored
        raise UsageError(f"{folder} holds no {' and no '.join(missing)} model"
                         f" (found: {', '.join(seen) if seen else 'no models'})",
                         hint="A set needs a det and a rec model (cls is optional). " + _YAML_HINT)
    if ignored:
        log.info("%s: not text stages, ignored: %s", folder, ", ".join(ignored))
    dict_files = sorted({p for pattern in _DICT_GLOBS for p in folder.glob(pattern) if p.is_file()})
    if len(dict_files) > 1:
        raise UsageError(f"{folder} holds {len(dict_files)} dictionary files "
                         f"({', '.join(p.name for p in dict_files)}); which one?", hint=_YAML_HINT)
    stage = {s: (by_stage[s][0][0] if by_stage[s] else None) for s in STAGES}
    return ModelSet(stage["det"], stage["rec"], stage["cls"], dict_files[0] if dict_files else None, {},
                    SetOrigin("paddle-folder", folder.resolve()))


__all__ = ["ModelSet", "SetOrigin", "read_set", "load_set", "from_stages", "stage_of", "SET_FILE", "SET_SCHEMA",
           "STAGES", "STAGE_OF_FAMILY"]
