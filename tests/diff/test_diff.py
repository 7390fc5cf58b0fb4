"""``ocrconvert diff``: a conv whose weights are scaled x1.05 is named, exactly (or its immediate output in the aligned
view), for Paddle -> ONNX, Paddle -> native torch, ONNX -> graph torch and native -> AOT; the undamaged pair of each
route reports no divergence. Every artifact is converted once per session (``converted``, shared with other suites) and
damaged in a copy that keeps its manifest, whose name maps the hops recorded at conversion time.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from ocrconvert.manifest import manifest_path
from ocrconvert.verification.diff import diff_artifacts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verification"))
from _damage import _constants_to_initializers, scale_conv  # noqa: E402

pytestmark = [pytest.mark.zoo, pytest.mark.paddle]
FACTOR = 1.05


@pytest.fixture(scope="module")
def built(converted):
    """Each artifact built once per session (``converted``, shared with tests/integration and tests/verification;
    the ONNX and graph ones verified, as tests/integration needs them): {name: path}. Damage copies only."""
    paddle, route = {"det": "ppocrv4-det", "cls": "ppocrv4-cls"}, {"onnx": "paddle2onnx", "native": "native"}

    def get(name: str) -> Path:
        model, kind = name.split("-")
        if kind == "graph":
            return converted(get(f"{model}-onnx"), "torch", route="onnx2torch").artifact.path
        return converted(paddle[model], "onnx" if kind == "onnx" else "torch", route=route[kind],
                         verify=kind == "onnx").artifact.path

    return get


def _copy(src: Path, dst: Path) -> Path:
    """A copy of an artifact with its manifest (the name maps live there)."""
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy(src, dst)
        shutil.copy(manifest_path(src), manifest_path(dst))
    return dst


def _named(report, expected_target: str) -> None:
    """The first divergence is the damaged layer, or the first aligned layer downstream of it."""
    first = report.first
    assert first is not None, report.summary_line()
    assert first.target == expected_target, (report.summary_line(), [n.to_dict() for n in report.neighbours(first)])
    assert first.rel > 10 * first.tolerance
    before = [r for r in report.layers if r.depth < first.depth]
    assert before and all(not r.exceeded for r in before)


def _scale_safetensors(folder: Path, key: str, factor: float = FACTOR) -> None:
    from safetensors.numpy import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    tensors[key] = tensors[key] * np.float32(factor)
    save_file(tensors, str(path), metadata={"format": "pt"})


# ---- Paddle -> ONNX ---------------------------------------------------------------------------------------
def test_paddle_onnx_map_is_recorded_and_checked(built):
    man = json.loads(manifest_path(built("det-onnx")).read_text())
    m = man["hops"][0]["produced"]["name_map"]
    assert (m["source"], m["target"], m["rejected"]) == ("paddle", "onnx", 0)
    pairs = dict(m["pairs"])
    assert len(pairs) > 100
    assert pairs["conv2d_450.tmp_0"] == "p2o.pd_op.conv2d.0.0"  # paddle2onnx 2.x names the PIR translation's values


def test_paddle_onnx_undamaged_passes(built, zoo):
    report = diff_artifacts(zoo("ppocrv4-det"), built("det-onnx"))
    assert report.passed, report.summary_line()
    assert len(report.layers) > 100 and report.alignment.startswith("recorded name maps")


def test_paddle_onnx_scaled_conv_is_named(built, zoo, tmp_path):
    import onnx

    dst = _copy(built("det-onnx"), tmp_path / "damaged.onnx")
    model = onnx.load(str(dst))
    _constants_to_initializers(model)
    weight = scale_conv(model, FACTOR, which=20)
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and n.input[1] == weight)
    onnx.save(model, str(dst))
    report = diff_artifacts(zoo("ppocrv4-det"), dst)
    _named(report, conv.output[0])
    assert report.first.op == "conv2d"


# ---- Paddle -> native torch -------------------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.native
def test_paddle_native_undamaged_passes(built, zoo):
    report = diff_artifacts(zoo("ppocrv4-det"), built("det-native"))
    assert report.passed, report.summary_line()
    assert len(report.layers) > 100


@pytest.mark.torch
@pytest.mark.native
def test_paddle_native_scaled_conv_is_named(built, zoo, tmp_path):
    dst = _copy(built("det-native"), tmp_path / "damaged-native")
    _scale_safetensors(dst, "model.neck.input_conv.1.in_conv.weight")  # the fused form keeps this conv as is
    report = diff_artifacts(zoo("ppocrv4-det"), dst)
    _named(report, "neck.input_conv.1.in_conv")
    assert report.first.op == "conv2d"


# ---- ONNX -> graph torch ----------------------------------------------------------------------------------
@pytest.mark.torch
def test_onnx_graph_scaled_conv_is_named(built, tmp_path):
    import onnx
    from safetensors.numpy import load_file

    graph = built("cls-graph")
    assert diff_artifacts(built("cls-onnx"), graph).passed
    dst = _copy(graph, tmp_path / "damaged-graph")
    desc = onnx.load(str(dst / "graph.onnx"), load_external_data=False)
    weights = load_file(str(dst / "model.safetensors"))
    convs = [n for n in desc.graph.node if n.op_type == "Conv" and weights[n.input[1]].shape[-1] > 1]
    conv = convs[len(convs) // 2]
    _scale_safetensors(dst, conv.input[1])
    report = diff_artifacts(built("cls-onnx"), dst)
    pairs = dict(json.loads(manifest_path(graph).read_text())["hops"][-1]["produced"]["name_map"]["pairs"])
    _named(report, pairs[conv.output[0]])


# ---- native -> AOT ----------------------------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.native
@pytest.mark.slow
def test_native_aot_scaled_conv_is_named(built, converted, tmp_path):
    """diff runs a package through the native model it was built from (the package's own output must match it:
    the last row); against a native folder with one conv scaled, that conv is the first divergence. The package
    is the session's one CPU build from this native folder (tests/verification damages it too)."""
    native = built("cls-native")
    pkg = converted(native, "torch-aot", options={"device": "cpu"}, verify=False).artifact.path
    same = diff_artifacts(native, pkg)  # the package against the model it was built from: no divergence
    assert same.passed, same.summary_line()
    assert same.layers[-1].target == "(AOT package output)"
    damaged = _copy(native, tmp_path / "damaged-native")
    _scale_safetensors(damaged, "blocks.5.depthwise.conv.weight")
    report = diff_artifacts(damaged, pkg)
    _named(report, "net.blocks.5.depthwise.conv")


# ---- the command ------------------------------------------------------------------------------------------
def test_cli_json_report_and_exit_codes(built, zoo, cli_here, tmp_path):
    import onnx

    dst = _copy(built("det-onnx"), tmp_path / "damaged.onnx")
    model = onnx.load(str(dst))
    _constants_to_initializers(model)
    scale_conv(model, FACTOR, which=20)
    onnx.save(model, str(dst))
    html = tmp_path / "diff.html"
    proc = cli_here("diff", zoo("ppocrv4-det"), dst, "--json", "--report", html)
    assert proc.code == 6, proc.stderr
    data = json.loads(proc.stdout)
    assert data["verdict"] == "FAILED" and data["first_divergence"]["op"] == "conv2d"
    assert len(data["first_divergence"]["neighbours"]) == 4
    page = html.read_text()
    assert "<svg" in page and "first divergence" in page and "<script" not in page
    ok = cli_here("diff", zoo("ppocrv4-det"), built("det-onnx"))
    assert ok.code == 0, ok.stderr
    assert ok.stdout.strip().splitlines()[-1].startswith("PASSED |")
    bad = cli_here("diff", zoo("ppocrv4-det"), built("det-onnx"), "--report", tmp_path / "x.txt", "--json")
    assert bad.code == 2 and json.loads(bad.stdout)["exit_code"] == 2


# ---- no recorded map: names, checked against the output ---------------------------------------------------
def test_without_a_map_misnamed_layers_are_suspects_not_divergences(zoo, tmp_path):
    """The zoo's rec twin was written by an older paddle2onnx, which named a Conv's output (bias added) after
    Paddle's conv variable (bias not yet added): by name those layers differ by O(1) while the output agrees."""
    import onnx

    twin = zoo("ppocrv4-rec-onnx") / "model.onnx"
    report = diff_artifacts(zoo("ppocrv4-rec"), twin)
    assert report.passed, report.summary_line()
    assert report.alignment.startswith("names") and any(r.suspect for r in report.layers) and report.notes
    model = onnx.load(str(twin))
    _constants_to_initializers(model)
    scale_conv(model, FACTOR, which=-3)
    onnx.save(model, str(tmp_path / "damaged.onnx"))
    damaged = diff_artifacts(zoo("ppocrv4-rec"), tmp_path / "damaged.onnx")
    assert not damaged.passed and damaged.first is not None and not damaged.first.suspect
