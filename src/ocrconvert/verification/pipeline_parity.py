"""Pipeline parity: two OCR pipelines (the ORIGINAL set and a converted one) run end to end on the same pages.

A per-model tensor check can pass while the page result differs: box extraction sits on thresholds, CTC decoding
on argmax ties. So the whole pipeline is compared, page by page:

* boxes are matched one to one (quad IoU >= ``tolerances.iou``, best pairs first); a source line without a
  partner is *missing*, a target line without one is *extra*;
* a matched pair is compared by text (exact; the character error rate is reported), by the largest corner
  shift in page pixels and by the recognition score;
* the det probability maps are compared where both have the same shape.

Any text difference, a missing or extra line, a shift or score difference beyond tolerance FAILS. A page on which
the source finds no line carried no signal and does not count toward a pass (the suite's informative-case rule):
fewer informative pages than ``min_informative`` is INCONCLUSIVE. The report is truthy on pass, ``to_dict()``
gives JSON and :func:`write_html` a self-contained HTML report (pages drawn side by side, the det maps and their
difference, the per-line table).
"""
from __future__ import annotations

import base64
import html
import io
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import UsageError
from ..ocr.pages import cer  # one CER for rendered known text and for pipeline parity

log = logging.getLogger(__name__)

NO_DICTIONARY = "no dictionary: comparing class ids"


@dataclass(frozen=True)
class PipelineTolerances:
    """What a converted set may differ by. Texts must be equal (``max_cer=0``); a matched box's corners may move
    by ``max_shift_px`` page pixels (boxes are integer pixels: a probability on the threshold moves one by 1);
    recognition scores by ``score_atol``; det maps by ``prob_atol`` (max abs, where both maps have one shape).

    Measured on PP-OCRv4 (4 rendered pages, 39 lines) against Paddle: scores move <= 8.9e-6 and det maps <= 4.4e-4
    (ONNX 1.1e-4, torch graph 4.4e-4, native 4.2e-4); one rec conv x1.02 moves scores by 2.8e-2."""
    iou: float = 0.9
    max_shift_px: float = 1.0
    max_cer: float = 0.0
    score_atol: float = 1e-3
    prob_atol: float = 5e-3

    def __post_init__(self):
        if not 0.0 < self.iou <= 1.0:
            raise UsageError(f"pipeline IoU threshold {self.iou} must lie in (0, 1]")
        if min(self.max_shift_px, self.max_cer, self.score_atol, self.prob_atol) < 0:
            raise UsageError("pipeline tolerances must not be negative")

    @classmethod
    def for_precision(cls, precision: str | None) -> "PipelineTolerances":
        """fp32 targets get the defaults; fp16 / int8 ones looser scores and maps (texts and boxes stay strict)."""
        p = str(precision or "fp32").lower()
        if p in ("fp16", "half", "bf16"):
            return cls(max_shift_px=2.0, score_atol=1e-2, prob_atol=5e-2)
        if p == "int8":  # INT8 det maps differ by design (binarised IoU 0.83-0.93): texts and boxes judge it
            return cls(max_shift_px=3.0, score_atol=5e-2, prob_atol=1.0)
        return cls()

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LineParity:
    """One source line and its target partner (either may be None: missing / extra)."""
    source_index: int | None
    target_index: int | None
    source_text: str | None
    target_text: str | None
    source_score: float | None
    target_score: float | None
    iou: float | None = None
    shift_px: float | None = None
    cer: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.target_index is None:
            return "missing"
        if self.source_index is None:
            return "extra"
        return "differs" if self.problems else "same"

    @property
    def passed(self) -> bool:
        return self.status == "same"

    def to_dict(self) -> dict:
        r = (lambda v, n=6: None if v is None else round(float(v), n))
        return {"status": self.status, "source_index": self.source_index, "target_index": self.target_index,
                "source_text": self.source_text, "target_text": self.target_text,
                "source_score": r(self.source_score), "target_score": r(self.target_score), "iou": r(self.iou, 4),
                "shift_px": r(self.shift_px, 3), "cer": r(self.cer, 4), "problems": self.problems}


@dataclass
class PageParity:
    label: str
    lines: list[LineParity]
    source_lines: int
    target_lines: int
    prob_max_abs: float | None = None      # det maps, where both have one shape
    prob_problem: str = ""
    ground_truth: list[str] | None = None  # rendered pages: the text drawn on them
    # what the HTML report draws; not serialised
    image: np.ndarray | None = field(default=None, repr=False)
    source_result: object = field(default=None, repr=False)
    target_result: object = field(default=None, repr=False)

    @property
    def informative(self) -> bool:
        """A page on which the source finds no line would pass against a target that finds none either."""
        return self.source_lines > 0

    @property
    def missing(self) -> int:
        return sum(ln.status == "missing" for ln in self.lines)

    @property
    def extra(self) -> int:
        return sum(ln.status == "extra" for ln in self.lines)

    @property
    def matched(self) -> list[LineParity]:
        return [ln for ln in self.lines if ln.source_index is not None and ln.target_index is not None]

    @property
    def text_differences(self) -> int:
        return sum(ln.source_text != ln.target_text for ln in self.matched)

    @property
    def passed(self) -> bool:
        return all(ln.passed for ln in self.lines) and not self.prob_problem

    def worst(self, attr: str) -> float | None:
        vals = [getattr(ln, attr) for ln in self.matched if getattr(ln, attr) is not None]
        return max(vals) if vals else None

    def ground_truth_hits(self) -> int | None:
        if not self.ground_truth:
            return None
        texts = [ln.source_text for ln in self.lines if ln.source_index is not None]
        return sum(any(t is not None and t.replace(" ", "") == gt.replace(" ", "") for t in texts)
                   for gt in self.ground_truth)

    def to_dict(self) -> dict:
        score_diffs = [abs(ln.source_score - ln.target_score) for ln in self.matched]
        return {"label": self.label, "passed": self.passed, "informative": self.informative,
                "source_lines": self.source_lines, "target_lines": self.target_lines, "matched": len(self.matched),
                "missing": self.missing, "extra": self.extra, "text_differences": self.text_differences,
                "worst_shift_px": self.worst("shift_px"), "worst_cer": self.worst("cer"),
                "worst_score_diff": max(score_diffs) if score_diffs else None,
                "prob_max_abs": self.prob_max_abs, **({"prob_problem": self.prob_problem} if self.prob_problem else {}),
                **({"ground_truth": self.ground_truth, "source_reads_ground_truth": self.ground_truth_hits()}
                   if self.ground_truth else {}),
                "lines": [ln.to_dict() for ln in self.lines]}


@dataclass
class PipelineParityReport:
    """Every page, one verdict: PASSED only when nothing differs AND enough pages carried a line."""
    source: dict
    target: dict
    tolerances: dict
    pages: list[PageParity] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    min_informative: int = 1
    seconds: float = 0.0

    @property
    def informative_pages(self) -> int:
        return sum(p.informative for p in self.pages)

    @property
    def verdict(self) -> str:
        if any(not p.passed for p in self.pages):
            return "FAILED"
        if self.informative_pages < self.min_informative:
            return "INCONCLUSIVE"
        return "PASSED"

    @property
    def passed(self) -> bool:
        return self.verdict == "PASSED"

    def __bool__(self) -> bool:
        return self.passed

    def totals(self) -> dict:
        matched = [ln for p in self.pages for ln in p.matched]
        shifts = [ln.shift_px for ln in matched if ln.shift_px is not None]
        scores = [abs(ln.source_score - ln.target_score) for ln in matched]
        probs = [p.prob_max_abs for p in self.pages if p.prob_max_abs is not None]
        return {"pages": len(self.pages), "informative_pages": self.informative_pages,
                "source_lines": sum(p.source_lines for p in self.pages),
                "target_lines": sum(p.target_lines for p in self.pages), "matched": len(matched),
                "missing": sum(p.missing for p in self.pages), "extra": sum(p.extra for p in self.pages),
                "same_text": sum(ln.source_text == ln.target_text for ln in matched),
                "text_differences": sum(p.text_differences for p in self.pages),
                "worst_cer": max((ln.cer for ln in matched if ln.cer is not None), default=None),
                "worst_shift_px": max(shifts) if shifts else None,
                "worst_score_diff": max(scores) if scores else None,
                "worst_prob_max_abs": max(probs) if probs else None}

    def summary_line(self) -> str:
        t = self.totals()
        src, tgt = self.source.get("label", "source"), self.target.get("label", "target")
        parts = [f"{self.verdict} | pipeline {tgt} vs {src}",
                 f"{sum(p.passed for p in self.pages)}/{len(self.pages)} pages ({t['informative_pages']} informative)",
                 f"boxes {t['matched']}/{t['source_lines']} matched, {t['missing']} missing, {t['extra']} extra",
                 f"texts {t['same_text']}/{t['matched']} equal"]
        if t["worst_shift_px"] is not None:
            parts.append(f"max shift {t['worst_shift_px']:.3g} px, max score diff {t['worst_score_diff']:.3g}")
        if t["worst_prob_max_abs"] is not None:
            parts.append(f"det map max abs {t['worst_prob_max_abs']:.3g}")
        parts.extend(self.notes)
        return " | ".join(parts)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "verdict": self.verdict, "summary": self.summary_line(), "kind": "pipeline",
                "source": self.source, "target": self.target, "tolerances": self.tolerances,
                "min_informative": self.min_informative, "notes": self.notes, "totals": self.totals(),
                "seconds": round(self.seconds, 3), "pages": [p.to_dict() for p in self.pages]}


# ---- comparison --------------------------------------------------------------------------------------
def corner_shift(a, b) -> float:
    """The largest corner distance between two quads, over the cyclic orders of ``b``'s corners (a quad of a
    near-square box may start at another corner)."""
    a, b = np.asarray(a, np.float64).reshape(4, 2), np.asarray(b, np.float64).reshape(4, 2)
    return float(min(np.linalg.norm(a - np.roll(b, k, axis=0), axis=1).max() for k in range(4)))


def match_boxes(source_boxes, target_boxes, min_iou: float) -> list[tuple[int, int, float]]:
    """One-to-one pairs ``(i, j, iou)`` with IoU >= ``min_iou``, the best pairs first."""
    from ..ocr import quad_iou

    def bounds(q):
        q = np.asarray(q, np.float64).reshape(4, 2)
        return q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max()

    tb = [bounds(q) for q in target_boxes]
    pairs = []
    for i, a in enumerate(source_boxes):
        ax0, ay0, ax1, ay1 = bounds(a)
        for j, b in enumerate(target_boxes):
            bx0, by0, bx1, by1 = tb[j]
            if bx0 > ax1 or ax0 > bx1 or by0 > ay1 or ay0 > by1:
                continue
            iou = quad_iou(a, b)
            if iou >= min_iou:
                pairs.append((iou, i, j))
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    used_s, used_t, out = set(), set(), []
    for iou, i, j in pairs:
        if i not in used_s and j not in used_t:
            used_s.add(i)
            used_t.add(j)
            out.append((i, j, iou))
    return sorted(out)


def compare_pages(label: str, src, tgt, tol: PipelineTolerances) -> PageParity:
    """One page's two ``PageResult``s compared line by line."""
    pairs = match_boxes([ln.box for ln in src.lines], [ln.box for ln in tgt.lines], tol.iou)
    lines: list[LineParity] = []
    matched_t = {j for _, j, _ in pairs}
    by_source = {i: (j, iou) for i, j, iou in pairs}
    for i, s in enumerate(src.lines):
        if i not in by_source:
            lines.append(LineParity(i, None, s.text, None, float(s.score), None, problems=["missing in target"]))
            continue
        j, iou = by_source[i]
        t = tgt.lines[j]
        ln = LineParity(i, j, s.text, t.text, float(s.score), float(t.score), iou, corner_shift(s.box, t.box),
                        cer(s.text, t.text))
        if s.text != t.text and ln.cer > tol.max_cer:  # max_cer 0 (the default): any difference
            ln.problems.append(f"text {s.text!r} -> {t.text!r} (CER {ln.cer:.3g})")
        if ln.shift_px > tol.max_shift_px:
            ln.problems.append(f"box moved {ln.shift_px:.3g} px (> {tol.max_shift_px:g})")
        if abs(ln.source_score - ln.target_score) > tol.score_atol:
            ln.problems.append(f"score {ln.source_score:.5f} -> {ln.target_score:.5f} (> {tol.score_atol:g})")
        lines.append(ln)
    for j, t in enumerate(tgt.lines):
        if j not in matched_t:
            lines.append(LineParity(None, j, None, t.text, None, float(t.score), problems=["extra in target"]))
    page = PageParity(label, lines, len(src.lines), len(tgt.lines))
    a, b = src.prob_map, tgt.prob_map
    if a is not None and b is not None:
        if a.shape == b.shape:
            page.prob_max_abs = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
            if page.prob_max_abs > tol.prob_atol:
                page.prob_problem = f"det map max abs {page.prob_max_abs:.3g} > {tol.prob_atol:g}"
        else:
            page.prob_problem = f"det maps differ in shape: {list(a.shape)} vs {list(b.shape)}"
    return page


# ---- pages -------------------------------------------------------------------------------------------
def default_pages(count: int = 4, seed: int = 0) -> list[tuple[str, object, list[str] | None]]:
    """Rendered pages with known text (``ocrconvert.ocr.pages``: clean, rotated, vertical, low contrast, ...)."""
    from ..ocr.pages import render_pages

    return [(p.name, p.image, [ln.text for ln in p.lines]) for p in render_pages(count, seed=seed)]


def _as_pages(images, pages: int) -> list[tuple[str, object, list[str] | None]]:
    """``None`` (rendered pages), a folder, or an iterable of paths / PIL images / ndarrays / (label, image)."""
    if images is None:
        return default_pages(pages)
    if isinstance(images, (str, Path)):
        folder = Path(images)
        if not folder.is_dir():
            raise UsageError(f"--images {folder} is not a folder")
        exts = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in exts)
        if not files:
            raise UsageError(f"--images {folder} holds no images", hint=f"Image files end in {sorted(exts)}.")
        return [(p.name, p, None) for p in files]
    out = []
    for k, item in enumerate(images):
        if isinstance(item, tuple):
            out.append((str(item[0]), item[1], list(item[2]) if len(item) > 2 and item[2] else None))
        elif isinstance(item, (str, Path)):
            out.append((Path(item).name, item, None))
        else:
            out.append((f"image {k}", item, None))
    return out


def describe_pipeline(pipeline, label: str | None = None) -> dict:
    d = pipeline.describe() if hasattr(pipeline, "describe") else {}
    d = {k: v for k, v in d.items() if k != "params"}
    backends = sorted({(s or {}).get("backend") for k, s in d.items() if k in ("det", "cls", "rec") and s} - {None})
    d["label"] = label or "/".join(backends) or type(pipeline).__name__
    d["dictionary"] = getattr(pipeline, "dictionary", None) is not None
    return d


def compare_pipelines(source, target, images=None, *, tolerances: PipelineTolerances | None = None,
                      min_informative: int = 1, pages: int = 4, source_label: str | None = None, target_label: str | None = None,
                      progress: Callable[[str], None] | None = None) -> PipelineParityReport:
    """Run ``source`` and ``target`` (two :class:`~ocrconvert.ocr.OcrPipeline`) end to end on the same pages and
    compare them line by line. ``images``: None (``pages`` rendered pages with known text), a folder, or an
    iterable of images (paths, PIL images, BGR ndarrays, or ``(label, image[, known_texts])``)."""
    from ..ocr import read_image

    t0 = time.perf_counter()
    tol = tolerances or PipelineTolerances()
    if min_informative < 1:
        raise UsageError("min_informative must be at least 1: a verdict needs a page that could have failed")
    report = PipelineParityReport(describe_pipeline(source, source_label), describe_pipeline(target, target_label),
                                  tol.to_dict(), min_informative=min_informative)
    missing = [name for name, p in (("source", source), ("target", target)) if getattr(p, "dictionary", None) is None]
    if missing:
        report.notes.append(f"{NO_DICTIONARY} ({' and '.join(missing)})")
        log.warning("%s: %s has no recognition dictionary", NO_DICTIONARY, " and ".join(missing))
    for label, image, truth in _as_pages(images, pages):
        if progress:
            progress(label)
        bgr, _ = read_image(image)
        src = source(bgr, keep_prob_map=True)
        tgt = target(bgr, keep_prob_map=True)
        page = compare_pages(label, src, tgt, tol)
        page.ground_truth = truth
        page.image, page.source_result, page.target_result = bgr, src, tgt
        report.pages.append(page)
    report.seconds = time.perf_counter() - t0
    return report


def verify_sets(source_set, target_set, images=None, *, device: str = "cpu", precision: str | None = None,
                tolerances: PipelineTolerances | None = None, min_informative: int = 1, pages: int = 4,
                report_path: str | Path | None = None,
                progress: Callable[[str], None] | None = None) -> PipelineParityReport:
    """Pipeline parity of two model sets (folders or stage YAMLs, as ``read_set``): the source set runs on the
    CPU (the ORIGINAL Paddle models run nowhere else), the target on ``device``. ``report_path``: HTML report."""
    from ..ocr.modelset import read_set

    src_set, tgt_set = read_set(source_set), read_set(target_set)
    source = src_set.pipeline("cpu")
    target = tgt_set.pipeline(device, allow_failed=True)  # a failed set is what this check examines
    report = compare_pipelines(source, target, images, tolerances=tolerances or PipelineTolerances.for_precision(precision),
                               min_informative=min_informative, pages=pages, source_label=str(source_set),
                               target_label=str(target_set), progress=progress)
    if report_path is not None:
        write_html(report, report_path)
    return report


# ---- HTML --------------------------------------------------------------------------------------------
_GREEN, _RED, _ORANGE, _MAGENTA = (0, 170, 0), (230, 0, 0), (255, 140, 0), (200, 0, 200)


def _png(rgb: np.ndarray, max_side: int = 900) -> str:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(rgb))
    scale = max_side / max(im.size)
    if scale < 1:
        im = im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _draw(page: PageParity, side: str) -> np.ndarray:
    """The page with one side's boxes: unchanged lines green, differing red, missing (source) orange, extra
    (target) magenta; each labelled with its row number in the table."""
    from PIL import Image, ImageDraw

    result = page.source_result if side == "source" else page.target_result
    im = Image.fromarray(np.ascontiguousarray(page.image[:, :, ::-1]))
    draw = ImageDraw.Draw(im)
    width = max(2, round(max(im.size) / 400))
    for row, ln in enumerate(page.lines, 1):
        index = ln.source_index if side == "source" else ln.target_index
        if index is None:
            continue
        color = {"same": _GREEN, "differs": _RED, "missing": _ORANGE, "extra": _MAGENTA}[ln.status]
        quad = [tuple(map(float, p)) for p in np.asarray(result.lines[index].box).reshape(4, 2)]
        draw.line(quad + [quad[0]], fill=color, width=width if ln.status == "same" else 2 * width)
        draw.text((quad[0][0], max(0, quad[0][1] - 11)), str(row), fill=color)
    return np.asarray(im)


def _heat(prob: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """A [0,1] map (scaled) as an RGB heat image: black -> red -> yellow -> white."""
    v = np.clip(np.asarray(prob, np.float64) * scale, 0, 1)
    r = np.clip(v * 3, 0, 1)
    g = np.clip(v * 3 - 1, 0, 1)
    b = np.clip(v * 3 - 2, 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def _page_html(k: int, page: PageParity, tol: PipelineTolerances | dict) -> str:
    esc = html.escape
    verdict = "passed" if page.passed else ("failed")
    parts = [f'<section class="page {verdict}"><h2>{k}. {esc(page.label)} — '
             f'<span class="{verdict}">{"same" if page.passed else "DIFFERS"}</span>'
             f'{"" if page.informative else " (uninformative: the source finds no line)"}</h2>',
             f'<p>source {page.source_lines} lines, target {page.target_lines}; {len(page.matched)} matched, '
             f'{page.missing} missing, {page.extra} extra, {page.text_differences} texts differ'
             + (f"; det map max abs {page.prob_max_abs:.3g}" if page.prob_max_abs is not None else "")
             + (f"; <b>{esc(page.prob_problem)}</b>" if page.prob_problem else "")
             + (f"; source reads {page.ground_truth_hits()}/{len(page.ground_truth)} drawn lines" if page.ground_truth else "")
             + "</p>"]
    if page.image is not None:
        parts.append('<div class="row">'
                     f'<figure><img src="{_png(_draw(page, "source"))}"><figcaption>source</figcaption></figure>'
                     f'<figure><img src="{_png(_draw(page, "target"))}"><figcaption>target</figcaption></figure></div>')
    a = getattr(page.source_result, "prob_map", None)
    b = getattr(page.target_result, "prob_map", None)
    if a is not None and b is not None:
        figs = [f'<figure><img src="{_png(_heat(a), 600)}"><figcaption>source det map</figcaption></figure>',
                f'<figure><img src="{_png(_heat(b), 600)}"><figcaption>target det map</figcaption></figure>']
        if a.shape == b.shape:
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            peak = float(diff.max())
            gain = 1.0 / peak if peak > 0 else 1.0
            figs.append(f'<figure><img src="{_png(_heat(diff, gain), 600)}"><figcaption>|difference|, scaled '
                        f'×{gain:.3g} (max {peak:.3g})</figcaption></figure>')
        parts.append('<div class="row">' + "".join(figs) + "</div>")
    rows = []
    fmt = (lambda v, f="{:.5f}": "" if v is None else f.format(v))
    for row, ln in enumerate(page.lines, 1):
        rows.append(f'<tr class="{ln.status}"><td>{row}</td><td>{ln.status}</td>'
                    f'<td>{esc(ln.source_text or "")}</td><td>{esc(ln.target_text or "")}</td>'
                    f'<td>{fmt(ln.source_score)}</td><td>{fmt(ln.target_score)}</td><td>{fmt(ln.iou, "{:.3f}")}</td>'
                    f'<td>{fmt(ln.shift_px, "{:.2f}")}</td><td>{fmt(ln.cer, "{:.3f}")}</td>'
                    f'<td>{esc("; ".join(ln.problems))}</td></tr>')
    parts.append("<table><tr><th>#</th><th>status</th><th>source text</th><th>target text</th><th>source score</th>"
                 "<th>target score</th><th>IoU</th><th>shift px</th><th>CER</th><th>problems</th></tr>"
                 + "".join(rows) + "</table></section>")
    return "\n".join(parts)


_CSS = """body{font-family:sans-serif;margin:1.5em}h1{font-size:1.3em}h2{font-size:1.05em}
.row{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}figure img{max-width:100%;border:1px solid #ccc}
figcaption{font-size:.85em;color:#555}table{border-collapse:collapse;font-size:.85em;margin:.6em 0 1.6em}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}tr.differs td{background:#fdd}
tr.missing td{background:#ffe6cc}tr.extra td{background:#f6d5f6}span.passed,.PASSED{color:#070}
span.failed,.FAILED{color:#c00}.INCONCLUSIVE{color:#a60}section.page{border-top:1px solid #ddd}"""


def render_html(report: PipelineParityReport) -> str:
    """The whole report as one self-contained HTML document (images embedded as base64 PNG)."""
    esc = html.escape
    head = (f"<!doctype html><html><head><meta charset='utf-8'><title>pipeline parity: {esc(report.verdict)}</title>"
            f"<style>{_CSS}</style></head><body>"
            f"<h1 class='{report.verdict}'>{esc(report.summary_line())}</h1>"
            f"<p>source: {esc(_describe_line(report.source))}<br>target: {esc(_describe_line(report.target))}<br>"
            f"tolerances: {esc(str(report.tolerances))}; at least {report.min_informative} informative page(s)"
            + "".join(f"<br><b>{esc(n)}</b>" for n in report.notes)
            + "</p><p>Boxes: <span style='color:#0a0'>same</span>, <span style='color:#e00'>differs</span>, "
              "<span style='color:#f80'>missing in target</span>, <span style='color:#c0c'>extra in target"
              "</span>; numbers are the table's rows.</p>")
    body = [_page_html(k, page, report.tolerances) for k, page in enumerate(report.pages, 1)]
    return head + "\n".join(body) + "</body></html>"


def _describe_line(d: dict) -> str:
    stages = ", ".join(f"{k}: {(d.get(k) or {}).get('backend')} {(d.get(k) or {}).get('path') or ''}".strip()
                       for k in ("det", "cls", "rec") if d.get(k))
    return f"{d.get('label')} ({stages})" if stages else str(d.get("label"))


def write_html(report: PipelineParityReport, path: str | Path) -> Path:
    """Write :func:`render_html` atomically (staged beside, then renamed)."""
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render_html(report))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


__all__ = ["PipelineTolerances", "PipelineParityReport", "PageParity", "LineParity", "compare_pipelines", "verify_sets",
           "compare_pages", "match_boxes", "cer", "corner_shift", "render_html", "write_html", "default_pages",
           "NO_DICTIONARY"]
