"""Images as a reader sees them: transparency on white, pages read line by line."""
import numpy as np
from PIL import Image

from ocrconvert.families.imaging import line_crops, open_image, render_line, render_page, to_rgb


def test_black_text_on_a_transparent_background_stays_visible(tmp_path):
    line = np.asarray(render_line("Hello World").convert("L"))
    rgba = np.zeros(line.shape + (4,), np.uint8)   # black everywhere, opaque only where the text is
    rgba[..., 3] = 255 - line
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    rgb = np.asarray(open_image(tmp_path / "t.png"))
    dropped = np.asarray(Image.fromarray(rgba, "RGBA").convert("RGB"))
    assert dropped.max() == 0                      # dropping alpha: an all-black image, the text is gone
    assert rgb.min() < 60 and np.median(rgb) > 240  # composited: dark text on a white page
    assert np.array_equal(np.asarray(to_rgb(Image.fromarray(rgb))), rgb)  # RGB stays as it is


def test_a_page_is_cut_into_its_lines_and_a_line_stays_whole():
    page = render_page(lines=("Invoice 20481", "Hello World", "Total: 3,141.59 USD"), size=(640, 300))
    crops = line_crops(page)
    assert len(crops) == 3 and all(c.height < 80 for c in crops)
    line = render_line("Hello World")
    assert line_crops(line) == [line]
