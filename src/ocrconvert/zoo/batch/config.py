"""The batch config: a strict YAML schema -> jobs, each job's route options validated by its route.

Every (model, target) pair is a job; a ``set:`` entry (a model set: a set folder, a PaddleOCR model-set
folder, a stage YAML, or a mapping ``{det: ZOO_NAME|PATH, rec: ..., cls: ..., dict: PATH}``) makes ``set``
jobs: the set converted by ``convert-set`` and gated on its end-to-end pipeline parity.
``defaults`` < model entry < target entry, key by key (``options`` merge key by key too). Route options
(``options: {opset: 14}``) are validated when the config is loaded by the options records the route's
converters registered, exactly as the spine will take them, so a bad key or value is exit 2 naming the
job before anything runs. A job's ``precision`` goes to the route where a hop builds in a precision
(``aot-build``, ``trt-build``); a route that only builds fp32 refuses any other precision.
"""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ...errors import ExitCode, OcrConvertError, UsageError
from ...options import Precision

from ...pipeline import TARGET_NAMES as TARGETS  # config target name -> (pipeline target, preferred route)

# keys that may appear in defaults, on a model and on a target entry
JOB_KEYS = {"timeout", "atol", "rtol", "precision", "seed", "verify", "options", "family", "dict", "images",
            "expect", "reason"}
TOP_KEYS = {"version", "output", "report_dir", "defaults", "models"}
DEFAULT_KEYS = JOB_KEYS | {"targets"}
MODEL_KEYS = JOB_KEYS | {"model", "set", "name", "targets"}
SET_STAGE_KEYS = ("det", "cls", "rec", "dict")
NOT_FOR_SETS = ("family", "dict")  # a set's stages know their families; its dictionary is named in the set
TARGET_KEYS = JOB_KEYS | {"target"}
EXPECT_KEYS = {"exit_code", "unsupported_ops", "message"}
DEFAULT_TIMEOUT = 900.0


class BatchConfigError(UsageError):
    default_hint = "See configs/zoo/ppocr.yaml for a complete example of the batch config schema."


@dataclass(frozen=True)
class Expectation:
    exit_code: int
    unsupported_ops: tuple[str, ...] | None = None
    message: str | None = None

    def matches(self, record: dict) -> bool:
        if record.get("exit_code") != self.exit_code:
            return False
        error = record.get("error") or {}
        if self.unsupported_ops is not None and sorted(error.get("unsupported_ops") or []) != sorted(self.unsupported_ops):
            return False
        return self.message is None or self.message in (error.get("message") or "")


@dataclass(frozen=True)
class JobSpec:
    id: str
    model: str                 # as written in the config: zoo name or path
    target: str                # config target name (key of TARGETS)
    output: Path
    timeout: float = DEFAULT_TIMEOUT
    options: dict = field(default_factory=dict)   # the route options, validated; precision included when routed
    atol: Any = None
    rtol: Any = None
    precision: Precision | None = None
    seed: int = 0
    verify: bool = True
    family: str | None = None
    dict: str | None = None
    images: str | None = None
    expect: Expectation | None = None
    reason: str | None = None
    kind: str = "model"        # "model", or "set": a model set through convert-set, gated on pipeline parity
    stages: tuple[tuple[str, str], ...] | None = None  # a set given as a mapping: (stage, zoo name or path)

    @property
    def pipeline_target(self) -> str:
        return TARGETS[self.target][0]

    @property
    def route(self) -> str | None:
        return TARGETS[self.target][1]

    def settings(self) -> dict:
        """Everything of the job that changes its artifact or its verdict (JSON-able; see fingerprint)."""
        kind = {"kind": self.kind, "stages": [list(s) for s in self.stages or ()]} if self.kind == "set" else {}
        return {**kind, "target": self.target, "options": self.options, "atol": self.atol, "rtol": self.rtol,
                "precision": self.precision.value if self.precision else None, "seed": self.seed,
                "verify": self.verify, "family": self.family, "dict": self.dict, "images": self.images,
                "expect": asdict(self.expect) if self.expect else None}


@dataclass
class BatchConfig:
    path: Path
    output: Path
    report_dir: Path
    jobs: list[JobSpec]
    shard: dict | None = None  # a CI shard's part of the config (shards.shard_config): recorded in its report


# ------------------------------------------------------------------------------------ key checks
@lru_cache(maxsize=1)
def _route_option_names() -> frozenset[str]:
    from ...pipeline import available_converters

    return frozenset(n for s in available_converters() for n in s.options_type.field_names())


def _fail_unknown(keys, allowed: set[str], where: str) -> None:
    for k in keys:
        if k not in allowed:
            close = difflib.get_close_matches(str(k), sorted(allowed), n=1)
            hint = f"Did you mean {close[0]!r}? " if close else ""
            if "options" in allowed and k in _route_option_names():
                hint = f"{k} is a route option: write it under options, e.g. options: {{{k}: ...}}. "
            raise BatchConfigError(f"unknown key {k!r} in {where}",
                                   hint=f"{hint}Allowed keys there: {', '.join(sorted(allowed))}.")


def _mapping(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise BatchConfigError(f"{where} must be a mapping, not {type(value).__name__}")
    return value


def _check_value(key: str, value, where: str):
    def bad(what: str):
        raise BatchConfigError(f"{where}: {key} must be {what}, not {value!r}")

    if key == "timeout":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            bad("a positive number of seconds")
        return float(value)
    if key in ("atol", "rtol"):
        if isinstance(value, bool):
            bad("a number or a mapping OUTPUT: number")
        if isinstance(value, (int, float)) and value >= 0:
            return float(value)
        if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                                           and v >= 0 for k, v in value.items()):
            return {k: float(v) for k, v in value.items()}
        bad("a non-negative number or a mapping OUTPUT: number")
    if key == "precision":
        try:
            return Precision.parse(value, where=f"{where}: precision")
        except UsageError as exc:
            raise BatchConfigError(exc.message, hint=exc.hint) from None
    if key == "seed":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            bad("a non-negative integer")
        return value
    if key == "verify":
        if not isinstance(value, bool):
            bad("true or false")
        return value
    if key == "options":
        opts = _mapping(value, f"{where}: options")
        if "precision" in opts:
            raise BatchConfigError(f"{where}: precision goes on the job, not under options",
                                   hint="Write precision: fp16 beside target: it reaches the route that builds "
                                        "in a precision and the tolerances.")
        return dict(opts)
    if key in ("family", "dict", "images", "reason"):
        if not isinstance(value, str) or not value:
            bad("a non-empty string")
        return value
    if key == "expect":
        exp = _mapping(value, f"{where}: expect")
        _fail_unknown(exp, EXPECT_KEYS, f"{where}: expect")
        code = exp.get("exit_code")
        if isinstance(code, bool) or not isinstance(code, int) or code not in {int(c) for c in ExitCode} - {0}:
            raise BatchConfigError(f"{where}: expect.exit_code must be one of 1..6, not {code!r}")
        ops = exp.get("unsupported_ops")
        if ops is not None and (not isinstance(ops, list) or not all(isinstance(o, str) for o in ops)):
            raise BatchConfigError(f"{where}: expect.unsupported_ops must be a list of operator names")
        msg = exp.get("message")
        if msg is not None and not isinstance(msg, str):
            raise BatchConfigError(f"{where}: expect.message must be a string")
        return Expectation(code, tuple(ops) if ops is not None else None, msg)
    raise AssertionError(key)  # pragma: no cover - keys are checked before


def _job_settings(raw: dict, where: str) -> dict:
    return {k: _check_value(k, v, where) for k, v in raw.items() if k in JOB_KEYS}


def _merge(*layers: dict) -> dict:
    """Later layers win key by key; ``options`` merge key by key as well."""
    out: dict = {}
    for layer in layers:
        for k, v in layer.items():
            out[k] = {**out.get("options", {}), **v} if k == "options" else v
    return out


def _targets(value, where: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise BatchConfigError(f"{where}: targets must be a non-empty list")
    out = []
    for i, t in enumerate(value):
        entry = {"target": t} if isinstance(t, str) else _mapping(t, f"{where}: targets[{i}]")
        _fail_unknown(entry, TARGET_KEYS, f"{where}: targets[{i}]")
        name = entry.get("target")
        if not isinstance(name, str) or name not in TARGETS:
            close = difflib.get_close_matches(str(name), list(TARGETS), n=1)
            raise BatchConfigError(f"{where}: unknown target {name!r}",
                                   hint=(f"Did you mean {close[0]!r}? " if close else "") + f"Targets: {', '.join(TARGETS)}.")
        out.append(entry)
    return out


# ------------------------------------------------------------------------------- route options
def _source_nodes(model: str) -> set[str]:
    """The route-graph node(s) the job starts from: known for zoo models and existing paths."""
    from ...formats import Format, detect
    from ...registry import NODE_OF

    if is_zoo_name(model):
        from ..fetch import get_entry

        return {NODE_OF[Format(get_entry(model).format)]}
    try:
        return {NODE_OF[detect(Path(model)).format]}
    except (OcrConvertError, OSError):  # not there yet, or unreadable: the job reports it when it runs
        return set(NODE_OF.values())


def _set_source_nodes(model: str, stages: tuple[tuple[str, str], ...] | None) -> set[str]:
    """The nodes a set's stages start from: exact for stages given as zoo names or model paths."""
    from ...registry import NODE_OF

    if not stages:  # a set folder or YAML: its stages are read when the job runs
        return set(NODE_OF.values())
    nodes: set[str] = set()
    for stage, ref in stages:
        if stage != "dict":
            nodes |= _source_nodes(ref) if is_zoo_name(ref) or Path(ref).exists() else set(NODE_OF.values())
    return nodes or set(NODE_OF.values())


def route_options(job_id: str, model: str, target: str, options: dict, precision: Precision | None,
                  nodes: set[str] | None = None) -> dict:
    """The options the job hands the spine, validated now by the records of the route it will take.

    Refuses (exit 2, naming the job) a key or value no candidate route accepts, and a precision the
    route cannot build."""
    from ... import registry
    from ...pipeline import split_options  # the spine's own rule: each hop takes its share, the rest is refused

    pipeline_target, prefer = TARGETS[target]
    routes = [r for node in sorted(nodes if nodes is not None else _source_nodes(model))
              for r in registry.plan_routes(node, pipeline_target, prefer=prefer)]
    wanted = dict(options)
    if not routes:  # no route at all: the job fails when it runs, as an unsupported model
        return wanted
    if precision is not None:
        if any("precision" in s.options_type.field_names() for r in routes for s in r):
            wanted["precision"] = precision.value
        elif precision is not Precision.FP32:
            names = " | ".join(" -> ".join(s.key.name for s in r) for r in routes)
            raise BatchConfigError(f"job {job_id}: precision {precision.value} cannot be built by the route ({names}): "
                                   f"it builds fp32 only", hint="Drop precision for this target, or pick a target "
                                   "whose route builds in a precision (torch-aot, tensorrt).")
    first: UsageError | None = None
    for route in routes:
        try:
            split_options(route, wanted)
            return wanted
        except UsageError as exc:
            first = first or exc
    raise BatchConfigError(f"job {job_id}: {first.message}", hint=first.hint)


# ------------------------------------------------------------------------------------- parsing
def _model_id(model: str) -> str:
    p = Path(model)
    stem = p.stem if p.suffix else p.name
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "model"


def is_zoo_name(model: str) -> bool:
    from ..fetch import entries

    return model in entries()


def _user_path(base: Path, value: str, where: str, *, resolve: bool = True) -> Path:
    """A path the config names, against ``base``; one no file system can hold (a NUL byte, ~unknown-user, a
    name too long) is refused here, naming the key."""
    try:
        if "\0" in value:
            raise ValueError("embedded null byte")
        return (base / value).resolve() if resolve else (base / value).expanduser()
    except (ValueError, RuntimeError, OSError) as exc:
        raise BatchConfigError(f"{where}: {value!r} is not a usable path ({exc})") from None


def _set_entry(value, name, base: Path, where: str) -> tuple[str, tuple[tuple[str, str], ...] | None]:
    """A ``set:`` value: a path (set folder, PaddleOCR model-set folder, stage YAML) or a mapping of stages to zoo
    names or paths. Returns (the set as the job's model string, the stages of a mapping or None)."""
    if isinstance(value, str) and value:
        return str(_user_path(base, value, f"{where}: set", resolve=False)), None
    if not isinstance(value, dict) or not value:
        raise BatchConfigError(f"{where}: set must be a path or a mapping {{det: ..., rec: ..., cls: ..., dict: ...}}")
    _fail_unknown(value, set(SET_STAGE_KEYS), f"{where}: set")
    missing = [k for k in ("det", "rec") if k not in value]
    if missing:
        raise BatchConfigError(f"{where}: set names no {' and no '.join(missing)} model",
                               hint="A set needs det and rec (zoo names or paths); cls and dict are optional.")
    if not isinstance(name, str) or not name:
        raise BatchConfigError(f"{where}: a set given as a mapping needs a name (the job id prefix)")
    stages = []
    for key in SET_STAGE_KEYS:
        ref = value.get(key)
        if ref is None:
            continue
        if not isinstance(ref, str) or not ref:
            raise BatchConfigError(f"{where}: set.{key} must be a zoo name or a path, not {ref!r}")
        if key == "dict" or not is_zoo_name(ref):
            ref = str(_user_path(base, ref, f"{where}: set.{key}", resolve=False))
        stages.append((key, ref))
    return "set(" + ", ".join(f"{k}={v}" for k, v in stages) + ")", tuple(stages)


def parse_config(doc, path: Path, *, base: Path | None = None) -> BatchConfig:
    """Validate a loaded config document; relative paths resolve against ``base`` (default: cwd)."""
    base = Path.cwd() if base is None else base
    doc = _mapping(doc, f"{path}: the top level")
    _fail_unknown(doc, TOP_KEYS, f"{path} (top level)")
    if doc.get("version", 1) != 1:
        raise BatchConfigError(f"{path}: version {doc.get('version')!r} is not supported (only 1)")
    if not isinstance(doc.get("output"), str) or not doc["output"]:
        raise BatchConfigError(f"{path}: 'output' (the output root folder) is required")
    output = _user_path(base, doc["output"], f"{path}: output")
    report_dir = (_user_path(base, doc["report_dir"], f"{path}: report_dir") if isinstance(doc.get("report_dir"), str)
                  else output / "report")
    defaults = _mapping(doc.get("defaults") or {}, f"{path}: defaults")
    _fail_unknown(defaults, DEFAULT_KEYS, f"{path}: defaults")
    default_settings = _job_settings(defaults, f"{path}: defaults")
    default_targets = _targets(defaults["targets"], f"{path}: defaults") if "targets" in defaults else None
    models = doc.get("models")
    if not isinstance(models, list) or not models:
        raise BatchConfigError(f"{path}: 'models' must be a non-empty list")
    jobs: list[JobSpec] = []
    seen: dict[str, str] = {}
    for i, m in enumerate(models):
        entry = {"model": m} if isinstance(m, str) else _mapping(m, f"{path}: models[{i}]")
        where = f"{path}: models[{i}]"
        _fail_unknown(entry, MODEL_KEYS, where)
        kind, stages = "set" if "set" in entry else "model", None
        if kind == "set":
            if "model" in entry:
                raise BatchConfigError(f"{where}: give either model or set, not both")
            model, stages = _set_entry(entry["set"], entry.get("name"), base, where)
        else:
            model = entry.get("model")
        if not isinstance(model, str) or not model:
            raise BatchConfigError(f"{where}: 'model' (a zoo name or a path) or 'set' is required")
        where = f"{path}: {kind} {model!r}"
        model_settings = _job_settings(entry, where)
        targets = _targets(entry["targets"], where) if "targets" in entry else default_targets
        if not targets:
            raise BatchConfigError(f"{where}: no targets (set defaults.targets or the model's targets)")
        name = entry.get("name") or _model_id(model)
        if not isinstance(name, str):
            raise BatchConfigError(f"{where}: name must be a string")
        if kind == "model" and not is_zoo_name(model):
            model = str(_user_path(base, model, where, resolve=False))
        for t in targets:
            s = _merge(default_settings, model_settings, _job_settings(t, f"{where}, target {t['target']!r}"))
            job_id = f"{name}.{t['target']}"
            if job_id in seen:
                raise BatchConfigError(f"{where}: job {job_id!r} is listed twice",
                                       hint="Give one of the entries a distinct 'name'.")
            seen[job_id] = model
            if kind == "set" and any(k in s for k in NOT_FOR_SETS):
                raise BatchConfigError(f"{where}: {', '.join(k for k in NOT_FOR_SETS if k in s)} cannot be set on a "
                                       "set job", hint="A set's stages are recognised by family; name its dictionary "
                                                       "in the set: set: {det: ..., rec: ..., dict: PATH}.")
            for k in ("dict", "images"):
                if s.get(k):
                    s[k] = str(_user_path(base, s[k], f"{where}: {k}", resolve=False))
            s["options"] = route_options(job_id, model, t["target"], s.get("options", {}), s.get("precision"),
                                         _set_source_nodes(model, stages) if kind == "set" else None)
            jobs.append(JobSpec(id=job_id, model=model, target=t["target"], output=output / name / t["target"],
                                kind=kind, stages=stages, **s))
    return BatchConfig(path, output, report_dir, jobs)


def load_config(path: str | Path) -> BatchConfig:
    """Read and validate a batch config (``yaml.safe_load`` only: no tags, no code)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BatchConfigError(f"config {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchConfigError(f"cannot read config {path}: {exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BatchConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise BatchConfigError(f"{path} is nested too deeply") from None
    return parse_config(doc, path)
