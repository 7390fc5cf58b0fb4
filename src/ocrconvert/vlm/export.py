"""What the ``vlm-onnx`` and ``vlm-aot`` routes know about exporting a VLM vision tower.

The spine (``pipeline.convert``) drives both routes; their converters (``converters/vlm_onnx.py``,
``converters/vlm_aot.py``) are thin. One hop: build the transformers tower (checkpoint or seeded random
weights) -> single-image wrapper with a symbolic patch grid -> export at one size (ONNX: blocked attention
expanded to a ``Loop``, optional FP16 cast; or AOTInductor) -> facts and manifest blocks -> a
``TowerVerifier``, which the spine calls: both outputs vs the transformers tower at >= 3 sizes, one of
them differing in both sides from the export size.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import ConversionError, UsageError
from ..formats import Artifact, Format
from ..options import Precision, RouteOptions
from ..registry import Converter
from ..verification.compare import Tolerances, compare_arrays
from ..verification.report import CaseResult, ParityReport
from . import family

log = logging.getLogger(__name__)

OUTPUTS = ("image_embeds", "last_hidden_state")
ONNX_LIMIT = 2 * 1024 ** 3 - (64 << 20)  # protobuf's 2 GiB, less room for the graph itself


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise UsageError(f"size {text!r} is not HxW", hint="e.g. 640x960") from None
    if h <= 0 or w <= 0:
        raise UsageError(f"size {text!r} must be positive")
    return h, w


def size_problem(h: int, w: int, factor: int = 32, max_tokens_side: int = 128) -> str | None:
    """Sides: multiples of ``factor`` (patch x merge), at most ``max_tokens_side`` merged tokens each."""
    edge_max = factor * max_tokens_side
    if h % factor or w % factor or not (factor <= h <= edge_max and factor <= w <= edge_max):
        return (f"image size {h}x{w} is not valid for the encoder: sides must be multiples of {factor} "
                f"in {factor}..{edge_max}")
    return None


@dataclass(frozen=True)
class VlmExportOptions(RouteOptions):
    """Options every VLM tower export takes. The source (which VLM, which checkpoint) is the Artifact
    ``vlm.tower_source`` makes; values that depend on the family are checked by ``ExportJob.resolve``."""
    layers: Optional[int] = None          # keep only the first N encoder blocks
    precision: Precision = Precision.FP32
    interpolation: str = "transformers"   # position-grid convention: transformers | original (hunyuan-ocr)
    reference_device: str = "cpu"         # where the fp32 transformers reference runs (cuda: TF32 off)
    seed: int = 0                         # random weights (no checkpoint) and verification inputs
    export_size: Optional[str] = None     # "HxW" traced at export; None: the family's default
    sizes: tuple[str, ...] = ()           # "HxW" verification sizes; (): the family's three defaults
    images: tuple[str, ...] = ()          # image files verified on as well

    def validate(self) -> None:
        if self.precision is Precision.INT8:
            raise UsageError("int8 is not available for VLM towers", hint="fp32, fp16 or bf16")
        check_device("--reference-device", self.reference_device)
        for text in (*self.sizes, *([self.export_size] if self.export_size else [])):
            parse_size(text)
        for img in self.images:
            if not Path(img).is_file():
                raise UsageError(f"--image {img} is not a file")


def check_device(flag: str, device: str) -> None:
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"{flag} {device!r} is not cpu or cuda")


@dataclass
class ExportJob:
    """One tower export, with the options resolved against the family (sizes, interpolation)."""
    model: str
    checkpoint: Path | None
    options: VlmExportOptions
    export_size: tuple[int, int]
    sizes: tuple[tuple[int, int], ...]

    @property
    def fam(self):
        return family(self.model)

    @classmethod
    def resolve(cls, source: Artifact, options: VlmExportOptions) -> "ExportJob":
        """Every value the family cannot honour, in one usage error (exit 2), before any work."""
        if source.format is not Format.VLM_TOWER:
            raise UsageError(f"{source.path} is not a VLM tower", hint="Use `ocrconvert vlm-export MODEL`.")
        model = source.meta["model"]
        fam = family(model)
        checkpoint = Path(source.meta["checkpoint"]) if source.meta.get("checkpoint") else None
        export_size = parse_size(options.export_size) if options.export_size else tuple(fam.DEFAULT_EXPORT_SIZE)
        sizes = tuple(parse_size(s) for s in options.sizes) or tuple(tuple(s) for s in fam.DEFAULT_SIZES)
        problems = [p for h, w in dict.fromkeys((export_size, *sizes)) if (p := size_problem(h, w, fam.FACTOR))]
        if options.interpolation not in fam.INTERPOLATIONS:
            problems.append(f"unknown interpolation {options.interpolation!r} for {model} "
                            f"(one of: {', '.join(fam.INTERPOLATIONS)})")
        if all(h == export_size[0] or w == export_size[1] for h, w in sizes):
            problems.append("no verification size differs from the export size in both sides (add one, e.g. "
                            "--size 640x960: a model that baked its traced size in fails there)")
        if problems:
            raise UsageError("; ".join(problems),
                             hint="The processor's smart resize makes valid sizes (see ocrconvert.vlm.preprocess)."
                             if any("not valid for the encoder" in p for p in problems) else None)
        return cls(model, checkpoint, options, export_size, sizes)

    def build(self, attention: str, block: int = 512):
        """(tower, encoder): the transformers tower and the single-image wrapper sharing its modules."""
        fam = self.fam
        log.info("building the %s tower%s", self.model,
                 f" from {self.checkpoint}" if self.checkpoint else " (seeded random weights)")
        tower = fam.build_tower(self.checkpoint, layers=self.options.layers, seed=self.options.seed)
        encoder = fam.Encoder(tower, interpolation=self.options.interpolation, attention=attention, block=block).eval()
        return tower, encoder

    def example(self):
        import torch

        return torch.from_numpy(seeded_image(*self.export_size, self.options.seed, self.model))

    def manifest_blocks(self, tower) -> dict:
        """Top-level manifest blocks only this hop knows: the tower, the conventions, preprocessing, I/O."""
        fam, cfg = self.fam, tower.config
        sym = "H, W multiples of " + str(fam.FACTOR)
        return {
            "tower": {"model": self.model, "checkpoint": str(self.checkpoint.resolve()) if self.checkpoint else None,
                      "weights": "checkpoint" if self.checkpoint else f"seeded random (seed {self.options.seed})",
                      "vision_config": {k: getattr(cfg, k) for k in fam.CONFIG_KEYS if hasattr(cfg, k)},
                      "parameters": int(sum(p.numel() for p in tower.parameters()))},
            "interpolation": {"convention": self.options.interpolation,
                              "description": fam.INTERPOLATIONS[self.options.interpolation]},
            "preprocess": fam.PREPROCESS,
            "io": {"inputs": [{"name": "pixel_values", "shape": [1, 3, "H", "W"], "dtype": "float32", "doc": sym}],
                   "outputs": [{"name": n, "shape": [1, "tokens" if n == "image_embeds" else "patches", "width"],
                                "dtype": "float32", "doc": fam.OUTPUT_DOC[n]} for n in OUTPUTS]},
            "model_metadata": self.metadata(),   # in the ONNX too; a .pt2 carries it only here
        }

    def metadata(self) -> dict[str, str]:
        """What ``vlm-embed`` and ``trt-build`` read back: family, convention, preprocessing, TRT profile."""
        fam = self.fam
        return {"ocrconvert.family": "vlm-vision", "ocrconvert.vlm": self.model,
                "ocrconvert.interpolation": self.options.interpolation,
                "ocrconvert.preprocess": json.dumps(fam.PREPROCESS),
                "ocrconvert.trt_profiles": json.dumps({"pixel_values": fam.TRT_PROFILE})}

    def verifier(self, tower, *, device: str = "cpu") -> "TowerVerifier":
        o = self.options
        return TowerVerifier(tower, model=self.model, interpolation=o.interpolation, sizes=self.sizes,
                             precision=o.precision, images=tuple(o.images), seed=o.seed,
                             reference_device=o.reference_device, device=device)


# ---------------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------------
def seeded_image(h: int, w: int, seed: int, model: str = "hunyuan-ocr") -> np.ndarray:
    """A normalized-image-like input: uniform pixels normalized with the model's mean/std."""
    prep = family(model).PREPROCESS
    rng = np.random.default_rng(seed + 7919 * h + w)
    px = rng.random((1, 3, h, w), dtype=np.float32)
    mean = np.asarray(prep["mean"], np.float32)[None, :, None, None]
    std = np.asarray(prep["std"], np.float32)[None, :, None, None]
    return ((px - mean) / std).astype(np.float32)


def _dynamic_sides(factor: int = 32):
    """H and W symbolic, multiples of ``factor`` (patch x merge), up to 128 merged tokens a side."""
    from torch.export import Dim

    return {2: factor * Dim(f"h{factor}", min=1, max=128), 3: factor * Dim(f"w{factor}", min=1, max=128)}


def at_precision(encoder, precision: Precision | str, device: str = "cpu"):
    """fp32 in and out, ``precision`` inside; the position grid and its interpolation stay fp32.

    Works on a copy: the encoder shares its modules with the reference tower, which stays fp32.
    """
    import copy

    import torch

    precision = Precision.parse(precision)
    dtype = {Precision.FP32: torch.float32, Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16}[precision]
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


def _first_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"


def export_onnx(encoder, dest: Path, job: ExportJob, *, opset: int) -> dict:
    """The encoder as ONE ONNX model with symbolic sides at ``dest``; returns the facts of the hop."""
    import onnx
    import torch

    from .._compat import require
    from . import attention

    require("onnxscript", "torch.onnx's dynamo exporter")
    half = job.options.precision is Precision.FP16
    weight_bytes = sum(p.numel() * (2 if half and p.is_floating_point() else p.element_size())
                       for p in encoder.parameters())
    if weight_bytes > ONNX_LIMIT:  # a side file of weights: the output contract commits one file
        raise UsageError(f"the encoder's weights ({weight_bytes / 1024 ** 3:.2f} GiB) exceed what one ONNX file "
                         "holds (2 GiB); external data is not committed by the output contract yet",
                         hint="Export a .pt2 (AOTInductor), --fp16, or fewer --layers.")
    h, w = job.export_size
    log.info("torch.onnx.export (dynamo) at %dx%d, sides symbolic", h, w)
    try:
        with torch.no_grad():
            prog = torch.onnx.export(at_precision(encoder, job.options.precision), (job.example(),), dynamo=True,
                                     input_names=["pixel_values"], output_names=list(OUTPUTS),
                                     dynamic_shapes=(_dynamic_sides(job.fam.FACTOR),),
                                     custom_translation_table=attention.onnx_translation_table(),
                                     opset_version=opset, optimize=True, verbose=False)
    except Exception as exc:  # noqa: BLE001 - exporter errors come in many types
        raise ConversionError(f"torch.onnx.export failed: {_first_line(exc)}") from None
    model = prog.model_proto
    loops = attention.expand_blocked_attention(model)
    for k, v in job.metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"the exported ONNX is invalid: {str(exc).splitlines()[0][:300]}") from None
    onnx.save(model, str(dest))
    return {"opset": opset, "precision": job.options.precision.value, "export_size": "x".join(map(str, job.export_size)),
            "dynamic_axes": {"pixel_values": [2, 3]}, "blocked_attention_loops": loops,
            "weight_bytes": sum(len(t.raw_data) for t in model.graph.initializer)}


def export_aot(encoder, dest: Path, job: ExportJob, *, device: str) -> dict:
    """The encoder as an AOTInductor package with symbolic sides at ``dest``; returns the facts of the hop."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda but no CUDA GPU is visible", hint="Use --device cpu.")
    module = at_precision(encoder, job.options.precision, device)
    h, w = job.export_size
    log.info("torch.export at %dx%d (%s, %s)", h, w, job.options.precision.value, device)
    try:
        with torch.no_grad():
            ep = torch.export.export(module, (job.example().to(device),),
                                     dynamic_shapes=(_dynamic_sides(job.fam.FACTOR),))
        torch._inductor.aoti_compile_and_package(ep, package_path=str(dest))
    except Exception as exc:  # noqa: BLE001 - export and compile errors come in many types
        raise ConversionError(f"AOT build failed: {_first_line(exc)}") from None
    return {"precision": job.options.precision.value, "device": device,
            "export_size": "x".join(map(str, job.export_size)), "dynamic_axes": {"pixel_values": [2, 3]},
            "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None}


# ---------------------------------------------------------------------------------------------------
# verification
# ---------------------------------------------------------------------------------------------------
# Reduced precision: a transformer's outputs carry a rounding error that scales with the activations, not
# with each element (a 1e-2 + 1e-2·|ref| bound fails on near-zero elements of a 27-layer residual stream
# while the cosine is 0.999999). The bound is a multiple of the output's RMS, scaled by the format's unit
# roundoff (bf16 has 8x fp16's), plus a cosine floor.
REDUCED = {"fp16": (0.02, 0.9999), "bf16": (0.16, 0.999)}


def _tolerance(ref: np.ndarray, precision: str, given: Tolerances) -> Tolerances:
    if precision not in REDUCED or given.atol is not None:  # fp32, or a bound the caller chose
        return given
    c, cos = REDUCED[precision]
    rms = float(np.sqrt(np.mean(np.square(ref, dtype=np.float64)))) if ref.size else 0.0
    return Tolerances(precision="fp16", atol=c * rms, rtol=0.0, min_cosine=cos)


def verify_encoder(target: Callable[[np.ndarray], list[np.ndarray]], tower, *, interpolation: str,
                   sizes, precision: Precision | str = "fp32", images=None, seed: int = 0,
                   label: str = "", model: str = "hunyuan-ocr", tolerances: Tolerances | None = None,
                   say: Callable[[str], None] = lambda m: None) -> ParityReport:
    """Both outputs of ``target`` vs the transformers tower on seeded inputs at ``sizes`` (and images)."""
    import torch

    fam = family(model)
    precision = Precision.parse(precision).value
    tol = tolerances or Tolerances(precision="fp32")
    rule = {"precision": precision, **tol.to_dict()}
    if precision in REDUCED and tol.atol is None:
        c, cos = REDUCED[precision]
        rule = {"precision": precision, "rule": f"max abs <= {c} x rms(reference output), cosine >= {cos}",
                "rms_factor": c, "min_cosine": cos}
    started = time.perf_counter()
    device = next(tower.parameters()).device.type
    report = ParityReport(source=f"transformers {type(tower).__name__} ({fam.INTERPOLATIONS[interpolation]})",
                          target=label, source_backend=f"transformers (torch eager, fp32, {device})",
                          target_backend=label or "exported", family=f"vlm-vision {model}, interpolation={interpolation}",
                          tolerances=rule, seed=seed)
    feeds = [(f"{h}x{w}", "random", seeded_image(h, w, seed, model)) for h, w in sizes]
    for img in images or ():
        feeds.append((Path(img).name, "image", fam.preprocess(img)))
    for name, kind, x in feeds:
        say(name if kind == "random" else f"{name} at {x.shape[2]}x{x.shape[3]}")
        ref = [t.float().numpy() for t in fam.reference_forward(tower, torch.from_numpy(x), interpolation)]
        try:
            out = target(x)
        except Exception as exc:  # noqa: BLE001 - runtime errors come in many types
            raise ConversionError(f"the exported model failed at {x.shape[2]}x{x.shape[3]}: {_first_line(exc)}") from None
        outs = [compare_arrays(n, r, np.asarray(o), _tolerance(r, precision, tol)) for n, r, o in zip(OUTPUTS, ref, out)]
        report.cases.append(CaseResult(name, {"pixel_values": list(x.shape)}, outs, kind=kind))
    report.seconds = time.perf_counter() - started
    return report


class TowerVerifier:
    """A hop's ``VerificationPolicy.verifier``: the exported artifact vs the transformers tower it was
    built from (the same modules, fp32), at the job's sizes. Called by the spine before the commit."""

    def __init__(self, tower, *, model: str, interpolation: str, sizes, precision: Precision, images=(),
                 seed: int = 0, reference_device: str = "cpu", device: str = "cpu"):
        self.tower, self.model, self.interpolation, self.sizes = tower, model, interpolation, tuple(sizes)
        self.precision, self.images, self.seed = precision, tuple(images), seed
        self.reference_device, self.device = reference_device, device

    def __call__(self, artifact: Artifact, *, tolerances: Tolerances | None = None,
                 progress: Callable[[str], None] = lambda m: None) -> ParityReport:
        if self.reference_device != "cpu":  # after the export: the encoder shares the tower's modules
            _fp32_reference_on(self.tower, self.reference_device)
        target, label = _target(artifact, self.device)
        return verify_encoder(target, self.tower, interpolation=self.interpolation, sizes=self.sizes,
                              precision=self.precision, images=self.images, seed=self.seed, label=label,
                              model=self.model, tolerances=tolerances, say=progress)


def _target(artifact: Artifact, device: str) -> tuple[Callable[[np.ndarray], list[np.ndarray]], str]:
    """The artifact as ``f(pixel_values) -> [image_embeds, last_hidden_state]``, through the project's runners."""
    from ..runners import runner_for

    if artifact.format is Format.ONNX:
        runner = runner_for(artifact)
        return (lambda x: [runner.infer({"pixel_values": x})[n] for n in OUTPUTS]), "onnxruntime (CPU)"
    # the package this run has just built in its own staging folder (its manifest comes after the verdict)
    import torch

    package = runner_for(artifact, device=device, trust=True).session

    def run(x):
        with torch.inference_mode():
            return [o.float().cpu().numpy() for o in package(torch.from_numpy(x).to(device))]
    return run, f"AOTInductor ({device})"


def _fp32_reference_on(tower, device: str) -> None:
    import torch

    from .._compat import fp32_on_cuda

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--reference-device cuda but no CUDA GPU is visible")
    fp32_on_cuda(torch)
    tower.to(device)


__all__ = ["VlmExportOptions", "ExportJob", "TowerVerifier", "verify_encoder", "export_onnx", "export_aot",
           "at_precision", "seeded_image", "parse_size", "size_problem", "check_device", "REDUCED", "OUTPUTS"]


class TowerConverter(Converter):
    """What both VLM tower routes share: option values the family cannot honour are refused before any work."""

    def check(self, source, options) -> list[str]:
        ExportJob.resolve(source, options)  # raises UsageError (exit 2)
        return []
