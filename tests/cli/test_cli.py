"""The CLI contract: results on stdout, logs/errors on stderr, --json, documented exit codes."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = [pytest.mark.zoo]


def test_routes_json_lists_converters_and_availability(cli):
    p = cli("routes", "--json", check=0)
    data = json.loads(p.stdout)
    keys = {(c["source"], c["target"], c["name"]) for c in data["converters"]}
    assert {("paddle", "onnx", "paddle2onnx"), ("onnx", "torch", "onnx2torch"), ("torch", "onnx", "torch2onnx"),
            ("paddle", "torch", "native")} <= keys
    trt = next(c for c in data["converters"] if c["target"] == "tensorrt")
    from ocrconvert._compat import available

    # where TensorRT is installed the route is available (tests/trt checks that side with the fakes)
    assert trt["available"] is available("tensorrt") and trt["missing"] == ([] if available("tensorrt") else ["tensorrt"])


def test_version(cli):
    import ocrconvert

    assert cli("--version", check=0).stdout.strip() == f"ocrconvert {ocrconvert.__version__}"


def test_zoo_list_json(cli):
    data = json.loads(cli("zoo", "list", "--json", check=0).stdout)
    names = {m["name"] for m in data["models"]}
    assert {"ppocrv4-det", "ppocrv4-rec", "ppocrv4-cls", "ppocrv5-mobile-det", "ppocrv5-mobile-rec",
            "ppocrv4-det-onnx", "ppocrv5-mobile-rec-onnx"} <= names


def test_zoo_pull_unknown_name_suggests(cli):
    p = cli("zoo", "pull", "ppocrv4-recc", check=2)
    assert "no zoo model named" in p.stderr and "ppocrv4-rec" in p.stderr
    assert p.stdout == ""


@pytest.mark.paddle
@pytest.mark.parametrize("name,fmt,family", [("ppocrv4-rec", "paddle-legacy", "rec-ctc"),
                                             ("ppocrv5-mobile-det", "paddle-pir", "det-db"),
                                             ("ppocrv4-cls-onnx", "onnx", "cls")])
def test_inspect_json(cli, zoo, name, fmt, family):
    d = json.loads(cli("inspect", zoo(name), "--json", check=0).stdout)
    assert d["format"] == fmt and d["family"] == family
    assert d["parameters"] > 100_000
    assert d["inputs"][0]["name"] == "x" and d["inputs"][0]["shape"][0] == "?"
    assert sum(d["ops"].values()) > 50
    if name == "ppocrv4-rec":
        assert d["dictionary_size"] == 6623
    if fmt == "onnx":
        assert d["opset"] == 11


@pytest.mark.paddle
def test_verify_fails_with_exit_6_on_a_tampered_model(cli_here, zoo, tmp_path):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(zoo("ppocrv4-cls-onnx") / "model.onnx"))
    for node in model.graph.node:  # Paddle-exported: weights are Constant nodes
        if node.op_type == "Constant":
            t = node.attribute[0].t
            arr = numpy_helper.to_array(t)
            if arr.dtype == np.float32 and arr.ndim == 4:
                node.attribute[0].t.CopyFrom(numpy_helper.from_array(arr * 1.05, t.name))
                break
    onnx.save(model, str(tmp_path / "tampered.onnx"))
    p = cli_here("verify", zoo("ppocrv4-cls"), tmp_path / "tampered.onnx", check=6)
    assert "FAILED |" in p.stdout.splitlines()[-1]
    d = json.loads(cli_here("verify", zoo("ppocrv4-cls"), tmp_path / "tampered.onnx", "--json", check=6).stdout)
    assert d["passed"] is False and d["cases"][0]["outputs"][0]["max_abs"] > 1e-4


@pytest.mark.paddle
@pytest.mark.torch
def test_paddle2torch_cli_prints_table_and_passed_line(cli_here, zoo, tmp_path):
    out = tmp_path / "cls_torch"
    p = cli_here("paddle2torch", zoo("ppocrv4-cls"), "-o", out, "--route", "graph", check=0)
    lines = p.stdout.strip().splitlines()
    assert any(l.startswith("PASSED | torch vs paddle (cls)") for l in lines)
    assert "class agreement" in p.stdout and "max abs" in p.stdout
    assert "manifest:" in p.stderr and "Traceback" not in p.stderr
    assert (out / "ocrconvert.json").is_file() and (out / "model.safetensors").is_file()
    # --json: only JSON on stdout
    d = json.loads(cli_here("paddle2torch", zoo("ppocrv4-cls"), "-o", tmp_path / "again", "--route", "graph", "--json",
                       "--no-verify", check=0).stdout)
    assert d["verified"] is False and d["route"] == ["paddle2onnx", "onnx2torch"]


@pytest.mark.paddle
@pytest.mark.torch
def test_torch_artifact_loads_without_unpickling(zoo, tmp_path, monkeypatch):
    """The graph artifact is rebuilt from its description + safetensors; pickle is never called."""
    import pickle

    import ocrconvert

    res = ocrconvert.convert(zoo("ppocrv4-cls"), tmp_path / "t", target="torch", route="onnx2torch", verify=False)

    def boom(*a, **k):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    import torch

    monkeypatch.setattr(torch, "load", boom)
    out = ocrconvert.load(res.artifact.path).infer({"x": np.zeros((3, 3, 48, 192), np.float32)})
    assert list(out.values())[0].shape == (3, 2)


@pytest.mark.torch
def test_parity_failure_exits_6_and_never_commits_under_the_final_name(cli_here, zoo, tmp_path):
    """Tolerances of zero cannot be met by a re-implemented graph: exit 6, FAILED line; the artifact lands only
    under its FAILED name with a manifest recording the failure, and ocrconvert.load refuses it unless asked."""
    import ocrconvert
    from ocrconvert.errors import ParityError

    out = tmp_path / "strict"
    p = cli_here("onnx2torch", zoo("ppocrv4-cls-onnx"), "-o", out, "--atol", "0", "--rtol", "0", check=6)
    assert p.stdout.strip().splitlines()[-2].startswith("FAILED |")
    assert not out.exists()
    failed = tmp_path / "strict.FAILED"
    man = json.loads((failed / "ocrconvert.json").read_text())
    assert man["verification"]["passed"] is False and man["status"] == "failed-verification"
    assert man["verification"]["target"] == str(out)  # not the staging path
    assert any(not c["passed"] for c in man["verification"]["cases"])
    with pytest.raises(ParityError):
        ocrconvert.load(failed)
    import numpy as np

    out = ocrconvert.load(failed, allow_failed=True).infer({"x": np.zeros((2, 3, 48, 192), np.float32)})
    assert next(iter(out.values())).shape == (2, 2)  # kept for examination, on request
    d = json.loads(cli_here("onnx2torch", zoo("ppocrv4-cls-onnx"), "-o", tmp_path / "s2.onnx", "--atol", "0", "--rtol",
                       "0", "--json", check=6).stdout)
    assert d["passed"] is False and d["verification"]["passed"] is False
    assert [x.name for x in tmp_path.iterdir() if x.name.startswith("s2")] == ["s2.onnx.FAILED"]


@pytest.mark.parametrize("args", [["bench"], ["paddle2onnx"], ["paddle2onnx", "x", "-o", "y", "--opset", "99"],
                                  ["verify", "only-one"], ["no-such-command"]])
def test_bad_usage_exits_2_with_a_message_and_no_traceback(cli_here, args):
    p = cli_here(*args, check=2)
    assert "Traceback" not in p.stderr and "error" in p.stderr.lower()
    assert p.stdout == ""
