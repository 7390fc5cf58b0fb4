"""``bench``: the same input through every backend available for the given artifacts, each backend in
its own process, in interleaved rounds.

How it measures (docs/benchmarks.md, "How bench measures"):

* the input is drawn once (seeded) and written as one ``.npy`` file that every variant reads;
* every variant (backend) runs in its own child process, ``python -m ocrconvert.bench --child FD``: no
  runtime's imports, thread pools or allocator are live while another is timed, and its peak memory
  (``VmHWM``, the child's own high-water mark) is its own;
* the children load in parallel (untimed; the load ends with one call, so a shape the variant rejects
  fails here), then are driven round-robin: in each round every variant makes its share of the timed
  calls while the others are frozen (SIGSTOP), the order rotating from round to round;
* ``--threads N`` also pins every child to the same N CPUs;
* per variant: median and p10/p90 of all timed calls; ratios against the first variant that ran are the
  medians of the per-round ratios (paired: the same round saw the same machine), with their p10/p90.

``--pipeline``: each variant is a whole OCR model set (``ocr.modelset.read_set``) in its own child; one timed call
is one pass over every page (decoded once, before timing); throughput is pages/s and each stage's time (det, crop,
cls, rec) is reported per pass, median and p10/p90 like the total.

A variant that fails is reported with its error and the others still run; the report then fails
(``ExitCode.CONVERSION_FAILED``, 5). ``--device cuda`` where no CUDA device is visible is refused before
any work (``UsageError``, 2). Torch variants on CUDA are timed with the input already on the GPU and
synchronised after each call.
"""
from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ._compat import peak_rss_mb
from .errors import ExitCode, UsageError
from .formats import Format, detect

log = logging.getLogger(__name__)

DEFAULT_ROUNDS = 5
_NUMPY_KINDS = ("onnxruntime", "paddle", "tensorrt")   # runners fed numpy arrays; the rest are torch


# ----------------------------------------------------------------------------------------------------
# records
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One backend of one artifact: what a child process builds and times."""

    label: str
    artifact: str
    kind: str                   # onnxruntime | paddle | tensorrt | torch-graph | torch-native | torch-aot | ocr-set
    fused: bool = True          # torch-native: fused inference form or the trainable one
    compile_mode: str | None = None
    fp16: bool = False
    mkldnn: bool = False        # paddle: Paddle Inference with IR passes and oneDNN on (a deployment's setting)
    cuda_graphs: bool = False   # torch-aot on CUDA: the runner's CUDA-graph mode (one replay per call)


@dataclass
class BenchResult:
    variant: str
    artifact: str
    kind: str
    shape: tuple
    median_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    throughput: float | None = None   # images per second, at the median
    peak_mem_mb: float | None = None  # the variant's own process: VmHWM
    gpu_peak_mb: float | None = None  # torch on CUDA: torch.cuda.max_memory_allocated
    ratio: float | None = None        # median over rounds of (this round's median / baseline's)
    ratio_p10: float | None = None
    ratio_p90: float | None = None
    load_s: float | None = None       # import + load + the first call, in the child
    error: str = ""
    runs: list[float] = field(default_factory=list, repr=False)            # every timed call, ms
    round_medians: list[float] = field(default_factory=list, repr=False)   # one per round, ms
    # --pipeline: per stage (det, crop, cls, rec), every timed pass's ms, and their median / p10 / p90
    stage_runs: dict[str, list[float]] = field(default_factory=dict, repr=False)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.error

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["runs_ms"] = d.pop("runs")
        d["round_medians_ms"] = d.pop("round_medians")
        d["stage_runs_ms"] = d.pop("stage_runs")
        if not d["stages"]:
            del d["stages"], d["stage_runs_ms"]
        return d


@dataclass
class BenchReport:
    """Every variant's result; truthy when every variant ran."""

    device: str
    shape: tuple
    seed: int
    runs: int
    rounds: int
    warmup: int
    threads: int | None
    cpus: list[int] | None          # the CPUs every child was pinned to (with --threads), else None
    results: list[BenchResult]
    pages: list[str] | None = None  # --pipeline: the pages of one pass (``shape`` is then ``(len(pages),)``)

    @property
    def baseline(self) -> str | None:
        return next((r.variant for r in self.results if r.ok), None)

    @property
    def failed(self) -> list[BenchResult]:
        return [r for r in self.results if not r.ok]

    @property
    def passed(self) -> bool:
        return bool(self.results) and not self.failed

    def __bool__(self) -> bool:
        return self.passed

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.passed else ExitCode.CONVERSION_FAILED

    def summary_line(self) -> str:
        n = len(self.results)
        if self.passed and self.pages is not None:
            best = max(self.results, key=lambda r: r.throughput or 0.0)
            return (f"PASSED | {n} model set(s) ran, {self.runs} passes over {len(self.pages)} page(s) each in "
                    f"{self.rounds} interleaved rounds | fastest: {best.variant} {best.throughput:.3g} pages/s")
        if self.passed:
            return f"PASSED | {n} variant(s) ran, {self.runs} runs each in {self.rounds} interleaved rounds"
        names = ", ".join(r.variant for r in self.failed)
        return f"FAILED | {len(self.failed)} of {n} variant(s) failed: {names}"

    def to_dict(self) -> dict:
        return {"device": self.device, "shape": list(self.shape), "seed": self.seed, "runs": self.runs,
                "rounds": self.rounds, "warmup": self.warmup, "threads": self.threads, "cpus": self.cpus, "baseline": self.baseline,
                **({"pipeline": True, "pages": self.pages} if self.pages is not None else {}),
                "passed": self.passed, "exit_code": int(self.exit_code), "summary": self.summary_line(),
                "results": [r.to_dict() for r in self.results]}


# ----------------------------------------------------------------------------------------------------
# parent: what to run, checked before any work
# ----------------------------------------------------------------------------------------------------
def _cuda_device_count() -> int:
    """CUDA devices the driver shows (honours CUDA_VISIBLE_DEVICES); 0 without a driver. Asks libcuda
    directly, so the parent imports no framework (and the check costs milliseconds)."""
    import ctypes

    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        return 0
    count = ctypes.c_int(0)
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def check_device(device: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``, refused (exit 2) when no such CUDA device is visible."""
    d = device.strip().lower()
    if d == "cpu":
        return d
    m = re.fullmatch(r"cuda(?::(\d+))?", d)
    if not m:
        raise UsageError(f"--device {device!r} is not cpu, cuda or cuda:N")
    n, index = _cuda_device_count(), int(m.group(1) or 0)
    if n == 0:
        raise UsageError(f"--device {device}: no CUDA device is visible on this machine",
                         hint="Run on a machine with an NVIDIA GPU and driver, or use --device cpu.")
    if index >= n:
        raise UsageError(f"--device {device}: only {n} CUDA device(s) are visible")
    return d


def _ort_providers() -> list[str]:
    from ._compat import require

    return require("onnxruntime", "running ONNX models").get_available_providers()


def plan_variants(path: Path, device: str, compile_: bool = True, half: bool = False,
                  compile_mode: str = "default") -> list[Variant]:
    """The variants of one artifact on ``device``; a backend that cannot run there is refused (exit 2)."""
    art = detect(path)
    name, where = art.path.name, str(art.path)
    cuda = device.startswith("cuda")
    if art.format in (Format.PADDLE_LEGACY, Format.PADDLE_PIR):
        if cuda:
            raise UsageError(f"{name}: the Paddle runner runs on the CPU only", hint="Bench it with --device cpu.")
        return [Variant(f"paddle ({name})", where, "paddle"),
                Variant(f"paddle oneDNN ({name})", where, "paddle", mkldnn=True)]
    if art.format is Format.ONNX:
        if cuda and "CUDAExecutionProvider" not in _ort_providers():
            raise UsageError(f"{name}: this ONNX Runtime has no CUDA provider; it would run on the CPU",
                             hint="Install onnxruntime-gpu, or bench it with --device cpu.")
        return [Variant(f"onnxruntime ({name})", where, "onnxruntime")]
    if art.format is Format.TORCH_GRAPH:
        out = [Variant(f"torch graph eager ({name})", where, "torch-graph")]
        if compile_:
            out.append(Variant(f"torch graph compiled[{compile_mode}] ({name})", where, "torch-graph",
                               compile_mode=compile_mode))
        return out
    if art.format is Format.TORCH_NATIVE:
        out = [Variant(f"native eager trainable ({name})", where, "torch-native", fused=False),
               Variant(f"native eager fused ({name})", where, "torch-native")]
        if compile_:
            out.append(Variant(f"native fused compiled[{compile_mode}] ({name})", where, "torch-native",
                               compile_mode=compile_mode))
        if half:
            out.append(Variant(f"native fused fp16 ({name})", where, "torch-native", fp16=True))
            if compile_:
                out.append(Variant(f"native fused fp16 compiled[{compile_mode}] ({name})", where, "torch-native",
                                   compile_mode=compile_mode, fp16=True))
        return out
    if art.format is Format.TORCH_AOT:
        from .manifest import manifest_path

        mp = manifest_path(art.path)
        aot = (json.loads(mp.read_text()) if mp.is_file() else {}).get("aot", {})
        built_for = aot.get("device") or "cpu"
        if built_for.split(":")[0] != device.split(":")[0]:
            raise UsageError(f"{name} was built for {built_for}; it cannot be benched on {device}",
                             hint=f"Bench it with --device {built_for}.")
        label = ("aot fp16" if aot.get("fp16") else "aot") + (" channels_last" if aot.get("channels_last") else "")
        out = [Variant(f"{label} ({name})", where, "torch-aot")]
        if cuda:  # the same package replayed from CUDA graphs (AotRunner(cuda_graphs=True))
            out.append(Variant(f"{label} cuda-graphs ({name})", where, "torch-aot", cuda_graphs=True))
        return out
    if art.format is Format.TENSORRT:
        if not cuda:
            raise UsageError(f"{name}: TensorRT engines run on a GPU only", hint="Bench it with --device cuda.")
        return [Variant(f"tensorrt ({name})", where, "tensorrt")]
    raise UsageError(f"cannot benchmark {art.format.value} artifacts")


def _family_shape(paths: list[Path]) -> tuple[int, ...]:
    from .families import resolve_family
    from .runners import runner_for

    for p in paths:
        art = detect(p)
        if art.format is Format.TORCH_AOT:
            continue
        fam = resolve_family(runner_for(art).info())
        if fam.bench_shape is not None:  # the family's typical input (Family.bench_shape)
            return tuple(fam.bench_shape)
    raise UsageError("cannot tell the input shape for these artifacts", hint="Pass --shape NxCxHxW.")


def _numbered(variants: list[Variant]) -> list[Variant]:
    """The same artifact given twice is benched twice (its ratio to itself shows the noise floor): the
    repeats are labelled ``#2``, ``#3``."""
    seen: dict[str, int] = {}
    out = []
    for v in variants:
        seen[v.label] = seen.get(v.label, 0) + 1
        out.append(v if seen[v.label] == 1 else replace(v, label=f"{v.label} #{seen[v.label]}"))
    return out


def _schedule(runs: int, rounds: int | None) -> list[int]:
    """Timed calls per round: ``runs`` shared out over the rounds (every variant gets the same schedule)."""
    if runs < 1:
        raise UsageError("--runs must be at least 1")
    if rounds is None:
        rounds = min(DEFAULT_ROUNDS, runs)
    if rounds < 1 or rounds > runs:
        raise UsageError(f"--rounds {rounds} must be between 1 and --runs ({runs})",
                         hint="Every round times at least one call of every variant.")
    return [runs // rounds + (i < runs % rounds) for i in range(rounds)]


# ----------------------------------------------------------------------------------------------------
# parent: the driver
# ----------------------------------------------------------------------------------------------------
def run_bench(paths: list[str | Path], *, shape: tuple[int, ...] | None = None, device: str = "cpu", runs: int = 20,
              rounds: int | None = None, warmup: int = 3, threads: int | None = None, compile_: bool = True,
              seed: int = 0, half: bool = False, compile_mode: str = "default",
              progress: Callable[[str], None] | None = None) -> BenchReport:
    """Bench every variant of ``paths`` on one input; see the module docstring for how it measures."""
    say = progress or (lambda msg: None)
    paths = [Path(p) for p in paths]
    if not paths:
        raise UsageError("give at least one artifact to benchmark")
    device = check_device(device)            # before any work: no child is started on a device that is not there
    if warmup < 0:
        raise UsageError("--warmup must not be negative")
    if threads is not None and threads < 1:
        raise UsageError("--threads must be at least 1")
    schedule = _schedule(runs, rounds)
    variants = _numbered([v for p in paths for v in plan_variants(p, device, compile_, half, compile_mode)])
    shape = tuple(shape) if shape else _family_shape(paths)
    x = np.random.default_rng(seed).uniform(-1, 1, size=shape).astype(np.float32)
    report = BenchReport(device, shape, seed, runs, len(schedule), warmup, threads, _cpus(threads),
                         [BenchResult(v.label, v.artifact, v.kind, shape) for v in variants])
    with tempfile.TemporaryDirectory(prefix="ocrconvert-bench-") as tmp:
        np.save(Path(tmp) / "input.npy", x)
        _measure(variants, report.results, Path(tmp), device, threads, report.cpus, schedule, warmup, say)
    _statistics(report.results, shape[0])
    return report


def run_pipeline_bench(sets: list[str | Path], *, images: str | Path | None = None, pages: int = 4,
                       device: str = "cpu", runs: int = 10, rounds: int | None = None, warmup: int = 1,
                       threads: int | None = None, progress: Callable[[str], None] | None = None) -> BenchReport:
    """Pages/s and per-stage time of whole OCR model sets, each in its own child process, side by side.

    One timed call is one pass over every page (``images``: a folder; default ``pages`` rendered pages with known
    text), decoded once before timing. Each set is read here first (a missing stage is exit 2 before any work)."""
    from .ocr.modelset import read_set

    say = progress or (lambda msg: None)
    sets = [Path(p) for p in sets]
    if not sets:
        raise UsageError("give at least one model set to benchmark")
    device = check_device(device)
    if warmup < 0:
        raise UsageError("--warmup must not be negative")
    if threads is not None and threads < 1:
        raise UsageError("--threads must be at least 1")
    schedule = _schedule(runs, rounds)
    for p in sets:
        stages = read_set(p).stages
        if device.startswith("cuda"):  # the same refusals as per-model bench, before any child starts
            for stage in stages.values():
                plan_variants(stage, device, compile_=False)
    variants = _numbered([Variant(f"set {p.name or p}", str(p), "ocr-set") for p in sets])
    named = _pipeline_pages(images, pages)
    report = BenchReport(device, (len(named),), 0, runs, len(schedule), warmup, threads, _cpus(threads),
                         [BenchResult(v.label, v.artifact, v.kind, (len(named),)) for v in variants],
                         pages=[n for n, _ in named])
    with tempfile.TemporaryDirectory(prefix="ocrconvert-bench-") as tmp:
        np.savez(Path(tmp) / "input.npz", *[a for _, a in named])
        _measure(variants, report.results, Path(tmp), device, threads, report.cpus, schedule, warmup, say,
                 input_name="input.npz")
    _statistics(report.results, len(named))
    return report


def _pipeline_pages(images, count: int) -> list[tuple[str, np.ndarray]]:
    """(name, BGR page) of a folder's images, or of ``count`` rendered pages."""
    from .ocr import read_image

    if images is None:
        from .ocr.pages import render_pages

        return [(p.name, read_image(p.image)[0]) for p in render_pages(count)]
    folder = Path(images)
    if not folder.is_dir():
        raise UsageError(f"--images {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif",
                                                                      ".tiff", ".webp"))
    if not files:
        raise UsageError(f"--images {folder} holds no images")
    return [(p.name, read_image(p)[0]) for p in files]


def _cpus(threads: int | None) -> list[int] | None:
    """With ``--threads N``, every child is pinned to the same N CPUs (the first of this process's own): a
    child the scheduler keeps on a busier core would otherwise be slower for as long as it lives, a bias
    no pairing of rounds removes (measured: ORT against itself came out 1-5 % apart)."""
    if not threads or not hasattr(os, "sched_getaffinity"):
        return None
    return sorted(os.sched_getaffinity(0))[:threads]


def _measure(variants, results, tmp: Path, device, threads, cpus, schedule, warmup, say,
             input_name: str = "input.npy") -> None:
    # One persistent child per variant, driven round-robin, rather than a fresh child per round: a fresh
    # child pays imports + load + warm-up (+ torch.compile) every round — seconds to minutes on 2 cores —
    # which would leave few rounds and a poor spread; a persistent child loads once and its peak memory
    # covers every round. While one child is timed the others are frozen (SIGSTOP), so no idle runtime's
    # spinning thread pool takes CPU from it, and the order rotates so no variant always goes first.
    children = [_Child(v, r, tmp, i, device, threads, cpus, input_name)
                for i, (v, r) in enumerate(zip(variants, results))]
    try:
        say(f"loading {len(children)} variant(s), each in its own process")
        for c in children:
            c.start()
        for c in children:   # parallel load (untimed); each is frozen once it is ready
            reply = c.ask(None)
            if reply is not None:
                c.result.load_s = reply.get("load_s")
            c.freeze()
        for k, calls in enumerate(schedule):
            live = [c for c in children if c.alive]
            if not live:
                break
            say(f"round {k + 1}/{len(schedule)}")
            for c in live[k % len(live):] + live[:k % len(live)]:
                untimed = warmup if k == 0 else min(1, warmup)  # the first call after a freeze is not timed
                c.thaw()
                reply = c.ask({"cmd": "run", "untimed": untimed, "timed": calls})
                c.freeze()
                if reply is not None:
                    c.result.runs.extend(reply["times_ms"])
                    c.result.round_medians.append(float(np.median(reply["times_ms"])))
                    for stage, ms in (reply.get("stage_ms") or {}).items():
                        c.result.stage_runs.setdefault(stage, []).extend(ms)
        for c in children:
            if c.alive:
                c.thaw()
                reply = c.ask({"cmd": "stop"})
                if reply is not None:
                    c.result.peak_mem_mb, c.result.gpu_peak_mb = reply["peak_mem_mb"], reply.get("gpu_peak_mb")
                    c.close()
    finally:
        for c in children:
            c.close(kill=True)


def _statistics(results: list[BenchResult], batch: int) -> None:
    for r in results:
        if not r.ok or not r.runs:   # a failed variant keeps what it measured, but gets no statistics
            continue
        r.median_ms = float(np.median(r.runs))
        r.p10_ms, r.p90_ms = (float(v) for v in np.percentile(r.runs, [10, 90]))
        r.throughput = batch * 1000.0 / r.median_ms
        for stage, ms in r.stage_runs.items():
            p10, p90 = np.percentile(ms, [10, 90])
            r.stages[stage] = {"median_ms": float(np.median(ms)), "p10_ms": float(p10), "p90_ms": float(p90)}
    base = next((r for r in results if r.ok and r.runs), None)
    if base is None:
        return
    for r in results:
        if r.ok and r.round_medians:
            per_round = np.asarray(r.round_medians) / np.asarray(base.round_medians)
            r.ratio = float(np.median(per_round))
            r.ratio_p10, r.ratio_p90 = (float(v) for v in np.percentile(per_round, [10, 90]))


class _Child:
    """The parent's handle on one variant's process: line-delimited JSON commands on its stdin, replies on a
    pipe of their own; the child's stdout and stderr go to a log file, so nothing it (or a library it
    loads) prints can reach the parent's stdout."""

    def __init__(self, variant: Variant, result: BenchResult, tmp: Path, index: int, device: str, threads, cpus,
                 input_name: str = "input.npy"):
        self.variant, self.result, self.tmp = variant, result, tmp
        self.log_path = tmp / f"variant-{index}.log"
        self.spec = {"variant": asdict(variant), "input": str(tmp / input_name), "device": device,
                     "threads": threads, "cpus": cpus}
        self.proc: subprocess.Popen | None = None
        self.alive = False
        self._fd: int | None = None
        self._buf = b""

    def start(self) -> None:
        r, w = os.pipe()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        if self.spec["threads"]:
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(self.spec["threads"])
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen([sys.executable, "-m", "ocrconvert.bench", "--child", str(w)],
                                         stdin=subprocess.PIPE, stdout=logf, stderr=subprocess.STDOUT,
                                         pass_fds=(w,), env=env)
        os.close(w)
        self._fd = r
        self.alive = True
        self._send(self.spec)

    def _send(self, msg: dict) -> None:
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()

    def ask(self, msg: dict | None) -> dict | None:
        """Send ``msg`` (None: only wait for the next reply); the reply, or None after recording the failure."""
        if not self.alive:
            return None
        try:
            if msg is not None:
                self._send(msg)
            reply = self._read_line()
        except (BrokenPipeError, OSError):
            reply = None
        if reply is None:
            return self._fail(self._death())
        if not reply.get("ok"):
            return self._fail(reply.get("error") or "failed")
        return reply

    def _read_line(self) -> dict | None:
        while b"\n" not in self._buf:
            ready, _, _ = select.select([self._fd], [], [], 1.0)
            if not ready:
                if self.proc.poll() is not None:   # dead, and nothing left in the pipe
                    return None
                continue
            chunk = os.read(self._fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def _death(self) -> str:
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        tail = _last_line(self.log_path)
        why = (f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}")
        return f"the child process died ({why}){': ' + tail if tail else ''}"

    def _fail(self, error: str) -> None:
        self.result.error = error
        log.debug("variant %s failed: %s\n%s", self.variant.label, error, _tail(self.log_path))
        self.close()
        return None

    def freeze(self) -> None:
        if self.alive and hasattr(signal, "SIGSTOP"):
            os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.alive and hasattr(signal, "SIGCONT"):
            os.kill(self.proc.pid, signal.SIGCONT)

    def close(self, kill: bool = False) -> None:
        """End the child: it exits by itself after ``stop`` or an error, or when its stdin closes; ``kill``
        (an interrupted bench) ends it at once — SIGKILL ends a frozen process too."""
        if self.proc is None:
            return
        self.alive = False
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            try:
                if kill:
                    self.proc.kill()
                elif hasattr(signal, "SIGCONT"):
                    os.kill(self.proc.pid, signal.SIGCONT)  # a frozen child cannot see its stdin close
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _last_line(path: Path) -> str:
    lines = [ln.strip() for ln in _tail(path).splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}".rstrip(": ")


# ----------------------------------------------------------------------------------------------------
# child: one variant, loaded once, timed on command
# ----------------------------------------------------------------------------------------------------
class _Loaded:
    """The variant's model, loaded, with the input in the form it takes (on the device for torch)."""

    def __init__(self, v: Variant, x_np: np.ndarray, device: str, threads: int | None):
        self.v, self.device, self.cuda = v, device, device.startswith("cuda")
        self.sync: Callable[[], None] = lambda: None
        self.torch = None
        if v.kind in _NUMPY_KINDS:
            self.call, self.x = self._numpy_runner(threads), x_np
            return
        import torch

        self.torch = torch
        if self.cuda:
            from ._compat import fp32_on_cuda

            fp32_on_cuda(torch)
            torch.cuda.reset_peak_memory_stats(device)
            self.sync = lambda: torch.cuda.synchronize(device)
        self.call = self._aot() if v.kind == "torch-aot" else self._torch_module()
        if threads:  # after the load: the runners set their own default thread count
            torch.set_num_threads(threads)
        self.x = torch.from_numpy(x_np).to(device)

    def _numpy_runner(self, threads):
        from .runners import runner_for

        art = detect(self.v.artifact)
        if self.v.kind == "onnxruntime":
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.cuda else None
            r = runner_for(art, providers=providers, threads=threads)
            if self.cuda and r.session.get_providers()[0] != "CUDAExecutionProvider":  # listed, but did not start
                raise UsageError("ONNX Runtime's CUDA provider did not start: it would run on the CPU",
                                 hint="See the variant's log with --debug (cuDNN / CUDA libraries).")
        elif self.v.kind == "paddle":
            r = runner_for(art, threads=threads, mkldnn=self.v.mkldnn)
        else:
            r = runner_for(art)
        r.session  # load outside the timed calls
        name = r.input_names[0]
        return lambda x: r.infer({name: x})

    def _torch_module(self):
        torch, v = self.torch, self.v
        if v.kind == "torch-graph":
            from .runners import runner_for

            module = runner_for(detect(v.artifact)).session
        else:
            from .native import load_native

            module = load_native(Path(v.artifact), fused=v.fused)
        module = module.eval().to(self.device)
        in_dtype = torch.float32
        if v.fp16:
            from .native.fused import half_precision, input_dtype

            module = half_precision(module)
            in_dtype = input_dtype(module)  # fp32 where the stem stays fp32 (det)
        if v.compile_mode:
            module = torch.compile(module, fullgraph=True, dynamic=False, mode=v.compile_mode)

        def call(x):
            with torch.inference_mode():
                return module(x.to(in_dtype))
        return call

    def _aot(self):
        from .runners.aot import AotRunner

        runner = AotRunner(detect(self.v.artifact), cuda_graphs=self.v.cuda_graphs)
        runner.session  # load outside the timed calls
        return runner.run_tensors

    def run(self, untimed: int, timed: int) -> list[float]:
        for _ in range(untimed):
            self.call(self.x)
        self.sync()
        times = []
        for _ in range(timed):
            t0 = time.perf_counter()
            self.call(self.x)
            self.sync()
            times.append((time.perf_counter() - t0) * 1000.0)
        return times

    def gpu_peak_mb(self) -> float | None:
        if self.torch is not None and self.cuda:
            return self.torch.cuda.max_memory_allocated(self.device) / 2**20
        return None


class _LoadedSet:
    """A whole OCR model set, loaded once; one call = one pass over every page, with per-stage times."""

    STAGES = ("det", "crop", "cls", "rec")

    def __init__(self, v: Variant, pages: list[np.ndarray], device: str, threads: int | None):
        from .ocr.modelset import read_set

        self.pipeline = read_set(v.artifact).pipeline(device)
        self.pages = pages
        if threads:
            try:
                import torch

                torch.set_num_threads(threads)
            except ImportError:
                pass
        self.stage_ms: dict[str, list[float]] = {s: [] for s in self.STAGES}

    def run(self, untimed: int, timed: int) -> list[float]:
        for _ in range(untimed):
            for page in self.pages:
                self.pipeline(page)
        self.stage_ms = {s: [] for s in self.STAGES}
        times = []
        for _ in range(timed):
            stages = dict.fromkeys(self.STAGES, 0.0)
            t0 = time.perf_counter()
            for page in self.pages:
                result = self.pipeline(page)
                for s in self.STAGES:
                    stages[s] += result.timings.get(s, 0.0) * 1000.0
            times.append((time.perf_counter() - t0) * 1000.0)
            for s in self.STAGES:
                self.stage_ms[s].append(stages[s])
        return times

    def gpu_peak_mb(self) -> float | None:
        return None


def _die_with_parent() -> None:
    """A frozen child whose parent is killed would stay stopped forever: Linux kills it with the parent."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _child(fd: int) -> int:
    import traceback
    import warnings

    _die_with_parent()
    os.set_inheritable(fd, False)  # a grandchild (compile workers) must not hold the reply pipe open
    replies = os.fdopen(fd, "w", buffering=1)
    warnings.filterwarnings("ignore", message=".*ccache.*")
    logging.basicConfig(level=logging.WARNING)

    def send(**msg) -> None:
        replies.write(json.dumps(msg) + "\n")
        replies.flush()

    spec = json.loads(sys.stdin.readline())
    if spec.get("cpus"):  # before any runtime starts its threads: they inherit it
        os.sched_setaffinity(0, spec["cpus"])
    t0 = time.perf_counter()
    try:
        variant = Variant(**spec["variant"])
        if variant.kind == "ocr-set":
            with np.load(spec["input"]) as z:
                pages = [z[f"arr_{i}"] for i in range(len(z.files))]
            loaded = _LoadedSet(variant, pages, spec["device"], spec["threads"])
        else:
            loaded = _Loaded(variant, np.load(spec["input"]), spec["device"], spec["threads"])
        loaded.run(1, 0)  # the first call: compiles, and fails here on a shape the variant rejects
    except Exception as exc:  # noqa: BLE001 - reported to the parent as this variant's failure
        traceback.print_exc()
        send(ok=False, error=_one_line(exc))
        return 1
    send(ok=True, load_s=round(time.perf_counter() - t0, 3))
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "stop":
            send(ok=True, peak_mem_mb=peak_rss_mb(), gpu_peak_mb=loaded.gpu_peak_mb())
            return 0
        try:
            times = loaded.run(int(cmd["untimed"]), int(cmd["timed"]))
            send(ok=True, times_ms=times, **({"stage_ms": loaded.stage_ms} if isinstance(loaded, _LoadedSet) else {}))
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            send(ok=False, error=_one_line(exc))
            return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(_child(int(sys.argv[2])))
    sys.exit("usage: python -m ocrconvert.bench --child FD (started by ocrconvert bench)")
