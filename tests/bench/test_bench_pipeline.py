"""``ocrconvert bench --pipeline``: whole OCR model sets side by side, each in its own child process."""
from __future__ import annotations

import pytest

from _bench_helpers import as_json, run_bench_cli


@pytest.fixture(scope="module")
def two_sets(zoo, tmp_path_factory):
    """Two small sets: the PP-OCRv4 ONNX models with and without the direction classifier; one small page."""
    from ocrconvert.families.imaging import render_page

    root = tmp_path_factory.mktemp("sets")
    det, rec, cls = (zoo(f"ppocrv4-{s}-onnx") for s in ("det", "rec", "cls"))
    (root / "with-cls.yaml").write_text(f"det: {det}\nrec: {rec}\ncls: {cls}\n")
    (root / "no-cls.yaml").write_text(f"det: {det}\nrec: {rec}\n")
    (root / "pages").mkdir()
    render_page(size=(480, 240)).save(root / "pages" / "page.png")
    return root


def test_two_sets_side_by_side(two_sets):
    proc = run_bench_cli("--pipeline", two_sets / "with-cls.yaml", two_sets / "no-cls.yaml", "--images",
                         two_sets / "pages", "--runs", 2, "--rounds", 2, "--warmup", 0, "--json")
    assert proc.returncode == 0, proc.stderr
    data = as_json(proc)
    assert data["pipeline"] is True and data["pages"] == ["page.png"] and data["passed"]
    with_cls, no_cls = data["results"]
    for r in (with_cls, no_cls):
        assert r["kind"] == "ocr-set" and r["throughput"] > 0 and len(r["runs_ms"]) == 2 and r["peak_mem_mb"] > 0
        assert {"det", "crop", "cls", "rec"} <= set(r["stages"])
        assert r["stages"]["det"]["p10_ms"] <= r["stages"]["det"]["median_ms"] <= r["stages"]["det"]["p90_ms"]
        # the stages are parts of the pass (reading the page is outside: it is decoded once, before timing)
        assert sum(s["median_ms"] for s in r["stages"].values()) <= r["median_ms"] * 1.5
    assert with_cls["stages"]["cls"]["median_ms"] > 1 and no_cls["stages"]["cls"]["median_ms"] < 1  # no classifier
    assert with_cls["ratio"] == 1.0 and no_cls["ratio"] > 0


def test_table_and_one_summary_line(two_sets):
    proc = run_bench_cli("--pipeline", two_sets / "no-cls.yaml", "--images", two_sets / "pages", "--runs", 1,
                         "--warmup", 0)
    assert proc.returncode == 0, proc.stderr
    assert "pages/s" in proc.stdout and "rec ms" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("PASSED | 1 model set(s) ran")


@pytest.mark.parametrize("args, message", [
    (("--pipeline", "nowhere.yaml"), "does not exist"),
    (("--pipeline", "x.yaml", "--shape", "1x3x48x320"), "--shape"),
])
def test_refused_before_any_work(args, message, tmp_path):
    (tmp_path / "x.yaml").write_text("det: a\n")
    proc = run_bench_cli(*[tmp_path / a if a.endswith(".yaml") else a for a in args])
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_images_without_pipeline_is_refused(tmp_path):
    proc = run_bench_cli(tmp_path / "m.onnx", "--images", tmp_path)
    assert proc.returncode == 2 and "--pipeline" in proc.stderr
