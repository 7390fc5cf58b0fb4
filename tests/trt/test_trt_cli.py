"""`ocrconvert trt-build`: exit codes, stdout vs stderr, nothing written without TensorRT, --export-only."""
from __future__ import annotations

import json

import pytest

from ocrconvert._compat import available
from ocrconvert.cli.app import main

needs_no_trt = pytest.mark.skipif(available("tensorrt"), reason="checks the behaviour without TensorRT")


def run(argv, capsys):
    with pytest.raises(SystemExit) as ei:
        main(argv)
    cap = capsys.readouterr()
    return ei.value.code, cap.out, cap.err


@needs_no_trt
def test_without_tensorrt_exit_4_and_nothing_written(onnx_model, tmp_path, capsys):
    out = tmp_path / "sub" / "model.engine"
    code, stdout, stderr = run(["trt-build", str(onnx_model("ppocrv4-cls-onnx")), "-o", str(out), "--fp16"], capsys)
    assert code == 4
    assert stdout == ""
    assert "tensorrt is not installed" in stderr and "pip install tensorrt" in stderr
    assert "Traceback" not in stderr
    assert not out.parent.exists()


@needs_no_trt
def test_without_tensorrt_json_error(onnx_model, tmp_path, capsys):
    code, stdout, _ = run(["trt-build", str(onnx_model("ppocrv4-cls-onnx")), "-o", str(tmp_path / "m.engine"),
                           "--json"], capsys)
    err = json.loads(stdout)
    assert code == 4 and err["error"] == "MissingDependencyError" and err["exit_code"] == 4
    assert list(tmp_path.iterdir()) == []


@needs_no_trt
def test_routes_lists_trt_build_as_missing_tensorrt(capsys):
    code, stdout, _ = run(["routes", "--json"], capsys)
    row = next(r for r in json.loads(stdout)["converters"] if r["name"] == "trt-build")
    assert code == 0 and (row["source"], row["target"]) == ("onnx", "tensorrt")
    assert row["available"] is False and row["missing"] == ["tensorrt"]


@pytest.mark.parametrize("extra, words", [
    (["--int8"], "--int8 needs --calib-images"),
    (["--fp16", "--int8", "--calib-images", "."], "one of --fp16 and --int8"),
    (["--shapes", "x:1x3x48x192"], "NAME:MIN:OPT:MAX"),
    (["--workspace", "0"], "--workspace"),
    (["--calib-images", "."], "only used with --int8"),
])
def test_usage_errors_exit_2(onnx_model, tmp_path, capsys, extra, words):
    code, stdout, stderr = run(["trt-build", str(onnx_model("ppocrv4-cls-onnx")), "-o", str(tmp_path / "m.engine"),
                                *extra], capsys)
    assert code == 2 and words in stderr and stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_output_or_export_only_required(onnx_model, capsys, tmp_path):
    code, _, stderr = run(["trt-build", str(onnx_model("ppocrv4-cls-onnx"))], capsys)
    assert code == 2 and "--export-only" in stderr
    code, _, stderr = run(["trt-build", str(onnx_model("ppocrv4-cls-onnx")), "-o", str(tmp_path / "m.engine"),
                           "--export-only", str(tmp_path / "d")], capsys)
    assert code == 2 and "exclude each other" in stderr


def test_export_only_fp16_without_tensorrt(onnx_model, tmp_path, capsys):
    dest = tmp_path / "export"
    code, stdout, stderr = run(["trt-build", str(onnx_model("ppocrv4-cls-onnx")), "--fp16", "--export-only",
                                str(dest), "--json"], capsys)
    assert code == 0, stderr
    res = json.loads(stdout)   # stdout is exactly one JSON document
    assert res["passed"] and res["precision"] == "fp16"
    assert sorted(p.name for p in dest.iterdir()) == ["model.fp16.onnx", "model.fp16.onnx.ocrconvert.json",
                                                      "profiles.json"]
    man = json.loads((dest / "model.fp16.onnx.ocrconvert.json").read_text())
    plan = man["tensorrt_plan"]
    assert plan["built"] is False and plan["precision"] == "fp16" and plan["strongly_typed"] is True
    assert plan["profiles"][0]["opt"] == [8, 3, 48, 192]
    assert "--stronglyTyped" in plan["trtexec"] and "--optShapes=x:8x3x48x192" in plan["trtexec"]
    assert man["verification"]["passed"] and man["source"]["format"] == "onnx"
    assert json.loads((dest / "profiles.json").read_text())[0]["name"] == "x"


def test_export_only_int8_with_calibration(onnx_model, calib_cls, tmp_path, capsys):
    dest = tmp_path / "export8"
    code, stdout, stderr = run(["trt-build", str(onnx_model("ppocrv4-cls-onnx")), "--int8", "--calib-images",
                                str(calib_cls), "--shapes", "x:1x3x48x192:8x3x48x192:16x3x48x192",
                                "--export-only", str(dest)], capsys)
    assert code == 0, stderr
    assert "TensorRT not run" in stdout and "not judged (INT8, random noise)" in stdout
    assert "Collecting tensor data" not in stdout   # ORT's calibration prints stay off stdout
    man = json.loads((dest / "model.int8.onnx.ocrconvert.json").read_text())
    assert man["tensorrt_plan"]["calibration"]["images"] == 16
    assert man["verification"]["informational_cases"]


def test_export_only_bad_calib_folder_is_usage_error(onnx_model, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, stderr = run(["trt-build", str(onnx_model("ppocrv4-cls-onnx")), "--int8", "--calib-images",
                           str(tmp_path / "empty"), "--export-only", str(tmp_path / "out")], capsys)
    assert code == 2 and "holds no images" in stderr
    assert not (tmp_path / "out").exists()
