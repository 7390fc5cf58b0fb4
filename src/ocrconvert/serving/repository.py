"""``triton-repo``: a model set as a Triton Inference Server model repository.

One model per stage — ONNX on the ``onnxruntime`` backend, a TensorRT engine as ``tensorrt_plan``, or any artifact
on the ``python`` backend through ``ocrconvert.load()`` — and the whole OCR as ``ocr``, a Python-backend BLS model
(:class:`ocrconvert.serving.backend.OcrModel`): encoded image bytes in, boxes / texts / scores out, with the OCR
pipeline's own pre/post-processing, parameters and dictionary. Batch sizes and shape ranges come from each stage's
family (its TensorRT profile: dims the family fixes are fixed in the config, so Triton refuses a wrong shape itself);
a TensorRT engine's own profiles (its manifest) win, as a plan serves no more than it was built for.
Every ``config.pbtxt`` is validated against Triton's schema before the repository is committed (``OutputSlot``).
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ParityError, UsageError
from .backend import ARTIFACT_DIR, PIPELINE_FILE
from .config import TRITON_DTYPE, ModelConfig, TensorConfig, validate_repository

log = logging.getLogger(__name__)

RECORD_FILE = "repository.ocrconvert.json"
OCR_MODEL = "ocr"
DEFAULT_MAX_IMAGE_SIDE = 8192
DEFAULT_OCR_INSTANCES = 2
_STAGE_FORMATS = {"onnxruntime": ("onnx",), "tensorrt": ("tensorrt",)}
_MODEL_PY = '''# Written by `ocrconvert triton-repo`: the code of this model is ocrconvert.serving.backend.{klass}.
import triton_python_backend_utils as pb_utils

from ocrconvert.serving.backend import {klass}


class TritonPythonModel({klass}):
    pb = pb_utils
'''


@dataclass
class RepositoryResult:
    path: Path
    backend: str
    models: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"path": str(self.path), "backend": self.backend, "models": self.models}


def _dims(shape, *, skip_batch: bool) -> tuple[int, ...]:
    dims = shape[1:] if skip_batch else shape
    return tuple(int(d) if isinstance(d, int) and d > 0 else -1 for d in dims)


def _dtype(spec) -> str:
    try:
        return TRITON_DTYPE[str(spec.dtype)]
    except KeyError:
        raise UsageError(f"tensor {spec.name!r} has dtype {spec.dtype}, which Triton's configs do not name") from None


def stage_config(name: str, info, family, backend: str, *, instances: int = 1,
                 profiles: dict | None = None) -> ModelConfig:
    """The config of one stage model from its tensor specs and family: a dynamic batch dim batches up to the
    family profile's max (preferred: its opt); a dim the profile fixes is written fixed; ranges as parameters.
    ``profiles`` (``{input: (min, opt, max)}``, an engine's own) replace the family's: a plan serves no more."""
    def profile_of(spec):
        if profiles is not None:
            return profiles.get(spec.name)
        return family.trt_profile(spec) if hasattr(family, "trt_profile") else None

    first = info.inputs[0]
    profile = profile_of(first)
    batched = bool(first.shape) and not (isinstance(first.shape[0], int) and first.shape[0] > 0)
    max_batch = (profile[2][0] if profile else 64) if batched else 0
    inputs, params = [], {}
    for spec in info.inputs:
        dims = list(_dims(spec.shape, skip_batch=batched))
        prof = profile_of(spec)
        if prof is not None:
            lo, opt, hi = prof
            off = 1 if batched else 0
            for i in range(len(dims)):
                if dims[i] == -1 and lo[i + off] == hi[i + off]:
                    dims[i] = int(lo[i + off])
            params[f"shape_range:{spec.name}"] = ";".join("x".join(str(d) for d in s) for s in prof)
        inputs.append(TensorConfig(spec.name, _dtype(spec), tuple(dims)))
    outputs = [TensorConfig(s.name, _dtype(s), _dims(s.shape, skip_batch=batched)) for s in info.outputs]
    params["family"] = family.name
    return ModelConfig(name, backend, inputs, outputs, max_batch_size=int(max_batch),
                       preferred_batch_sizes=(int(profile[1][0]),) if profile and batched else (),
                       max_queue_delay_us=500 if batched else 0, instances=instances, parameters=params,
                       default_model_filename={"onnxruntime": "model.onnx", "tensorrt": "model.plan"}.get(backend))


def ocr_config(stages: list[str], max_side: int, instances: int) -> ModelConfig:
    return ModelConfig(OCR_MODEL, "python", [TensorConfig("image", "TYPE_UINT8", (-1,))],
                       [TensorConfig("boxes", "TYPE_FP32", (-1, 4, 2)), TensorConfig("texts", "TYPE_STRING", (-1,)),
                        TensorConfig("scores", "TYPE_FP32", (-1,))],
                       instances=instances,
                       parameters={"stages": ",".join(stages), "max_image_side": str(max_side)})


def _copy_onnx(model: Path, dest_dir: Path) -> None:
    """The .onnx as ``model.onnx`` with the external-data files it names (confined to its folder)."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    shutil.copy2(model, dest_dir / "model.onnx")
    names = set()
    for init in proto.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            names.update(e.value for e in init.external_data if e.key == "location")
    for name in sorted(names):
        src = (model.parent / name).resolve()
        if model.parent.resolve() not in src.parents:
            raise UsageError(f"{model} names external data outside its folder ({name})")
        shutil.copy2(src, dest_dir / name)


def _copy_artifact(stage_path: Path, art, dest: Path) -> None:
    """The stage's artifact with its manifest and side files, as ``ocrconvert.load()`` reads it."""
    if stage_path.is_dir():
        shutil.copytree(stage_path, dest, symlinks=False, ignore=shutil.ignore_patterns(".ocx-*"))
        return
    dest.mkdir()
    for f in {art.path, *art.files.values(), art.path.with_name(art.path.name + ".ocrconvert.json")}:
        if Path(f).is_file():
            shutil.copy2(f, dest / Path(f).name)


def write_repository(set_path, output, *, backend: str = "python", force: bool = False,
                     max_image_side: int = DEFAULT_MAX_IMAGE_SIDE, ocr_instances: int = DEFAULT_OCR_INSTANCES,
                     progress: Callable[[str], None] | None = None) -> RepositoryResult:
    """Write the Triton repository of the model set ``set_path`` at ``output`` (committed whole, or not at all)."""
    from ..atomic import OutputSlot
    from ..families import resolve_family
    from ..formats import Format, detect
    from ..ocr import OcrPipeline
    from ..ocr.modelset import read_set
    from ..runners import runner_for

    say = progress or (lambda m: None)
    if backend not in ("onnxruntime", "tensorrt", "python"):
        raise UsageError(f"unknown backend {backend!r}", hint="Use onnxruntime, tensorrt or python.")
    if max_image_side < 32:
        raise UsageError(f"--max-image-side {max_image_side} is too small", hint="Give at least 32 pixels.")
    model_set = read_set(set_path)
    if model_set.status == "failed-verification":
        raise ParityError(f"{set_path} failed verification against its source set; it is not served",
                          hint="Convert the set again; a failed set is kept only to be examined.")
    arts = {stage: detect(p) for stage, p in model_set.stages.items()}
    if backend in _STAGE_FORMATS:
        wrong = {s: a.format.value for s, a in arts.items() if a.format.value not in _STAGE_FORMATS[backend]}
        if wrong:
            need = {"onnxruntime": "ONNX models (convert-set --to onnx)",
                    "tensorrt": "TensorRT engines (convert-set --to trt, on the GPU that serves them)"}[backend]
            raise UsageError(f"--backend {backend} serves {need}; this set's "
                             + ", ".join(f"{s} is {f}" for s, f in wrong.items()),
                             hint="Pass --backend python: it serves any artifact through ocrconvert.load().")
    runners = {stage: runner_for(a) for stage, a in arts.items()}
    infos = {stage: r.info() for stage, r in runners.items()}
    # the OCR parameters and dictionary exactly as the in-process pipeline resolves them (no inference)
    ocr = OcrPipeline(runners["det"], runners["rec"], runners.get("cls"), dictionary=None if model_set.dictionary is None
                      else _read_dict(model_set.dictionary))
    params = ocr.params.override(**model_set.params) if model_set.params else ocr.params
    if ocr.dictionary is None:
        raise UsageError(f"the rec model of {set_path} carries no dictionary", hint="Name one in the set (dict: PATH).")

    output = Path(output)
    result = RepositoryResult(output.absolute(), backend)
    with OutputSlot(output, is_dir=True, sources=[p for p in model_set.stages.values()], force=force) as slot:
        root = slot.stage / "repo"
        root.mkdir()
        stages_spec = {}
        for stage, art in arts.items():
            info = infos[stage]
            family = resolve_family(info)
            cfg = stage_config(stage, info, family, backend,
                               profiles=_engine_profiles(art.path) if backend == "tensorrt" else None)
            version = root / stage / "1"
            version.mkdir(parents=True)
            say(f"[{stage}] {family.name} -> {backend} model {stage!r}")
            if backend == "onnxruntime":
                _copy_onnx(art.path, version)
            elif backend == "tensorrt":
                shutil.copy2(art.path, version / "model.plan")
            else:
                _copy_artifact(model_set.stages[stage], art, version / ARTIFACT_DIR)
                (version / "model.py").write_text(_MODEL_PY.format(klass="StageModel"), encoding="utf-8")
            (root / stage / "config.pbtxt").write_text(cfg.to_pbtxt(), encoding="utf-8")
            stages_spec[stage] = {"model": stage, "inputs": [t.name for t in cfg.inputs],
                                  "outputs": [t.name for t in cfg.outputs]}
            result.models[stage] = {"backend": backend, "family": family.name, "format": art.format.value,
                                    "max_batch_size": cfg.max_batch_size,
                                    "inputs": {t.name: list(t.dims) for t in cfg.inputs}}
        say(f"[ocr] BLS model over {', '.join(stages_spec)} (OcrPipeline)")
        version = root / OCR_MODEL / "1"
        version.mkdir(parents=True)
        (version / "model.py").write_text(_MODEL_PY.format(klass="OcrModel"), encoding="utf-8")
        (version / PIPELINE_FILE).write_text(json.dumps(
            {"stages": stages_spec, "params": params.to_dict(), "dictionary": list(ocr.dictionary),
             "max_image_side": int(max_image_side)}, ensure_ascii=False), encoding="utf-8")
        (root / OCR_MODEL / "config.pbtxt").write_text(
            ocr_config(list(stages_spec), max_image_side, ocr_instances).to_pbtxt(), encoding="utf-8")
        result.models[OCR_MODEL] = {"backend": "python", "kind": "bls", "stages": list(stages_spec),
                                    "max_image_side": int(max_image_side)}
        validate_repository(root)  # every config against Triton's schema, before anything is committed
        record = {"schema": 1, "set": str(Path(set_path).absolute()), "set_status": model_set.status,
                  "backend": backend, "models": result.models}
        (root / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        slot.commit(root)
    say(f"wrote {output}")
    return result


def _engine_profiles(engine: Path) -> dict | None:
    """An engine's first optimisation profile per input, from its manifest (None: no manifest, the family's)."""
    from ..manifest import read_manifest

    found = {}
    for prof in ((read_manifest(engine) or {}).get("engine") or {}).get("profiles") or []:
        found.setdefault(prof["name"], (tuple(prof["min"]), tuple(prof["opt"]), tuple(prof["max"])))
    return found or None


def _read_dict(path: Path) -> list[str]:
    from ..families.rec import read_dictionary_file

    return read_dictionary_file(path)
