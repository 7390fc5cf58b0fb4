"""What a job's verdict depends on, and whether the artifact on disk still carries it.

A job's fingerprint hashes the source's content, the job's settings (route options, tolerances,
seed, precision, expectation; dictionary and image folder by content) and the tool versions. Resume
trusts a job when its fingerprint is unchanged AND its artifact and manifest are on disk, the
artifact's sha256 matches the manifest, and the manifest records the verdict the job asked for.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from ...errors import OcrConvertError
from .config import JobSpec


def _file_digest(path: str | None) -> str | None:
    if not path:
        return None
    from ...manifest import sha256_file

    try:
        return sha256_file(Path(path))
    except OSError:
        return f"unreadable:{path}"


def _dir_digest(path: str | None) -> str | None:
    if not path or not Path(path).exists():
        return path
    from ...manifest import sha256_artifact

    return sha256_artifact(Path(path))


def tool_versions() -> dict:
    from ...manifest import environment

    env = environment()
    return {"python": env["python"], **env["packages"]}


class DigestCache:
    """sha256 digests of files and artifacts, reused while every file's (size, mtime, inode) is unchanged.

    Kept in the state folder between runs, so a warm ``--resume`` hashes nothing it hashed before; an
    artifact rewritten or truncated behind the batch's back changes its stat and is hashed again.
    Files modified in the last seconds are not cached (their mtime may not tell a second write apart)."""
    RACY_NS = 2_000_000_000

    def __init__(self, path: Path | None = None):
        self.path = path
        self.entries: dict[str, list] = {}
        self.used: set[str] = set()
        if path is not None:
            try:
                doc = json.loads(path.read_text())
                self.entries = doc if isinstance(doc, dict) else {}
            except (OSError, ValueError):
                pass

    @staticmethod
    def _signature(path: Path) -> list | None:
        files = [path] if path.is_file() else sorted(q for q in path.rglob("*") if q.is_file())
        sig, newest = [], 0
        for q in files:
            st = q.stat()
            sig.append([str(q.relative_to(path)) if q != path else "", st.st_size, st.st_mtime_ns, st.st_ino])
            newest = max(newest, st.st_mtime_ns)
        return None if time.time_ns() - newest < DigestCache.RACY_NS else sig

    def _cached(self, kind: str, path: Path, compute) -> str:
        key = f"{kind}:{Path(path).resolve()}"
        self.used.add(key)
        sig = self._signature(Path(path))
        hit = self.entries.get(key)
        if sig is not None and isinstance(hit, list) and len(hit) == 2 and hit[0] == sig:
            return hit[1]
        digest = compute(Path(path))
        if sig is not None:
            self.entries[key] = [sig, digest]
        return digest

    def file(self, path: Path) -> str:
        from ...manifest import sha256_file

        return self._cached("file", path, sha256_file)

    def artifact(self, path: Path) -> str:
        from ...manifest import sha256_artifact

        return self._cached("artifact", path, sha256_artifact)

    def save(self) -> None:
        """Keep what this run looked at (entries of outputs and sources no longer used go)."""
        if self.path is not None:
            from .reports import write_text

            write_text(self.path, json.dumps({k: v for k, v in self.entries.items() if k in self.used}))


def source_digest(source: Path, cache: DigestCache | None = None) -> str:
    """Content hash of every file the source model is made of (program, weights, yml, dict)."""
    from ...formats import detect

    cache = cache or DigestCache()
    art = detect(source)
    h = hashlib.sha256(cache.artifact(art.path).encode())
    for role, p in sorted(art.files.items()):
        h.update(f"{role}:{p.name}:{cache.file(p)}".encode())
    return h.hexdigest()


def set_digest(model_set, cache: DigestCache | None = None) -> str:
    """Content hash of a model set: each stage's source digest under its stage name, and the dictionary."""
    cache = cache or DigestCache()
    h = hashlib.sha256()
    for stage, path in model_set.stages.items():
        h.update(f"{stage}:{source_digest(path, cache)}".encode())
    if model_set.dictionary is not None:
        h.update(f"dict:{cache.file(model_set.dictionary)}".encode())
    h.update(json.dumps(model_set.params, sort_keys=True, default=str).encode())
    return h.hexdigest()


def fingerprint(job: JobSpec, src_digest: str, versions: dict) -> str:
    settings = {**job.settings(), "dict": _file_digest(job.dict), "images": _dir_digest(job.images)}
    doc = {"source": src_digest, "settings": settings, "versions": versions}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def artifact_path(job: JobSpec) -> Path:
    """Where the pipeline puts the artifact of a job (file targets go inside the job folder; a set is the folder)."""
    from ...pipeline import final_path

    return job.output if job.kind == "set" else final_path(job.output, job.pipeline_target)


def is_file_target(job: JobSpec) -> bool:
    from ...registry import FILE_TARGETS

    return job.kind != "set" and job.pipeline_target in FILE_TARGETS


def verified_on_disk(job: JobSpec, cache: DigestCache | None = None) -> str | None:
    """None when the job's artifact + manifest exist, match and record the verdict the job asked for
    (verification passed; or, for a ``verify: false`` job, a committed unverified artifact); else why not."""
    from ...formats import detect
    from ...manifest import read_manifest

    art = artifact_path(job)
    if not art.exists():
        return "no artifact"
    if job.kind == "set":
        return _set_on_disk(job, art, cache)
    try:
        man = read_manifest(art)
    except OcrConvertError as exc:
        return exc.message
    if not man:
        return "no manifest"
    ver = man.get("verification") or {}
    if job.verify and not ver.get("passed"):
        return "manifest does not record a passed verification"
    if not job.verify and man.get("status") not in ("verified", "unverified"):
        return f"manifest status is {man.get('status')!r}"
    try:
        detect(art)
        if (cache or DigestCache()).artifact(art) != (man.get("artifact") or {}).get("sha256"):
            return "artifact sha256 differs from its manifest"
    except (OcrConvertError, OSError) as exc:
        return f"artifact unreadable: {exc}"
    return None


def _set_on_disk(job: JobSpec, folder: Path, cache: DigestCache | None) -> str | None:
    """A set job's folder: its record holds the verdicts the job asked for, and every stage matches its manifest."""
    import yaml

    from ...formats import SET_FILE
    from ...manifest import read_manifest

    try:
        record = yaml.safe_load((folder / SET_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return f"set record unreadable: {exc}"
    if not isinstance(record, dict) or not isinstance(record.get("stages"), dict):
        return "no set record"
    if job.verify and (record.get("status") != "verified"
                       or (record.get("pipeline_verification") or {}).get("verdict") != "PASSED"):
        return "set record does not hold a passed pipeline verification"
    if not job.verify and record.get("status") not in ("verified", "unverified"):
        return f"set status is {record.get('status')!r}"
    for stage, entry in record["stages"].items():
        art = folder / str((entry or {}).get("path", ""))
        try:
            man = read_manifest(art) if art.exists() else None
            if not man:
                return f"stage {stage}: no artifact or manifest"
            if (cache or DigestCache()).artifact(art) != (man.get("artifact") or {}).get("sha256"):
                return f"stage {stage}: artifact sha256 differs from its manifest"
        except (OcrConvertError, OSError) as exc:
            return f"stage {stage}: unreadable: {exc}"
    return None
