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
from ..precision_plan import NATIVE_MODULES, ONNX_NODES, PrecisionPlan
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
        return self.judge_outputs(lambda feed: runner.infer({k: v for k, v in feed.items()
                                                              if k in runner.input_names} or feed))

    def judge_outputs(self, infer: Callable[[dict], dict]) -> tuple[bool, float, dict]:
        """The verdict on a candidate given as a function from a case's feed to its named outputs."""
        values, ok = {}, True
        for label, feed, gts, ref in self.cases:
            out = infer(feed)
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


def bisect_units(n: int, judge: Callable[[object], bool], start: int, budget: Callable[[], bool]):
    """Steps 1 and 3-6 of the search over ``n`` depth-ordered units (``judge(indices)``: the gate holds with
    those units kept fp32; ``start``: the first unit ``diff`` found over tolerance) -> (kept, passed, why)."""
    if judge(()):
        return [], True, ""
    everything = list(range(n))
    if not judge(everything):
        return everything, False, "the gate fails even with every layer in fp32"
    if start and (not budget() or not judge(range(start, n))):
        start = 0
    lo, hi = 0, n - start       # a prefix of length hi of the run from start passes, of length lo fails
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
    return kept, True, ""


class _Search:
    """One search's bookkeeping: the candidates judged (each once), the budget, the FLOP share, the record."""

    def __init__(self, gate: "_Gate", n_units: int, max_evals: int, say: Callable[[str], None],
                 run: Callable[[tuple[int, ...]], tuple[bool, float, dict]]):
        self.gate, self.n, self.max_evals, self.say, self.run = gate, n_units, max_evals, say, run
        self.evals: list[dict] = []
        self.verdicts: dict[frozenset, bool] = {}
        self.unit_flops: list[float] = []
        self.t0 = time.perf_counter()

    def share(self, idx) -> float:
        total = sum(self.unit_flops)
        return sum(self.unit_flops[i] for i in idx) / total if total else float("nan")

    def judge(self, idx) -> bool:
        key = frozenset(idx)
        if key not in self.verdicts:
            ok, worst, values = self.run(tuple(sorted(key)))
            self.verdicts[key] = ok
            self.evals.append({"kept_units": len(key), "fp32_flop_share": round(self.share(key), 4),
                               "worst": worst, "passed": ok, "values": values})
            self.say(f"plan: candidate {len(self.evals)}: {len(key)} of {self.n} units fp32 -> "
                     f"{self.gate.metric_name} {worst:.4f} ({'pass' if ok else 'fail'})")
        return self.verdicts[key]

    def budget(self) -> bool:
        return len(self.evals) < self.max_evals

    def plan(self, keys: str, names: tuple[str, ...], kept: list[int], passed: bool, why: str, *, anchors: list[str],
             unit: str, reference: Artifact, precision: Precision, rel: list[float], tol: float | None,
             min_metric: float | None) -> PrecisionPlan:
        gate = self.gate
        over = [i for i, r in enumerate(rel) if r == r and tol is not None and r > tol]
        search = {
            "gate": {"metric": gate.metric_name, "threshold": getattr(gate, "threshold", min_metric),
                     "cases": [c[0] for c in gate.cases], "against": str(reference.path),
                     "against_format": reference.format.value},
            "units": self.n, "unit": unit, "kept_units": [anchors[i] for i in kept],
            "diff": {"tolerance": tol, "first_over_tolerance": anchors[over[0]] if over else None,
                     "worst": max((r for r in rel if r == r), default=None)},
            "evaluations": len(self.evals), "max_evals": self.max_evals, "candidates": self.evals,
            "seconds": round(time.perf_counter() - self.t0, 1),
        }
        if why:
            search["failure"] = why
        share = self.share(kept) if gate.cases else None
        return PrecisionPlan(precision.value, keys, names, "auto", gate.fam.name,
                             None if share is None or share != share else round(share, 4), passed, search)


def search_plan(model, write: Callable[[tuple[str, ...], Path], str], reference: Artifact, precision: Precision, *,
                images=None, seed: int = 0, family: str | None = None, min_metric: float | None = None,
                max_evals: int = PLAN_MAX_EVALS, say: Callable[[str], None] = lambda m: None) -> PrecisionPlan:
    """The smallest fp32 keep-set found for ``model`` (nodes named) within ``max_evals`` candidates; ``write(keep,
    path)`` writes the reduced ONNX with ``keep`` left fp32. The plan says whether the gate held (``passed``)."""
    import onnx

    precision = Precision.parse(precision)
    say("plan: running the ORIGINAL on the gate's cases")
    gate = _Gate(reference, precision, images=images, seed=seed, family=family, min_metric=min_metric)
    units = layer_units(model)
    anchors = [a for a, _ in units]
    rel: list[float] = []
    tol = None

    def nodes(idx) -> tuple[str, ...]:
        return tuple(n for i in sorted(idx) for n in units[i][1])

    with tempfile.TemporaryDirectory(prefix="ocrconvert-plan-") as tmp:
        tmp = Path(tmp)

        def run(idx):
            path = tmp / "candidate.onnx"
            write(nodes(idx), path)
            try:
                return gate.judge(path)
            finally:
                path.unlink(missing_ok=True)

        s = _Search(gate, len(units), max_evals, say, run)
        if not gate.cases:
            kept, passed, why = list(range(len(units))), False, "no informative case to judge a plan on"
        else:
            # the all-reduced model's diff against fp32: where error starts to grow, and every tensor's shape
            reduced = tmp / "all-reduced.onnx"
            write((), reduced)
            fp32 = tmp / "fp32.onnx"
            onnx.save(model, str(fp32))
            label, feed, _, _ = min(gate.cases, key=lambda c: sum(v.size for v in c[1].values()))
            say(f"plan: diff of the all-{precision.value} model against fp32 ({label})")
            tol = layer_tolerance(gate.fam, precision.value)
            rel, shapes = _layer_errors(fp32, reduced, feed, anchors, tol)
            flops = unit_flops(model, shapes)
            s.unit_flops = [sum(flops.get(n, 0.0) for n in names) for _, names in units]
            over = [i for i, r in enumerate(rel) if r == r and r > tol]
            kept, passed, why = bisect_units(len(units), s.judge, over[0] if over else 0, s.budget)
    return s.plan(ONNX_NODES, nodes(kept) if kept else (), kept, passed, why, anchors=anchors,
                  unit="compute node (" + "/".join(COMPUTE_OPS) + ") + the element-wise nodes after it",
                  reference=reference, precision=precision, rel=rel, tol=tol, min_metric=min_metric)


NATIVE_COMPUTE = ("Conv1d", "Conv2d", "ConvTranspose2d", "Linear")


def _native_trace(module, x) -> tuple[list[str], dict[str, object], list[float]]:
    """The compute layers (``NATIVE_COMPUTE``) of a native module in the order one call runs them, each one's
    first output, and its multiply-add FLOPs (x2). Names are paths in the model a wrapper holds as ``inner``
    (the fp32-I/O wrapper of the AOT package), which is what a plan names."""
    torch = __import__("torch")
    order: list[str] = []
    outs: dict[str, object] = {}
    flops: dict[str, float] = {}
    hooks = []
    for name, sub in getattr(module, "inner", module).named_modules():
        if type(sub).__name__ not in NATIVE_COMPUTE:
            continue

        def hook(mod, args, out, name=name):
            if name in outs or not torch.is_tensor(out):
                return
            order.append(name)
            outs[name] = out.detach().float().cpu().numpy()
            w = mod.weight.shape
            if type(mod).__name__ == "ConvTranspose2d":
                flops[name] = 2.0 * float(np.prod(args[0].shape)) * float(np.prod(w[1:]))
            elif type(mod).__name__ == "Linear":
                flops[name] = 2.0 * float(np.prod(out.shape)) * float(w[1])
            else:
                flops[name] = 2.0 * float(np.prod(out.shape)) * float(np.prod(w[1:]))

        hooks.append(sub.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in hooks:
            h.remove()
    return order, outs, [flops[n] for n in order]


def search_native_plan(build: Callable[[tuple[str, ...] | None], object], reference: Artifact, precision: Precision,
                       *, input_name: str, output_names: list[str], device: str = "cpu", images=None, seed: int = 0,
                       family: str | None = None, min_metric: float | None = None,
                       max_evals: int = PLAN_MAX_EVALS, say: Callable[[str], None] = lambda m: None) -> PrecisionPlan:
    """``--plan auto`` on a native module (the fp16 AOT package): ``build(keep)`` returns the module with the
    module paths ``keep`` left fp32 and the rest fp16 (``None``: all fp32), fp32 in and out. Units are its
    compute layers in the order a call runs them; the search and the gate are those of ``search_plan``."""
    torch = __import__("torch")
    precision = Precision.parse(precision)
    say("plan: running the ORIGINAL on the gate's cases")
    gate = _Gate(reference, precision, images=images, seed=seed, family=family, min_metric=min_metric)

    def infer(module):
        def call(feed: dict) -> dict:
            x = torch.from_numpy(np.ascontiguousarray(feed[input_name])).to(device)
            with torch.no_grad():
                y = module(x)
            y = y[0] if isinstance(y, (tuple, list)) else y
            return {output_names[0]: y.float().cpu().numpy()}
        return call

    fp32 = build(None)
    units: list[str] = []
    rel: list[float] = []
    tol = None

    def run(idx):
        try:
            return gate.judge_outputs(infer(build(tuple(units[i] for i in idx))))
        except RuntimeError as exc:  # e.g. a matmul of an fp32 and an fp16 operand: this split cannot run
            log.info("plan: candidate with %d units fp32 does not run: %s", len(idx), str(exc).splitlines()[0])
            return False, float("nan"), {"error": str(exc).splitlines()[0][:200]}

    label, feed, _, _ = min(gate.cases, key=lambda c: sum(v.size for v in c[1].values())) if gate.cases else \
        (None, None, None, None)
    if feed is not None:
        x = torch.from_numpy(np.ascontiguousarray(feed[input_name])).to(device)
        units, ref_outs, unit_fl = _native_trace(fp32, x)
    s = _Search(gate, len(units), max_evals, say, run)
    if not gate.cases or not units:
        kept, passed, why = list(range(len(units))), False, "no informative case to judge a plan on"
    else:
        s.unit_flops = unit_fl
        say(f"plan: diff of the all-{precision.value} model against fp32 ({label})")
        tol = layer_tolerance(gate.fam, precision.value)
        _, red_outs, _ = _native_trace(build(()), x)
        rel = [_stats(ref_outs[n], red_outs[n])[2] if n in red_outs and red_outs[n].size == ref_outs[n].size
               else float("nan") for n in units]
        del ref_outs, red_outs
        over = [i for i, r in enumerate(rel) if r == r and r > tol]
        kept, passed, why = bisect_units(len(units), s.judge, over[0] if over else 0, s.budget)
    return s.plan(NATIVE_MODULES, tuple(units[i] for i in kept), kept, passed, why, anchors=units,
                  unit="compute module (" + "/".join(NATIVE_COMPUTE) + "), in the order a call runs them",
                  reference=reference, precision=precision, rel=rel, tol=tol, min_metric=min_metric)


__all__ = ["search_plan", "search_native_plan", "bisect_units", "layer_units", "unit_flops", "COMPUTE_OPS"]
