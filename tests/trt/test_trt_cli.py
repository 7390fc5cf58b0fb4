"""`ocrconvert trt-build`: exit codes, stdout vs stderr, nothing written without TensorRT, and --export-only
(the trt-export route) through the spine."""
from __future__ import annotations

import json

import pytest

from ocrconvert._compat import available
from ocrconvert.cli.app import main

needs_no_trt = pytest.mark.skipif(available("tensorrt"),
                                  reason="TensorRT is installed here: this checks the behaviour without it")
CLS_SHAPES = ["--shapes", "x:1x3x48x192:8x3x48x192:16x3x48x192"]


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


def test_routes_lists_trt_build_and_trt_export(capsys):
    code, stdout, _ = run(["routes", "--json"], capsys)
    rows = {r["name"]: r for r in json.loads(stdout)["converters"]}
    assert code == 0
    build, export = rows["trt-build"], rows["trt-export"]
    assert (build["source"], build["target"]) == ("onnx", "tensorrt")
    assert (export["source"], export["target"]) == ("onnx", "tensorrt-plan")
    assert export["available"] is True and export["missing"] == []
    assert build["options"] == export["options"]   # one options record, TrtOptions
    assert {"precision", "calib_images", "calib_cache", "shapes", "timing_cache", "workspace_gib",
            "family"} <= set(build["options"])


@needs_no_trt
def test_routes_shows_trt_build_unavailable_without_tensorrt(capsys):
    code, stdout, _ = run(["routes", "--json"], capsys)
    build = next(r for r in json.loads(stdout)["converters"] if r["name"] == "trt-build")
    assert code == 0 and build["available"] is False and build["missing"] == ["tensorrt"]


def test_routes_shows_trt_build_available_with_tensorrt(fake_trt10, capsys):
    code, stdout, _ = run(["routes", "--json"], capsys)
    build = next(r for r in json.loads(stdout)["converters"] if r["name"] == "trt-build")
    assert code == 0 and build["available"] is True and build["missing"] == []


@pytest.mark.parametrize("extra, words", [
    (["--int8"], "--int8 needs --calib-images"),
    (["--fp16", "--int8", "--calib-images", "."], "one of --fp16 and --int8"),
    (["--shapes", "x:1x3x48x192"], "NAME:MIN:OPT:MAX"),
    (["--workspace", "0"], "--workspace"),
    (["--calib-images", "."], "only used with --int8"),
    (["--calib-method", "minmax"], "only used with --int8"),
    (["--timing-cache", "."], "is a folder"),
    (["--family", "det-east"], "unknown model family"),
])
def test_usage_errors_exit_2(onnx_model, tmp_path, capsys, extra, words):
    code, stdout, stderr = run(["trt-build", str(onnx_model("ppocrv4-cls-onnx")), "-o", str(tmp_path / "m.engine"),
                                *extra], capsys)
    assert code == 2 and words in stderr and stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_output_or_export_only_required(onnx_model, capsys, tmp_path):
    src = str(onnx_model("ppocrv4-cls-onnx"))
    code, _, stderr = run(["trt-build", src], capsys)
    assert code == 2 and "--export-only" in stderr
    code, _, stderr = run(["trt-build", src, "-o", str(tmp_path / "m.engine"), "--export-only", str(tmp_path / "d")],
                          capsys)
    assert code == 2 and "exclude each other" in stderr
    code, _, stderr = run(["trt-build", src, "-o", str(tmp_path / "m.onnx")], capsys)
    assert code == 2 and "should end in .engine" in stderr


def test_export_refuses_engine_only_options(onnx_model, tmp_path, capsys):
    code, _, stderr = run(["trt-build", str(onnx_model("ppocrv4-cls-onnx")), "--export-only", str(tmp_path / "d"),
                           "--timing-cache", str(tmp_path / "t.cache")], capsys)
    assert code == 2 and "only apply to an engine build" in stderr
    assert list(tmp_path.iterdir()) == []


def test_export_only_fp16_through_the_spine(onnx_model, tmp_path, capsys):
    import ocrconvert

    dest = tmp_path / "export"
    code, stdout, stderr = run(["trt-build", str(onnx_model("ppocrv4-cls-onnx")), "--fp16", "--export-only",
                                str(dest), "--json"], capsys)
    assert code == 0, stderr
    res = json.loads(stdout)   # stdout is exactly one JSON document
    assert res["passed"] and res["verified"] and res["route"] == ["trt-export"]
    assert res["hops"][0]["produced"]["precision"] == "fp16" and res["hops"][0]["options"]["precision"] == "fp16"
    assert sorted(p.name for p in dest.iterdir()) == ["model.fp16.onnx", "ocrconvert.json", "profiles.json"]
    man = json.loads((dest / "ocrconvert.json").read_text())
    assert man["precision"] == "fp16" and man["status"] == "verified"
    assert [h["produced"]["precision"] for h in man["hops"]] == ["fp16"]
    plan = man["tensorrt_plan"]
    assert plan["built"] is False and plan["precision"] == "fp16" and plan["strongly_typed"] is True
    assert plan["onnx"] == "model.fp16.onnx" and plan["profiles"][0]["opt"] == [8, 3, 48, 192]
    assert "--stronglyTyped" in plan["trtexec"] and "--optShapes=x:8x3x48x192" in plan["trtexec"]
    assert man["verification"]["passed"] and man["verification"]["tolerances"]["precision"] == "fp16"
    assert man["source"]["format"] == "onnx" and man["model_metadata"]["ocrconvert.family"] == "cls"
    assert man["artifact"]["path"] == str(dest) and man["io"]["inputs"][0]["name"] == "x"
    assert json.loads((dest / "profiles.json").read_text())[0]["name"] == "x"
    runner = ocrconvert.load(dest)   # the folder loads as its prepared ONNX
    assert runner.backend == "onnxruntime" and runner.artifact.path.name == "model.fp16.onnx"


def test_export_only_into_existing_folder_needs_force(onnx_model, tmp_path, capsys):
    src, dest = str(onnx_model("ppocrv4-cls-onnx")), tmp_path / "export"
    assert run(["trt-build", src, "--export-only", str(dest), "--no-verify"], capsys)[0] == 0
    before = (dest / "ocrconvert.json").read_text()
    code, stdout, stderr = run(["trt-build", src, "--fp16", "--export-only", str(dest), "--no-verify"], capsys)
    assert code == 2 and "already exists" in stderr and "--force" in stderr and stdout == ""
    assert sorted(p.name for p in dest.iterdir()) == ["model.fp32.onnx", "ocrconvert.json", "profiles.json"]
    assert (dest / "ocrconvert.json").read_text() == before
    code, _, stderr = run(["trt-build", src, "--fp16", "--export-only", str(dest), "--no-verify", "--force"], capsys)
    assert code == 0, stderr
    assert sorted(p.name for p in dest.iterdir()) == ["model.fp16.onnx", "ocrconvert.json", "profiles.json"]
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    code, _, stderr = run(["trt-build", src, "--export-only", str(foreign), "--no-verify", "--force"], capsys)
    assert code == 2 and "did not write" in stderr and [p.name for p in foreign.iterdir()] == ["todo.txt"]


def test_damaged_export_fails_verification_and_lands_failed(onnx_model, tmp_path, capsys, monkeypatch):
    """Negative control: the spine's check of the prepared ONNX can fail; the plan is never committed as good."""
    import numpy as np
    from onnx import numpy_helper

    from ocrconvert.tensorrt import plan

    real = plan.cast_fp16

    def damaged(model, **kwargs):
        out = real(model, **kwargs)
        conv = next(n for n in out.graph.node if n.op_type == "Conv")
        w = next(i for i in out.graph.initializer if i.name == conv.input[1])
        w.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(w) * np.float16(3), w.name))
        return out

    monkeypatch.setattr(plan, "cast_fp16", damaged)
    dest = tmp_path / "export"
    code, stdout, _ = run(["trt-build", str(onnx_model("ppocrv4-cls-onnx")), "--fp16", "--export-only", str(dest),
                           "--json"], capsys)
    res = json.loads(stdout)
    assert code == 6 and res["passed"] is False
    assert not dest.exists()
    failed = tmp_path / "export.FAILED"
    assert json.loads((failed / "ocrconvert.json").read_text())["status"] == "failed-verification"


def test_export_only_int8_with_calibration(onnx_model, calib_cls, tmp_path, capsys):
    """The INT8 Q/DQ cls model (16 calibration lines) fails on the seeded hard lines (measured: cosine 0.95, max
    abs 0.35); the clean lines agree but are saturated, so they carry no signal. The plan lands FAILED, exit 6."""
    dest = tmp_path / "export8"
    code, stdout, stderr = run(["trt-build", str(onnx_model("ppocrv4-cls-onnx")), "--int8", "--calib-images",
                                str(calib_cls), *CLS_SHAPES, "--export-only", str(dest)], capsys)
    assert code == 6, stderr
    assert "TensorRT not run" in stdout and "loose INT8 gate (random noise)" in stdout
    assert "Collecting tensor data" not in stdout   # ORT's calibration prints stay off stdout
    assert not dest.exists()
    man = json.loads((tmp_path / "export8.FAILED" / "ocrconvert.json").read_text())
    assert man["status"] == "failed-verification" and man["precision"] == "int8"
    assert man["tensorrt_plan"]["calibration"]["images"] == 16
    assert man["hops"][0]["produced"]["calibration"]["batches"] == 2
    ver = man["verification"]
    randoms = [c for c in ver["cases"] if c["kind"] == "random"]
    assert randoms and all(c["gate"] and not c["informative"] for c in randoms)   # the family's INT8 gates
    assert ver["weights"]["checked"] > 50 and ver["weights"]["passed"]   # Q/DQ weights within a step of the source
    hard = next(c for c in ver["cases"] if c["label"].startswith("synthetic: hard lines"))
    assert hard["passed"] is False and "cosine" in json.dumps(hard)


def test_export_only_bad_calib_folder_is_usage_error(onnx_model, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, stderr = run(["trt-build", str(onnx_model("ppocrv4-cls-onnx")), "--int8", "--calib-images",
                           str(tmp_path / "empty"), "--export-only", str(tmp_path / "out")], capsys)
    assert code == 2 and "holds no images" in stderr
    assert not (tmp_path / "out").exists()
