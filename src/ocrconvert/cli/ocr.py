"""``ocrconvert ocr``: run the PP-OCR pipeline on images — parse, call ``ocrconvert.ocr``, render."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from .options import DebugOpt, DictOpt, JsonOpt
from .render import emit_json, err, out

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

DetOpt = Annotated[Optional[Path], typer.Option("--det", help="Text detection model (any format ocrconvert loads).")]
RecOpt = Annotated[Optional[Path], typer.Option("--rec", help="Text recognition model.")]
ClsOpt = Annotated[Optional[Path], typer.Option("--cls", help="Text-line 180-degree classifier (optional).")]
SetOpt = Annotated[Optional[Path], typer.Option("--set", help="A model-set folder (det, cls, rec) instead of --det/--rec.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N.")]
DrawOpt = Annotated[Optional[Path], typer.Option("--draw", help="Folder to write each image with its boxes and texts drawn.")]


def images_of(target: Path) -> list[Path]:
    """One image, or every image of a folder (sorted); a usage error when there is none."""
    if target.is_file():
        return [target]
    if target.is_dir():
        found = sorted(p for p in target.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise UsageError(f"{target} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return found
    raise UsageError(f"{target} does not exist", hint="Pass an image file or a folder of images.")


def build_pipeline(det, rec, cls, model_set, device: str, dictionary):
    if model_set is not None:
        if det is not None or rec is not None or cls is not None:
            raise UsageError("--set and --det/--rec/--cls exclude each other", hint="Pass a model set or the stages.")
        from ..ocr.modelset import load_set

        return load_set(model_set, device)
    if det is None or rec is None:
        raise UsageError("ocr needs --det and --rec (or --set)", hint="ocrconvert ocr page.png --det DET --rec REC [--cls CLS]")
    from ..ocr import OcrPipeline

    return OcrPipeline.from_paths(det=det, rec=rec, cls=cls, device=device, dictionary=dictionary)


def draw_page(image_path: Path, page, folder: Path) -> Path:
    """The page with each quad outlined and its text written above it, saved atomically as PNG."""
    import io

    from PIL import Image, ImageDraw

    from ..atomic import write_atomic
    from ..ocr.pages import font
    from ..ocr.pipeline import read_image

    bgr, _ = read_image(image_path)
    img = Image.fromarray(bgr[:, :, ::-1].copy())
    draw = ImageDraw.Draw(img)
    for line in page.lines:
        pts = [tuple(map(float, p)) for p in line.box]
        draw.polygon(pts, outline=(255, 0, 0), width=2)
        size = max(10, int(min(28, abs(pts[3][1] - pts[0][1]) * 0.6)))
        x, y = pts[0]
        draw.text((x, max(0, y - size - 2)), line.text, fill=(0, 0, 255), font=font(0, size))
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{image_path.stem}.ocr.png"
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_atomic(dest, buf.getvalue())
    return dest


def register(app: typer.Typer) -> None:
    @app.command("ocr")
    def ocr(target: Annotated[Path, typer.Argument(help="An image or a folder of images.")],
            det: DetOpt = None, rec: RecOpt = None, cls: ClsOpt = None, model_set: SetOpt = None,
            device: DeviceOpt = "cpu", dictionary: DictOpt = None, draw: DrawOpt = None,
            json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """Read text: boxes, texts and scores per image (det -> cls -> rec, PaddleOCR's pipeline)."""
        from ..families.rec import read_dictionary_file

        paths = images_of(target)
        chars = read_dictionary_file(dictionary) if dictionary is not None else None
        pipeline = build_pipeline(det, rec, cls, model_set, device, chars)
        results = []
        for i, path in enumerate(paths, 1):
            err.print(f"[dim]ocr {i}/{len(paths)}[/] {path}", highlight=False)
            page = pipeline(path)
            row = page.to_dict()
            if draw is not None:
                row["drawn"] = str(draw_page(path, page, draw))
            results.append(row)
            if not json:
                out.print(f"[bold]{path}[/]  {len(page.lines)} lines  {page.timings['total']:.2f} s", highlight=False)
                for line in page.lines:
                    box = " ".join(f"{int(round(x))},{int(round(y))}" for x, y in line.box)
                    out.print(f"  [{box}]  {line.score:.3f}  {line.text}", highlight=False, markup=False)
        if json:
            emit_json({"pipeline": pipeline.describe(), "images": results})
        return 0
