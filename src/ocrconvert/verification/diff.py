"""``diff``: run SOURCE and TARGET with their intermediate outputs, align the layers, and name the first one whose
error leaves its tolerance.

Intermediates per runtime (each runner's ``layer_outputs``): Paddle program variables (static executor), ONNX node
outputs (a temporary copy exposing them), torch.fx nodes (an Interpreter over the onnx2torch GraphModule), native
module outputs (forward hooks); an AOT package runs through its native model with the package's precision plan,
and its own output is compared with that model's as the last row. Layers are aligned by the name maps the hops
recorded (``names.py``); without one, by name, then by structure (order and shape, marked approximate).

A layer's error is judged on its own scale: max |target - source| over max |source|, against a tolerance per
precision (the family may override it), so a large activation is not judged by a small one's bound.
"""
from __future__ import annotations

import html
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import UsageError
from ..formats import Artifact, Format, detect
from ..manifest import read_manifest
from ..registry import NODE_OF
from ..runners import runner_for
from .names import compose, name_candidates, scaled_error

log = logging.getLogger(__name__)

# max |error| / max |source activation| a layer may reach: fp32 reordering stays near 1e-6, one rounding to fp16
# costs ~5e-4 of scale per op and accumulates with depth; a weight off by 1 % moves its layer by ~1e-2
LAYER_TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2, "bf16": 1e-1, "int8": 2.5e-1}


def layer_tolerance(family, precision: str) -> float:
    """The family's bound for ``precision`` where it has one (``LAYER_TOLERANCE`` on the family), else ours."""
    own = getattr(family, "LAYER_TOLERANCE", None) or {}
    return float(own.get(precision, LAYER_TOLERANCE.get(precision, LAYER_TOLERANCE["fp32"])))


@dataclass
class LayerDiff:
    depth: int
    source: str
    target: str
    op: str
    target_op: str
    shape: list
    max_abs: float
    scale: float
    rel: float
    cosine: float
    tolerance: float
    suspect: bool = False  # over its tolerance, but aligned by name alone and the output agrees: likely misaligned

    @property
    def exceeded(self) -> bool:
        return not (self.rel <= self.tolerance)  # NaN exceeds

    def to_dict(self) -> dict:
        d = asdict(self)
        d["exceeded"] = self.exceeded
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


@dataclass
class DiffReport:
    source: str
    target: str
    source_backend: str
    target_backend: str
    family: str
    precision: str
    tolerance: float
    alignment: str
    cases: list[str]
    layers: list[LayerDiff] = field(default_factory=list)
    unaligned_source: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def first(self) -> LayerDiff | None:
        return next((layer for layer in self.layers if layer.exceeded and not layer.suspect), None)

    @property
    def verdict(self) -> str:
        if not self.layers:
            return "INCONCLUSIVE"
        return "FAILED" if self.first is not None else "PASSED"

    @property
    def passed(self) -> bool:
        return self.verdict == "PASSED"

    def neighbours(self, layer: LayerDiff, k: int = 2) -> list[LayerDiff]:
        i = self.layers.index(layer)
        return self.layers[max(0, i - k):i] + self.layers[i + 1:i + 1 + k]

    def summary_line(self) -> str:
        if not self.layers:
            return f"INCONCLUSIVE | no layer of {self.target} could be aligned with {self.source}"
        first = self.first
        if first is None:
            trusted = [x for x in self.layers if not x.suspect]
            suspect = len(self.layers) - len(trusted)
            worst = max(trusted or self.layers, key=lambda x: x.rel if math.isfinite(x.rel) else float("inf"))
            return (f"PASSED | {len(trusted)} aligned layers within {self.tolerance:g} of their scale "
                    f"({self.precision}); worst {worst.rel:.3g} at {worst.source}"
                    + (f"; {suspect} suspect (name-only alignment, see notes)" if suspect else ""))
        return (f"FAILED | first divergence at depth {first.depth}: {first.source} -> {first.target} ({first.op}, "
                f"{list(first.shape)}): error {first.rel:.3g} of scale > {first.tolerance:g}")

    def to_dict(self) -> dict:
        first = self.first
        return {
            "source": self.source, "target": self.target, "source_backend": self.source_backend,
            "target_backend": self.target_backend, "family": self.family, "precision": self.precision,
            "tolerance": self.tolerance, "alignment": self.alignment, "cases": self.cases,
            "verdict": self.verdict, "passed": self.passed, "summary": self.summary_line(),
            "first_divergence": None if first is None else {
                **first.to_dict(), "neighbours": [n.to_dict() for n in self.neighbours(first)]},
            "aligned": len(self.layers), "unaligned_source": self.unaligned_source, "notes": self.notes,
            "layers": [layer.to_dict() for layer in self.layers], "seconds": round(self.seconds, 3),
        }

    def to_html(self) -> str:
        return _html(self)


# -- capturing ---------------------------------------------------------------------------------------------
class _Side:
    """One model's intermediates: its runner, its keys in depth order with their op types."""

    def __init__(self, runner, label: str):
        self.runner = runner
        self.label = label
        self.types = dict(runner.layer_values())

    def capture(self, feed: dict) -> dict:
        return self.runner.layer_outputs(feed)

    def output_keys(self) -> list[str]:
        return self.runner.output_keys() if hasattr(self.runner, "output_keys") else []


def _native_plan_runner(target: Artifact, name_map: dict | None):
    """The native model an AOT package was built from, run with the package's precision plan."""
    from ..runners.torch import TorchNativeRunner

    man = read_manifest(target.path) or {}
    aot = man.get("aot") or {}
    folder = (name_map or {}).get("native") or (man.get("input") or {}).get("path")
    keep = None
    if not folder or not Path(folder).is_dir():
        keep, folder = _rebuild_native(target, man, folder)
    fp32_parts = aot.get("fp32_parts")

    class PlannedNative(TorchNativeRunner):
        def _prepare(self, module):
            if self.half and fp32_parts and hasattr(module, "FP32_PARTS"):
                module.FP32_PARTS = tuple(fp32_parts)
            return super()._prepare(module)

    device = aot.get("device") or "cpu"
    runner = PlannedNative(detect(folder), device=device, half=bool(aot.get("fp16")))
    runner.rebuilt_in = keep  # a rebuilt folder lives as long as its runner
    return runner, device


def _rebuild_native(target: Artifact, man: dict, folder):
    """The native model of a package built straight from Paddle (its native hop was a temporary folder): the
    native route again from the same, unchanged Paddle source, into a temporary folder (the mapping is
    deterministic, so it is the model the package was compiled from)."""
    import tempfile

    from ..manifest import sha256_artifact
    from ..native import convert_to_transformers

    source = man.get("source") or {}
    path = Path(source.get("path") or "")
    if source.get("format") not in ("paddle-legacy", "paddle-pir") or not path.exists() \
            or sha256_artifact(path) != source.get("sha256"):
        raise UsageError(f"{target.path} runs through its native model in diff, and that folder ({folder}) is gone",
                         hint="Build the package from a native folder that you keep (`ocrconvert convert ... "
                              "--route native`, then `aot-build`), or keep its Paddle source unchanged.")
    keep = tempfile.TemporaryDirectory(prefix="ocrconvert-diff-native-")
    convert_to_transformers(detect(path), Path(keep.name))
    return keep, keep.name


def _hop_maps(source: Artifact, target: Artifact) -> list[dict] | None:
    """The name maps of the target's hops from the source's kind on, or None when its manifest has none."""
    man = read_manifest(target.path) or {}
    hops = man.get("hops") or []
    node = NODE_OF.get(source.format)
    start = next((i for i, h in enumerate(hops) if h.get("from") == node), None)
    if start is None:
        return None
    maps = [(h.get("produced") or {}).get("name_map") for h in hops[start:]]
    if any(not isinstance(m, dict) or "error" in m for m in maps):
        return None
    return maps


# -- aligning ----------------------------------------------------------------------------------------------
def _by_structure(src: dict, tgt: dict) -> list[tuple[str, str]]:
    """Order + shape: each source value, in order, paired with the next unpaired target value of its shape."""
    tkeys = list(tgt)
    pairs, j = [], 0
    for s, v in src.items():
        k = next((i for i in range(j, len(tkeys)) if tgt[tkeys[i]].shape == v.shape), None)
        if k is not None:
            pairs.append((s, tkeys[k]))
            j = k + 1
    return pairs


def align(source: Artifact, target: Artifact, src: dict, tgt: dict, maps: list[dict] | None,
          aliases: dict | None = None, outputs: list | None = None) -> tuple[list, str]:
    outputs = [(s, t) for s, t in outputs or [] if s in src and t in tgt]
    if maps:
        if all(m.get("how") == "identity" for m in maps):
            return [(k, k) for k in src if k in tgt], "identity (" + ", ".join(
                f"{m['source']} -> {m['target']} via {m.get('via', 'same keys')}" for m in maps) + ")"
        pairs = [(s, t) for s, t in compose(maps) if s in src and t in tgt]
        if pairs:
            return _with_outputs(pairs, outputs), "recorded name maps: " + " | ".join(f"{m['source']} -> {m['target']} ({m['how']})"
                                                              for m in maps if m.get("how") != "identity")
    pairs = name_candidates(list(src), list(tgt), aliases)
    if len(pairs) >= max(3, len(src) // 10):
        return _with_outputs(pairs, outputs), "names (no recorded map)"
    return _with_outputs(_by_structure(src, tgt), outputs), "structure: order and shape (no recorded map; approximate)"


def _with_outputs(pairs: list, outputs: list) -> list:
    """The declared outputs always correspond, by position (as ``verify`` pairs them)."""
    have_s, have_t = {s for s, _ in pairs}, {t for _, t in pairs}
    return pairs + [(s, t) for s, t in outputs if s not in have_s and t not in have_t]


def _suspects(rows: list[LayerDiff], output_keys: set[str]) -> list[str]:
    """Without a recorded map a name can point at another value (an older paddle2onnx named a Conv's output after
    Paddle's conv variable with the bias already added): when the source's output is aligned and agrees, layers
    over their tolerance did not reach it, and are marked suspect instead of named."""
    out = next((r for r in rows if r.source in output_keys), None)
    if out is None or out.exceeded:
        return []
    over = [r for r in rows if r.exceeded]
    for r in over:
        r.suspect = True
    if not over:
        return []
    return [f"{len(over)} layer(s) over their tolerance did not reach the output, which agrees ({out.rel:.3g}); "
            f"aligned by name without a recorded map, they are likely misaligned: "
            + ", ".join(r.source for r in over[:5]) + (" ..." if len(over) > 5 else "")]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def _stats(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    a64 = np.asarray(a, np.float64)
    b64 = np.asarray(b, np.float64).reshape(a64.shape)
    err = float(np.abs(a64 - b64).max()) if a64.size else 0.0
    scale = float(np.abs(a64).max()) if a64.size else 0.0
    return err, scale, scaled_error(a64, b64), _cosine(a64, b64)


# -- the command -------------------------------------------------------------------------------------------
def diff_artifacts(source, target, *, images=None, family: str | None = None, precision: str | None = None,
                   seed: int = 0, max_images: int = 3, progress: Callable[[str], None] | None = None) -> DiffReport:
    """Align SOURCE's and TARGET's layer outputs on the same inputs and report the error of each along depth."""
    from ..families import resolve_family
    from ..families.imaging import load_images

    t0 = time.perf_counter()
    say = progress or (lambda msg: None)
    src = source if isinstance(source, Artifact) else detect(source)
    tgt = target if isinstance(target, Artifact) else detect(target)
    for art in (src, tgt):
        if art.format in (Format.TENSORRT, Format.REFERENCE, Format.VLM_TOWER):
            raise UsageError(f"diff cannot read the intermediates of {art.path} ({art.format.value})",
                             hint="diff runs Paddle programs, ONNX, PyTorch graph / native folders and AOT packages.")
    maps = _hop_maps(src, tgt)
    src_side = _Side(runner_for(src), src.format.value)
    package = None
    if tgt.format is Format.TORCH_AOT:
        aot_map = next((m for m in (maps or []) if m.get("via") == "native"), None)
        planned, device = _native_plan_runner(tgt, aot_map)
        package = runner_for(tgt, device=device)
        tgt_side = _Side(planned, "torch-aot (its native model, same precision plan)")
    else:
        tgt_side = _Side(runner_for(tgt), tgt.format.value)
    info = src_side.runner.info()
    fam = resolve_family(info, family)
    man = read_manifest(tgt.path) or {}
    prec = str(precision or man.get("precision") or "fp32")
    tol = layer_tolerance(fam, prec)

    feeds = [fam.random_feeds(seed)[0]]
    notes: list[str] = []
    if images:
        real = [(name, img, None) for name, img in load_images(images)][:max_images]
        feeds += fam.image_feeds(real)
        if len(real) == max_images:
            notes.append(f"only the first {max_images} images of {images} are run")

    worst: dict[tuple[str, str], LayerDiff] = {}
    pairs, how, unaligned = [], "", 0
    for label, feed in feeds:
        say(f"diff: {label}")
        a = src_side.capture(feed)
        b = tgt_side.capture({tgt_side.runner.input_names[0]: next(iter(feed.values()))} if len(feed) == 1 else feed)
        if not pairs:
            outputs = list(zip(src_side.output_keys(), tgt_side.output_keys()))
            pairs, how = align(src, tgt, a, b, maps, getattr(src_side.runner, "aliases", None), outputs)
            unaligned = len(set(a) - {s for s, _ in pairs})
        order = {k: i for i, k in enumerate(a)}
        for s, t in pairs:
            if s not in a or t not in b or a[s].size != b[t].size:
                continue
            err, scale, rel, cos = _stats(a[s], b[t])
            row = LayerDiff(order[s], s, t, src_side.types.get(s, ""), tgt_side.types.get(t, ""), list(a[s].shape),
                            err, scale, rel, cos, tol)
            old = worst.get((s, t))
            if old is None or not (row.rel <= old.rel):
                worst[(s, t)] = row
        if package is not None:  # the compiled package against the model it runs through here
            mine = tgt_side.runner.infer({tgt_side.runner.input_names[0]: next(iter(feed.values()))})
            theirs = package.infer({package.input_names[0]: next(iter(feed.values()))})
            x, y = next(iter(mine.values())), next(iter(theirs.values()))
            err, scale, rel, cos = _stats(x, y)
            row = LayerDiff(len(a), "(native model output)", "(AOT package output)", "compiled package",
                            "AOTInductor", list(x.shape), err, scale, rel, cos, tol)
            key = ("(native model output)", "(AOT package output)")
            if key not in worst or not (row.rel <= worst[key].rel):
                worst[key] = row
    rows = sorted(worst.values(), key=lambda r: r.depth)
    if not how.startswith(("recorded", "identity")):
        notes += _suspects(rows, {s for s, _ in outputs} or {list(a)[-1]})
    report = DiffReport(str(src.path), str(tgt.path), src_side.runner.backend, tgt_side.label, fam.name, prec, tol,
                        how, [lbl for lbl, _ in feeds], rows, unaligned, notes)
    report.seconds = time.perf_counter() - t0
    return report


# -- HTML --------------------------------------------------------------------------------------------------
def _svg(report: DiffReport, width: int = 900, height: int = 300) -> str:
    pts = [(r.depth, r.rel) for r in report.layers]
    if not pts:
        return "<p>no aligned layers</p>"
    floor = 1e-9
    ys = [math.log10(max(v, floor)) if math.isfinite(v) else 3.0 for _, v in pts]
    lo, hi = min(min(ys), math.log10(report.tolerance)) - 0.5, max(max(ys), math.log10(report.tolerance)) + 0.5
    dmax = max(d for d, _ in pts) or 1
    pad = 40

    def X(d):
        return pad + (width - 2 * pad) * d / dmax

    def Y(v):
        return height - pad - (height - 2 * pad) * (v - lo) / (hi - lo)

    line = " ".join(f"{X(d):.1f},{Y(y):.1f}" for (d, _), y in zip(pts, ys))
    tol_y = Y(math.log10(report.tolerance))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
             f'<line x1="{pad}" y1="{tol_y:.1f}" x2="{width - pad}" y2="{tol_y:.1f}" stroke="#c60" '
             f'stroke-dasharray="4 3"/><text x="{width - pad}" y="{tol_y - 4:.1f}" font-size="11" '
             f'text-anchor="end" fill="#c60">tolerance {report.tolerance:g}</text>',
             f'<polyline fill="none" stroke="#246" stroke-width="1.2" points="{line}"/>']
    for r, y in zip(report.layers, ys):
        color = "#999" if r.suspect else "#c00" if r.exceeded else "#246"
        parts.append(f'<circle cx="{X(r.depth):.1f}" cy="{Y(y):.1f}" r="2.2" fill="{color}">'
                     f'<title>{html.escape(r.source)} -> {html.escape(r.target)}: {r.rel:.3g}</title></circle>')
    first = report.first
    if first is not None:
        parts.append(f'<line x1="{X(first.depth):.1f}" y1="{pad}" x2="{X(first.depth):.1f}" y2="{height - pad}" '
                     f'stroke="#c00"/>')
    for v in range(math.ceil(lo), math.floor(hi) + 1):
        parts.append(f'<text x="{pad - 4}" y="{Y(v) + 4:.1f}" font-size="10" text-anchor="end">1e{v}</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 8}" font-size="11" text-anchor="middle">depth (source '
                 f'program order)</text><text x="12" y="{pad - 12}" font-size="11">error / scale</text></svg>')
    return "".join(parts)


def _html(report: DiffReport) -> str:
    esc = html.escape
    first = report.first
    rows = []
    for r in report.layers:
        style = ' style="background:#fdd"' if r is first else (' style="color:#888"' if r.suspect else
                                                               ' style="color:#a00"' if r.exceeded else "")
        rows.append(f"<tr{style}><td>{r.depth}</td><td>{esc(r.source)}</td><td>{esc(r.target)}</td><td>{esc(r.op)}"
                    f"</td><td>{esc(str(r.shape))}</td><td>{r.max_abs:.3g}</td><td>{r.scale:.3g}</td>"
                    f"<td>{r.rel:.3g}</td><td>{r.cosine:.6f}</td></tr>")
    color = {"PASSED": "#080", "FAILED": "#c00"}.get(report.verdict, "#a60")
    meta = "".join(f"<li>{esc(k)}: {esc(str(v))}</li>" for k, v in (
        ("source", f"{report.source} ({report.source_backend})"), ("target", f"{report.target} ({report.target_backend})"),
        ("family / precision", f"{report.family} / {report.precision}"), ("alignment", report.alignment),
        ("inputs", ", ".join(report.cases)), ("aligned layers", f"{len(report.layers)} "
                                              f"({report.unaligned_source} source values without a counterpart)")))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>ocrconvert diff</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:nth-child(2),td:nth-child(3),"
            "td:nth-child(4){text-align:left}</style></head><body>"
            f"<h1>ocrconvert diff</h1><p style='color:{color};font-weight:bold'>{esc(report.summary_line())}</p>"
            f"<ul>{meta}</ul>{_svg(report)}<table><tr><th>depth</th><th>source</th><th>target</th><th>op</th>"
            "<th>shape</th><th>max abs</th><th>scale</th><th>error / scale</th><th>cosine</th></tr>"
            + "".join(rows) + "</table>" + "".join(f"<p>note: {esc(n)}</p>" for n in report.notes)
            + "</body></html>")
