"""convert-set on the real PP-OCRv4 mobile set (det + cls + rec, the dictionary beside them), end to end.

One good conversion to ONNX through the CLI (each stage verified against Paddle, then the whole set against the
Paddle set), loaded with ``ocrconvert.load_set`` and reading a rendered page; a set whose rec stage the converter
damages lands only under ``OUT.FAILED``; a corrupt stage and a run that dies half way leave nothing behind."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

import ocrconvert
from ocrconvert.errors import ConversionError, ExitCode, ParityError
from ocrconvert.formats import SET_FILE
from ocrconvert.pipeline import convert_set

sys.path.insert(0, str(Path(__file__).parents[1] / "verification"))
from _damage import damaged_onnx  # noqa: E402

pytestmark = [pytest.mark.zoo, pytest.mark.paddle]


def _paddle_set(root: Path, zoo, *, cls: bool = True) -> Path:
    """A PaddleOCR-style set folder: model folders under release names, the dictionary beside them (not in the
    rec folder), so it has to travel from the set into the converted rec stage."""
    names = {"det": ("ppocrv4-det", "ch_PP-OCRv4_det_infer"), "rec": ("ppocrv4-rec", "ch_PP-OCRv4_rec_infer")}
    if cls:
        names["cls"] = ("ppocrv4-cls", "ch_ppocr_mobile_v2.0_cls_infer")
    for zoo_name, folder in names.values():
        (root / folder).mkdir(parents=True)
        for f in Path(zoo(zoo_name)).iterdir():
            if f.suffix in (".pdmodel", ".pdiparams"):
                os.symlink(f, root / folder / f.name)
    os.symlink(Path(zoo("ppocrv4-rec")) / "ppocr_keys_v1.txt", root / "ppocr_keys_v1.txt")
    return root


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".ocx-"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory, zoo):
    """convert-set v4 -> onnx through the real CLI: (completed process, OUT, source set)."""
    import subprocess
    import time

    root = tmp_path_factory.mktemp("set")
    src = _paddle_set(root / "ppocrv4", zoo)
    out = root / "out"
    env = dict(os.environ, PYTHONWARNINGS="ignore", COLUMNS="200")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ocrconvert", "convert-set", str(src), "-o", str(out), "--to", "onnx",
                           "--json"], capture_output=True, text=True, env=env, timeout=1200)
    print(f"convert-set v4 -> onnx: {time.perf_counter() - t0:.1f} s")
    return proc, out, src


@pytest.mark.slow
def test_convert_set_v4_onnx(converted):
    proc, out, src = converted
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)  # stdout is the JSON result only; progress went to stderr
    assert "[rec] verifying against the original source" in proc.stderr and "[set]" in proc.stderr
    assert doc["passed"] and doc["status"] == "verified" and doc["path"] == str(out)
    assert {k: v["verdict"] for k, v in doc["stages"].items()} == {"det": "PASSED", "cls": "PASSED", "rec": "PASSED"}
    assert doc["pipeline_verification"]["verdict"] == "PASSED"
    assert doc["pipeline_verification"]["totals"]["text_differences"] == 0
    record = yaml.safe_load((out / SET_FILE).read_text())
    assert record["target"] == "onnx" and record["dictionary"] == "rec/dict.txt"
    assert record["stages"]["rec"]["route"] == ["paddle2onnx"] and record["source_set"]["kind"] == "paddle-folder"
    for stage in ("det", "cls", "rec"):
        man = json.loads((out / stage / "model.onnx.ocrconvert.json").read_text())
        assert man["status"] == "verified" and man["artifact"]["path"] == str(out / stage / "model.onnx")
    assert (out / "rec" / "dict.txt").read_text(encoding="utf-8").split("\n")[:3] == \
        Path(src / "ppocr_keys_v1.txt").read_text(encoding="utf-8").split("\n")[:3]
    assert (out / "pipeline-parity.html").is_file()
    assert not _leftovers(out.parent) and not (out.parent / "out.FAILED").exists()


@pytest.mark.slow
def test_load_set_reads_a_rendered_page(converted):
    from ocrconvert.ocr.pages import render_page

    proc, out, _ = converted
    assert proc.returncode == 0, proc.stderr[-3000:]
    ocr = ocrconvert.load_set(out)
    assert {ocr.describe()[s]["backend"] for s in ("det", "cls", "rec")} == {"onnxruntime"}
    page = render_page(3, "clean")
    result = ocr(page.image)
    # PP-OCRv4's Chinese model has no space class: compare without spaces
    truth = {line.text.replace(" ", "") for line in page.lines}
    read = [line.text.replace(" ", "") for line in result.lines]
    assert len(result.lines) >= len(page.lines) - 1
    assert sum(t in truth for t in read) >= 0.8 * len(page.lines), (read, sorted(truth))
    for line in result.lines:
        assert line.box.shape == (4, 2) and 0.0 <= line.score <= 1.0 and line.angle in (0, 180)


@pytest.mark.slow
def test_a_converted_set_is_judged_against_its_original_set(converted):
    """Converting a converted set again: the pipeline reference is the ORIGINAL Paddle set, found through each
    stage's manifest, not the intermediate ONNX set."""
    from ocrconvert.ocr.modelset import read_set
    from ocrconvert.pipeline import original_set

    proc, out, src = converted
    assert proc.returncode == 0
    ref = original_set(read_set(out))
    assert {k: Path(v) for k, v in ref.stages.items()} == {k: p.resolve() for k, p in read_set(src).stages.items()}
    assert ref.origin.path == src.resolve()
    assert original_set(read_set(src)).stages == read_set(src).stages  # an original is its own reference


@pytest.mark.slow
def test_replacing_a_set_needs_force(converted, cli):
    proc, out, src = converted
    assert proc.returncode == 0
    again = cli("convert-set", src, "-o", out, "--to", "onnx", check=2)
    assert "already exists" in again.stderr and "--force" in again.stderr and again.stdout == ""


@pytest.mark.slow
def test_a_stage_that_fails_verification_fails_the_set(tmp_path, zoo, monkeypatch):
    """The converter damages the rec stage (its last conv x1.02): rec FAILS against Paddle, the pages differ, and the
    set lands only under OUT.FAILED (never under OUT), refused by load_set unless asked."""
    from ocrconvert.converters.paddle_onnx import PaddleToOnnx

    real = PaddleToOnnx.convert

    def damaging(self, source, dest, options):
        hop = real(self, source, dest, options)
        if "rec" in source.path.name:
            assert damaged_onnx(hop.artifact.path, hop.artifact.path, "conv x1.02") is not None
        return hop

    monkeypatch.setattr(PaddleToOnnx, "convert", damaging)
    src = _paddle_set(tmp_path / "ppocrv4", zoo, cls=False)
    out = tmp_path / "out"
    result = convert_set(src, out, to="onnx")
    assert not result.passed and result.path == tmp_path / "out.FAILED"
    assert not out.exists() and not _leftovers(tmp_path)
    record = yaml.safe_load((result.path / SET_FILE).read_text())
    assert record["status"] == "failed-verification"
    assert record["stages"]["det"]["verdict"] == "PASSED" and record["stages"]["rec"]["verdict"] == "FAILED"
    assert record["stages"]["rec"]["path"] == "rec/model.FAILED.onnx"
    assert record["pipeline_verification"]["verdict"] == "FAILED"
    with pytest.raises(ParityError):
        ocrconvert.load_set(result.path)
    assert ocrconvert.load_set(result.path, allow_failed=True).rec_runner is not None


def test_corrupt_stage_writes_nothing(tmp_path, zoo, cli):
    src = _paddle_set(tmp_path / "ppocrv4", zoo, cls=False)
    params = src / "ch_PP-OCRv4_rec_infer" / "inference.pdiparams"
    data = Path(os.readlink(params)).read_bytes()
    params.unlink()
    params.write_bytes(data[: len(data) // 3])  # truncated weights
    proc = cli("convert-set", src, "-o", tmp_path / "out", "--to", "onnx")
    assert proc.returncode in (ExitCode.UNSUPPORTED, ExitCode.CONVERSION_FAILED), proc.stderr
    assert "error:" in proc.stderr and "hint:" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.FAILED").exists()
    assert not _leftovers(tmp_path)


def test_a_run_that_dies_half_way_leaves_nothing(tmp_path, zoo, monkeypatch):
    import ocrconvert.pipeline as spine

    real, calls = spine.convert, []

    def dying(source, output, **kw):
        calls.append(Path(source).name)
        if len(calls) == 2:
            raise ConversionError("the rec stage's converter died")
        return real(source, output, **{**kw, "verify": False})

    monkeypatch.setattr(spine, "convert", dying)
    src = _paddle_set(tmp_path / "ppocrv4", zoo, cls=False)
    with pytest.raises(ConversionError):
        spine.convert_set(src, tmp_path / "out", to="onnx")
    assert calls == ["ch_PP-OCRv4_det_infer", "ch_PP-OCRv4_rec_infer"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ppocrv4"]


@pytest.mark.parametrize("args, words", [
    (["--to", "onnx", "-o", "{src}/out"], "would write over or into the source"),
    (["--to", "tflite", "-o", "{tmp}/out"], "is not a set target"),
    (["--to", "torch-native", "--opset", "13", "-o", "{tmp}/out"], "cannot be honoured"),
])
def test_usage_errors(tmp_path, zoo, cli_here, args, words):
    src = _paddle_set(tmp_path / "ppocrv4", zoo, cls=False)
    args = [a.format(src=src, tmp=tmp_path) for a in args]
    proc = cli_here("convert-set", src, *args, "--json")
    assert proc.code == ExitCode.USAGE, proc.stderr
    doc = json.loads(proc.stdout)
    assert words in doc["message"] and doc["hint"] and doc["exit_code"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ppocrv4"]
