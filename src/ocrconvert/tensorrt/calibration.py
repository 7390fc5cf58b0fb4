"""INT8 calibration batches: real images, preprocessed as the model's family expects, at the profile's
opt shape (TensorRT calibrates at kOPT; the Q/DQ quantizer sees the same batches)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..families.base import Family
from .profiles import ShapeProfile

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class CalibrationSet:
    input_name: str
    batches: list[np.ndarray]
    images: int          # images used (a last partial batch is dropped: TensorRT wants full batches)
    dropped: int
    folder: str

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.batches[0].shape)

    def to_dict(self) -> dict:
        return {"folder": self.folder, "input": self.input_name, "images": self.images, "dropped": self.dropped,
                "batches": len(self.batches), "batch_shape": list(self.batch_shape)}


def _list_images(folder: Path) -> list[Path]:
    if not folder.exists():
        raise UsageError(f"--calib-images {folder} does not exist")
    if not folder.is_dir():
        raise UsageError(f"--calib-images {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"--calib-images {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})",
                         hint="Use a few hundred real images of the kind the model will see (pages for det, "
                              "cropped text lines for rec/cls).")
    return files


def calibration_batches(folder: str | Path, family: Family, profiles: list[ShapeProfile], *,
                        limit: int | None = None) -> CalibrationSet:
    """Real images, preprocessed as the family expects (``Family.calibration_input``), batched at the
    profile's opt shape."""
    from ..families.imaging import open_image

    if len(profiles) != 1 or len(profiles[0].opt) != 4:
        raise UsageError("INT8 calibration from images needs a model with one NCHW image input",
                         hint=f"this model takes {[p.name for p in profiles]}")
    if not family.calibrates_on_images:
        raise UsageError(f"INT8 calibration from images needs a det, rec or cls model; this one resolved to "
                         f"{family.name!r}", hint="Pass --family det-db, rec-ctc or cls if the model is one of those.")
    prof = profiles[0]
    files = _list_images(Path(folder))[: limit or None]
    batch = prof.opt[0]
    if len(files) < batch:
        raise UsageError(f"--calib-images {folder} holds {len(files)} image(s); the profile's opt batch is {batch}",
                         hint="Give at least one full batch (a few hundred images is typical), or lower the opt "
                              f"batch with --shapes {prof.name}:...")
    arrays = []
    for p in files:
        arrays.append(family.calibration_input(open_image(p), prof.opt))
    usable = len(arrays) // batch * batch
    if usable < len(arrays):
        log.info("calibration: dropping the last %d image(s) to keep full batches of %d", len(arrays) - usable, batch)
    batches = [np.stack(arrays[i:i + batch]) for i in range(0, usable, batch)]
    return CalibrationSet(prof.name, batches, usable, len(arrays) - usable, str(folder))


__all__ = ["CalibrationSet", "calibration_batches", "IMAGE_SUFFIXES"]
