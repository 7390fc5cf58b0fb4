"""The one spine: load -> check -> convert (1..n hops) -> verify against the ORIGINAL -> manifest -> commit.

Every conversion goes through ``convert()`` — ONNX, PyTorch graph/native, AOT, TensorRT and its
prepared plan, the VLM tower exports. Options arrive as one mapping (CLI, batch YAML or Python) and
each hop's share is validated by the options record its converter registered. Each hop returns a
``HopResult``; the manifest records what each hop actually produced. The output contract
(``atomic.OutputSlot``): never over or into a source, ``force`` to replace, a lock per output, and an
artifact that fails verification lands only under its FAILED name.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from . import converters as _builtin_converters
from . import registry
from .atomic import OutputSlot
from .converters.common import carry_processing
from .errors import MissingDependencyError, UnsupportedModelError, UnsupportedOpsError, UsageError
from .formats import Artifact, Format, detect
from .manifest import manifest_path, new_manifest, read_manifest, sha256_artifact, source_record, write_manifest
from .options import Precision
from .registry import FILE_TARGETS, HopResult, VerificationPolicy
from .runners import runner_for
from .runners.base import MemoizedRunner
from .verification import ParityReport, Tolerances, verify_artifacts

log = logging.getLogger(__name__)


def available_converters() -> list[registry.ConverterSpec]:
    """Every registered converter, built-in and plugins (loaded on first use)."""
    _builtin_converters.load_plugins()
    return registry.converters()


def broken_plugins() -> dict[str, str]:
    _builtin_converters.load_plugins()
    return registry.broken_plugins()


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
                "hops": [{k: h.get(k) for k in ("converter", "options", "produced")} for h in self.manifest["hops"]],
                "verification": self.report.to_dict() if self.report is not None else None}


def original_source(artifact: Artifact) -> Artifact:
    """The source an artifact was converted from, when its manifest names one that still matches."""
    if artifact.format is Format.VLM_TOWER:
        return artifact
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


def split_options(route: list[registry.ConverterSpec], options: Mapping) -> list:
    """Each hop's options record from the one mapping; a key no hop of the route takes is refused."""
    claimed: set[str] = set()
    per_hop = []
    for spec in route:
        names = spec.options_type.field_names()
        claimed |= names
        per_hop.append(spec.parse_options({k: v for k, v in options.items() if k in names},
                                          where=f"route {spec.key.name}"))
    unused = sorted(set(options) - claimed)
    if unused:
        raise UsageError(f"{', '.join(unused)} cannot be honoured by the route {' -> '.join(s.key.name for s in route)}",
                         hint="Drop the option, or pick the route that takes it (`ocrconvert routes`).")
    return per_hop


def _choose_route(src: Artifact, target: str, prefer: str | None, options: Mapping):
    routes = registry.plan(src, target, prefer=prefer)
    problems: list[str] = []
    usage: UsageError | None = None
    for route in routes:
        if not all(s.available for s in route):
            continue
        try:
            hop_options = split_options(route, options)
        except UsageError as exc:  # this route cannot take the options; another may
            usage = usage or exc
            continue
        found = route[0].create().check(src, hop_options[0])
        if not found:
            return route, hop_options
        problems += found
        log.info("route %s skipped: %s", " -> ".join(s.key.name for s in route), "; ".join(found))
    if usage is not None and not problems:
        raise usage
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


def final_path(output: Path, target: str, artifact_name: str | None = None) -> Path:
    """Where the artifact lands: OUTPUT itself, or OUTPUT/model<ext> for a file target given a folder."""
    output = Path(output)
    ext = FILE_TARGETS.get(target)
    if ext and output.suffix != ext:
        return output / (artifact_name or f"model{ext}")
    return output


def convert(
    source, output, *, target: str, route: str | None = None, verify: bool = True,
    options: Mapping | None = None, images=None, tolerances: Tolerances | None = None,
    family: str | None = None, dictionary=None, seed: int = 0, force: bool = False,
    progress: Callable[[str], None] | None = None, reference=None, batch_cache=None,
) -> ConversionResult:
    """Convert ``source`` to ``target`` at ``output`` and verify the result against the ORIGINAL source.

    ``options``: the route's options (``{"opset": 14}``, ``{"precision": "fp16"}``…), validated by the
    records the route's converters registered. ``reference``: a recorded reference (``ocrconvert
    reference``) to verify against instead of re-running the original source (a GPU box without Paddle).
    ``force`` replaces an existing artifact. A failed verification commits under the FAILED name.
    ``batch_cache``: a folder shared by the conversions of one batch: the ORIGINAL's answers to the verification
    cases, recorded once (``runners.shared``: keyed by its sha256 and each case's digest), and what a ``reusable``
    hop made of the same input bytes with the same options and tool versions (``_run_hop``).
    """
    options = dict(options or {})
    say = progress or (lambda msg: None)
    available_converters()
    src = source if isinstance(source, Artifact) else detect(source)
    reference = detect(reference) if reference is not None else original_source(src)
    chosen, hop_options = _choose_route(src, target, route, options)
    problems = [p for spec, opts in zip(chosen, hop_options) for p in spec.create().preflight(opts)]
    if problems:  # before any hop runs: a later hop's missing GPU must not cost the first hop's work
        raise UsageError("; ".join(problems), hint="Run on a machine that has it, or change the options.")
    names = [s.key.name for s in chosen]
    dest_path = final_path(output, target)
    sources = [a.path for a in {id(src): src, id(reference): reference}.values()
               if a.format is not Format.VLM_TOWER or a.meta.get("checkpoint")]  # a checkpoint folder is a source too
    manifest = new_manifest(reference, options=options)
    if reference.format is Format.REFERENCE:  # provenance is the model the reference was recorded from
        manifest["verified_against"] = manifest["source"]
        manifest["source"] = runner_for(reference).header.get("source")
    if reference is not src:
        manifest["input"] = source_record(src)  # path, format and sha256 of what this build read (load() matches it)

    with OutputSlot(dest_path, is_dir=target not in FILE_TARGETS, sources=sources, force=force) as slot, \
            tempfile.TemporaryDirectory(prefix=".hops.", dir=slot.stage) as hops_dir:
        current, hop = src, None
        for i, (spec, opts) in enumerate(zip(chosen, hop_options)):
            last = i == len(chosen) - 1
            if last:
                dest = slot.stage / dest_path.name if target in FILE_TARGETS else slot.stage / "artifact"
            else:
                dest = Path(hops_dir) / f"hop{i}{FILE_TARGETS.get(spec.key.target, '')}"
            conv = spec.create()
            conv.context = registry.HopContext(reference, images=images, seed=seed, family=family)
            if i > 0:
                found = conv.check(current, opts)
                ops = [p.split(": ", 1)[1] for p in found if p.startswith("unsupported op: ")]
                if ops:
                    raise UnsupportedOpsError(ops, target=spec.key.target)
                if found:
                    raise UnsupportedModelError("; ".join(found))
            say(f"{spec.key.source} -> {spec.key.target} ({spec.key.name})")
            t0 = time.perf_counter()
            previous, (hop, reused) = current, _run_hop(conv, current, dest, opts, batch_cache)
            if not isinstance(hop, HopResult):
                raise TypeError(f"converter {spec.key.name} returned {type(hop).__name__}, not HopResult")
            current = hop.artifact
            if current.format is Format.TORCH_NATIVE:  # also for an intermediate hop: later hops need its I/O
                native_extra = _finish_native(src, current)
            manifest["hops"].append({
                "converter": spec.key.name, "from": spec.key.source, "to": spec.key.target,
                "tool": conv.tool or spec.key.name, "versions": conv.versions(),
                "options": opts.to_dict(), "produced": hop.facts,
                "seconds": round(time.perf_counter() - t0, 3),
            })
            if reused:
                manifest["hops"][-1]["reused"] = "this hop's output for the same input sha256, options and versions"
            manifest.update(hop.manifest)  # facts only the converter knows (TensorRT build, source metadata)
        policy = hop.policy
        # the dictionary (--dict over the source's own) and pre/post-processing travel with every artifact
        carry_processing(src, current, manifest, dictionary=dictionary,
                         native_extra=native_extra if current.format is Format.TORCH_NATIVE else None)
        manifest["precision"] = policy.precision.value
        report = None
        if verify:
            say("verifying against the original source")
            report = _verify(reference, current, policy, images=images, tolerances=tolerances, family=family,
                             dictionary=dictionary, seed=seed, say=say, manifest=manifest,
                             shared=Path(batch_cache) / "source-outputs" if batch_cache else None)
            report.target = str(dest_path)  # not the staging path, which is gone after the commit
        failed = report is not None and not report.passed
        landed = slot.failed_path if failed else slot.path
        manifest["status"] = "failed-verification" if failed else ("verified" if report is not None else "unverified")
        manifest["artifact"] = {"path": str(landed), "format": current.format.value,
                                "sha256": sha256_artifact(current.path)}
        if current.format is Format.TORCH_NATIVE:
            manifest.update(native_extra)
        elif current.format is Format.TORCH_AOT:  # a compiled package does not describe itself
            if previous.format is not Format.VLM_TOWER:
                manifest["io"] = _io_specs(previous)
                manifest["model_metadata"] = {**runner_for(previous).metadata(), **manifest.get("model_metadata", {})}
        elif current.format is not Format.TENSORRT and previous.format is not Format.VLM_TOWER:
            manifest["io"] = _io_specs(current)
        manifest["verification"] = report.to_dict() if report is not None else None
        write_manifest(current.path, manifest)
        landed = slot.commit(current.path, failed=failed)
    art = detect(landed)
    return ConversionResult(art, manifest_path(landed), manifest, report, names)


def _run_hop(conv, current: Artifact, dest: Path, opts, cache) -> tuple[HopResult, bool]:
    """The hop's ``convert``, or, for a ``reusable`` converter (deterministic, one file out, the default policy) in a
    batch, the file it made of the same input bytes with the same options and tool versions earlier in the batch
    (checked against its recorded sha256; anything else runs the hop). (result, reused)."""
    if cache is None or not getattr(conv, "reusable", False) or not current.path.exists():
        return conv.convert(current, dest, opts), False
    import hashlib

    key = {"input": sha256_artifact(current.path), "converter": conv.key.name, "options": opts.to_dict(),
           "versions": conv.versions()}
    folder = Path(cache) / "hops" / hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    try:
        record = json.loads((folder / "hop.json").read_text())
        if sha256_artifact(folder / "output") == record["sha256"]:
            shutil.copyfile(folder / "output", dest)
            return HopResult(detect(dest), record["facts"], record["manifest"]), True
        log.warning("kept hop output %s does not match its record: running the hop", folder)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    hop = conv.convert(current, dest, opts)
    if hop.artifact.path.is_file() and hop.policy == VerificationPolicy():
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".", suffix=".tmp", dir=folder.parent))
            shutil.copyfile(hop.artifact.path, tmp / "output")
            (tmp / "hop.json").write_text(json.dumps({"key": key, "sha256": sha256_artifact(tmp / "output"),
                                                      "facts": hop.facts, "manifest": hop.manifest}, default=str))
            try:
                tmp.rename(folder)  # whole or not at all; another job's copy may have landed first
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError as exc:
            log.warning("cannot keep the hop's output for reuse: %s", exc)
    return hop, False


def _verify(reference: Artifact, current: Artifact, policy: VerificationPolicy, *, images, tolerances, family,
            dictionary, seed, say, manifest, shared=None) -> ParityReport:
    """Judge what the last hop produced against the ORIGINAL source, by the hop's policy."""
    tol = (tolerances or Tolerances()).resolved(policy.precision)
    if policy.verifier is not None:  # e.g. a VLM tower against its transformers module
        return policy.verifier(current, tolerances=tol, progress=lambda lbl: say(f"verify: {lbl}"))
    built = None
    if current.format is Format.TORCH_AOT:  # a package we just built is trusted before its manifest exists
        built = runner_for(current, trust=True, device=manifest.get("aot", {}).get("device"))
    source_runner = MemoizedRunner(runner_for(reference))  # the source runs once per input
    digest = (manifest.get("source") or {}).get("sha256")
    if shared is not None and digest and reference.format is not Format.REFERENCE:
        from .runners.shared import SharedSourceRunner

        source_runner = SharedSourceRunner(source_runner.runner, shared, digest)  # ... once per batch
    common = dict(images=images, tolerances=tol, family=family, dictionary=dictionary, seed=seed,
                  source_runner=source_runner, min_metric=policy.min_metric)
    report = verify_artifacts(reference, current, target_runner=built, progress=lambda lbl: say(f"verify: {lbl}"),
                              **common)
    if current.format is Format.TORCH_NATIVE:
        # ocrconvert.load runs the fused form; the saved folder is the trainable form: prove both
        from .runners.torch import TorchNativeRunner

        unfused = verify_artifacts(reference, current, target_runner=TorchNativeRunner(current, fused=False),
                                   progress=lambda lbl: say(f"verify (trainable form): {lbl}"), **common)
        report.target_backend = "torch-native (fused)"
        unfused.target_backend = "torch-native (trainable)"
        manifest["verification_trainable_form"] = unfused.to_dict()
        report.extra_reports.append(unfused)
    return report


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


# ---- model sets: the same spine per stage, then the whole set end to end ------------------------------
# the target names users write (convert-set --to, batch targets) -> (registry target, preferred route)
TARGET_NAMES: dict[str, tuple[str, str | None]] = {
    "onnx": ("onnx", None),
    "torch": ("torch", "onnx2torch"),          # graph route: ONNX description + safetensors
    "torch-native": ("torch", "native"),       # transformers-style folder
    "torch-aot": ("torch-aot", None),
    "tensorrt": ("tensorrt", None),
}


@dataclass
class SetConversionResult:
    """A converted model set: where it landed, its ``ocrconvert-set.yaml`` record, each stage's
    :class:`ConversionResult` and the end-to-end pipeline report (None when not run)."""
    path: Path
    record: dict
    stages: dict[str, ConversionResult]
    pipeline_report: object | None = None

    @property
    def passed(self) -> bool:
        return self.record.get("status") != "failed-verification"

    @property
    def set_file(self) -> Path:
        from .ocr.modelset import SET_FILE

        return self.path / SET_FILE

    def summary_line(self) -> str:
        verdicts = ", ".join(f"{k} {v['verdict']}" for k, v in self.record["stages"].items())
        pipe = (self.record.get("pipeline_verification") or {}).get("verdict", "NOT RUN")
        return (f"{'PASSED' if self.record['status'] == 'verified' else self.record['status'].upper()} | set "
                f"{self.record['target']} | stages: {verdicts} | pipeline: {pipe}")

    def to_dict(self) -> dict:
        return {"path": str(self.path), "passed": self.passed, "summary": self.summary_line(), **self.record,
                "stage_results": {k: r.to_dict() for k, r in self.stages.items()},
                "pipeline_report": self.pipeline_report.to_dict() if self.pipeline_report is not None else None}


def _stage_verdict(result: ConversionResult) -> str:
    return "NOT VERIFIED" if result.report is None else result.report.verdict


def _carry_side_files(stage: str, source: Path, result: ConversionResult, dictionary: Path | None,
                      stage_dir: Path) -> str | None:
    """The dictionary (rec) and ``inference.yml`` travel into the stage's folder; returns the dictionary's name.
    A folder artifact's digest covers them, so its manifest's digest is refreshed (the model files are the
    verified ones; these are the side files the runner reads the same way the verification did)."""
    src = detect(source)
    copied = False
    if "config" in src.files and not (stage_dir / "inference.yml").exists():
        shutil.copy(src.files["config"], stage_dir / "inference.yml")
        copied = True
    dict_name = None
    if stage == "rec":
        dict_src = dictionary or src.files.get("dict")
        if dict_src is not None:
            dict_name = "dict.txt"
            if not (stage_dir / dict_name).exists():
                shutil.copy(dict_src, stage_dir / dict_name)
                copied = True
    if copied and result.artifact.path.is_dir():
        man = read_manifest(result.artifact.path) or dict(result.manifest)
        man["artifact"]["sha256"] = sha256_artifact(result.artifact.path)
        write_manifest(result.artifact.path, man)
    return dict_name


def _relocate_manifest(artifact: Path, staged_root: Path, final_root: Path) -> None:
    """A stage's manifest names where it lies once the set is committed, not the staging folder."""
    man = read_manifest(artifact)
    if not man:
        return
    rel = Path(artifact).relative_to(staged_root)
    man["artifact"]["path"] = str(final_root / rel)
    if isinstance(man.get("verification"), dict) and man["verification"].get("target"):
        man["verification"]["target"] = str(final_root / rel)
    write_manifest(artifact, man)


def convert_set(
    source, output, *, to: str, verify: bool = True, options: Mapping | None = None, images=None,
    tolerances: Tolerances | None = None, seed: int = 0, force: bool = False, device: str = "cpu",
    progress: Callable[[str], None] | None = None, batch_cache=None,
) -> SetConversionResult:
    """Convert a model set (a :class:`ModelSet`, or what ``read_set`` reads: a set folder, a PaddleOCR model-set
    folder or a stage YAML) to ``to``
    (``onnx``, ``torch``, ``torch-native``, ``torch-aot``, ``tensorrt``) at the folder ``output``.

    Each stage goes through :func:`convert` (verified against its ORIGINAL as any conversion), its dictionary
    and ``inference.yml`` travel with it, then the whole set is run end to end against the source set
    (``verification.pipeline_parity``) on ``device``. ``output`` gets ``det/``, ``cls/``, ``rec/`` and
    ``ocrconvert-set.yaml``, committed as one folder (``atomic.OutputSlot``); a set with a failed verdict lands
    only under ``OUTPUT.FAILED``."""
    import yaml

    from .ocr.modelset import SET_FILE, SET_SCHEMA, ModelSet, read_set

    say = progress or (lambda msg: None)
    if to not in TARGET_NAMES:
        raise UsageError(f"--to {to!r} is not a set target", hint=f"Choose one of: {', '.join(TARGET_NAMES)}.")
    target, prefer = TARGET_NAMES[to]
    options = dict(options or {})
    if to == "torch-aot" and device != "cpu":  # the package is compiled for the device it will run on
        options.setdefault("device", device)
    src_set = source if isinstance(source, ModelSet) else read_set(source)
    # never over or into the source set, any of its stages, its dictionary or its YAML
    guarded = [*src_set.stages.values(), *([src_set.dictionary] if src_set.dictionary else []),
               *([src_set.origin.path] if src_set.origin else [])]
    for name, stage_src in src_set.stages.items():  # every stage's route and options, before any work
        _choose_route(detect(stage_src), target, prefer, options)
    out = Path(output)
    if out.suffix in (".onnx", ".pt2", ".engine", ".yaml", ".yml"):
        raise UsageError(f"-o {out} names a file; a model set is a folder", hint="Name a folder, e.g. -o out/")
    t_start = time.perf_counter()
    with OutputSlot(out, is_dir=True, sources=guarded, force=force) as slot:
        staged = slot.stage / "set"
        staged.mkdir()
        results: dict[str, ConversionResult] = {}
        stages: dict[str, dict] = {}
        dictionary_rel = None
        for name, stage_src in src_set.stages.items():
            say(f"[{name}] {stage_src} -> {to}")
            t0 = time.perf_counter()
            res = convert(stage_src, staged / name, target=target, route=prefer, verify=verify, options=options,
                          images=images, tolerances=tolerances, seed=seed,
                          dictionary=src_set.dictionary if name == "rec" else None, batch_cache=batch_cache,
                          progress=lambda msg, n=name: say(f"[{n}] {msg}"))
            stage_dir = staged / name
            dict_name = _carry_side_files(name, stage_src, res, src_set.dictionary if name == "rec" else None,
                                          stage_dir)
            if dict_name:
                dictionary_rel = f"{name}/{dict_name}"
            results[name] = res
            stages[name] = {"path": str(res.artifact.path.relative_to(staged)), "format": res.artifact.format.value,
                            "route": res.route, "source": str(Path(stage_src).resolve()),
                            "verdict": _stage_verdict(res),
                            "summary": res.report.summary_line() if res.report is not None else None,
                            "seconds": round(time.perf_counter() - t0, 3)}
            say(f"[{name}] {stages[name]['verdict']}")
        stage_failed = [n for n, r in results.items() if not r.passed]
        pipeline_block, pipeline_report = None, None
        if verify:
            pipeline_block, pipeline_report = _verify_set(src_set, staged, slot.path, stages, dictionary_rel,
                                                          _set_precision(results, tolerances),
                                                          images=images, device=device, say=say,
                                                          allow_failed=bool(stage_failed))
        failed = bool(stage_failed) or (pipeline_block is not None and pipeline_block.get("passed") is False)
        status = "failed-verification" if failed else ("verified" if verify else "unverified")
        landed = slot.failed_path if failed else slot.path
        record = {"ocrconvert_set": SET_SCHEMA, "status": status, "target": to, "stages": stages,
                  "dictionary": dictionary_rel, "params": dict(src_set.params),
                  "source_set": {**(src_set.origin.to_dict() if src_set.origin else {}),
                                 "stages": {k: str(Path(v).resolve()) for k, v in src_set.stages.items()},
                                 "dictionary": str(src_set.dictionary.resolve()) if src_set.dictionary else None},
                  "pipeline_verification": pipeline_block,
                  "seconds": round(time.perf_counter() - t_start, 3)}
        for res in results.values():
            _relocate_manifest(res.artifact.path, staged, landed)
        if pipeline_report is not None:
            from .verification.pipeline_parity import write_html

            write_html(pipeline_report, staged / "pipeline-parity.html")
            record["pipeline_verification"]["report"] = "pipeline-parity.html"
        (staged / SET_FILE).write_text(yaml.safe_dump(record, sort_keys=False, allow_unicode=True), encoding="utf-8")
        landed = slot.commit(staged, failed=failed)
    for name, res in results.items():
        res.artifact = detect(landed / stages[name]["path"])
        res.manifest_path = manifest_path(res.artifact.path)
    return SetConversionResult(landed, record, results, pipeline_report)


def _set_precision(results: dict[str, ConversionResult], tolerances: Tolerances | None) -> str:
    """The precision the set is judged in: an explicit one, else the loosest any stage was built in."""
    if tolerances is not None and tolerances.precision is not None:
        return Precision.parse(tolerances.precision).value
    built = {str(r.manifest.get("precision") or "fp32") for r in results.values()}
    return next((p for p in ("int8", "fp16", "bf16") if p in built), "fp32")


def original_set(model_set):
    """The set a converted set came from, when every stage's manifest names a source that still matches (as
    :func:`original_source` for one model); else the set itself. The pipeline is judged against the ORIGINAL."""
    from .ocr.modelset import ModelSet, SetOrigin

    originals = {s: original_source(detect(p)).path for s, p in model_set.stages.items()}
    if any(Path(originals[s]) == Path(p) for s, p in model_set.stages.items()):
        return model_set
    recorded = ((model_set.record or {}).get("source_set") or {})
    dictionary = recorded.get("dictionary")
    dictionary = Path(dictionary) if dictionary and Path(dictionary).is_file() else model_set.dictionary
    origin = SetOrigin(recorded.get("kind", "set-folder"), Path(recorded.get("path") or originals["det"]))
    return ModelSet(originals["det"], originals["rec"], originals.get("cls"), dictionary, dict(model_set.params),
                    origin)


def _verify_set(src_set, staged: Path, final: Path, stages: dict, dictionary_rel: str | None, precision: str | None,
                *, images, device, say, allow_failed: bool):
    """The whole converted set end to end against the source set. Returns (record block, report)."""
    from .ocr.modelset import ModelSet, SetOrigin
    from .verification import pipeline_parity

    target_set = ModelSet(*(staged / stages[s]["path"] if s in stages else None for s in ("det", "rec", "cls")),
                          dictionary=staged / dictionary_rel if dictionary_rel else None, params=dict(src_set.params),
                          origin=SetOrigin("set-folder", staged))
    reference = original_set(src_set)
    say(f"verifying the whole set end to end against {reference.origin.path if reference.origin else 'the source'}")
    tol = pipeline_parity.PipelineTolerances.for_precision(precision)
    report = pipeline_parity.compare_pipelines(
        reference.pipeline("cpu"), target_set.pipeline(device, allow_failed=allow_failed), images, tolerances=tol,
        source_label=f"source set {reference.origin.path if reference.origin else ''}".strip(),
        target_label=f"converted set {final}", progress=lambda lbl: say(f"[set] {lbl}"))
    say(f"[set] {report.verdict}")
    return {"verdict": report.verdict, "passed": report.passed, "summary": report.summary_line(),
            "verified_against": {s: str(p) for s, p in reference.stages.items()}, "totals": report.totals()}, report


@dataclass
class VlmConversionResult:
    """A whole VLM exported as one folder (``vlm-export MODEL --parts all``): the encoder's spine result and
    the end-to-end generation report against transformers' ``generate`` (None when not run)."""
    path: Path
    record: dict
    encoder: ConversionResult
    report: ParityReport | None

    @property
    def passed(self) -> bool:
        return self.record.get("status") != "failed-verification"

    def summary_line(self) -> str:
        gen = self.report.summary_line() if self.report is not None else "generation NOT RUN"
        return f"encoder {_stage_verdict(self.encoder)} | {gen}"

    def to_dict(self) -> dict:
        return {"path": str(self.path), "passed": self.passed, "summary": self.summary_line(), **self.record,
                "encoder_result": self.encoder.to_dict(),
                "verification": self.report.to_dict() if self.report is not None else None}


def convert_vlm(model: str, output, *, checkpoint=None, layers: int | None = None, precision: str = "fp32",
                opset: int = 18, sizes=(), new_tokens: int = 64, prompt_ids=None, seed: int = 0, verify: bool = True,
                force: bool = False, progress: Callable[[str], None] | None = None) -> VlmConversionResult:
    """The whole VLM into the folder ``output``: the encoder through :func:`convert` (the ``vlm-onnx`` route,
    verified against the transformers tower), then the token embedding and the KV-cache decoder
    (``vlm.bundle``), then the folder's greedy generation in ONNX Runtime against transformers' ``generate`` on
    the same weights at each size. Committed as one folder (``atomic.OutputSlot``); a failed verdict lands
    only under ``OUTPUT.FAILED``. Without a checkpoint the seeded random model is written to the staging
    folder first, so the encoder route and the decoder read the same weights."""
    from .vlm import bundle, tower_source
    from .vlm.export import parse_size
    from .vlm.hunyuan import DEFAULT_SIZES
    from .vlm.hunyuan_lm import build_model, check_decoder_size

    say = progress or (lambda msg: None)
    bundle.check_model(model)
    if precision not in ("fp32", "fp16"):
        raise UsageError(f"precision {precision} is not available for --parts all", hint="fp32 or fp16")
    if new_tokens < 1:
        raise UsageError("--new-tokens must be >= 1")
    out = Path(output)
    if out.suffix in (".onnx", ".pt2"):
        raise UsageError(f"-o {out} names a file; --parts all writes a folder", hint="Name a folder, e.g. -o hunyuan-ocr/")
    size_list = [parse_size(s) for s in sizes] or [tuple(s) for s in DEFAULT_SIZES]
    ck = Path(checkpoint).expanduser() if checkpoint else None
    if ck is not None and not ck.is_dir():
        raise UsageError(f"--checkpoint {checkpoint} is not a folder",
                         hint="Pass the checkpoint folder (config.json + model*.safetensors).")
    with OutputSlot(out, is_dir=True, sources=[ck] if ck else [], force=force) as slot:
        staged = slot.stage / "vlm"
        staged.mkdir()
        say("building the model" + (f" from {ck}" if ck else " (seeded random weights)"))
        model_obj = build_model(ck, layers=layers, vision_layers=layers, seed=seed)
        check_decoder_size(model_obj, precision)
        if ck is None:
            ck = slot.stage / "seeded-checkpoint"
            model_obj.save_pretrained(str(ck))
        enc_options = {"precision": precision, "opset": opset, "seed": seed,
                       "sizes": [f"{h}x{w}" for h, w in size_list], **({"layers": layers} if layers else {})}
        encoder = convert(tower_source(model, ck), staged / "encoder.onnx", target="onnx", route="vlm-onnx",
                          verify=verify, options=enc_options, progress=lambda m: say(f"[encoder] {m}"))
        say("[decoder] torch.onnx.export: token embedding and decoder with KV cache")
        facts = bundle.export_language_parts(model_obj, staged, precision=precision, opset=opset,
                                             encoder_manifest=encoder.manifest_path.name)
        bundle.carry_tokenizer(Path(checkpoint).expanduser() if checkpoint else None, staged)
        report = None
        if verify:
            report = bundle.verify_generation(staged, model_obj, sizes=size_list, precision=precision,
                                              new_tokens=new_tokens, seed=seed, prompt_ids=prompt_ids,
                                              say=lambda m: say(f"[generate] {m}"))
        failed = not encoder.passed or (report is not None and not report.passed)
        record = {"status": "failed-verification" if failed else ("verified" if verify else "unverified"),
                  "model": model, "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None,
                  "weights": "checkpoint" if checkpoint else f"seeded random (seed {seed})", "precision": precision,
                  "layers": layers, "produced": facts, "encoder_verdict": _stage_verdict(encoder),
                  "generation_verification": report.to_dict() if report is not None else None}
        bundle.record_verdict(staged, record)
        _relocate_manifest(encoder.artifact.path, staged, slot.failed_path if failed else slot.path)
        landed = slot.commit(staged, failed=failed)
    encoder.artifact = detect(landed / "encoder.onnx")
    return VlmConversionResult(landed, record, encoder, report)


__all__ = ["convert", "convert_set", "convert_vlm", "VlmConversionResult", "original_set", "ConversionResult", "SetConversionResult", "TARGET_NAMES", "original_source",
           "available_converters", "broken_plugins",
           "final_path", "Precision"]
