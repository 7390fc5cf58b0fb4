"""Deterministic SIGKILL points, so tests kill a batch at a named moment instead of after a sleep.

``OCRCONVERT_BATCH_KILL_AT=WHO:POINT[@JOB][,...]`` arms them (read once per process; unset, nothing
happens). ``WHO`` is ``batch`` (the batch process and its workers die, as ``kill -9`` of the batch
would leave them) or ``worker`` (only that job's worker dies; the batch records a crash and goes on).
``@JOB`` limits a point to one job id.

Points in a worker: ``started`` (its job file read, nothing done), ``staged`` (the output's staging
folder exists, nothing converted), ``before-commit`` (artifact and manifest staged, not yet renamed),
``committed`` (the artifact is in place; no result reported yet). Points in the batch process (``batch:``
only): ``collected`` (a worker's result read, its state record not yet written), ``between-jobs`` (a job
fully recorded, the next not started).
"""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from ...errors import UsageError

KILL_ENV = "OCRCONVERT_BATCH_KILL_AT"
WORKER_POINTS = ("started", "staged", "before-commit", "committed")
BATCH_POINTS = ("collected", "between-jobs")


@dataclass(frozen=True)
class KillPoint:
    who: str            # batch | worker
    point: str
    job: str | None = None

    def hits(self, point: str, job: str) -> bool:
        return self.point == point and self.job in (None, job)


def parse(text: str | None) -> tuple[KillPoint, ...]:
    points = []
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        who, _, rest = item.partition(":")
        point, _, job = rest.partition("@")
        valid = WORKER_POINTS + BATCH_POINTS if who == "batch" else WORKER_POINTS if who == "worker" else ()
        if point not in valid:
            raise UsageError(f"{KILL_ENV}: {item!r} is not a kill point",
                             hint=f"batch:POINT or worker:POINT[@JOB]; batch points: {', '.join(valid or WORKER_POINTS + BATCH_POINTS)}; "
                                  f"worker points: {', '.join(WORKER_POINTS)}.")
        points.append(KillPoint(who, point, job or None))
    return tuple(points)


def armed() -> tuple[KillPoint, ...]:
    return parse(os.environ.get(KILL_ENV))


def in_batch(points: tuple[KillPoint, ...], point: str, job: str) -> None:
    """Called by the batch process at ``point``: SIGKILL itself when armed there (its workers follow it)."""
    if any(p.who == "batch" and p.hits(point, job) for p in points):
        os.kill(os.getpid(), signal.SIGKILL)


def in_worker(points: tuple[KillPoint, ...], point: str, job: str, batch_pid: int) -> None:
    """Called by a worker at ``point``: SIGKILL the batch first for ``batch:``, then the worker's group."""
    for p in points:
        if p.hits(point, job):
            if p.who == "batch":
                os.kill(batch_pid, signal.SIGKILL)
            os.killpg(0, signal.SIGKILL)  # a worker leads its own process group: its children go too


def hook_output_slot(points: tuple[KillPoint, ...], job: str, batch_pid: int) -> None:
    """Reach ``staged`` and ``before-commit`` inside the spine's output slot of this worker.

    Only when one of them is armed for this job: the worker's ``pipeline.OutputSlot`` is then a
    subclass that stops at those two moments (the output contract offers no event hook)."""
    if not any(p.point in ("staged", "before-commit") and p.job in (None, job) for p in points):
        return
    from ... import pipeline

    base = pipeline.OutputSlot

    class KillingOutputSlot(base):
        def __enter__(self):
            slot = super().__enter__()
            in_worker(points, "staged", job, batch_pid)
            return slot

        def commit(self, staged, *args, **kwargs):
            in_worker(points, "before-commit", job, batch_pid)
            return super().commit(staged, *args, **kwargs)

    pipeline.OutputSlot = KillingOutputSlot
