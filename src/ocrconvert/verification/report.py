"""The parity report: every case, every output, the task metric, one verdict."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..families.base import TaskResult
from .compare import OutputComparison
from .weights import WeightCheck


@dataclass
class CaseResult:
    label: str
    input_shapes: dict[str, list[int]]
    outputs: list[OutputComparison]
    task: TaskResult | None = None
    kind: str = "random"   # random | rendered | image
    uninformative: str = ""  # why the reference carried no signal a damaged model would disturb; "" = it did
    gate: bool = False       # a loose gate (INT8 random noise): numeric bounds only, the task metric not judged

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs) and (self.gate or self.task is None or self.task.passed)

    @property
    def informative(self) -> bool:
        return not self.uninformative

    def to_dict(self) -> dict:
        return {"label": self.label, "kind": self.kind, "input_shapes": self.input_shapes, "passed": self.passed,
                "informative": self.informative, **({"gate": True} if self.gate else {}), **({"uninformative": self.uninformative} if self.uninformative else {}),
                "outputs": [o.to_dict() for o in self.outputs], "task": self.task.to_dict() if self.task else None}


@dataclass
class ParityReport:
    source: str
    target: str
    source_backend: str
    target_backend: str
    family: str
    tolerances: dict
    cases: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0
    extra_reports: list["ParityReport"] = field(default_factory=list)  # e.g. a second form of the same artifact
    # reduced precision: the target's weights against the source's (None: the precision checks none)
    weights: WeightCheck | None = None
    seed: int = 0   # of the random cases: a verdict is reproducible from the report
    min_informative: int = 1  # cases that could have failed, below which the verdict is INCONCLUSIVE

    @property
    def informative_cases(self) -> int:
        return sum(c.informative for c in self.cases)

    @property
    def verdict(self) -> str:
        """PASSED only when nothing failed AND enough cases could have failed; a failure is evidence whether or
        not its case was informative, a pass of an uninformative case is none."""
        if any(not c.passed for c in self.cases) or any(not r.passed for r in self.extra_reports):
            return "FAILED"
        if self.weights is not None and not self.weights.passed:
            return "FAILED"
        if not self.cases or self.informative_cases < self.min_informative:
            return "INCONCLUSIVE"
        if self.weights is not None and self.weights.ran and not self.weights.complete:
            return "INCONCLUSIVE"  # a compute weight no source weight vouches for could hide a damage
        return "PASSED"

    @property
    def passed(self) -> bool:
        return self.verdict == "PASSED"

    def __bool__(self) -> bool:
        return self.passed

    def worst_max_abs(self, kind: str | None = "random") -> float:
        vals = [o.max_abs for c in self.cases if kind is None or c.kind == kind for o in c.outputs if o.max_abs == o.max_abs]
        return max(vals) if vals else float("nan")

    def task_summary(self) -> str:
        tasks = [c.task for c in self.cases if c.task is not None]
        if not tasks:
            return ""
        worst = min(tasks, key=lambda t: t.value)
        return f"{worst.name} min {worst.value:.4g}"

    def summary_line(self) -> str:
        verdict = self.verdict
        cases = self.cases + [c for r in self.extra_reports for c in r.cases]
        failed = sum(not c.passed for c in cases)
        informative = sum(c.informative for c in cases)
        parts = [f"{verdict} | {self.target_backend} vs {self.source_backend} ({self.family})",
                 f"{len(cases) - failed}/{len(cases)} cases ({informative} informative)",
                 self._worst_line()]
        if self.task_summary():
            parts.append(self.task_summary())
        if self.weights is not None:
            parts.append(self.weights.line())
        return " | ".join(parts)

    def _worst_line(self) -> str:
        random, overall = self.worst_max_abs("random"), self.worst_max_abs(None)
        if random != random:  # no random case (a recorded reference without them)
            return f"max abs {overall:.3g}"
        return f"max abs random {random:.3g}, images {overall:.3g}"

    def to_dict(self) -> dict:
        return {"passed": self.passed, "verdict": self.verdict, "informative_cases": self.informative_cases,
                "min_informative": self.min_informative, "summary": self.summary_line(), "source": self.source, "target": self.target,
                "source_backend": self.source_backend, "target_backend": self.target_backend, "family": self.family,
                "tolerances": self.tolerances, "seed": self.seed, "worst_max_abs_random": self.worst_max_abs("random"),
                "worst_max_abs": self.worst_max_abs(None), "seconds": round(self.seconds, 3),
                "cases": [c.to_dict() for c in self.cases],
                **({"weights": self.weights.to_dict()} if self.weights is not None else {}),
                **({"extra_reports": [r.to_dict() for r in self.extra_reports]} if self.extra_reports else {})}
