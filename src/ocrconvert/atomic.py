"""Atomic outputs: build in a staging folder beside the target, then rename into place."""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import ConversionError, UsageError
from .formats import MANIFEST_FILE


def check_writable(target: Path) -> None:
    existing = target.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {target}: {existing} is not a writable folder",
                         hint="Choose another -o/--output location.")
    if target.exists() and target.is_dir() and any(target.iterdir()) and not (target / MANIFEST_FILE).exists():
        marker = any(p.name.endswith(".ocrconvert.json") for p in target.iterdir())
        if not marker:
            raise UsageError(f"{target} exists and holds files ocrconvert did not write",
                             hint="Choose an empty or new output folder.")


@contextmanager
def staging(target: Path):
    """Yield a temporary folder next to ``target``; the caller ``commit``s from it. Always cleaned."""
    target = Path(target)
    check_writable(target)
    parent = target.parent
    created = [p for p in (parent, *parent.parents) if not p.exists()]  # removed again on failure
    tmp, done = None, False
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=parent))
        yield tmp
        done = True
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ConversionError(f"no space left on the device while writing {target}",
                                  hint="Free some disk space and run again; nothing was written.") from None
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise UsageError(f"cannot write {target}: {exc.strerror}", hint="Choose another output location.") from None
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if not done:
            for d in created:
                try:
                    d.rmdir()
                except OSError:
                    break


def _normal_permissions(root: Path) -> None:
    """mkdtemp makes 0700 folders; give the output the modes a plain write would (umask)."""
    mask = os.umask(0)
    os.umask(mask)
    for p in [root, *root.rglob("*")]:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def commit_dir(staged: Path, target: Path) -> None:
    """Replace ``target`` folder by ``staged`` (same file system, so each rename is atomic)."""
    target = Path(target)
    _normal_permissions(staged)
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        staged.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staged.rename(target)


def commit_files(staged: Path, target_dir: Path) -> None:
    """Move every file of ``staged`` into ``target_dir``; the model file last-but-one, manifest last."""
    target_dir.mkdir(parents=True, exist_ok=True)
    _normal_permissions(staged)
    files = sorted(staged.iterdir(), key=lambda p: p.name.endswith(".ocrconvert.json"))
    for p in files:
        os.replace(p, target_dir / p.name)
