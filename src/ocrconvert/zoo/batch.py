"""Batch conversion of many models × targets for CI: isolated jobs, timeouts, resume, reports.

A YAML config (``yaml.safe_load``, strict schema) lists models (zoo names or paths) and targets;
every (model, target) pair is a job. Each job runs in its own child process
(``python -m ocrconvert.zoo.batch JOBFILE``), in its own process group, so a crash, a segfault or
a hang in one model cannot stop the others; ``jobs`` of them run at once.

State for ``resume`` lives in ``OUTPUT/.ocrconvert-batch/JOB.json``, written only after a job
finished and verified. A job is skipped on resume when its fingerprint (source content hash, job
options, tool versions) is unchanged AND its artifact and manifest are on disk, the artifact's
sha256 matches the manifest, and the manifest's verification passed.

Exit code of a batch (``BatchResult.exit_code``):
  0  every job passed, was resumed, or failed exactly as its config ``expect``\\ s;
  6  at least one job failed parity (its artifact does not match the source);
  5  otherwise, at least one job failed for any other reason (conversion error, unsupported
     model or ops, missing dependency, crash, timeout, or an expected failure that passed);
  2  the config itself is invalid (raised before any job starts, as ``UsageError``).
Each job's own exit code and error (message, hint, unsupported ops) are in ``report.json``.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable
from xml.sax.saxutils import escape, quoteattr

from ..errors import ExitCode, OcrConvertError, UsageError

log = logging.getLogger(__name__)

STATE_DIR = ".ocrconvert-batch"
REPORT_SCHEMA_VERSION = 1

# config target name -> (pipeline target, preferred route)
TARGETS: dict[str, tuple[str, str | None]] = {
    "onnx": ("onnx", None),
    "torch": ("torch", "onnx2torch"),          # graph route: ONNX description + safetensors
    "torch-native": ("torch", "native"),       # transformers-style folder
    "torch-aot": ("torch-aot", None),
    "tensorrt": ("tensorrt", None),
}
# options that may appear in defaults, on a model and on a target entry
JOB_KEYS = {"timeout", "opset", "atol", "rtol", "precision", "family", "dict", "images", "allow_partial", "expect",
            "reason"}
TOP_KEYS = {"version", "output", "report_dir", "defaults", "models"}
DEFAULT_KEYS = JOB_KEYS | {"targets"}
MODEL_KEYS = JOB_KEYS | {"model", "name", "targets"}
TARGET_KEYS = JOB_KEYS | {"target"}
EXPECT_KEYS = {"exit_code", "unsupported_ops", "message"}
DEFAULT_TIMEOUT = 900.0
_PARALLEL = 1  # jobs run at once by the current run_batch (sizes each child's thread pools)


class BatchConfigError(UsageError):
    default_hint = "See configs/zoo/ppocr.yaml for a complete example of the batch config schema."


# ---------------------------------------------------------------------------------------- config
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
    opset: int | None = None
    atol: Any = None
    rtol: Any = None
    precision: str = "fp32"
    family: str | None = None
    dict: str | None = None
    images: str | None = None
    allow_partial: bool = False
    expect: Expectation | None = None
    reason: str | None = None

    def options(self) -> dict:
        """What changes the artifact or its verdict (part of the resume fingerprint)."""
        return {"target": self.target, "opset": self.opset, "atol": self.atol, "rtol": self.rtol,
                "precision": self.precision, "family": self.family, "allow_partial": self.allow_partial,
                "dict": _file_digest(self.dict), "images": _dir_digest(self.images),
                "expect": asdict(self.expect) if self.expect else None}


@dataclass
class BatchConfig:
    path: Path
    output: Path
    report_dir: Path
    jobs: list[JobSpec]


def _fail_unknown(keys, allowed: set[str], where: str) -> None:
    for k in keys:
        if k not in allowed:
            close = difflib.get_close_matches(str(k), sorted(allowed), n=1)
            hint = f"Did you mean {close[0]!r}? " if close else ""
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
    if key == "opset":
        if isinstance(value, bool) or not isinstance(value, int) or not 7 <= value <= 23:
            bad("an integer from 7 to 23")
        return value
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
        if value not in ("fp32", "fp16", "int8"):
            bad("fp32, fp16 or int8")
        return value
    if key in ("family", "dict", "images", "reason"):
        if not isinstance(value, str) or not value:
            bad("a non-empty string")
        return value
    if key == "allow_partial":
        if not isinstance(value, bool):
            bad("true or false")
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


def _job_options(raw: dict, where: str) -> dict:
    return {k: _check_value(k, v, where) for k, v in raw.items() if k in JOB_KEYS}


def _targets(value, where: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise BatchConfigError(f"{where}: targets must be a non-empty list")
    out = []
    for i, t in enumerate(value):
        entry = {"target": t} if isinstance(t, str) else _mapping(t, f"{where}: targets[{i}]")
        _fail_unknown(entry, TARGET_KEYS, f"{where}: targets[{i}]")
        name = entry.get("target")
        if name not in TARGETS:
            close = difflib.get_close_matches(str(name), list(TARGETS), n=1)
            raise BatchConfigError(f"{where}: unknown target {name!r}",
                                   hint=(f"Did you mean {close[0]!r}? " if close else "") + f"Targets: {', '.join(TARGETS)}.")
        out.append(entry)
    return out


def _model_id(model: str) -> str:
    p = Path(model)
    stem = p.stem if p.suffix else p.name
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "model"


def parse_config(doc, path: Path, *, base: Path | None = None) -> BatchConfig:
    """Validate a loaded config document; relative paths resolve against ``base`` (default: cwd)."""
    base = Path.cwd() if base is None else base
    doc = _mapping(doc, f"{path}: the top level")
    _fail_unknown(doc, TOP_KEYS, f"{path} (top level)")
    if doc.get("version", 1) != 1:
        raise BatchConfigError(f"{path}: version {doc.get('version')!r} is not supported (only 1)")
    if not isinstance(doc.get("output"), str) or not doc["output"]:
        raise BatchConfigError(f"{path}: 'output' (the output root folder) is required")
    output = (base / doc["output"]).resolve()
    report_dir = (base / doc["report_dir"]).resolve() if isinstance(doc.get("report_dir"), str) else output / "report"
    defaults = _mapping(doc.get("defaults") or {}, f"{path}: defaults")
    _fail_unknown(defaults, DEFAULT_KEYS, f"{path}: defaults")
    default_opts = _job_options(defaults, f"{path}: defaults")
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
        model = entry.get("model")
        if not isinstance(model, str) or not model:
            raise BatchConfigError(f"{where}: 'model' (a zoo name or a path) is required")
        where = f"{path}: model {model!r}"
        model_opts = _job_options(entry, where)
        targets = _targets(entry["targets"], where) if "targets" in entry else default_targets
        if not targets:
            raise BatchConfigError(f"{where}: no targets (set defaults.targets or the model's targets)")
        name = entry.get("name") or _model_id(model)
        if not isinstance(name, str):
            raise BatchConfigError(f"{where}: name must be a string")
        if not _is_zoo_name(model):
            model = str((base / model).expanduser())
        for t in targets:
            opts = {**default_opts, **model_opts, **_job_options(t, f"{where}, target {t['target']!r}")}
            job_id = f"{name}.{t['target']}"
            if job_id in seen:
                raise BatchConfigError(f"{where}: job {job_id!r} is listed twice",
                                       hint="Give one of the entries a distinct 'name'.")
            seen[job_id] = model
            for k in ("dict", "images"):
                if opts.get(k):
                    opts[k] = str((base / opts[k]).expanduser())
            jobs.append(JobSpec(id=job_id, model=model, target=t["target"], output=output / name / t["target"], **opts))
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


def _is_zoo_name(model: str) -> bool:
    from .fetch import entries

    return model in entries()


# ------------------------------------------------------------------------------------ fingerprint
def _file_digest(path: str | None) -> str | None:
    if not path:
        return None
    from ..manifest import sha256_file

    try:
        return sha256_file(Path(path))
    except OSError:
        return f"unreadable:{path}"


def _dir_digest(path: str | None) -> str | None:
    if not path or not Path(path).exists():
        return path
    from ..manifest import sha256_artifact

    return sha256_artifact(Path(path))


def tool_versions() -> dict:
    from ..manifest import environment

    env = environment()
    return {"python": env["python"], **env["packages"]}


def source_digest(source: Path) -> str:
    """Content hash of every file the source model is made of (program, weights, yml, dict)."""
    from ..formats import detect
    from ..manifest import sha256_artifact, sha256_file

    art = detect(source)
    h = hashlib.sha256(sha256_artifact(art.path).encode())
    for role, p in sorted(art.files.items()):
        h.update(f"{role}:{p.name}:{sha256_file(p)}".encode())
    return h.hexdigest()


def fingerprint(job: JobSpec, src_digest: str, versions: dict) -> str:
    doc = {"source": src_digest, "options": job.options(), "versions": versions}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def artifact_path(job: JobSpec) -> Path:
    """Where the pipeline puts the artifact of a job (file targets go inside the job folder)."""
    from ..pipeline import FILE_TARGETS

    target = TARGETS[job.target][0]
    return job.output / f"model{FILE_TARGETS[target]}" if target in FILE_TARGETS else job.output


def verified_on_disk(job: JobSpec, src_digest: str | None = None) -> str | None:
    """None when the job's artifact + manifest exist, match and passed verification; else why not."""
    from ..formats import detect
    from ..manifest import read_manifest, sha256_artifact

    art = artifact_path(job)
    if not art.exists():
        return "no artifact"
    try:
        man = read_manifest(art)
    except OcrConvertError as exc:
        return exc.message
    if not man:
        return "no manifest"
    ver = man.get("verification") or {}
    if not ver.get("passed"):
        return "manifest does not record a passed verification"
    try:
        detect(art)
        if sha256_artifact(art) != (man.get("artifact") or {}).get("sha256"):
            return "artifact sha256 differs from its manifest"
    except (OcrConvertError, OSError) as exc:
        return f"artifact unreadable: {exc}"
    return None


# ------------------------------------------------------------------------------------------- run
@dataclass
class JobRecord:
    id: str
    model: str
    target: str
    status: str = "pending"    # passed | failed | xfail | resumed | timeout | crashed
    exit_code: int = 0
    ok: bool = False           # counts as a success for the batch verdict
    seconds: float = 0.0
    source: str | None = None
    artifact: str | None = None
    manifest: str | None = None
    route: list[str] = field(default_factory=list)
    summary: str | None = None
    worst_max_abs: float | None = None
    error: dict | None = None
    expected: dict | None = None
    reason: str | None = None
    fingerprint: str | None = None
    log: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["worst_max_abs"] is not None and d["worst_max_abs"] != d["worst_max_abs"]:
            d["worst_max_abs"] = None  # NaN is not JSON
        return d


@dataclass
class BatchResult:
    config: Path
    output: Path
    report_dir: Path
    records: list[JobRecord]
    seconds: float
    started: str

    @property
    def exit_code(self) -> int:
        bad = [r for r in self.records if not r.ok]
        if not bad:
            return int(ExitCode.OK)
        if any(r.exit_code == ExitCode.PARITY_FAILED for r in bad):
            return int(ExitCode.PARITY_FAILED)
        return int(ExitCode.CONVERSION_FAILED)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def to_dict(self) -> dict:
        return {"schema_version": REPORT_SCHEMA_VERSION, "config": str(self.config), "output": str(self.output),
                "started": self.started, "seconds": round(self.seconds, 3), "exit_code": self.exit_code,
                "passed": self.passed, "counts": self.counts(), "versions": tool_versions(),
                "jobs": [r.to_dict() for r in self.records]}


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _clean_leftovers(job: JobSpec) -> None:
    """Remove what a killed earlier run may have left beside the job's output (staging, .old)."""
    parent = job.output.parent
    if not parent.is_dir():
        return
    for p in parent.glob(f".{job.output.name}.*"):
        if p.name.endswith(".partial") or p.name == f".{job.output.name}.old":
            shutil.rmtree(p, ignore_errors=True)
    if job.output.is_dir():
        for p in job.output.glob(".*.tmp"):
            p.unlink(missing_ok=True)
        for p in job.output.glob(".model.*.partial"):
            shutil.rmtree(p, ignore_errors=True)


def _resolve_source(job: JobSpec) -> Path:
    if _is_zoo_name(job.model):
        from .fetch import pull

        return pull(job.model)
    return Path(job.model)


class _Running:
    def __init__(self, job: JobSpec, record: JobRecord, proc: subprocess.Popen, result_path: Path, timeout: float,
                 log_file):
        self.job, self.record, self.proc, self.result_path = job, record, proc, result_path
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.t0 = time.monotonic()
        self.log_file = log_file
        self.timed_out = False


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_batch(config: BatchConfig, *, jobs: int = 1, resume: bool = False, timeout: float | None = None,
              report_dir: Path | None = None,
              on_event: Callable[[str, JobRecord], None] | None = None) -> BatchResult:
    """Run every job of ``config``; write ``report.json``, ``junit.xml``, ``summary.md``; return the result.

    ``on_event(kind, record)`` is called with ``start``, ``done`` (after a run) or ``skip`` (resumed).
    """
    global _PARALLEL
    emit = on_event or (lambda kind, rec: None)
    jobs = _PARALLEL = max(1, int(jobs))
    report_dir = Path(report_dir).resolve() if report_dir else config.report_dir
    state_dir = config.output / STATE_DIR
    logs_dir = report_dir / "logs"
    for d in (state_dir, logs_dir):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {d}: {exc.strerror}", hint="Choose another output or report folder.") from None
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t_start = time.monotonic()
    versions = tool_versions()
    records = {j.id: JobRecord(j.id, j.model, j.target, reason=j.reason,
                               expected=asdict(j.expect) if j.expect else None) for j in config.jobs}
    pending: list[tuple[JobSpec, Path]] = []

    for job in config.jobs:
        rec = records[job.id]
        try:
            src = _resolve_source(job)
            rec.source = str(src)
            rec.fingerprint = fingerprint(job, source_digest(src), versions)
        except OcrConvertError as exc:
            _finish(rec, job, {"exit_code": int(exc.exit_code), "error": exc.to_dict()}, 0.0)
            emit("done", rec)
            continue
        if resume and _can_skip(job, rec, state_dir):
            emit("skip", rec)
            continue
        pending.append((job, src))

    running: list[_Running] = []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                job, src = pending.pop(0)
                running.append(_start(job, records[job.id], src, timeout or job.timeout, state_dir, logs_dir))
                emit("start", records[job.id])
            time.sleep(0.05)
            for r in list(running):
                if r.proc.poll() is None and time.monotonic() > r.deadline:
                    r.timed_out = True
                    _kill_group(r.proc)
                    r.proc.wait()
                if r.proc.poll() is None:
                    continue
                running.remove(r)
                _collect(r, state_dir)
                emit("done", r.record)
    finally:
        for r in running:  # interrupted: take the children with us
            _kill_group(r.proc)
            r.proc.wait()
            r.log_file.close()
    result = BatchResult(config.path, config.output, report_dir, [records[j.id] for j in config.jobs],
                         time.monotonic() - t_start, started)
    write_reports(result)
    return result


def _can_skip(job: JobSpec, rec: JobRecord, state_dir: Path) -> bool:
    state = state_dir / f"{job.id}.json"
    try:
        prev = json.loads(state.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(prev, dict) or prev.get("fingerprint") != rec.fingerprint or not prev.get("ok"):
        return False
    if prev.get("status") in ("passed", "resumed"):
        why = verified_on_disk(job)
        if why:
            log.info("%s: re-running: %s", job.id, why)
            return False
    elif prev.get("status") != "xfail":
        return False
    for k in ("artifact", "manifest", "route", "summary", "worst_max_abs", "error", "exit_code", "log"):
        setattr(rec, k, prev.get(k))
    rec.status, rec.ok, rec.seconds = ("resumed" if prev["status"] != "xfail" else "xfail"), True, 0.0
    return True


def _start(job: JobSpec, rec: JobRecord, src: Path, timeout: float, state_dir: Path, logs_dir: Path) -> _Running:
    _clean_leftovers(job)
    (state_dir / f"{job.id}.json").unlink(missing_ok=True)  # the old verdict no longer holds
    target, route = TARGETS[job.target]
    options: dict = {}
    if job.opset is not None:
        options["opset"] = job.opset
    if job.allow_partial:
        options["allow_partial"] = True
    spec = {"source": str(src), "output": str(job.output), "target": target, "route": route, "options": options,
            "atol": job.atol, "rtol": job.rtol, "precision": job.precision, "family": job.family,
            "dict": job.dict, "images": job.images, "parent_pid": os.getpid()}
    job_file = state_dir / f"{job.id}.job.json"
    result_path = state_dir / f"{job.id}.result.json"
    result_path.unlink(missing_ok=True)
    _atomic_write(job_file, json.dumps(spec))
    log_path = logs_dir / f"{job.id}.log"
    rec.log = str(log_path)
    log_file = open(log_path, "w", encoding="utf-8")
    log_file.write(f"# ocrconvert batch job {job.id}: {job.model} -> {job.target}\n")
    log_file.flush()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # parallel jobs share the cores: without this each one spawns a thread per core and they thrash
    threads = str(max(1, (os.cpu_count() or 1) // max(1, _PARALLEL)))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, threads)
    proc = subprocess.Popen([sys.executable, "-m", "ocrconvert.zoo.batch", str(job_file), str(result_path)],
                            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    return _Running(job, rec, proc, result_path, timeout, log_file)


def _collect(r: _Running, state_dir: Path) -> None:
    r.log_file.close()
    seconds = time.monotonic() - r.t0
    code = r.proc.returncode
    if r.timed_out:
        result = {"exit_code": int(ExitCode.CONVERSION_FAILED), "status": "timeout",
                  "error": {"error": "Timeout", "message": f"the job ran past its timeout of {r.timeout:g} s and was killed",
                            "hint": "Raise timeout for this job in the config, or --timeout.", "exit_code": 5}}
    else:
        try:
            result = json.loads(r.result_path.read_text())
        except (OSError, ValueError):
            why = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with {code} without a result"
            result = {"exit_code": int(ExitCode.CONVERSION_FAILED), "status": "crashed",
                      "error": {"error": "Crash", "message": f"the job process crashed: {why}",
                                "hint": f"See the job log {r.record.log}.", "exit_code": 5}}
    r.result_path.unlink(missing_ok=True)
    (state_dir / f"{r.job.id}.job.json").unlink(missing_ok=True)
    if result.get("status") in ("timeout", "crashed"):
        _clean_leftovers(r.job)  # a killed job never ran its own cleanup
    _finish(r.record, r.job, result, seconds)
    if r.record.ok:
        _atomic_write(state_dir / f"{r.job.id}.json", json.dumps(r.record.to_dict(), indent=2))


def _finish(rec: JobRecord, job: JobSpec, result: dict, seconds: float) -> None:
    rec.seconds = round(seconds, 3)
    rec.exit_code = int(result.get("exit_code", 1))
    rec.error = result.get("error")
    for k in ("artifact", "manifest", "route", "summary", "worst_max_abs"):
        if k in result:
            setattr(rec, k, result[k])
    if rec.exit_code == 0:
        rec.status, rec.ok = "passed", True
        if job.expect:
            rec.ok = False
            rec.status = "failed"
            rec.exit_code = int(ExitCode.CONVERSION_FAILED)
            rec.error = {"error": "UnexpectedPass", "exit_code": 5,
                         "message": f"expected to fail with exit {job.expect.exit_code}, but it passed",
                         "hint": "Remove 'expect' for this target from the config."}
        return
    rec.status = result.get("status") or "failed"
    if job.expect and job.expect.matches({"exit_code": rec.exit_code, "error": rec.error}):
        rec.status, rec.ok = "xfail", True


# --------------------------------------------------------------------------------------- reports
def write_reports(result: BatchResult) -> None:
    d = result.report_dir
    _atomic_write(d / "report.json", json.dumps(result.to_dict(), indent=2, ensure_ascii=False, default=str))
    _atomic_write(d / "junit.xml", junit_xml(result))
    _atomic_write(d / "summary.md", summary_md(result))


def junit_xml(result: BatchResult) -> str:
    recs = result.records
    failures = sum(not r.ok for r in recs)
    skipped = sum(r.status == "xfail" for r in recs)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<testsuites tests="{len(recs)}" failures="{failures}" time="{result.seconds:.3f}">',
             f'  <testsuite name="ocrconvert-batch" tests="{len(recs)}" failures="{failures}" errors="0" '
             f'skipped="{skipped}" time="{result.seconds:.3f}" timestamp="{result.started}">']
    for r in recs:
        lines.append(f'    <testcase classname={quoteattr("ocrconvert.batch." + r.model)} name={quoteattr(r.target)} '
                     f'time="{r.seconds:.3f}">')
        err = r.error or {}
        if not r.ok:
            msg = f"exit {r.exit_code}: {err.get('message', r.status)}"
            body = json.dumps(err, indent=2, ensure_ascii=False)
            lines.append(f'      <failure type={quoteattr(err.get("error", r.status))} message={quoteattr(msg)}>'
                         f'{escape(body)}</failure>')
        elif r.status == "xfail":
            lines.append(f'      <skipped message={quoteattr("expected failure: " + (err.get("message") or ""))}/>')
        out = r.summary or ("resumed: unchanged and verified" if r.status == "resumed" else "")
        if out:
            lines.append(f"      <system-out>{escape(out)}</system-out>")
        lines.append("    </testcase>")
    lines += ["  </testsuite>", "</testsuites>", ""]
    return "\n".join(lines)


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def summary_md(result: BatchResult) -> str:
    verdict = "PASSED" if result.passed else f"FAILED (exit {result.exit_code})"
    counts = ", ".join(f"{v} {k}" for k, v in sorted(result.counts().items()))
    lines = [f"# ocrconvert batch: {verdict}", "",
             f"Config `{result.config}`, started {result.started}, {result.seconds:.1f} s, {counts}.", "",
             "| model | target | status | exit | max abs | seconds | detail |",
             "|---|---|---|---:|---:|---:|---|"]
    for r in result.records:
        mabs = f"{r.worst_max_abs:.3g}" if isinstance(r.worst_max_abs, float) and r.worst_max_abs == r.worst_max_abs else "-"
        err = r.error or {}
        detail = err.get("message") or r.summary or ""
        if r.status == "xfail" and r.reason:
            detail = f"expected: {r.reason} ({detail})"
        lines.append(f"| {_md(r.model)} | {r.target} | {r.status} | {r.exit_code} | {mabs} | {r.seconds:.1f} | {_md(detail)} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- child process
def _die_with_parent(parent_pid: int) -> None:
    """Linux: when the batch process dies (even SIGKILL), take this job's whole process group down."""
    def handler(signum, frame):
        os.killpg(os.getpgid(0), signal.SIGKILL)

    signal.signal(signal.SIGTERM, handler)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        handler(None, None)


def _worker(job_file: Path, result_path: Path) -> int:
    import warnings

    spec = json.loads(job_file.read_text())
    _die_with_parent(int(spec["parent_pid"]))
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    result: dict = {}
    try:
        from ..pipeline import convert
        from ..verification import Tolerances

        tol = Tolerances(precision=spec["precision"], atol=spec["atol"], rtol=spec["rtol"])
        res = convert(spec["source"], spec["output"], target=spec["target"], route=spec["route"],
                      options=spec["options"], images=spec["images"], tolerances=tol, family=spec["family"],
                      dictionary=spec["dict"], progress=lambda msg: print(f"[progress] {msg}", flush=True))
        rep = res.report
        result = {"exit_code": int(ExitCode.OK if res.passed else ExitCode.PARITY_FAILED),
                  "artifact": str(res.artifact.path), "manifest": str(res.manifest_path), "route": res.route,
                  "summary": rep.summary_line() if rep is not None else None,
                  "worst_max_abs": float(rep.worst_max_abs("random")) if rep is not None else None}
        if rep is not None and not res.passed:
            result["error"] = {"error": "ParityError", "message": rep.summary_line(), "exit_code": 6,
                               "hint": "See the verification table in the manifest."}
        print(rep.summary_line() if rep is not None else "not verified", flush=True)
    except OcrConvertError as exc:
        print(f"error: {exc.message}\nhint: {exc.hint}", flush=True)
        result = {"exit_code": int(exc.exit_code), "error": exc.to_dict()}
    except Exception as exc:  # noqa: BLE001 - a bug in a job is recorded, with its traceback in the log
        import traceback

        traceback.print_exc(file=sys.stdout)
        result = {"exit_code": int(ExitCode.INTERNAL), "status": "crashed",
                  "error": {"error": type(exc).__name__, "message": f"internal error: {type(exc).__name__}: {exc}",
                            "hint": "This is a bug in ocrconvert; the traceback is in the job log.", "exit_code": 1}}
    _atomic_write(result_path, json.dumps(result, default=str))
    return int(result["exit_code"])


if __name__ == "__main__":
    sys.exit(_worker(Path(sys.argv[1]), Path(sys.argv[2])))
