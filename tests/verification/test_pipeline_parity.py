"""Pipeline parity (issue 13 item 5): two OCR pipelines end to end, page by page.

Unit tests on hand-made page results (matching, verdicts, the HTML report); integration tests on the real
PP-OCRv4 set: a converted ONNX set PASSES against the Paddle original, the same set with one conv of its rec
model scaled x1.02 FAILS (the difference drawn in the report), a wrong dictionary FAILS; the CLI's exit codes
and streams.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from ocrconvert.ocr import PageResult, TextLine
from ocrconvert.verification.pipeline_parity import (NO_DICTIONARY, PipelineTolerances, cer, compare_pages,
                                                     compare_pipelines, corner_shift, match_boxes, render_html)

sys.path.insert(0, str(Path(__file__).parent))
from _damage import damaged_onnx  # noqa: E402


def quad(x, y, w=100, h=20):
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32)


def page(*lines, prob=None):
    return PageResult([TextLine(quad(*xy), text, score) for xy, text, score in lines], (400, 300), {}, prob)


# ---- units -------------------------------------------------------------------------------------------
def test_cer_and_corner_shift():
    assert cer("hello", "hello") == 0.0
    assert cer("hello", "hallo") == pytest.approx(0.2)
    assert cer("", "x") == 1.0
    assert corner_shift(quad(10, 10), quad(11, 10)) == pytest.approx(1.0)
    assert corner_shift(quad(10, 10), np.roll(quad(10, 10), 1, axis=0)) == 0.0  # another start corner


def test_match_boxes_one_to_one_best_first():
    src = [quad(0, 0), quad(0, 50)]
    tgt = [quad(0, 51), quad(1, 0), quad(0, 0)]  # two candidates for the first source box
    pairs = match_boxes(src, tgt, 0.9)
    assert [(i, j) for i, j, _ in pairs] == [(0, 2), (1, 0)]
    assert match_boxes(src, [quad(0, 10)], 0.9) == []  # IoU 0.33: no match


def test_identical_pages_pass_and_report_counts():
    prob = np.zeros((32, 32), np.float32)
    p = compare_pages("p", page(((10, 10), "abc", 0.9), ((10, 50), "de", 0.8), prob=prob),
                      page(((10, 10), "abc", 0.9), ((10, 50), "de", 0.8), prob=prob), PipelineTolerances())
    assert p.passed and p.informative and len(p.matched) == 2 and p.prob_max_abs == 0.0


@pytest.mark.parametrize("target, problem", [
    (page(((10, 10), "abd", 0.9), ((10, 50), "de", 0.8)), "text 'abc' -> 'abd'"),
    (page(((12, 10), "abc", 0.9), ((10, 50), "de", 0.8)), "box moved 2 px"),
    (page(((10, 10), "abc", 0.95), ((10, 50), "de", 0.8)), "score 0.90000 -> 0.95000"),
    (page(((10, 10), "abc", 0.9)), "missing in target"),
    (page(((10, 10), "abc", 0.9), ((10, 50), "de", 0.8), ((10, 90), "x", 0.7)), "extra in target"),
])
def test_each_difference_fails(target, problem):
    p = compare_pages("p", page(((10, 10), "abc", 0.9), ((10, 50), "de", 0.8)), target, PipelineTolerances())
    assert not p.passed
    assert any(problem in msg for ln in p.lines for msg in ln.problems), [ln.problems for ln in p.lines]


def test_a_cer_tolerance_lets_a_near_text_through():
    src, tgt = page(((10, 10), "abc", 0.9)), page(((10, 10), "abd", 0.9))
    assert not compare_pages("p", src, tgt, PipelineTolerances()).passed
    assert compare_pages("p", src, tgt, PipelineTolerances(max_cer=0.34)).passed


def test_det_map_difference_fails():
    a, b = np.zeros((32, 32), np.float32), np.zeros((32, 32), np.float32)
    b[3, 3] = 0.01
    p = compare_pages("p", page(((10, 10), "abc", 0.9), prob=a), page(((10, 10), "abc", 0.9), prob=b),
                      PipelineTolerances())
    assert not p.passed and "det map max abs" in p.prob_problem


class Fake:
    """A stand-in pipeline: the same page result for every image."""
    def __init__(self, result, dictionary=("a",)):
        self.result, self.dictionary = result, dictionary

    def describe(self):
        return {"det": {"backend": "fake", "path": None}, "rec": {"backend": "fake", "path": None}}

    def __call__(self, image, keep_prob_map=None):
        return self.result


def test_pages_without_lines_are_inconclusive_not_passed():
    blank = np.full((64, 64, 3), 255, np.uint8)
    report = compare_pipelines(Fake(page()), Fake(page()), [blank, blank])
    assert report.verdict == "INCONCLUSIVE" and not report and report.informative_pages == 0
    report = compare_pipelines(Fake(page(((1, 1), "a", 0.9))), Fake(page(((1, 1), "a", 0.9))), [blank],
                               min_informative=2)
    assert report.verdict == "INCONCLUSIVE"
    report = compare_pipelines(Fake(page(((1, 1), "a", 0.9))), Fake(page(((1, 1), "a", 0.9))), [blank])
    assert report.verdict == "PASSED" and report
    assert json.loads(json.dumps(report.to_dict()))["totals"]["matched"] == 1


def test_missing_dictionary_is_named():
    blank = np.full((64, 64, 3), 255, np.uint8)
    report = compare_pipelines(Fake(page(((1, 1), "5 7", 0.9))), Fake(page(((1, 1), "5 7", 0.9)), dictionary=None),
                               [blank])
    assert any(NO_DICTIONARY in n for n in report.notes)
    assert NO_DICTIONARY in report.summary_line()


def test_html_report_is_self_contained_and_marks_differences():
    img = np.full((120, 200, 3), 255, np.uint8)
    src = page(((10, 10), "abc", 0.9), ((10, 50), "de", 0.8), prob=np.zeros((32, 32), np.float32))
    tgt = page(((10, 10), "abd", 0.9), ((10, 50), "de", 0.8), prob=np.full((32, 32), 0.1, np.float32))
    report = compare_pipelines(Fake(src), Fake(tgt), [("one", img)])
    text = render_html(report)
    assert not report and "FAILED" in text
    assert "<script" not in text and "http" not in text.replace("<!doctype html>", "")  # nothing fetched
    assert len(re.findall(r"src=\"data:image/png;base64,", text)) == 5  # 2 drawn pages, 2 maps, 1 difference
    assert 'class="differs"' in text and "abd" in text


# ---- the real PP-OCRv4 set ------------------------------------------------------------------------------
class Memo:
    """The source pipeline runs once per page across the tests (Paddle on 2 shared cores is slow)."""
    def __init__(self, pipeline):
        self.pipeline, self.dictionary, self.cache = pipeline, pipeline.dictionary, {}

    def describe(self):
        return self.pipeline.describe()

    def __call__(self, image, keep_prob_map=None):
        key = (image.shape, hash(image.tobytes()))
        if key not in self.cache:
            self.cache[key] = self.pipeline(image, keep_prob_map=True)
        return self.cache[key]


@pytest.fixture(scope="module")
def v4(zoo, converted):
    """The original PP-OCRv4 set, its ONNX conversion (paddle2onnx through the spine, shared with the other suites
    by ``converted``) and two test pages."""
    from ocrconvert.ocr import OcrPipeline
    from ocrconvert.ocr.pages import render_pages

    paths = {stage: converted(f"ppocrv4-{stage}", "onnx", route="paddle2onnx", verify=False).artifact.path
             for stage in ("det", "rec", "cls")}
    source = Memo(OcrPipeline.from_paths(zoo("ppocrv4-det"), zoo("ppocrv4-rec"), zoo("ppocrv4-cls")))
    pages = [(p.name, p.image, [ln.text for ln in p.lines]) for p in render_pages(2, seed=0)]
    return source, paths, pages


@pytest.mark.paddle
def test_converted_onnx_set_passes(v4):
    from ocrconvert.ocr import OcrPipeline

    source, paths, pages = v4
    report = compare_pipelines(source, OcrPipeline.from_paths(paths["det"], paths["rec"], paths["cls"]), pages)
    t = report.totals()
    assert report, report.summary_line()
    assert t["source_lines"] >= 10 and t["matched"] == t["source_lines"] == t["target_lines"]
    assert t["text_differences"] == 0 and t["worst_shift_px"] == 0


@pytest.mark.paddle
@pytest.mark.parametrize("route", [pytest.param("onnx2torch", marks=pytest.mark.torch),
                                   pytest.param("native", marks=pytest.mark.native)])
def test_converted_torch_set_passes(v4, converted, route):
    """The torch graph set (from the converted ONNX) and the native set (from the Paddle programs)."""
    from ocrconvert.ocr import OcrPipeline

    source, paths, pages = v4
    stages = {s: converted(paths[s] if route == "onnx2torch" else f"ppocrv4-{s}", "torch", route=route,
                           verify=False).artifact.path for s in ("det", "rec", "cls")}
    report = compare_pipelines(source, OcrPipeline.from_paths(stages["det"], stages["rec"], stages["cls"]), pages)
    t = report.totals()
    assert report, report.summary_line()
    assert t["matched"] == t["source_lines"] and t["text_differences"] == 0


@pytest.mark.paddle
def test_rec_conv_scaled_fails_with_the_difference_drawn(v4, tmp_path):
    from ocrconvert.ocr import OcrPipeline
    from ocrconvert.verification.pipeline_parity import write_html

    source, paths, pages = v4
    assert damaged_onnx(paths["rec"], tmp_path / "rec.onnx", "conv x1.02")
    target = OcrPipeline.from_paths(paths["det"], tmp_path / "rec.onnx", paths["cls"])
    report = compare_pipelines(source, target, pages)
    assert report.verdict == "FAILED"
    differing = [ln for p in report.pages for ln in p.lines if ln.status == "differs"]
    assert differing and all(ln.problems for ln in differing)
    html = write_html(report, tmp_path / "report.html").read_text()
    assert html.count('class="differs"') == len(differing)
    assert "FAILED" in html


@pytest.mark.paddle
def test_wrong_dictionary_fails(v4):
    from ocrconvert.ocr import OcrPipeline

    source, paths, pages = v4
    chars = list(source.dictionary)
    wrong = chars[1:] + chars[:1]  # same size, every class one entry off
    target = OcrPipeline.from_paths(paths["det"], paths["rec"], paths["cls"], dictionary=wrong)
    report = compare_pipelines(source, target, pages[:1])
    assert report.verdict == "FAILED" and report.totals()["text_differences"] > 0


@pytest.mark.paddle
def test_cli_pipeline_exit_codes_and_streams(v4, zoo, cli, tmp_path):
    from ocrconvert.ocr.pages import render_pages

    _, paths, _ = v4
    (tmp_path / "src.yaml").write_text("".join(f"{s}: {zoo(f'ppocrv4-{s}')}\n" for s in ("det", "rec", "cls")))
    (tmp_path / "onnx.yaml").write_text("".join(f"{s}: {paths[s]}\n" for s in ("det", "rec", "cls")))
    images = tmp_path / "pages"
    render_pages(1, seed=3)[0].save(images)
    ok = cli("verify", "--pipeline", tmp_path / "src.yaml", tmp_path / "onnx.yaml", "--images", images,
             "--report", tmp_path / "r.html")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().splitlines()[-1].startswith("PASSED | pipeline")
    assert "report:" in ok.stderr and (tmp_path / "r.html").is_file()

    assert damaged_onnx(paths["rec"], tmp_path / "bad" / "rec.onnx", "conv x1.02")
    (tmp_path / "bad.yaml").write_text(f"det: {paths['det']}\nrec: {tmp_path / 'bad' / 'rec.onnx'}\ncls: {paths['cls']}\n")
    bad = cli("verify", "--pipeline", tmp_path / "src.yaml", tmp_path / "bad.yaml", "--images", images, "--json")
    assert bad.returncode == 6, bad.stderr
    data = json.loads(bad.stdout)
    assert data["verdict"] == "FAILED" and data["kind"] == "pipeline"


def test_cli_refuses_per_model_options_with_pipeline(cli, tmp_path):
    proc = cli("verify", "--pipeline", tmp_path / "a.yaml", tmp_path / "b.yaml", "--dict", tmp_path / "d.txt")
    assert proc.returncode == 2 and "--dict" in proc.stderr and proc.stdout == ""
    proc = cli("verify", tmp_path / "a.onnx", tmp_path / "b.onnx", "--report", tmp_path / "r.html")
    assert proc.returncode == 2 and "--pipeline" in proc.stderr

