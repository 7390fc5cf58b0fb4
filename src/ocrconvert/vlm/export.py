"""``vlm-export``: VLM vision tower -> one ONNX model (or AOTInductor package) for any image size,
verified against the transformers tower at several sizes, with a manifest and atomic output.

Flow: build the tower (checkpoint or seeded random weights) -> single-image wrapper -> export at one
size with symbolic sides -> (ONNX) blocked attention expanded to a ``Loop``, optional FP16 cast ->
verify at >= 3 sizes (one differing in both sides from the export size) -> manifest -> commit.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ConversionError, UsageError
from ..verification.compare import Tolerances, compare_arrays
from ..verification.report import CaseResult, ParityReport
from . import family

OUTPUTS = ("image_embeds", "last_hidden_state")
TWO_GB = 2 * 1024 ** 3


@dataclass
class VlmExportOptions:
    model: str = "hunyuan-ocr"
    checkpoint: Path | None = None
    layers: int | None = None
    opset: int = 18
    precision: str = "fp32"              # fp32 | fp16 | bf16 (bf16: AOT packages only)
    interpolation: str = "transformers"  # transformers | original
    block: int = 512                     # query rows per attention block (ONNX)
    device: str = "cpu"                  # AOT packages: cpu | cuda
    reference_device: str = "cpu"        # where the fp32 transformers reference runs (cuda: TF32 off)
    seed: int = 0
    export_size: tuple[int, int] | None = None          # None: the family's default
    sizes: tuple[tuple[int, int], ...] | None = None    # None: the family's three defaults
    external_data: bool | None = None    # None: only when the weights exceed 2 GB

    def validate(self) -> None:
        fam = family(self.model)
        self.export_size = tuple(self.export_size or fam.DEFAULT_EXPORT_SIZE)
        self.sizes = tuple(tuple(s) for s in (self.sizes or fam.DEFAULT_SIZES))
        if self.precision not in ("fp32", "fp16", "bf16"):
            raise UsageError(f"unknown precision {self.precision!r}", hint="fp32, fp16 or bf16")
        if self.interpolation not in fam.INTERPOLATIONS:
            raise UsageError(f"unknown interpolation {self.interpolation!r} for {self.model}",
                             hint=f"One of: {', '.join(fam.INTERPOLATIONS)}")
        for flag, dev in (("--device", self.device), ("--reference-device", self.reference_device)):
            if dev != "cpu" and not dev.startswith("cuda"):
                raise UsageError(f"{flag} {dev!r} is not cpu or cuda")
        if self.block < 1:
            raise UsageError("--block must be >= 1")
        if not 17 <= self.opset <= 23:
            raise UsageError(f"--opset {self.opset} is outside 17..23 (the dynamo exporter's range)")
        for h, w in (self.export_size, *self.sizes):
            check_size(h, w, fam.FACTOR)
        if len(self.sizes) < 1:
            raise UsageError("give at least one verification size")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["checkpoint"] = str(self.checkpoint) if self.checkpoint else None
        return d


def check_size(h: int, w: int, factor: int = 32, max_tokens_side: int = 128) -> None:
    """Sides: multiples of ``factor`` (patch x merge), at most ``max_tokens_side`` merged tokens each."""
    edge_max = factor * max_tokens_side
    if h % factor or w % factor or not (factor <= h <= edge_max and factor <= w <= edge_max):
        raise UsageError(f"image size {h}x{w} is not valid for the encoder: sides must be multiples of {factor} "
                         f"in {factor}..{edge_max}",
                         hint="The processor's smart resize makes them so (see ocrconvert.vlm.preprocess).")


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"size {text!r} is not HxW", hint="e.g. 640x960") from None
    if h <= 0 or w <= 0:
        raise UsageError(f"size {text!r} must be positive")
    return h, w


@dataclass
class VlmResult:
    path: Path
    manifest: dict
    report: ParityReport | None = None
    timings: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.report is None or self.report.passed

    def to_dict(self) -> dict:
        return {"path": str(self.path), "passed": self.passed, "verified": self.report is not None,
                "timings": self.timings, "interpolation": self.manifest["interpolation"],
                "verification": self.report.to_dict() if self.report is not None else None}


# ---------------------------------------------------------------------------------------------------
# targets: ONNX Runtime session or AOTInductor package, called as f(pixel_values ndarray) -> 2 arrays
# ---------------------------------------------------------------------------------------------------
def onnx_target(path: Path) -> Callable[[np.ndarray], list[np.ndarray]]:
    """The exported model in ONNX Runtime, through the project's runner (confined loading, error mapping)."""
    from ..formats import detect
    from ..runners import runner_for

    runner = runner_for(detect(path))
    return lambda x: [runner.infer({"pixel_values": x})[n] for n in OUTPUTS]


def _own_aot_target(path: Path, device: str) -> Callable[[np.ndarray], list[np.ndarray]]:
    """The package this process has just built in its staging folder (loading one runs its native code)."""
    import torch

    pkg = torch._inductor.aoti_load_package(str(path))

    def run(x):
        with torch.no_grad():
            out = pkg(torch.from_numpy(x).to(device))
        return [o.float().cpu().numpy() for o in out]
    return run


def _seeded_image(h: int, w: int, seed: int, model: str = "hunyuan-ocr") -> np.ndarray:
    """A normalized-image-like input: uniform pixels normalized with the model's mean/std."""
    PREPROCESS = family(model).PREPROCESS
    rng = np.random.default_rng(seed + 7919 * h + w)
    px = rng.random((1, 3, h, w), dtype=np.float32)
    mean = np.asarray(PREPROCESS["mean"], np.float32)[None, :, None, None]
    std = np.asarray(PREPROCESS["std"], np.float32)[None, :, None, None]
    return ((px - mean) / std).astype(np.float32)


# Reduced precision: a transformer's outputs carry a rounding error that scales with the activations, not
# with each element (a 1e-2 + 1e-2·|ref| bound fails on near-zero elements of a 27-layer residual stream
# while the cosine is 0.999999). The bound is a multiple of the output's RMS, scaled by the format's unit
# roundoff (bf16 has 8x fp16's), plus a cosine floor.
REDUCED = {"fp16": (0.02, 0.9999), "bf16": (0.16, 0.999)}


def _tolerance(ref: np.ndarray, precision: str, fp32: Tolerances) -> Tolerances:
    if precision not in REDUCED:
        return fp32
    c, cos = REDUCED[precision]
    rms = float(np.sqrt(np.mean(np.square(ref, dtype=np.float64)))) if ref.size else 0.0
    return Tolerances(precision="fp16", atol=c * rms, rtol=0.0, min_cosine=cos)


def verify_encoder(target: Callable[[np.ndarray], list[np.ndarray]], tower, *, interpolation: str,
                   sizes, precision: str = "fp32", images: list[Path] | None = None, seed: int = 0,
                   label: str = "", model: str = "hunyuan-ocr",
                   say: Callable[[str], None] = lambda m: None) -> ParityReport:
    """Both outputs of ``target`` vs the transformers tower on seeded inputs at ``sizes`` (and images)."""
    import torch

    fam = family(model)
    INTERPOLATIONS, preprocess, reference_forward = fam.INTERPOLATIONS, fam.preprocess, fam.reference_forward

    tol = Tolerances(precision="fp32")
    rule = {"precision": precision, **tol.to_dict()}
    if precision in REDUCED:
        c, cos = REDUCED[precision]
        rule = {"precision": precision, "rule": f"max abs <= {c} x rms(reference output), cosine >= {cos}",
                "rms_factor": c, "min_cosine": cos}
    started = time.perf_counter()
    report = ParityReport(source=f"transformers {type(tower).__name__} ({INTERPOLATIONS[interpolation]})",
                          target=label, source_backend=f"transformers (torch eager, fp32, {next(tower.parameters()).device.type})",
                          target_backend=label or "exported", family=f"vlm-vision {model}, interpolation={interpolation}",
                          tolerances=rule)
    feeds = [(f"{h}x{w}", "random", _seeded_image(h, w, seed, model)) for h, w in sizes]
    for img in images or ():
        feeds.append((Path(img).name, "image", preprocess(img)))
    for name, kind, x in feeds:
        say(f"verifying at {x.shape[2]}x{x.shape[3]} ({name})")
        ref = [t.float().numpy() for t in reference_forward(tower, torch.from_numpy(x), interpolation)]
        try:
            out = target(x)
        except Exception as exc:  # noqa: BLE001 - runtime errors come in many types
            raise ConversionError(f"the exported model failed at {x.shape[2]}x{x.shape[3]}: "
                                  f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
        outs = [compare_arrays(n, r, np.asarray(o), _tolerance(r, precision, tol)) for n, r, o in zip(OUTPUTS, ref, out)]
        report.cases.append(CaseResult(name, {"pixel_values": list(x.shape)}, outs, kind=kind))
    report.seconds = time.perf_counter() - started
    return report


# ---------------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------------
def _dynamic_sides(factor: int = 32):
    """H and W symbolic, multiples of ``factor`` (patch x merge), up to 128 merged tokens a side."""
    from torch.export import Dim

    return {2: factor * Dim(f"h{factor}", min=1, max=128), 3: factor * Dim(f"w{factor}", min=1, max=128)}


def at_precision(encoder, precision: str, device: str = "cpu"):
    """fp32 in and out, ``precision`` inside; the position grid and its interpolation stay fp32.

    Works on a copy: the encoder shares its modules with the reference tower, which stays fp32 on CPU.
    """
    import copy

    import torch

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    if dtype is torch.float32 and device == "cpu":
        return encoder
    encoder = copy.deepcopy(encoder)
    if dtype is torch.float32:
        return encoder.to(device)

    class Boundary(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            grid = inner.position_grid
            self.inner = inner.to(device=device, dtype=dtype)
            self.inner.position_grid = grid.to(device=device, dtype=torch.float32)

        def forward(self, x):
            a, b = self.inner(x.to(dtype))
            return a.float(), b.float()

    return Boundary(encoder).eval()


def export_onnx(encoder, dest: Path, options: VlmExportOptions, say=lambda m: None) -> dict:
    import onnx
    import torch

    from .._compat import require
    from . import attention

    require("onnxscript", "torch.onnx's dynamo exporter")

    h, w = options.export_size
    x = torch.from_numpy(_seeded_image(h, w, options.seed, options.model))
    say(f"torch.onnx.export (dynamo) at {h}x{w}, sides symbolic")
    try:
        with torch.no_grad():
            prog = torch.onnx.export(at_precision(encoder, options.precision), (x,), dynamo=True, input_names=["pixel_values"],
                                     output_names=list(OUTPUTS), dynamic_shapes=(_dynamic_sides(family(options.model).FACTOR),),
                                     custom_translation_table=attention.onnx_translation_table(),
                                     opset_version=options.opset, optimize=True, verbose=False)
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"torch.onnx.export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
    model = prog.model_proto
    n = attention.expand_blocked_attention(model)
    weight_bytes = sum(len(t.raw_data) for t in model.graph.initializer)
    external = options.external_data if options.external_data is not None else weight_bytes > TWO_GB - (64 << 20)
    _metadata(model, options)
    if not external:  # the in-memory checker takes < 2 GB protos only
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            raise ConversionError(f"the exported ONNX is invalid: {str(exc).splitlines()[0][:300]}") from None
    say(f"writing {dest.name}" + (" + external data" if external else ""))
    onnx.save(model, str(dest), save_as_external_data=external, all_tensors_to_one_file=True,
              location=dest.name + ".data", size_threshold=1024)
    return {"tool": f"torch.onnx.export(dynamo=True) {torch.__version__}", "opset": options.opset,
            "blocked_attention_loops": n, "external_data": bool(external), "weight_bytes": weight_bytes}


def _metadata(model, options: VlmExportOptions) -> None:
    fam = family(options.model)
    profile = {"pixel_values": fam.TRT_PROFILE}
    meta = {"ocrconvert.family": "vlm-vision", "ocrconvert.vlm": options.model,
            "ocrconvert.interpolation": options.interpolation,
            "ocrconvert.preprocess": json.dumps(fam.PREPROCESS), "ocrconvert.trt_profiles": json.dumps(profile)}
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v


def export_aot(encoder, dest: Path, options: VlmExportOptions, say=lambda m: None) -> dict:
    import torch

    device = options.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda but no CUDA GPU is visible", hint="Use --device cpu.")
    if options.precision != "fp32" and not device.startswith("cuda"):
        raise UsageError(f"{options.precision} AOT packages are built for CUDA", hint="Add --device cuda.")
    module = at_precision(encoder, options.precision, device)
    h, w = options.export_size
    x = torch.from_numpy(_seeded_image(h, w, options.seed, options.model)).to(device)
    say(f"torch.export at {h}x{w} ({options.precision}, {device})")
    try:
        with torch.no_grad():
            ep = torch.export.export(module, (x,), dynamic_shapes=(_dynamic_sides(family(options.model).FACTOR),))
        say("AOTInductor compile")
        torch._inductor.aoti_compile_and_package(ep, package_path=str(dest))
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"AOT build failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
    return {"tool": f"torch.export + AOTInductor {torch.__version__}", "device": device,
            "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None}


def _fp32_reference_on(tower, device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--reference-device cuda but no CUDA GPU is visible")
    torch.backends.cuda.matmul.allow_tf32 = False   # TF32 would cost ~1e-2 of fp32 parity
    torch.backends.cudnn.allow_tf32 = False
    tower.to(device)


def export_encoder(output: str | Path, options: VlmExportOptions | None = None, *, verify: bool = True,
                   images: list[Path] | None = None, say: Callable[[str], None] = lambda m: None) -> VlmResult:
    """Export the VLM vision encoder to ``output`` (.onnx or .pt2), verify it, write its manifest."""
    import torch

    from ..atomic import commit_files, staging
    from ..manifest import environment, write_manifest
    options = options or VlmExportOptions()
    options.validate()
    fam = family(options.model)
    output = Path(output)
    kind = {".onnx": "onnx", ".pt2": "aot"}.get(output.suffix)
    if kind is None:
        raise UsageError(f"{output.name}: the output must end in .onnx or .pt2")
    if kind == "onnx" and options.precision == "bf16":
        raise UsageError("bf16 ONNX is not supported by ONNX Runtime's CPU kernels", hint="Use --fp16, or a .pt2 output.")
    if output.is_dir():
        raise UsageError(f"{output} is a folder", hint="Give a file path, e.g. -o encoder.onnx")
    if verify and all(h == options.export_size[0] or w == options.export_size[1] for h, w in options.sizes):
        raise UsageError("no verification size differs from the export size in both sides",
                         hint="Add one, e.g. --size 640x960: a model that baked its traced size in fails there")
    timings = {}
    t0 = time.perf_counter()
    say("building the vision tower" + (f" from {options.checkpoint}" if options.checkpoint else " (seeded random weights)"))
    tower = fam.build_tower(options.checkpoint, layers=options.layers, seed=options.seed)
    encoder = fam.Encoder(tower, interpolation=options.interpolation,
                                   attention="blocked" if kind == "onnx" else "sdpa", block=options.block).eval()
    timings["build_s"] = round(time.perf_counter() - t0, 2)
    with staging(output) as tmp:
        staged = tmp / output.name
        t0 = time.perf_counter()
        hop = export_onnx(encoder, staged, options, say) if kind == "onnx" else export_aot(encoder, staged, options, say)
        timings["export_s"] = round(time.perf_counter() - t0, 2)
        report = None
        if verify:
            t0 = time.perf_counter()
            if options.reference_device != "cpu":  # after the export: the encoder shares the tower's modules
                _fp32_reference_on(tower, options.reference_device)
            target = onnx_target(staged) if kind == "onnx" else _own_aot_target(staged, options.device)
            sizes = list(options.sizes)
            report = verify_encoder(target, tower, interpolation=options.interpolation, sizes=sizes,
                                    precision=options.precision, images=images, seed=options.seed,
                                    model=options.model, label=f"{output.name} ({'ONNX Runtime CPU' if kind == 'onnx' else 'AOTInductor ' + options.device})",
                                    say=say)
            timings["verify_s"] = round(time.perf_counter() - t0, 2)
        cfg = tower.config
        manifest = {
            "schema_version": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": {"model": options.model, "checkpoint": str(Path(options.checkpoint).resolve()) if options.checkpoint else None,
                       "weights": "checkpoint" if options.checkpoint else f"seeded random (seed {options.seed})",
                       "vision_config": {k: getattr(cfg, k) for k in fam.CONFIG_KEYS},
                       "parameters": int(sum(p.numel() for p in tower.parameters()))},
            "hops": [{"from": "transformers", "to": kind, **hop}],
            "options": options.to_dict(),
            "interpolation": {"convention": options.interpolation,
                              "description": fam.INTERPOLATIONS[options.interpolation]},
            "preprocess": fam.PREPROCESS,
            "io": {"inputs": {"pixel_values": f"[1, 3, H, W] float32, H, W multiples of {fam.FACTOR}"},
                   "outputs": fam.OUTPUT_DOC},
            "environment": {**environment(), "torch_threads": torch.get_num_threads()},
            "verification": report.to_dict() if report is not None else None,
            "timings": timings,
        }
        write_manifest(staged, manifest)
        commit_files(tmp, output.parent if str(output.parent) else Path("."))
    return VlmResult(output, manifest, report, timings)
