"""The ORIGINAL's outputs recorded once and shared by every conversion of it (a batch's jobs of one model).

``SharedSourceRunner(runner, folder, digest)`` answers a feed from ``FOLDER/DIGEST/BACKEND/FEED.npz`` when
that recording exists, else runs the source and records it (written whole or not at all). ``digest`` is the
source's sha256 (``manifest.sha256_artifact``) and ``FEED`` the feed's own digest (names, shapes, dtypes,
bytes: the cases and their seed), so a changed source or other inputs never meet a stale recording. The
recordings are the source's own answers: a target is still judged against the ORIGINAL, only not re-run.
A recording that cannot be read is run and written again.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from .base import MemoizedRunner, Runner, feed_digest

log = logging.getLogger(__name__)


class SharedSourceRunner(MemoizedRunner):
    def __init__(self, runner: Runner, folder: str | Path, digest: str):
        super().__init__(runner)
        self.folder = Path(folder) / digest / str(getattr(runner, "backend", "runner"))
        self.hits = self.runs = 0

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {k: np.asarray(v) for k, v in feed.items()}
        key = feed_digest(feed)
        if key not in self._memo:
            path = self.folder / f"{key}.npz"
            got = _read(path)
            if got is None:
                got = self.runner.infer(feed)
                self.runs += 1
                _write(path, got)
            else:
                self.hits += 1
            self._memo[key] = got
        return dict(self._memo[key])


def _read(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            names = json.loads(str(z["__names__"]))
            return {n: z[f"o{i}"] for i, n in enumerate(names)}
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file is no recording: run the source again
        log.warning("recorded source outputs %s unreadable (%s): running the source", path, exc)
        return None


def _write(path: Path, outputs: dict[str, np.ndarray]) -> None:
    """Atomically (a temporary file renamed into place); a folder that cannot be written only costs a re-run."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, __names__=np.array(json.dumps(list(outputs))),
                         **{f"o{i}": np.asarray(a) for i, a in enumerate(outputs.values())})
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        log.warning("cannot record the source's outputs in %s: %s", path.parent, exc)


__all__ = ["SharedSourceRunner"]
