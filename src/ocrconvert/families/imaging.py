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


def render_random_page(size: tuple[int, int], seed: int, font_size: int | None = None):
    """A white page of the given size with seeded words at seeded places: text-like input for det models."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    w, h = size
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    words = " ".join(SAMPLE_LINES).split()
    fs = font_size or int(max(12, min(32, h // 10)))
    f = font(fs)
    y = int(rng.integers(2, max(3, fs // 2)))
    while y < h - fs:
        x = int(rng.integers(2, max(3, w // 4)))
        text = " ".join(rng.choice(words, size=int(rng.integers(1, 4))))
        draw.text((x, y), text, fill=tuple(int(c) for c in rng.integers(0, 90, size=3)), font=f)
        y += int(fs * rng.uniform(1.6, 2.6))
    return img


def to_rgb(im):
    """RGB as a reader sees it: transparency composited on white (black text on a transparent background
    stays black on white; dropping alpha would make it invisible)."""
    from PIL import Image

    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(page, rgba).convert("RGB")
    return im.convert("RGB")


def line_crops(img, min_gap: int = 2) -> list:
    """Text-line crops of an image by its horizontal ink profile; the image itself when it holds one line.
    Recognition models read lines: a whole page squeezed to 48 pixels would be judged on noise."""
    gray = np.asarray(img.convert("L"), dtype=np.float32)
    if gray.size == 0:
        return [img]
    ink = gray < min(200.0, float(gray.mean()) - 30.0)
    rows = ink.sum(1) > max(1, int(0.002 * gray.shape[1]))
    bands, start, gap = [], None, 0
    for y, on in enumerate(rows):
        if on:
            start = y if start is None else start
            gap = 0
        elif start is not None:
            gap += 1
            if gap >= min_gap:
                bands.append((start, y - gap + 1))
                start, gap = None, 0
    if start is not None:
        bands.append((start, len(rows)))
    bands = [(a, b) for a, b in bands if b - a >= 6]
    if len(bands) <= 1:
        return [img]
    crops = []
    for a, b in bands:
        cols = np.where(ink[a:b].any(0))[0]
        pad = max(2, (b - a) // 4)
        box = (max(0, int(cols[0]) - pad), max(0, a - pad), min(gray.shape[1], int(cols[-1]) + 1 + pad),
               min(gray.shape[0], b + pad))
        crops.append(img.crop(box))
    return crops


def open_image(path: Path):
    """One image file as RGB (transparency on white), or a usage error naming the file: PIL reports a bad
    file through many exception types (OSError, SyntaxError, ValueError, its DecompressionBombError)."""
    from PIL import Image

    from ..errors import UsageError

    try:
        with Image.open(path) as im:
            return to_rgb(im)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise UsageError(f"{path} is not a readable image: {type(exc).__name__}: {exc}",
                         hint="Remove it or replace it with a PNG/JPEG/BMP/TIFF/WebP file.") from None


def load_images(folder: str | Path) -> list[tuple[str, "object"]]:
    from ..errors import UsageError

    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"--images {folder} is not a folder")
    out = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"):
            continue
        out.append((p.name, open_image(p)))
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
