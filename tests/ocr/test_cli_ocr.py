"""``ocrconvert ocr``: results on stdout, progress on stderr, one JSON object, drawings, usage errors (exit 2)."""
from __future__ import annotations

import json

import pytest

from ocrconvert.ocr.pages import render_page


@pytest.fixture(scope="module")
def page_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pages")
    render_page(0, "clean", size=(480, 320)).save(folder)
    render_page(3, "low-contrast", size=(480, 320)).save(folder)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.mark.zoo
def test_ocr_folder_prints_lines_and_draws(cli_here, zoo, page_dir, tmp_path):
    proc = cli_here("ocr", page_dir, "--det", zoo("ppocrv5-mobile-det-onnx"), "--rec", zoo("ppocrv5-mobile-rec-onnx"),
                    "--draw", tmp_path / "drawn", check=0)
    for page in (render_page(0, "clean", size=(480, 320)), render_page(3, "low-contrast", size=(480, 320))):
        assert page.name in proc.stdout and page.lines[0].text in proc.stdout
    assert "ocr 1/2" in proc.stderr and "ocr 2/2" in proc.stderr and "ocr 1/2" not in proc.stdout
    drawn = sorted(p.name for p in (tmp_path / "drawn").iterdir())
    assert drawn == ["page-000-clean.ocr.png", "page-003-low-contrast.ocr.png"]


@pytest.mark.zoo
def test_ocr_json_is_one_object(cli_here, zoo, page_dir):
    proc = cli_here("ocr", page_dir / "page-000-clean.png", "--det", zoo("ppocrv4-det-onnx"),
                    "--rec", zoo("ppocrv4-rec-onnx"), "--cls", zoo("ppocrv4-cls-onnx"), "--json", check=0)
    doc = json.loads(proc.stdout)
    (image,) = doc["images"]
    assert doc["pipeline"]["cls"]["backend"] == "onnxruntime" and doc["pipeline"]["params"]["det"]["thresh"] == 0.3
    assert len(image["lines"]) >= 3 and {ln["angle"] for ln in image["lines"]} == {0}
    assert all(len(ln["box"]) == 4 and 0 < ln["score"] <= 1 for ln in image["lines"])


@pytest.mark.parametrize("args, message", [
    (["--det", "x"], "needs --det and --rec"),
    (["--set", "s", "--det", "x"], "exclude each other"),
])
def test_ocr_usage_errors(cli_here, page_dir, args, message):
    proc = cli_here("ocr", page_dir, *args, check=2)
    assert message in proc.stderr and proc.stdout == ""


def test_ocr_missing_image_and_empty_folder(cli_here, tmp_path):
    proc = cli_here("ocr", tmp_path / "nope.png", "--det", "a", "--rec", "b", check=2)
    assert "does not exist" in proc.stderr
    proc = cli_here("ocr", tmp_path, "--det", "a", "--rec", "b", "--json", check=2)
    assert json.loads(proc.stdout)["error"] == "UsageError" and "no images" in json.loads(proc.stdout)["message"]


@pytest.mark.zoo
def test_ocr_wrong_dictionary_is_refused_or_misreads(cli_here, zoo, page_dir, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("a\nb\nc\n")
    proc = cli_here("ocr", page_dir / "page-000-clean.png", "--det", zoo("ppocrv4-det-onnx"),
                    "--rec", zoo("ppocrv4-rec-onnx"), "--dict", short, check=2)
    assert "dictionary" in proc.stderr


@pytest.mark.zoo
def test_ocr_on_a_model_set_folder(cli_here, zoo, page_dir, tmp_path):
    """``--set``: a PaddleOCR model-set folder (stages recognised by family) runs like --det/--rec/--cls."""
    import shutil

    for stage, name in (("det", "ppocrv4-det-onnx"), ("rec", "ppocrv4-rec-onnx"), ("cls", "ppocrv4-cls-onnx")):
        shutil.copytree(zoo(name), tmp_path / "set" / stage)
    image = page_dir / "page-000-clean.png"
    by_set = json.loads(cli_here("ocr", image, "--set", tmp_path / "set", "--json", check=0).stdout)
    by_stage = json.loads(cli_here("ocr", image, "--det", zoo("ppocrv4-det-onnx"), "--rec", zoo("ppocrv4-rec-onnx"),
                                   "--cls", zoo("ppocrv4-cls-onnx"), "--json", check=0).stdout)
    strip = [doc["images"][0]["lines"] for doc in (by_set, by_stage)]
    assert strip[0] == strip[1] and len(strip[0]) >= 3
