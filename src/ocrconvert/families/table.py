"""Table structure recognition (SLANet, SLANet-plus): ``x[N,3,H,W]`` -> cell boxes ``[N,L,8]`` and structure
probabilities ``[N,L,K]`` over L decode steps; judged by identical structure tokens and cell boxes within a bound,
on rendered tables."""
from __future__ import annotations

import numpy as np

from .base import Family, TaskResult
from .imaging import font, normalize_chw, to_bgr_array

# SLANet-plus's PaddleX preprocessing: ResizeTableImage(max_len 488), ImageNet NormalizeImage on BGR,
# PaddingTableImage(488 x 488), ToCHWImage
MAX_LEN = 488
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BOX_DIMS = (4, 8)  # a cell as (x0, y0, x1, y1) or as four corners

# rendered tables: (rows, cols, (width, height)); the decoder reads 4x3 and 6x4 in 22 and 38 steps
TABLES = ((4, 3, (480, 200)), (6, 4, (400, 300)), (3, 5, (600, 180)))


def render_table(rows: int, cols: int, size: tuple[int, int], seed: int = 0):
    """A ruled table with a short seeded label in each cell."""
    from PIL import Image, ImageDraw

    w, h = size
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    for i in range(rows + 1):
        y = 5 + i * (h - 10) // rows
        d.line([(5, y), (w - 5, y)], fill="black", width=2)
    for j in range(cols + 1):
        x = 5 + j * (w - 10) // cols
        d.line([(x, 5), (x, h - 5)], fill="black", width=2)
    for i in range(rows):
        for j in range(cols):
            d.text((12 + j * (w - 10) // cols, 12 + i * (h - 10) // rows), f"cell {rng.integers(0, 999)}",
                   fill="black", font=font(16))
    return img


class TableFamily(Family):
    name = "table"
    task = "table"
    # on noise the decoder never ends (501 steps, ~30 s in PyTorch on 2 cores) and reads no structure: one
    # batch-2 case checks the numbers and the batch axis; the rendered tables (batch 1) carry the verdict
    random_shapes = ((2, 160, 256),)

    # how far a cell box may move (the model's normalised coordinates; 1e-3 is half a pixel at 488): fp32
    # reordering moves SLANet-plus's boxes <= 1.5e-6 (PyTorch) / 1.3e-6 (Paddle -> PyTorch), a conv x1.02 by
    # ~7e-3; the trt-export fp16 ONNX moves them <= 2.9e-3 on the rendered tables
    MAX_BOX_ABS = {"fp32": 1e-3, "fp16": 5e-3, "bf16": 1e-2, "int8": 2e-2}

    def outputs(self, arrays: dict[str, np.ndarray]) -> tuple[str, str]:
        """(cell boxes, structure) output names: the boxes are the output of 4 or 8 numbers per step."""
        names = [o.name for o in self.info.outputs if o.name in arrays] or list(arrays)
        boxes = [n for n in names if np.asarray(arrays[n]).shape[-1:] in ((4,), (8,))]
        box = boxes[0] if boxes else names[0]
        return box, next(n for n in names if n != box)

    def tokens(self, arrays) -> np.ndarray:
        return np.asarray(arrays[self.outputs(arrays)[1]]).argmax(-1)

    def synthetic_images(self):
        return [(f"table {r}x{c} {w}x{h}", render_table(r, c, (w, h), seed=i), None)
                for i, (r, c, (w, h)) in enumerate(TABLES)]

    def image_feeds(self, images):
        """One case per table (each decodes for as many steps as its own structure needs)."""
        feeds = []
        for label, img, *_ in images:
            s = MAX_LEN / max(img.width, img.height)
            small = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), resample=2)
            x = normalize_chw(to_bgr_array(small), MEAN, STD)
            out = np.zeros((1, 3, MAX_LEN, MAX_LEN), np.float32)
            out[0, :, :x.shape[1], :x.shape[2]] = x
            feeds.append((label, {self.info.inputs[0].name: out}))
        return feeds

    def primary_output(self, outputs):
        return outputs[self.outputs(outputs)[1]]

    def uninformative(self, ref, noise_floor):
        why = self._unusable(ref)
        if why:
            return why
        if len(np.unique(self.tokens(ref))) < 3:
            return "the decoder read no structure (fewer than 3 distinct tokens)"
        return ""

    def task_metric(self, ref, out, labels=None):
        box, _ = self.outputs(ref)
        a, b = self.tokens(ref), self.tokens(out)
        bound = self.MAX_BOX_ABS.get(str(self.precision), self.MAX_BOX_ABS["fp32"])
        if a.shape != b.shape:  # another number of decode steps: another structure
            return TaskResult("structure tokens identical", 0.0, 1.0, False,
                              {"steps": [int(a.shape[-1]), int(b.shape[-1])]})
        agree = float((a == b).mean())
        box_abs = float(np.abs(np.asarray(ref[box], np.float64) - np.asarray(out[box], np.float64)).max())
        return TaskResult("structure tokens identical", agree, 1.0, agree >= 1.0 and box_abs <= bound,
                          {"steps": int(a.shape[-1]), "cell_box_max_abs": box_abs, "cell_box_bound": bound})
