"""``bench``: the same inputs through every backend available for the given artifacts, side by side.

Reports median latency, throughput and peak memory per variant, and ratios against the first
variant, all measured in one run. Torch variants are timed on-device (inputs already on the GPU,
synchronised), so GPU numbers are compute, not copies.
"""
from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import UsageError
from .formats import Format, detect

log = logging.getLogger(__name__)


@dataclass
class BenchResult:
    variant: str
    artifact: str
    shape: tuple
    median_ms: float | None = None
    p90_ms: float | None = None
    throughput: float | None = None   # images per second
    peak_mem_mb: float | None = None
    ratio: float | None = None        # median / first variant's median
    error: str = ""
    runs: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("variant", "artifact", "median_ms", "p90_ms", "throughput",
                                               "peak_mem_mb", "ratio", "error")} | {"shape": list(self.shape)}


def _rss_reset() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter (Linux)
    except OSError:
        pass


def _rss_peak_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _variants(path: Path, device: str, compile_: bool, half: bool = False,
              compile_mode: str = "default") -> list[tuple[str, Callable[[], Callable]]]:
    """(label, factory) pairs; each factory returns ``call(x)`` taking an input on the right device."""
    from .runners import runner_for

    art = detect(path)
    name = art.path.name
    out: list[tuple[str, Callable[[], Callable]]] = []

    def numpy_runner(r):
        def make():
            r.session  # load outside the timed region
            return lambda x: r.infer({r.input_names[0]: x})
        return make

    def torch_module(module_fn, compiled=False, fp16=False):
        def make():
            import torch

            m = module_fn().eval().to(device)
            in_dtype = torch.float32
            if fp16:
                from .native.fused import half_precision, input_dtype

                m = half_precision(m)
                in_dtype = input_dtype(m)  # fp32 where the stem stays fp32 (det)
            if compiled:
                m = torch.compile(m, fullgraph=True, dynamic=False, mode=compile_mode)
            def call(x):
                with torch.inference_mode():
                    return m(x.to(in_dtype))
            return call
        return make

    if art.format in (Format.PADDLE_LEGACY, Format.PADDLE_PIR):
        if device == "cpu":
            out.append((f"paddle ({name})", numpy_runner(runner_for(art))))
    elif art.format is Format.ONNX:
        from .runners.onnxruntime import OnnxRuntimeRunner

        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else None
        out.append((f"onnxruntime ({name})", numpy_runner(OnnxRuntimeRunner(art, providers=providers))))
    elif art.format is Format.TORCH_GRAPH:
        r = runner_for(art)
        out.append((f"torch graph eager ({name})", torch_module(lambda: r.session)))
        if compile_:
            out.append((f"torch graph compiled ({name})", torch_module(lambda: r.session, compiled=True)))
    elif art.format is Format.TORCH_NATIVE:
        from .native import load_native

        out.append((f"native eager trainable ({name})", torch_module(lambda: load_native(art.path, fused=False))))
        out.append((f"native eager fused ({name})", torch_module(lambda: load_native(art.path, fused=True))))
        if compile_:
            out.append((f"native fused compiled[{compile_mode}] ({name})",
                        torch_module(lambda: load_native(art.path, fused=True), compiled=True)))
        if half:
            out.append((f"native fused fp16 ({name})", torch_module(lambda: load_native(art.path, fused=True), fp16=True)))
            if compile_:
                out.append((f"native fused fp16 compiled[{compile_mode}] ({name})",
                            torch_module(lambda: load_native(art.path, fused=True), compiled=True, fp16=True)))
    elif art.format is Format.TORCH_AOT:
        from .runners.aot import AotRunner

        r = AotRunner(art)
        def make_aot():
            fn = r.session
            import torch

            def call(x):
                with torch.inference_mode():
                    return fn(x)
            return call
        label = "aot fp16" if r.manifest.get("aot", {}).get("fp16") else "aot"
        out.append((f"{label} ({name})", make_aot))
    elif art.format is Format.TENSORRT:
        from .runners import runner_for as rf

        out.append((f"tensorrt ({name})", numpy_runner(rf(art))))
    else:
        raise UsageError(f"cannot benchmark {art.format.value} artifacts")
    return out


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


def run_bench(paths: list[str | Path], *, shape: tuple[int, ...] | None = None, device: str = "cpu", runs: int = 20,
              warmup: int = 3, compile_: bool = True, seed: int = 0, half: bool = False, compile_mode: str = "default",
              progress: Callable[[str], None] | None = None) -> list[BenchResult]:
    paths = [Path(p) for p in paths]
    if not paths:
        raise UsageError("give at least one artifact to benchmark")
    shape = tuple(shape) if shape else _family_shape(paths)
    x_np = np.random.default_rng(seed).uniform(-1, 1, size=shape).astype(np.float32)
    results: list[BenchResult] = []
    for p in paths:
        for label, make in _variants(p, device, compile_, half, compile_mode):
            if progress:
                progress(f"bench {label}")
            res = BenchResult(label, str(p), shape)
            try:
                res.runs, res.peak_mem_mb = _time(make, x_np, label, device, runs, warmup)
            except Exception as exc:  # noqa: BLE001 - a variant that cannot run is reported, not fatal
                res.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
                log.debug("variant %s failed", label, exc_info=True)
            if res.runs:
                res.median_ms = statistics.median(res.runs)
                res.p90_ms = float(np.percentile(res.runs, 90))
                res.throughput = shape[0] * 1000.0 / res.median_ms
            results.append(res)
    base = next((r.median_ms for r in results if r.median_ms), None)
    for r in results:
        if r.median_ms and base:
            r.ratio = r.median_ms / base
    return results


def _time(make, x_np, label, device, runs, warmup):
    torch_variant = not (label.startswith("paddle") or label.startswith("onnxruntime") or label.startswith("tensorrt"))
    cuda = device.startswith("cuda")
    if torch_variant:
        import torch

        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        x = torch.from_numpy(x_np).to(device)
        sync = torch.cuda.synchronize if cuda else (lambda: None)
    else:
        x, sync = x_np, (lambda: None)
    _rss_reset()
    call = make()
    for _ in range(warmup):
        call(x)
    sync()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call(x)
        sync()
        times.append((time.perf_counter() - t0) * 1000.0)
    if torch_variant and cuda:
        import torch

        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = _rss_peak_mb()
    return times, peak
