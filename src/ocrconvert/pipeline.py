"""load -> check -> convert (one or more hops) -> verify against the ORIGINAL source -> manifest.

Everything is built in a staging folder beside the output and renamed into place at the end,
so a failed run leaves nothing behind.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import registry
from .atomic import commit_dir, commit_files, staging
from .errors import MissingDependencyError, UnsupportedModelError, UnsupportedOpsError
from .formats import Artifact, Format, detect
from .runners import runner_for
from .runners.base import MemoizedRunner
from .manifest import manifest_path, new_manifest, read_manifest, sha256_artifact, write_manifest
from .verification import ParityReport, Tolerances, verify_artifacts

log = logging.getLogger(__name__)

FILE_TARGETS = {"onnx": ".onnx", "tensorrt": ".engine", "torch-aot": ".pt2"}


@dataclass
class ConversionResult:
    artifact: Artifact
    manifest_path: Path
    manifest: dict
    report: ParityReport | None
    route: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.report is None or self.report.passed

    def to_dict(self) -> dict:
        return {"artifact": str(self.artifact.path), "format": self.artifact.format.value,
                "manifest": str(self.manifest_path), "route": self.route,
                "verified": self.report is not None, "passed": self.passed,
                "verification": self.report.to_dict() if self.report is not None else None}


def original_source(artifact: Artifact) -> Artifact:
    """The source an artifact was converted from, when its manifest names one that still matches."""
    man = read_manifest(artifact.path)
    if not man or not man.get("source"):
        return artifact
    src = Path(man["source"].get("path", ""))
    if not src.exists():
        return artifact
    try:
        art = detect(src)
        if sha256_artifact(art.path) == man["source"].get("sha256"):
            return art
    except Exception:  # noqa: BLE001 - a stale manifest just means: verify against the input
        log.debug("stale source in manifest of %s", artifact.path, exc_info=True)
    return artifact


def _choose_route(src: Artifact, target: str, prefer: str | None, options: dict):
    routes = registry.plan(src, target, prefer=prefer)
    problems: list[str] = []
    for route in routes:
        if not all(s.available for s in route):
            continue
        found = route[0].create().check(src, options)
        if not found:
            return route
        problems += found
        log.info("route %s skipped: %s", " -> ".join(s.key.name for s in route), "; ".join(found))
    missing = next((s for r in routes for s in r if not s.available), None)
    if not problems and missing is not None:
        raise MissingDependencyError(missing.missing[0], _extra_for(missing.missing[0]),
                                     why=f"the {missing.key.name} converter needs it")
    ops = [p.split(": ", 1)[1] for p in problems if p.startswith("unsupported op: ")]
    if ops:
        raise UnsupportedOpsError(ops, target=target)
    raise UnsupportedModelError(f"no route from {src.format.value} to {target} accepts this model: {'; '.join(problems)}")


def _extra_for(module: str) -> str | None:
    from ._compat import _EXTRAS

    return _EXTRAS.get(module, (module, None))[1]


def _io_specs(artifact: Artifact) -> dict:
    r = runner_for(artifact)
    return {"inputs": [s.to_dict() for s in r.inputs], "outputs": [s.to_dict() for s in r.outputs]}


def convert(
    source, output, *, target: str, route: str | None = None, verify: bool = True,
    options: dict | None = None, images=None, tolerances: Tolerances | None = None,
    family: str | None = None, dictionary=None, progress: Callable[[str], None] | None = None,
    reference=None,
) -> ConversionResult:
    """``reference``: a recorded reference (``ocrconvert reference``) to verify against instead of
    re-running the original source (e.g. on a GPU box without Paddle)."""
    options = dict(options or {})
    say = progress or (lambda msg: None)
    src = source if isinstance(source, Artifact) else detect(source)
    reference = detect(reference) if reference is not None else original_source(src)
    output = Path(output)
    chosen = _choose_route(src, target, route, options)
    names = [s.key.name for s in chosen]
    file_mode = target in FILE_TARGETS and output.suffix == FILE_TARGETS[target]
    manifest = new_manifest(reference, options=options)
    if reference.format is Format.REFERENCE:  # provenance is the model the reference was recorded from
        manifest["verified_against"] = manifest["source"]
        manifest["source"] = runner_for(reference).header["source"]
    if reference is not src:
        manifest["input"] = {"path": str(src.path.resolve()), "format": src.format.value}

    with staging(output) as stage, tempfile.TemporaryDirectory(prefix=".hops.", dir=stage.parent) as hops_dir:
        current = src
        for i, spec in enumerate(chosen):
            last = i == len(chosen) - 1
            if last and target in FILE_TARGETS:  # a file: OUTPUT itself, or OUTPUT/model.<ext>
                dest = stage / (output.name if file_mode else f"model{FILE_TARGETS[target]}")
            elif last:  # a folder artifact: the staging folder becomes OUTPUT
                dest = stage
            else:
                dest = Path(hops_dir) / f"hop{i}{FILE_TARGETS.get(spec.key.target, '')}"
            conv = spec.create()
            if i > 0:
                found = conv.check(current, options)
                ops = [p.split(": ", 1)[1] for p in found if p.startswith("unsupported op: ")]
                if ops:
                    raise UnsupportedOpsError(ops, target=spec.key.target)
                if found:
                    raise UnsupportedModelError("; ".join(found))
            say(f"{spec.key.source} -> {spec.key.target} ({spec.key.name})")
            t0 = time.perf_counter()
            previous, current = current, conv.convert(current, dest, options)
            if current.format is Format.TORCH_NATIVE:  # also for an intermediate hop: later hops need its I/O
                native_extra = _finish_native(src, current)
            manifest["hops"].append({
                "converter": spec.key.name, "from": spec.key.source, "to": spec.key.target,
                "tool": getattr(conv, "tool", spec.key.name),
                "versions": conv.versions() if hasattr(conv, "versions") else {},
                "seconds": round(time.perf_counter() - t0, 3),
                **{k: current.meta[k] for k in ("mapping_report", "fixes") if k in current.meta},
            })
            for key in ("engine", "aot", "model_metadata"):  # facts only the converter knows (TensorRT build, source metadata)
                if key in current.meta:
                    manifest[key] = current.meta[key]
        report = None
        if verify:
            say("verifying against the original source")
            # a package we just built is trusted before its manifest exists (its loader runs native code)
            built = (runner_for(current, trust=True, device=current.meta.get("aot", {}).get("device"))
                     if current.format is Format.TORCH_AOT else None)
            source_runner = MemoizedRunner(runner_for(reference))  # the source runs once per input
            report = verify_artifacts(reference, current, images=images, tolerances=tolerances, family=family,
                                      dictionary=dictionary, target_runner=built, source_runner=source_runner,
                                      progress=lambda lbl: say(f"verify: {lbl}"))
            if current.format is Format.TORCH_NATIVE:
                # ocrconvert.load runs the fused form; the saved folder is the trainable form: prove both
                from .runners.torch import TorchNativeRunner

                unfused = verify_artifacts(reference, current, images=images, tolerances=tolerances, family=family,
                                           dictionary=dictionary, target_runner=TorchNativeRunner(current, fused=False),
                                           source_runner=source_runner,
                                           progress=lambda lbl: say(f"verify (trainable form): {lbl}"))
                report.target_backend = "torch-native (fused)"
                unfused.target_backend = "torch-native (trainable)"
                manifest["verification_trainable_form"] = unfused.to_dict()
                report.extra_reports.append(unfused)
        final_path = output / current.path.name if target in FILE_TARGETS and not file_mode else output
        manifest["artifact"] = {"path": str(final_path.resolve()), "format": current.format.value,
                                "sha256": sha256_artifact(current.path)}
        if current.format is Format.TORCH_NATIVE:
            manifest.update(native_extra)
        elif current.format is Format.TORCH_AOT:  # a compiled package does not describe itself
            manifest["io"] = _io_specs(previous)
            manifest.setdefault("model_metadata", runner_for(previous).metadata())
        else:
            manifest["io"] = _io_specs(current)
        manifest["verification"] = report.to_dict() if report is not None else None
        write_manifest(current.path, manifest)
        if target in FILE_TARGETS:
            commit_files(stage, output.parent if file_mode else output)
        else:
            commit_dir(stage, output)
    art = detect(final_path)
    return ConversionResult(art, manifest_path(final_path), manifest, report, names)


def _finish_native(src: Artifact, art: Artifact) -> dict:
    """Give a native folder what the Paddle folder carried: I/O names, dictionary, preprocessing."""
    r = runner_for(src)
    info = r.info()
    io = {"inputs": [s.to_dict() for s in r.inputs], "outputs": [s.to_dict() for s in r.outputs]}
    meta = {}
    if info.dictionary:
        meta["character"] = "\n".join(info.dictionary)
        (art.path / "dict.txt").write_text("\n".join(info.dictionary) + "\n", encoding="utf-8")
    if "config" in src.files:
        shutil.copy(src.files["config"], art.path / "inference.yml")
    from .families import resolve_family

    meta["ocrconvert.family"] = resolve_family(info).name
    if info.config:
        meta["ocrconvert.config"] = json.dumps({k: v for k, v in info.config.items() if k != "PostProcess"} | {
            "PostProcess": {k: v for k, v in (info.config.get("PostProcess") or {}).items() if k != "character_dict"}},
            default=str)
    extra = {"io": io, "model_metadata": meta}
    # the native runner reads these from the manifest; a provisional one serves verification
    (art.path / "ocrconvert.json").write_text(json.dumps(extra))
    return extra
