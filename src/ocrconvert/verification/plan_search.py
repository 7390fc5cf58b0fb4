"""``--plan auto``: the fewest layers kept in fp32 for which a reduced-precision (fp16 / INT8) ONNX still passes
the family's OCR-level gate against the ORIGINAL source.

Layers are *units* in depth order (graph order): one compute node (Conv, ConvTranspose, MatMul, Gemm) with the
element-wise nodes after it up to the next compute node. The search, bounded by ``max_evals`` candidates (each a
cast / Q/DQ write and a run of the gate's cases in ONNX Runtime):

1. all reduced: passes -> the empty plan (one candidate);
2. ``diff`` of the all-reduced candidate against the fp32 ONNX (every node output, error / scale against the
   layer tolerance, as ``ocrconvert diff``): the first unit over tolerance is where error starts to grow;
3. all units fp32: fails -> no plan can pass (reported: FAILED, every unit needed, share 1.0);
4. the units from that first diverging unit on: fails -> start from the first unit instead;
5. bisect the length of the kept run from the start (the smallest prefix of the run that passes);
6. with the budget left, drop groups of the kept run (halves, then quarters, ...) whose removal still passes.

Every candidate kept is one that passed; when the budget ends the smallest passing one found so far is the plan.
The gate: every informative rendered / ``--images`` case of the family's task metric (det: map IoU, rec: text
exact-match, ...) at the family's threshold for the precision (``plan_threshold`` where a planned build must do
better than verification asks: det fp16 0.99), or ``min_metric`` when tighter.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..families import resolve_family
from ..formats import Artifact, Format
from ..options import PLAN_MAX_EVALS, Precision
from ..precision_plan import ONNX_NODES, PrecisionPlan
from ..runners import runner_for
from .compare import pair_outputs
from .diff import _stats, layer_tolerance
from .run import build_cases

log = logging.getLogger(__name__)

COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def layer_units(model) -> list[tuple[str, list[str]]]:
    """(anchor compute node, [its node names]) in depth order; nodes before the first compute node join it."""
    units: list[tuple[str, list[str]]] = []
    pending: list[str] = []
    for node in model.graph.node:
        if node.op_type in COMPUTE_OPS:
            units.append((node.name, [*pending, node.name]))
            pending = []
        elif units:
            units[-1][1].append(node.name)
        else:
            pending.append(node.name)
    if pending and units:
        units[-1][1].extend(pending)
    return units


def unit_flops(model, shapes: dict[str, tuple]) -> dict[str, float]:
    """Multiply-add FLOPs (x2) of each compute node, from tensor shapes of one run (``shapes``: name -> shape)."""
    inits = {i.name: tuple(i.dims) for i in model.graph.initializer}
    flops: dict[str, float] = {}
    for node in model.graph.node:
        if node.op_type not in COMPUTE_OPS:
            continue
        out = shapes.get(node.output[0])
        w = inits.get(node.input[1]) or shapes.get(node.input[1]) if len(node.input) > 1 else None
        x = shapes.get(node.input[0])
        if out is None:
            flops[node.name] = 0.0
        elif node.op_type == "Conv" and w:
            flops[node.name] = 2.0 * float(np.prod(out)) * float(np.prod(w[1:]))
        elif node.op_type == "ConvTranspose" and w and x:
            flops[node.name] = 2.0 * float(np.prod(x)) * float(np.prod(w[1:]))
        elif x:
            flops[node.name] = 2.0 * float(np.prod(out)) * float(x[-1])
        else:
            flops[node.name] = 0.0
    return flops


class _Gate:
    """The reference's outputs on the gate's cases (computed once) and the verdict on a candidate ONNX."""

    def __init__(self, reference: Artifact, precision: Precision, *, images=None, seed: int = 0,
                 family: str | None = None, min_metric: float | None = None):
        ref = runner_for(reference)
        info = ref.info()
        self.fam = resolve_family(info, family or getattr(ref, "header", {}).get("family"))
        self.fam.precision = precision.value
        self.min_metric = min_metric
        if hasattr(ref, "recorded_cases"):
            cases = [c for c in ref.recorded_cases if c[0] != "random"]
        else:
            cases = [c for c in build_cases(self.fam, seed=seed, rendered=True, images=images) if c[0] != "random"]
        self.cases = []
        for kind, label, feed, gts in cases:
            out = ref.infer(feed)
            why = self.fam.uninformative(out, 0.0)
            if why:
                log.info("plan gate: %s left out (%s)", label, why)
                continue
            self.cases.append((label, feed, gts, out))
        self.metric_name = ""

    def judge(self, path: Path) -> tuple[bool, float, dict]:
        runner = runner_for(Artifact(path, Format.ONNX, {"model": path}))
        values, ok = {}, True
        for label, feed, gts, ref in self.cases:
            out = runner.infer({k: v for k, v in feed.items() if k in runner.input_names} or feed)
            pairs = pair_outputs(list(ref), list(out))
            task = self.fam.task_metric(ref, {rn: out[on] for rn, on in pairs}, gts)
            if task is None:
                continue
            need = max([task.threshold, *(t for t in (self.fam.plan_threshold(self.fam.precision), self.min_metric)
                                          if t is not None)])
            self.metric_name, self.threshold = task.name, need
            values[label] = round(float(task.value), 6)
            ok = ok and float(task.value) >= need
        return ok, min(values.values(), default=float("nan")), values


def _layer_errors(fp32_path: Path, reduced_path: Path, feed: dict, anchors: list[str], tol: float):
    """diff of the all-reduced candidate against the fp32 ONNX on one case: error / scale of each unit's anchor
    output, and every tensor's shape (for the FLOP count)."""
    a = runner_for(Artifact(fp32_path, Format.ONNX, {"model": fp32_path}))
    b = runner_for(Artifact(reduced_path, Format.ONNX, {"model": reduced_path}))
    src = a.layer_outputs(feed)
    shapes = {k: tuple(v.shape) for k, v in src.items()}
    shapes.update({k: tuple(v.shape) for k, v in feed.items()})
    outs = {n.name: n.output[0] for n in a.model.graph.node}
    want = [outs[x] for x in anchors if x in outs]
    tgt = b.layer_outputs(feed, keys=want)
    rel = []
    for x in anchors:
        t = outs.get(x)
        if t in src and t in tgt and src[t].size == tgt[t].size:
            rel.append(_stats(src[t], tgt[t])[2])
        else:
            rel.append(float("nan"))
    del src, tgt
    return rel, shapes


def search_plan(model, write: Callable[[tuple[str, ...], Path], str], reference: Artifact, precision: Precision, *,
                images=None, seed: int = 0, family: str | None = None, min_metric: float | None = None,
                max_evals: int = PLAN_MAX_EVALS, say: Callable[[str], None] = lambda m: None) -> PrecisionPlan:
    """The smallest fp32 keep-set found for ``model`` (nodes named) within ``max_evals`` candidates; ``write(keep,
    path)`` writes the reduced ONNX with ``keep`` left fp32. The plan says whether the gate held (``passed``)."""
    import onnx

    t0 = time.perf_counter()
    precision = Precision.parse(precision)
    say("plan: running the ORIGINAL on the gate's cases")
    gate = _Gate(reference, precision, images=images, seed=seed, family=family, min_metric=min_metric)
    units = layer_units(model)
    anchors = [a for a, _ in units]
    evals: list[dict] = []
    verdicts: dict[frozenset, bool] = {}
    share: Callable[[tuple[int, ...]], float] = lambda idx: float("nan")

    with tempfile.TemporaryDirectory(prefix="ocrconvert-plan-") as tmp:
        tmp = Path(tmp)

        def nodes(idx) -> tuple[str, ...]:
            return tuple(n for i in sorted(idx) for n in units[i][1])

        def judge(idx) -> bool:
            key = frozenset(idx)
            if key in verdicts:
                return verdicts[key]
            path = tmp / f"candidate{len(evals)}.onnx"
            write(nodes(idx), path)
            ok, worst, values = gate.judge(path)
            verdicts[key] = ok
            evals.append({"kept_units": len(key), "fp32_flop_share": round(share(tuple(key)), 4),
                          "worst": worst, "passed": ok, "values": values})
            say(f"plan: candidate {len(evals)}: {len(key)} of {len(units)} units fp32 -> "
                f"{gate.metric_name} {worst:.4f} ({'pass' if ok else 'fail'})")
            path.unlink(missing_ok=True)
            return ok

        def budget() -> bool:
            return len(evals) < max_evals

        if not gate.cases:
            kept, passed, why = list(range(len(units))), False, "no informative case to judge a plan on"
        else:
            # 1. all reduced (its file stays for the diff)
            reduced = tmp / "all-reduced.onnx"
            write((), reduced)
            fp32 = tmp / "fp32.onnx"
            onnx.save(model, str(fp32))
            label, feed, _, _ = min(gate.cases, key=lambda c: sum(v.size for v in c[1].values()))
            say(f"plan: diff of the all-{precision.value} model against fp32 ({label})")
            tol = layer_tolerance(gate.fam, precision.value)
            rel, shapes = _layer_errors(fp32, reduced, feed, anchors, tol)
            flops = unit_flops(model, shapes)
            unit_fl = [sum(flops.get(n, 0.0) for n in names) for _, names in units]
            total = sum(unit_fl) or 1.0
            share = lambda idx: sum(unit_fl[i] for i in idx) / total  # noqa: E731
            over = [i for i, r in enumerate(rel) if r == r and r > tol]
            start = over[0] if over else 0
            kept, passed, why = [], judge(()), ""
            if not passed:
                everything = list(range(len(units)))
                if not judge(everything):
                    kept, why = everything, "the gate fails even with every layer in fp32"
                else:
                    if start and (not budget() or not judge(range(start, len(units)))):
                        start = 0
                    lo, hi = 0, len(units) - start       # prefix of length hi passes, of length lo fails
                    while hi - lo > 1 and budget():
                        mid = (lo + hi) // 2
                        if judge(range(start, start + mid)):
                            hi = mid
                        else:
                            lo = mid
                    kept = list(range(start, start + hi))
                    g = len(kept) // 2
                    while g >= 1 and budget():
                        i = 0
                        while i < len(kept) and budget():
                            trial = kept[:i] + kept[i + g:]
                            if trial and judge(trial):
                                kept = trial
                            else:
                                i += g
                        g //= 2
                    passed = True
        fp32_share = share(tuple(kept)) if gate.cases else None
    search = {
        "gate": {"metric": gate.metric_name, "threshold": getattr(gate, "threshold", min_metric),
                 "cases": [c[0] for c in gate.cases], "against": str(reference.path),
                 "against_format": reference.format.value},
        "units": len(units), "unit": "compute node (" + "/".join(COMPUTE_OPS) + ") + the element-wise nodes after it",
        "kept_units": [anchors[i] for i in kept],
        "diff": {"tolerance": layer_tolerance(gate.fam, precision.value) if gate.cases else None,
                 "first_over_tolerance": anchors[over[0]] if gate.cases and over else None,
                 "worst": (max((r for r in rel if r == r), default=None) if gate.cases else None)},
        "evaluations": len(evals), "max_evals": max_evals, "candidates": evals,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if why:
        search["failure"] = why
    return PrecisionPlan(precision.value, ONNX_NODES, nodes(kept) if kept else (), "auto", gate.fam.name,
                         None if fp32_share is None else round(fp32_share, 4), passed, search)


__all__ = ["search_plan", "layer_units", "unit_flops", "COMPUTE_OPS"]
