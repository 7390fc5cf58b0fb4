"""The output contract, the spine's commit step.

An ``OutputSlot`` owns one final artifact path for the length of a run: it refuses to write over or
into a source and to replace an existing artifact without ``force``, holds a lock so two runs cannot
both write it, builds in a short-named staging folder beside it (stale ones from killed runs are
removed under the lock), and commits by rename. An artifact that failed verification is committed
only under its unmistakable FAILED name (``model.FAILED.onnx``, ``out.FAILED/``), never the final one.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import UsageError, from_os_error
from .formats import MANIFEST_FILE, SET_FILE

FAILED_TAG = "FAILED"
_PREFIX = ".ocx-"  # staging, lock and swap names: short, so they never exceed the file system's name limit


def failed_path(path: Path, is_dir: bool | None = None) -> Path:
    """``model.onnx`` -> ``model.FAILED.onnx``; a folder ``out/`` -> ``out.FAILED/``."""
    path = Path(path)
    if is_dir is None:
        is_dir = path.is_dir() or not path.suffix
    if not is_dir:
        return path.with_name(f"{path.stem}.{FAILED_TAG}{path.suffix}")
    return path.with_name(f"{path.name}.{FAILED_TAG}")


def _sidecar(path: Path, is_dir: bool) -> Path:
    return path / MANIFEST_FILE if is_dir else path.with_name(path.name + ".ocrconvert.json")


def _tag(path: Path) -> str:
    return hashlib.sha1(path.name.encode()).hexdigest()[:12]


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _existing_parent(path: Path) -> Path:
    p = path.parent
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def _normal_permissions(root: Path) -> None:
    """mkdtemp makes 0700 folders; give the output the modes a plain write would (umask)."""
    mask = os.umask(0)
    os.umask(mask)
    for p in [root, *root.rglob("*")]:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def is_ours(folder: Path) -> bool:
    """A folder ocrconvert wrote (a manifest or a model-set record inside), or an empty one."""
    return (not any(folder.iterdir()) or (folder / MANIFEST_FILE).exists() or (folder / SET_FILE).exists()
            or any(p.name.endswith(".ocrconvert.json") for p in folder.iterdir()))


def check_output(path: Path, *, is_dir: bool, sources=(), force: bool = False) -> None:
    """Every reason not to write ``path``, before any work: exit 2 with what to do instead."""
    path = Path(path).absolute()
    for src in sources:
        src = Path(src).absolute()
        if path == src or (src.is_dir() and _inside(path, src)) or _inside(src, path):
            raise UsageError(f"{path} would write over or into the source {src}",
                             hint="Choose an output outside the source model.")
    limit = _name_max(_existing_parent(path))
    if len(failed_path(path, is_dir).name.encode()) > limit:
        raise UsageError(f"the output name {path.name!r} is too long for the file system ({limit} bytes)",
                         hint="Choose a shorter output name.")
    parent = _existing_parent(path)
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {path}: {parent} is not a writable folder",
                         hint="Choose another -o/--output location.")
    if path.exists() or path.is_symlink():
        if is_dir and not path.is_dir():
            raise UsageError(f"{path} is an existing file; this route writes a folder",
                             hint="Choose a new folder name for -o.")
        if not is_dir and path.is_dir():
            raise UsageError(f"{path} is a folder; this route writes a file", hint="Name the file, e.g. -o model.onnx")
        if is_dir and not is_ours(path):
            raise UsageError(f"{path} exists and holds files ocrconvert did not write",
                             hint="Choose an empty or new output folder.")
        if is_dir and not any(path.iterdir()):
            return
        if not force:
            raise UsageError(f"{path} already exists",
                             hint="Pass --force to replace it, or choose another output.")


class FileLock:
    """An exclusive, non-blocking flock on a lock file that goes away with its holder: a second holder gets a
    usage error (exit 2) instead of waiting. The file is unlinked on release, so a waiter re-checks that the
    file it locked is still the live one."""

    def __init__(self, path: Path, *, busy: str, hint: str):
        self.path, self.busy, self.hint = Path(path), busy, hint
        self.fd: int | None = None

    def acquire(self) -> "FileLock":
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise UsageError(self.busy, hint=self.hint) from None
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    self.fd = fd
                    return self
            except FileNotFoundError:
                pass
            os.close(fd)

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class OutputSlot:
    """Lock + staging + commit for one final artifact path (a file or a folder)."""

    def __init__(self, path: Path, *, is_dir: bool, sources=(), force: bool = False):
        self.path = Path(path).absolute()
        self.is_dir = is_dir
        self.sources = list(sources)
        self.force = force
        self.stage: Path | None = None
        self._file_lock: FileLock | None = None
        self._created: list[Path] = []
        self._tag = _tag(self.path)

    @property
    def failed_path(self) -> Path:
        return failed_path(self.path, self.is_dir)

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> "OutputSlot":
        check_output(self.path, is_dir=self.is_dir, sources=self.sources, force=self.force)
        parent = self.path.parent
        try:
            self._created = [p for p in (parent, *parent.parents) if not p.exists()]
            parent.mkdir(parents=True, exist_ok=True)
            self._lock()
            self._remove_stale()
            self.stage = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{self._tag}.", suffix=".partial", dir=parent))
        except OSError as exc:
            self.__exit__(None, None, None)
            raise from_os_error(exc, "") from None
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.stage is not None:
            shutil.rmtree(self.stage, ignore_errors=True)
            self.stage = None
        self._unlock()
        if exc_type is not None:
            for d in self._created:  # folders this run created for nothing
                try:
                    d.rmdir()
                except OSError:
                    break

    def _lock(self) -> None:
        self._file_lock = FileLock(self.path.parent / f"{_PREFIX}{self._tag}.lock",
                                   busy=f"another ocrconvert run is writing {self.path}",
                                   hint="Wait for it to finish, or choose another output.").acquire()

    def _unlock(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None

    def _remove_stale(self) -> None:
        """Staging and swap folders of this output left by a killed run (we hold the lock: none is live)."""
        for p in self.path.parent.glob(f"{_PREFIX}{self._tag}.*"):
            if p.name.endswith((".partial", ".old")):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

    # -- commit ---------------------------------------------------------------------------------
    def commit(self, staged: Path, *, failed: bool = False) -> Path:
        """Move the staged artifact (and its sidecar manifest) to the final path — or to the FAILED
        name when verification failed. Returns where it landed."""
        dest = self.failed_path if failed else self.path
        try:
            _normal_permissions(self.stage)
            if self.is_dir:
                self._replace_dir(staged, dest)
            else:
                side = _sidecar(staged, False)
                os.replace(staged, dest)
                if side.exists():
                    os.replace(side, _sidecar(dest, False))  # manifest last: it vouches for the file
            if not failed:  # an earlier FAILED copy of this output is superseded
                old = self.failed_path
                if old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
                elif old.exists():
                    old.unlink()
                    _sidecar(old, False).unlink(missing_ok=True)
        except OSError as exc:
            raise from_os_error(exc, "") from None
        return dest

    def _replace_dir(self, staged: Path, dest: Path) -> None:
        if dest.exists():
            old = dest.parent / f"{_PREFIX}{self._tag}.{os.getpid()}.old"
            shutil.rmtree(old, ignore_errors=True)
            dest.rename(old)
            staged.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staged.rename(dest)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a small file (a report, a reference) through a temporary name beside it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{_PREFIX}{_tag(path)}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["FileLock", "OutputSlot", "check_output", "failed_path", "is_ours", "write_atomic", "FAILED_TAG"]
