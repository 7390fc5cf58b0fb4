"""Rendered pages with known text: realistic enough to exercise the whole OCR pipeline, reproducible from a
seed, and drawn only with fonts this package ships (``ocr/fonts``: DejaVu, Bitstream Vera licence) or
Pillow's own, so every machine renders the same pixels.

Each page mixes font sizes and faces; styles add what real scans have: lines rotated up to +-10 degrees, a
vertical line (rotated 90 degrees clockwise, read top to bottom), low contrast, a transparent background,
sensor noise and JPEG artefacts. ``RenderedPage.lines`` holds each line's text and its quad in page pixels.

    from ocrconvert.ocr.pages import render_pages
    for page in render_pages(8, seed=0):
        path = page.save("pages/")          # PNG (RGBA for the transparent style) or JPEG
        print(path, [line.text for line in page.lines])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

FONT_DIR = Path(__file__).with_name("fonts")
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")

STYLES = ("clean", "rotated", "vertical", "low-contrast", "transparent", "noise", "jpeg", "mixed")

_WORDS = ("invoice total amount due date order customer number account payment balance shipping address "
          "street city model version report summary page section table value price quantity unit tax "
          "reference contact phone email office north south river green paper market service delivery "
          "receipt bank transfer signed approved received checked urgent office hours monday friday "
          "open close release update").split()


@dataclass
class PageLine:
    """One line of known text and its quad (top-left, top-right, bottom-right, bottom-left) in page pixels."""
    text: str
    quad: np.ndarray
    vertical: bool = False


@dataclass
class RenderedPage:
    name: str
    image: object                 # PIL image: RGB, or RGBA for the transparent style
    lines: list[PageLine]
    style: str
    fmt: str = "png"              # png | jpg
    jpeg_quality: int = 60
    tags: dict = field(default_factory=dict)

    def save(self, folder: str | Path) -> Path:
        """Write the page (atomically) as ``<name>.png`` or ``<name>.jpg``; returns its path."""
        import io

        from ..atomic import write_atomic

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.{self.fmt}"
        buf = io.BytesIO()
        if self.fmt == "jpg":
            self.image.convert("RGB").save(buf, format="JPEG", quality=self.jpeg_quality)
        else:
            self.image.save(buf, format="PNG")
        write_atomic(path, buf.getvalue())
        return path


@lru_cache(maxsize=64)
def font(index: int, size: int):
    """Font ``index`` of the shipped faces (the last index is Pillow's own FreeType font) at ``size`` px."""
    from PIL import ImageFont

    if index < len(FONT_FILES):
        return ImageFont.truetype(str(FONT_DIR / FONT_FILES[index]), size)
    return ImageFont.load_default(size=size)


def _phrase(rng) -> str:
    kind = int(rng.integers(0, 5))
    words = [str(w) for w in rng.choice(_WORDS, size=int(rng.integers(1, 4)))]
    if rng.random() < 0.5:
        words[0] = words[0].capitalize()
    if kind == 0:
        words.append(f"{int(rng.integers(10, 99999))}")
    elif kind == 1:
        words[-1] += ":"
        words.append(f"{int(rng.integers(1, 9999)):,}.{int(rng.integers(0, 99)):02d}")
    elif kind == 2:
        words.append(f"2026-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}")
    elif kind == 3:
        words = [w.upper() for w in words]
    return " ".join(words)


def _line_tile(text: str, fnt, ink, angle: float):
    """The text drawn on a transparent tile, rotated (counter-clockwise degrees, as PIL); returns the tile and
    the text box's 4 corners in tile pixels."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = fnt.getbbox(text)
    pad = max(4, (bottom - top) // 2)
    w, h = right - left + 2 * pad, bottom - top + 2 * pad
    tile = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    ImageDraw.Draw(tile).text((pad - left, pad - top), text, fill=tuple(ink) + (255,), font=fnt)
    corners = np.array([[pad, pad], [w - pad, pad], [w - pad, h - pad], [pad, h - pad]], np.float64)
    if not angle:
        return tile, corners
    rotated = tile.rotate(angle, resample=Image.BICUBIC, expand=True)
    t = np.deg2rad(angle)
    c, s = np.cos(t), np.sin(t)
    centre = np.array([w / 2, h / 2])
    rel = corners - centre
    # PIL rotates counter-clockwise on screen (y down): x' = x cos + y sin, y' = -x sin + y cos
    out = np.stack([rel[:, 0] * c + rel[:, 1] * s, -rel[:, 0] * s + rel[:, 1] * c], 1)
    out += np.array([rotated.width / 2, rotated.height / 2])
    return rotated, out


def render_page(seed: int, style: str = "mixed", size: tuple[int, int] = (960, 720)) -> RenderedPage:
    """One page of ``style`` (see ``STYLES``), reproducible from ``seed``."""
    from PIL import Image, ImageFilter

    if style not in STYLES:
        raise ValueError(f"style {style!r} is not one of {STYLES}")
    rng = np.random.default_rng(seed)
    w, h = size
    low = style in ("low-contrast", "mixed")
    paper = (int(rng.integers(200, 215)),) * 3 if low else (255, 255, 255)
    ink_range = (120, 150) if low else (0, 60)
    vertical = style in ("vertical", "mixed")
    rotated = style in ("rotated", "mixed")
    canvas = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    lines: list[PageLine] = []
    right_edge = w - 90 if vertical else w - 20
    y = int(rng.integers(15, 35))
    while True:
        size_px = int(rng.choice([18, 22, 26, 30, 36, 44]))
        fnt = font(int(rng.integers(0, len(FONT_FILES) + 1)), size_px)
        text = _phrase(rng)
        angle = float(rng.uniform(-10, 10)) if rotated and rng.random() < 0.6 else 0.0
        ink = [int(v) for v in rng.integers(*ink_range, size=3)]
        tile, quad = _line_tile(text, fnt, ink, angle)
        if tile.width > right_edge - 20:
            continue
        if y + tile.height > h - 15:
            break
        x = int(rng.integers(20, max(21, right_edge - tile.width)))
        canvas.alpha_composite(tile, (x, y))
        lines.append(PageLine(text, (quad + [x, y]).astype(np.float32)))
        y += tile.height + int(rng.integers(6, 22))
    if vertical:
        fnt = font(0, 28)
        text = _phrase(rng)
        while fnt.getbbox(text)[2] > h - 60:
            text = text.rsplit(" ", 1)[0]
        tile, quad = _line_tile(text, fnt, [int(v) for v in rng.integers(*ink_range, size=3)], -90.0)
        x, y0 = w - tile.width - 25, 25
        canvas.alpha_composite(tile, (x, y0))
        lines.append(PageLine(text, (quad + [x, y0]).astype(np.float32), vertical=True))

    fmt = "jpg" if style in ("jpeg", "mixed") else "png"
    if style == "transparent":
        image = canvas  # RGBA: text on a fully transparent page (a reader must composite it on white)
    else:
        page = Image.new("RGBA", (w, h), paper + (255,))
        page.alpha_composite(canvas)
        image = page.convert("RGB")
        if style in ("noise", "mixed"):
            arr = np.asarray(image, np.float32)
            arr += rng.normal(0.0, 12.0 if style == "noise" else 6.0, arr.shape)
            image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
            image = image.filter(ImageFilter.GaussianBlur(0.5))
    return RenderedPage(f"page-{seed:03d}-{style}", image, lines, style, fmt,
                        jpeg_quality=45 if style == "mixed" else 60)


def render_pages(count: int = len(STYLES), seed: int = 0, size: tuple[int, int] = (960, 720)) -> list[RenderedPage]:
    """``count`` pages cycling through every style, page ``i`` seeded with ``seed + i``."""
    return [render_page(seed + i, STYLES[i % len(STYLES)], size) for i in range(count)]


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate: Levenshtein distance / reference length (1.0 for any text against an empty one)."""
    if not reference:
        return 0.0 if not hypothesis else 1.0
    prev = list(range(len(hypothesis) + 1))
    for i, a in enumerate(reference, 1):
        cur = [i]
        for j, b in enumerate(hypothesis, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a != b)))
        prev = cur
    return prev[-1] / len(reference)
