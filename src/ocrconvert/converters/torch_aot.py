"""PyTorch artifact -> AOTInductor package (.pt2): torch.export with dynamic batch/width(/height), then
``aoti_compile_and_package``. Built from the native model's fused form; the graph route is the fallback."""
from __future__ import annotations

import logging
from pathlib import Path

from dataclasses import dataclass
from typing import Optional

from .._compat import require, version_of
from ..errors import ConversionError, UsageError
from ..formats import Artifact, Format
from ..options import MixedPrecisionOptions, Precision
from ..precision_plan import NATIVE_MODULES, PrecisionPlan
from ..registry import Converter, HopResult, VerificationPolicy, register_converter
from .common import example_inputs

log = logging.getLogger(__name__)


def export_dims(family: str, rank: int):
    """torch.export Dims for the dynamic axes of the family's image input (the family knows them)."""
    from ..families import get_family

    return get_family(family).export_dims(rank)


# families whose AOT packages default to NHWC on CUDA. None: on the H100 (torch 2.11) NHWC fp16 packages
# measured 2-3 % slower than NCHW for PP-OCRv4/v5 det and v5 rec (docs/benchmarks.md); the option stays
CHANNELS_LAST_DEFAULT: dict[str, bool] = {}


def build_module(source: Artifact, fp16: bool, device: str, channels_last: bool | None = None,
                 fp32_stages: int | None = None, keep_fp32: tuple[str, ...] | None = None):
    """The module to export: the fused native model (fp16 where ``half_precision`` puts it), fp32 I/O.
    ``channels_last``: NHWC weights and activations (cuDNN's native fp16 layout; with dynamic shapes Inductor
    does no layout optimisation of its own); None: the family's CUDA default. ``fp32_stages``: how many early
    backbone stages a det model keeps in fp32 (default FusedDet.FP32_STAGES). ``keep_fp32``: a precision plan's
    module paths, replacing the model's own ``FP32_PARTS`` (its shipped plan)."""
    torch = require("torch")
    from ..families import resolve_family
    from ..runners import runner_for

    runner = runner_for(source)
    if channels_last is None:
        channels_last = device.startswith("cuda") and CHANNELS_LAST_DEFAULT.get(resolve_family(runner.info()).name, False)
    if source.format is Format.TORCH_NATIVE:
        from ..native import load_native

        module = load_native(source.path, fused=True)
    else:
        module = runner.session
    module = module.eval().to(device)
    return runner, wrap_module(module, fp16, bool(channels_last), fp32_stages, keep_fp32)


def wrap_module(module, fp16: bool, channels_last: bool, fp32_stages: int | None = None,
                keep_fp32: tuple[str, ...] | None = None):
    """``module`` (in place) as the package exports it: fp16 but for its fp32 parts, fp32 at the boundary."""
    torch = require("torch")
    if fp32_stages is not None and hasattr(module, "set_fp32_stages"):
        module.set_fp32_stages(fp32_stages)
    if keep_fp32 is not None:
        module.FP32_PARTS = tuple(keep_fp32)  # half_precision checks every name is a submodule

    class Wrapped(torch.nn.Module):
        """fp16 inside, fp32 at the boundary: callers keep feeding float32 images. The input is cast to the
        dtype of the model's first layer (a det model keeps its early backbone in fp32: rounding the image
        itself to fp16 already costs det-map IoU)."""

        def __init__(self, inner, half: bool, channels_last: bool):
            super().__init__()
            from ..native.fused import half_precision, input_dtype, match_input_dtypes

            self.inner = half_precision(inner) if half else inner
            if half and keep_fp32 is not None:  # a plan may keep single layers: each casts its input itself
                match_input_dtypes(self.inner)
            if channels_last:
                self.inner = self.inner.to(memory_format=torch.channels_last)
            self.in_dtype = input_dtype(self.inner)
            self.channels_last = channels_last

        def forward(self, x):
            x = x.to(self.in_dtype)
            if self.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            y = self.inner(x)
            if isinstance(y, (tuple, list)):
                y = y[0]
            return y.float().contiguous()

    return Wrapped(module, fp16, bool(channels_last)).eval()


def shipped_plan(module, fp32_stages: int | None) -> PrecisionPlan:
    """The model's own fp32 parts as a precision plan (the det split: stem + stages 1-3 + the last conv, from the
    manual CPU study in FusedDet), so a package records one kind of plan whichever way it was chosen."""
    parts = tuple(getattr(module, "FP32_PARTS", ()))
    how = (f"{type(module).__name__}.FP32_PARTS" + (f" (--fp32-stages {fp32_stages})" if fp32_stages is not None
                                                    else " (the model's default split)"))
    return PrecisionPlan(Precision.FP16.value, NATIVE_MODULES, parts, "shipped", search={"by": how, "evaluations": 0})


def inductor_configs(device: str, options: "AotOptions") -> dict:
    """The Inductor settings of a build. On CPU, freezing (weights become constants: conv+bn already folded by the
    fused form, convolutions prepacked for oneDNN, constant subgraphs folded) measured PP-OCRv4 cls 8x48x192 at
    0.37x of eager fused (93 vs 248 ms, 1 thread); cpp_wrapper is AOTInductor's own."""
    freezing = options.freezing if options.freezing is not None else device == "cpu"
    return {"max_autotune": options.autotune, "freezing": bool(freezing)}


def measure_speed(module, package: Path, x, calls: int = 3, threads: int = 1) -> dict:
    """The package against the eager fused module it was built from, on the example input, interleaved (one
    warm-up call each, then ``calls`` timed pairs; medians): the reason ``load()`` records for choosing a form.
    One thread: two OpenMP threads on two shared cores stall each other at every barrier (seconds per call)."""
    import statistics

    torch = require("torch")
    fn = torch._inductor.aoti_load_package(str(package))
    times: dict[str, list[float]] = {"package_ms": [], "eager_fused_ms": []}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _time_pairs(torch, fn, module, x, calls, times)
    finally:
        torch.set_num_threads(before)
    out = {k: round(statistics.median(v), 3) for k, v in times.items()}
    return {**out, "shape": list(x.shape), "threads": threads, "calls": calls,
            "faster": out["package_ms"] < out["eager_fused_ms"]}


def _time_pairs(torch, fn, module, x, calls: int, times: dict) -> None:
    import time

    with torch.inference_mode():
        fn(x), module(x)
        for _ in range(calls):
            for key, call in (("package_ms", fn), ("eager_fused_ms", module)):
                t0 = time.perf_counter()
                call(x)
                times[key].append((time.perf_counter() - t0) * 1000.0)


@dataclass(frozen=True)
class AotOptions(MixedPrecisionOptions):
    precision: Precision = Precision.FP32
    device: Optional[str] = None          # cuda | cpu; None: cuda when present
    autotune: bool = False
    channels_last: Optional[bool] = None
    fp32_stages: Optional[int] = None
    freezing: Optional[bool] = None       # Inductor freezing (weights as constants, oneDNN conv prepacking); None: on for CPU

    def validate(self) -> None:
        Precision.parse(self.precision, allowed=(Precision.FP32, Precision.FP16), where="aot-build precision")
        if self.device is not None and self.device.split(":")[0] not in ("cuda", "cpu"):
            raise UsageError(f"--device {self.device!r} is not cuda or cpu")
        if self.precision is Precision.FP16:
            if self.device is not None and not self.device.startswith("cuda"):
                raise UsageError("--fp16 AOT packages are built for CUDA", hint="Add --device cuda, or drop --fp16.")
        self.validate_plan(self.precision)
        if self.plan is not None and self.fp32_stages is not None:
            raise UsageError("--plan and --fp32-stages both choose the fp32 parts; give one")



@register_converter("torch", "torch-aot", "aot-build", options=AotOptions, requires=("torch",),
                    description="AOTInductor package (.pt2) of the native fused model; dynamic batch/width")
class TorchToAot(Converter):
    tool = "torch._inductor.aoti"

    def preflight(self, options: AotOptions) -> list[str]:
        torch = require("torch")
        if (options.device or "").startswith("cuda") and not torch.cuda.is_available():
            return ["--device cuda, but no CUDA GPU is visible"]
        if options.precision is Precision.FP16 and not torch.cuda.is_available():
            return ["fp16 AOT packages are built for CUDA, and no CUDA GPU is visible"]
        return []

    def convert(self, source: Artifact, dest: Path, options: AotOptions) -> HopResult:
        torch = require("torch")
        device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
        fp16 = options.precision is Precision.FP16
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError("--device cuda but no CUDA GPU is visible", hint="Use --device cpu.")
        if fp16 and not device.startswith("cuda"):
            raise UsageError("--fp16 AOT packages are built for CUDA", hint="Add --device cuda, or drop --fp16.")
        plan = None
        if fp16 and options.plan == "auto":
            plan = self._search(source, device, options)
        elif fp16 and options.plan_path is not None:
            plan = PrecisionPlan.load(options.plan_path)
            plan.check_for(Precision.FP16.value, NATIVE_MODULES)
            plan.origin, plan.passed = "file", None
            plan.search = {"reused_from": str(options.plan_path), "evaluations": 0}
        runner, module = build_module(source, fp16, device, options.channels_last, options.fp32_stages,
                                      keep_fp32=plan.keep_fp32 if plan is not None else None)
        if fp16 and plan is None:
            plan = shipped_plan(module.inner, options.fp32_stages)
        channels_last = module.channels_last
        family, feed = example_inputs(runner)
        x = torch.from_numpy(feed[runner.input_names[0]]).to(device)
        dims = export_dims(family.name, x.ndim)
        try:
            with torch.no_grad():
                ep = torch.export.export(module, (x,), dynamic_shapes=({k: v for k, v in dims.items()},))
        except Exception as exc:  # noqa: BLE001 - export errors come in many types
            raise ConversionError(f"torch.export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                                  hint="The native route exports cleanly; graph (onnx2torch) artifacts often do not.") from None
        inductor_cfg = inductor_configs(device, options)
        try:
            torch._inductor.aoti_compile_and_package(ep, package_path=str(dest), inductor_configs=dict(inductor_cfg))
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"AOTInductor compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
        art = Artifact(dest, Format.TORCH_AOT, {"package": dest})
        aot = {"device": device, "fp16": fp16, "channels_last": bool(channels_last),
                           "fp32_parts": list(getattr(module.inner, "FP32_PARTS", ())) if fp16 else [],
                           "example_shape": list(x.shape),
                           "dynamic_axes": sorted(int(k) for k in dims),
                           "dynamic_ranges": {str(k): str(v) for k, v in ep.range_constraints.items()},
                           "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
                           "inductor": inductor_cfg}
        if device == "cpu":  # load() serves the package instead of the eager fused model only if it measured faster
            aot["speed"] = measure_speed(module, dest, x)
        from ..verification.names import name_map

        # a compiled package has no intermediates: diff runs it through its native model with the same plan
        names = name_map(source.format.value, "torch-aot", [], how="identity", source_keys="native fused module",
                         target_keys="native fused module", via="native", fp16=fp16, fp32_parts=aot["fp32_parts"],
                         native=str(source.path.resolve()) if source.format is Format.TORCH_NATIVE else None)
        return HopResult(art, facts={"precision": options.precision.value, "device": device,
                                     "dynamic_axes": aot["dynamic_axes"], "name_map": names},
                         manifest={"aot": aot, **({"precision_plan": plan.to_dict()} if plan is not None else {})},
                         policy=VerificationPolicy(precision=options.precision, min_metric=_plan_gate(plan)))

    def _search(self, source: Artifact, device: str, options: AotOptions) -> PrecisionPlan:
        """``--plan auto``: the fewest compute modules kept fp32 for which the fp16 module passes the family's
        gate against the ORIGINAL (the reference the spine verifies against), judged on ``device``."""
        import copy

        from ..runners import runner_for
        from ..verification.plan_search import search_native_plan

        ctx = self.context
        if ctx is None:
            raise UsageError("--plan auto needs the ORIGINAL to judge candidates against; run it through convert()")
        if source.format is not Format.TORCH_NATIVE:
            raise UsageError("--plan auto searches native module paths; this source is a torch graph",
                             hint="Build from the native route (ocrconvert paddle2torch MODEL_DIR -o OUT).")
        from ..native import load_native

        runner = runner_for(source)
        base = load_native(source.path, fused=True).eval().to(device)

        def build(keep):
            return wrap_module(copy.deepcopy(base), keep is not None, False, keep_fp32=keep)

        return search_native_plan(build, ctx.reference, Precision.FP16, input_name=runner.input_names[0],
                                  output_names=list(runner.output_names), device=device, images=ctx.images,
                                  seed=ctx.seed, family=ctx.family, min_metric=options.plan_min_metric,
                                  max_evals=options.plan_max_evals, say=log.info)


def _plan_gate(plan: PrecisionPlan | None) -> float | None:
    """A searched plan's build is verified at the gate it was searched at (det fp16: IoU >= 0.99, not 0.98)."""
    return plan.gate_threshold if plan is not None and plan.origin == "auto" else None

    def versions(self) -> dict:
        return {"torch": version_of("torch")}
