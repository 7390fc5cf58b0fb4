"""Which form ``load()`` serves for a native PyTorch folder: the eager fused model, or a compiled CPU package
(``aot-build --device cpu``) built from that very folder when one lies beside it, passed its verification and
measured faster at build time (``aot.speed`` in its manifest). The choice and its reason travel with the runner
(``runner.choice``) and are logged, so a user can always tell why a form was picked."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from ..formats import Artifact, detect
from ..manifest import read_manifest, sha256_artifact, sha256_file

log = logging.getLogger(__name__)

FORMS = ("auto", "native", "aot")


@dataclass(frozen=True)
class Choice:
    form: str            # native | aot
    path: str            # the artifact that runs
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def _verified(man: dict) -> bool:
    return man.get("status") == "verified" and (man.get("verification") or {}).get("passed") is True


def packages_for(native: Artifact, device: str = "cpu") -> list[tuple[Path, dict]]:
    """Verified fp32 AOT packages for ``device`` beside ``native`` whose manifest names this folder, byte for byte
    (path and sha256), as their source, and whose own bytes are those verified; each with its manifest."""
    folder = Path(native.path).resolve()
    digest = None
    out = []
    for pt2 in sorted(folder.parent.glob("*.pt2")):
        man = read_manifest(pt2) or {}
        src, aot = man.get("input") or man.get("source") or {}, man.get("aot") or {}  # what the build read
        if src.get("path") != str(folder) or (aot.get("device") or "").split(":")[0] != device.split(":")[0]:
            continue
        if aot.get("fp16") or not _verified(man) or (man.get("artifact") or {}).get("sha256") != sha256_file(pt2):
            continue  # fp16, unverified, or not the bytes that were verified
        digest = digest or sha256_artifact(folder)
        if src.get("sha256") == digest:
            out.append((pt2, man))
    return out


def choose(native: Artifact, device: str = "cpu", form: str = "auto") -> Choice:
    """The form to serve for a native folder (see the module docstring); ``form`` forces one."""
    from ..errors import UsageError

    if form not in FORMS:
        raise UsageError(f"form={form!r} is not one of {', '.join(FORMS)}")
    here = str(native.path)
    if form == "native":
        return Choice("native", here, "asked for the native form")
    found = packages_for(native, device)
    if form == "aot":
        if not found:
            raise UsageError(f"no verified {device} AOT package built from {native.path} lies beside it",
                             hint=f"Build one: ocrconvert aot-build {native.path} -o "
                                  f"{Path(native.path).name}.{device}.pt2 --device {device}")
        return Choice("aot", str(found[0][0]), "asked for the compiled package")
    if not found:
        return Choice("native", here, f"no verified {device} AOT package built from this folder lies beside it")
    timed = [(p, (m.get("aot") or {}).get("speed") or {}) for p, m in found]
    faster = [(p, s) for p, s in timed if s.get("package_ms") is not None and s.get("faster")]
    if not faster:
        p, s = timed[0]
        if not s:
            return Choice("native", here, f"{p.name} has no build-time timing against the eager fused model")
        return Choice("native", here, f"{p.name} measured slower than eager fused at build "
                                      f"({s['package_ms']} vs {s['eager_fused_ms']} ms, shape {s.get('shape')})")
    p, s = min(faster, key=lambda ps: ps[1]["package_ms"])
    return Choice("aot", str(p), f"verified, and measured faster than eager fused at build "
                                 f"({s['package_ms']} vs {s['eager_fused_ms']} ms, shape {s.get('shape')}, "
                                 f"{s.get('threads')} thread(s))")


def load_native_or_package(native: Artifact, form: str = "auto", **kwargs):
    """The runner ``load()`` gives for a native folder; ``kwargs`` asking for a particular eager form (trainable,
    half, torch.compile) keep the native runner."""
    from . import runner_for

    device = kwargs.get("device") or "cpu"
    if kwargs.get("fused") is False or kwargs.get("half") or kwargs.get("compile"):
        choice = Choice("native", str(native.path), "asked for a particular eager form (fused/half/compile)")
    else:
        choice = choose(native, device, form)
    log.info("load %s: the %s form (%s) — %s", native.path, choice.form, choice.path, choice.reason)
    if choice.form == "aot":
        from .aot import AotRunner

        runner = AotRunner(detect(choice.path), device=device)
    else:
        runner = runner_for(native, **kwargs)
    runner.choice = choice
    return runner
