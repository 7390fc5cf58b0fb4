from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from ..families import ModelInfo, resolve_family
from ..families.imaging import load_images
from ..families.rec import read_dictionary_file
from ..formats import Artifact, Format, detect
from ..runners import runner_for
from .compare import Tolerances, compare_arrays, pair_outputs
from .report import CaseResult, ParityReport
from .weights import WeightCheck, weight_check

log = logging.getLogger(__name__)


def _as_artifact(x) -> Artifact:
    return x if isinstance(x, Artifact) else detect(x)


def verify_artifacts(
    source, target, *,
    images: str | Path | None = None,
    rendered: bool = True,
    tolerances: Tolerances | None = None,
    family: str | None = None,
    dictionary: str | Path | None = None,
    seed: int = 0,
    source_runner=None,
    target_runner=None,
    progress: Callable[[str], None] | None = None,
    min_metric: float | None = None,
) -> ParityReport:
    """Run the same inputs through source and target; compare every output and the task metric.

    Inputs: seeded random tensors at several shapes inside the dynamic range (batch 1 and >1,
    several widths/heights), images rendered with known content, and ``images`` when given, each
    preprocessed as the model family expects. The family's policy for the precision says how each case is
    judged (INT8 random cases are loose gates, tighter random bounds where its outputs allow) and whether the
    target's weights must match the source's (fp16, INT8: ``weights.py``). ``min_metric``: the task metric the
    rendered and image cases must reach when that is more than the family's threshold (a precision plan's gate).
    """
    t0 = time.perf_counter()
    src, tgt = _as_artifact(source), _as_artifact(target)
    tol = tolerances or Tolerances()
    ref_runner = source_runner or runner_for(src)
    out_runner = target_runner or runner_for(tgt)
    info = ref_runner.info()
    check_comparable(info, out_runner.info(), family)
    if dictionary:
        info.dictionary = read_dictionary_file(dictionary)
    elif info.dictionary is None:
        info.dictionary = out_runner.info().dictionary  # e.g. a bare source whose dict travelled in metadata
    fam = resolve_family(info, family or getattr(ref_runner, "header", {}).get("family"))
    if hasattr(ref_runner, "recorded_cases"):  # a recorded reference answers exactly its own inputs
        cases = list(ref_runner.recorded_cases)
    else:
        cases = build_cases(fam, seed=seed, rendered=rendered, images=images)

    report = ParityReport(str(src.path), str(tgt.path), getattr(ref_runner, "backend_label", ref_runner.backend),
                          out_runner.backend, fam.name, tol.to_dict(), seed=seed,
                          min_informative=fam.min_informative)
    fam.precision = str(tol.precision or "fp32")
    gate = fam.random_gate(tol.precision)
    gate_tol = None if gate is None else Tolerances(precision=tol.precision, atol=gate[0], rtol=0.0,
                                                    min_cosine=gate[1], image_factor=1.0)
    bounds = fam.random_bounds(tol.precision) if tol.atol is None and tol.rtol is None else None  # the user's win
    random_tol = tol if bounds is None else replace(tol, atol=bounds[0], rtol=bounds[1])
    for kind, label, feed, gts in cases:
        if progress:
            progress(label)
        ref = ref_runner.infer(feed)
        out = out_runner.infer(feed)
        pairs = pair_outputs(list(ref), list(out))
        is_gate = gate_tol is not None and kind == "random"
        case_tol = gate_tol if is_gate else random_tol if kind == "random" else tol
        comparisons = [compare_arrays(rn, ref[rn], out[on], case_tol, target_name=on, image=kind != "random")
                       for rn, on in pairs]
        aligned = {rn: out[on] for rn, on in pairs}
        task = fam.task_metric(ref, aligned, gts) if all(c.problem == "" or "shape" not in c.problem for c in comparisons) else None
        if task is not None and min_metric is not None and kind != "random" and task.threshold < min_metric:
            task = replace(task, threshold=min_metric, passed=bool(task.value >= min_metric))
        shapes = {k: list(v.shape) for k, v in feed.items()}
        primary = fam.info.outputs[0].name if fam.info.outputs else next(iter(ref))
        floor = tol.for_output(primary, kind != "random")[0]
        why_not = "loose INT8 gate (noise outside the calibrated ranges)" if is_gate else fam.uninformative(ref, floor)
        report.cases.append(CaseResult(label, shapes, comparisons, task, kind, uninformative=why_not, gate=is_gate))
        log.info("%s: %s", label, "ok" if report.cases[-1].passed else "FAILED")
    steps = fam.weight_steps(tol.precision)
    if steps is not None:
        report.weights = _weight_check(src, ref_runner, tgt, fam.precision, steps)
    report.seconds = time.perf_counter() - t0
    return report


def _weight_check(src: Artifact, ref_runner, tgt: Artifact, precision: str, steps: float) -> WeightCheck:
    """The target's weights against the ORIGINAL's; a recorded reference names its source (used when it is
    still here, unchanged)."""
    if src.format is Format.REFERENCE:
        from ..manifest import sha256_artifact

        recorded = getattr(ref_runner, "header", {}).get("source") or {}
        path = Path(recorded.get("path") or "")
        if not recorded.get("path") or not path.exists():
            return WeightCheck(precision, steps, skipped=f"the reference's source {path} is not on this machine")
        if recorded.get("sha256") != sha256_artifact(path):
            return WeightCheck(precision, steps, skipped=f"the reference's source {path} changed since it was recorded")
        src = detect(path)
    return weight_check(src, tgt, precision, steps)


def build_cases(fam, *, seed: int = 0, rendered: bool = True, images=None) -> list[tuple[str, str, dict, list | None]]:
    """(kind, label, feed, ground truth) for every verification case: seeded random tensors, seeded text-like
    inputs, rendered images with known content, and ``images`` (each preprocessed as the family expects)."""
    cases: list[tuple[str, str, dict, list | None]] = [("random", lbl, feed, None) for lbl, feed in fam.random_feeds(seed)]
    cases += [("rendered", f"synthetic: {lbl}", feed, None) for lbl, feed in fam.synthetic_feeds(seed)]
    if rendered:
        synth = fam.synthetic_images()
        if synth:
            gts = [item[2] for item in synth] if fam.task == "rec" else None
            cases += [("rendered", f"rendered: {lbl}", feed, gts) for lbl, feed in fam.image_feeds(synth)]
    if images:
        real = [(name, img, None) for name, img in load_images(images)]
        cases += [("image", f"images: {lbl}", feed, None) for lbl, feed in fam.image_feeds(real)]
    return cases


def _fixed(d) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def check_comparable(src: ModelInfo, tgt: ModelInfo, family: str | None = None) -> None:
    """Refuse (exit 2) to compare models that cannot be the same model: every mismatch named at once."""
    problems = []
    if len(src.inputs) != len(tgt.inputs):
        problems.append(f"the source takes {len(src.inputs)} input(s), the target {len(tgt.inputs)}")
    for a, b in zip(src.inputs, tgt.inputs):
        if not a.shape or not b.shape:  # a runtime that does not describe its inputs (an AOT package being built)
            continue
        if len(a.shape) != len(b.shape):
            problems.append(f"input {a.name} has rank {len(a.shape)}, the target's {b.name} rank {len(b.shape)}")
            continue
        clash = [f"dim {i}: {x} vs {y}" for i, (x, y) in enumerate(zip(a.shape, b.shape))
                 if _fixed(x) and _fixed(y) and x != y]
        if clash:
            problems.append(f"input {a.name} vs {b.name} fixes different sizes ({'; '.join(clash)})")
    if len(src.outputs) != len(tgt.outputs):
        problems.append(f"the source has {len(src.outputs)} output(s), the target {len(tgt.outputs)}")
    for a, b in zip(src.outputs, tgt.outputs):
        if len(a.shape) and len(b.shape) and len(a.shape) != len(b.shape):
            problems.append(f"output {a.name} has rank {len(a.shape)}, the target's {b.name} rank {len(b.shape)}")
        elif any(_fixed(x) and _fixed(y) and x != y for x, y in zip(a.shape[1:], b.shape[1:])):
            problems.append(f"output {a.name} {list(a.shape)} vs the target's {b.name} {list(b.shape)}")
    if family is None:
        fa, fb = resolve_family(src).name, resolve_family(tgt).name
        if "generic" not in (fa, fb) and fa != fb:
            problems.append(f"the source is a {fa} model, the target a {fb} model")
    if problems:
        raise UsageError("the two models are not comparable: " + "; ".join(problems),
                         hint="Pass the artifact that was converted from this source.")


def torch_target_runner(target, *, device: str | None = None, half: bool = False, compile: str | None = None,
                        cuda_graphs: bool = False):
    """A PyTorch runner configured as deployed (device, fp16, torch.compile; an AOT package replayed from CUDA
    graphs), or None for the default."""
    from ..errors import UsageError
    from ..formats import Format

    if device is None and not half and not compile and not cuda_graphs:
        return None
    art = _as_artifact(target)
    if cuda_graphs:
        if art.format is not Format.TORCH_AOT or half or compile or device is not None:
            raise UsageError("--cuda-graphs applies to AOT packages (.pt2) alone, without --device/--half/--compile",
                             hint=f"{art.path} is {art.format.value}; a package runs on the device it was built for.")
        return runner_for(art, cuda_graphs=True)
    if art.format not in (Format.TORCH_GRAPH, Format.TORCH_NATIVE):
        raise UsageError("--device/--half/--compile apply to PyTorch targets only",
                         hint=f"{art.path} is {art.format.value}.")
    return runner_for(art, device=device or "cpu", half=half, compile=compile)


def record_reference(source, output: str | Path, *, images=None, rendered: bool = True, family: str | None = None,
                     dictionary=None, seed: int = 0, progress: Callable[[str], None] | None = None,
                     force: bool = False) -> Path:
    """Run the verification inputs through ``source`` once and save inputs + outputs (``.npz``)."""
    from ..atomic import OutputSlot, check_output
    from ..manifest import sha256_artifact
    from ..runners.reference import save_reference

    src = _as_artifact(source)
    check_output(Path(output), is_dir=False, sources=[src.path], force=force)  # before the source runs
    runner = runner_for(src)
    info = runner.info()
    if dictionary:
        info.dictionary = read_dictionary_file(dictionary)
    fam = resolve_family(info, family)
    cases = build_cases(fam, seed=seed, rendered=rendered, images=images)
    recorded = []
    for kind, label, feed, gts in cases:
        if progress:
            progress(label)
        recorded.append({"kind": kind, "label": label, "feed": feed, "outputs": runner.infer(feed), "labels": gts})
    output = Path(output)
    with OutputSlot(output, is_dir=False, sources=[src.path], force=force) as slot:
        tmp = slot.stage / output.name
        save_reference(tmp, info, fam.name, {"path": str(src.path.resolve()), "format": src.format.value,
                                             "sha256": sha256_artifact(src.path), "backend": runner.backend}, recorded)
        slot.commit(tmp)
    return output
