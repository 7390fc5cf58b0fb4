"""Rendering of test images with known content, and the shared preprocessing helpers."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
)

SAMPLE_LINES = (
    "Invoice 20481",
    "Hello World",
    "ocrconvert 2026",
    "Total: 3,141.59 USD",
    "PaddleOCR to PyTorch",
    "Model zoo verified",
)


@lru_cache(maxsize=4)
def font(size: int = 32):
    from PIL import ImageFont

    for path in FONT_CANDIDATES:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)  # Pillow's bundled FreeType font


def render_line(text: str, size: int = 32):
    from PIL import Image, ImageDraw

    f = font(size)
    left, top, right, bottom = f.getbbox(text)
    pad = size // 3
    img = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), "white")
    ImageDraw.Draw(img).text((pad - left, pad - top), text, fill="black", font=f)
    return img


def render_page(lines=SAMPLE_LINES, size=(640, 480), font_size: int = 28):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    f = font(font_size)
    y = 30
    for i, text in enumerate(lines):
        draw.text((30 + (i % 3) * 25, y), text, fill="black", font=f)
        y += int(font_size * 2.2)
        if y > size[1] - font_size:
            break
    return img


def load_images(folder: str | Path) -> list[tuple[str, "object"]]:
    from PIL import Image, UnidentifiedImageError

    from ..errors import UsageError

    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"--images {folder} is not a folder")
    out = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"):
            continue
        try:
            with Image.open(p) as im:
                out.append((p.name, im.convert("RGB")))
        except (UnidentifiedImageError, OSError) as exc:
            raise UsageError(f"{p} is not a readable image: {exc}") from None
    if not out:
        raise UsageError(f"--images {folder} holds no images (.png/.jpg/.bmp/.tif/.webp)")
    return out


def to_bgr_array(img) -> np.ndarray:
    """PaddleOCR pipelines decode images as BGR (cv2); mirror that."""
    return np.asarray(img.convert("RGB"), dtype=np.float32)[:, :, ::-1]


def normalize_chw(arr_hwc: np.ndarray, mean, std, scale: float = 1 / 255.0) -> np.ndarray:
    x = arr_hwc * scale
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return x.transpose(2, 0, 1).astype(np.float32)


def transform_op(config: dict, name: str) -> dict | None:
    """The arguments of one PaddleX ``PreProcess.transform_ops`` entry, if present."""
    for op in (config or {}).get("PreProcess", {}).get("transform_ops", []) or []:
        if isinstance(op, dict) and name in op:
            return op[name] or {}
    return None
