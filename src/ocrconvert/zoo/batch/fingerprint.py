"""What a job's verdict depends on, and whether the artifact on disk still carries it.

A job's fingerprint hashes the source's content, the job's settings (route options, tolerances,
seed, precision, expectation; dictionary and image folder by content) and the tool versions. Resume
trusts a job when its fingerprint is unchanged AND its artifact and manifest are on disk, the
artifact's sha256 matches the manifest, and the manifest records the verdict the job asked for.
"""
from __future__ import annotations

import hashlib
import json
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


def source_digest(source: Path) -> str:
    """Content hash of every file the source model is made of (program, weights, yml, dict)."""
    from ...formats import detect
    from ...manifest import sha256_artifact, sha256_file

    art = detect(source)
    h = hashlib.sha256(sha256_artifact(art.path).encode())
    for role, p in sorted(art.files.items()):
        h.update(f"{role}:{p.name}:{sha256_file(p)}".encode())
    return h.hexdigest()


def fingerprint(job: JobSpec, src_digest: str, versions: dict) -> str:
    settings = {**job.settings(), "dict": _file_digest(job.dict), "images": _dir_digest(job.images)}
    doc = {"source": src_digest, "settings": settings, "versions": versions}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def artifact_path(job: JobSpec) -> Path:
    """Where the pipeline puts the artifact of a job (file targets go inside the job folder)."""
    from ...pipeline import final_path

    return final_path(job.output, job.pipeline_target)


def is_file_target(job: JobSpec) -> bool:
    from ...registry import FILE_TARGETS

    return job.pipeline_target in FILE_TARGETS


def verified_on_disk(job: JobSpec) -> str | None:
    """None when the job's artifact + manifest exist, match and record the verdict the job asked for
    (verification passed; or, for a ``verify: false`` job, a committed unverified artifact); else why not."""
    from ...formats import detect
    from ...manifest import read_manifest, sha256_artifact

    art = artifact_path(job)
    if not art.exists():
        return "no artifact"
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
        if sha256_artifact(art) != (man.get("artifact") or {}).get("sha256"):
            return "artifact sha256 differs from its manifest"
    except (OcrConvertError, OSError) as exc:
        return f"artifact unreadable: {exc}"
    return None
