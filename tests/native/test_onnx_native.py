"""ONNX -> native transformers modules (``onnx2torch --route native``) on the real ONNX-only zoo models:
PP-OCRv6 small/tiny det and rec, the PP-LCNet document-orientation classifier.

Recognised from the graph (a renamed copy is recognised the same; another architecture is not), every
initializer mapped (zero unmapped), parity with ONNX Runtime in the trainable and the fused form, the pipeline's
own verification against the ONNX original, negative controls (a conv x1.02 on either side fails it),
torch.export / torch.compile(fullgraph) of the fused form, and a trainable module."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers", reason="transformers is not installed")
torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parents[1] / "verification"))
from _damage import damaged_onnx, damaged_safetensors  # noqa: E402

pytestmark = [pytest.mark.native, pytest.mark.zoo]

# zoo name -> (architecture record, family, small test input shape)
MODELS = {
    "ppocrv6-small-det-onnx": ("pp_ocrv6_small_det", "det-db", (2, 3, 160, 160)),
    "ppocrv6-tiny-det-onnx": ("pp_ocrv6_small_det", "det-db", (2, 3, 160, 160)),  # same class, other widths
    "ppocrv6-small-rec-onnx": ("pp_ocrv6_small_rec", "rec-ctc", (2, 3, 48, 160)),
    "ppocrv6-tiny-rec-onnx": ("pp_ocrv6_tiny_rec", "rec-ctc", (2, 3, 48, 160)),
    "doc-orientation-onnx": ("pp_lcnet_cls", "cls", (2, 3, 224, 224)),
}
ATOL = 1e-4


@pytest.fixture(scope="module")
def native(zoo, tmp_path_factory):
    """Each model converted once per module: (folder, mapping report)."""
    cache = {}

    def get(name):
        if name not in cache:
            from ocrconvert.native import convert_to_transformers

            out = tmp_path_factory.mktemp(name)
            cache[name] = (out, convert_to_transformers(zoo(name), out))
        return cache[name]

    return get


def _input(name: str, seed: int = 0) -> np.ndarray:
    """det: a white page with dark strokes (on noise the map is ~0 everywhere and proves nothing); others:
    standard normal ~ normalised images."""
    shape = MODELS[name][2]
    rng = np.random.default_rng(seed)
    if MODELS[name][1] != "det-db":
        return rng.standard_normal(shape).astype(np.float32)
    n, _, h, w = shape
    img = np.ones((n, h, w, 3), np.float32)
    for b in range(n):
        for _ in range(6):
            y, x = rng.integers(8, h - 24), rng.integers(4, w - 80)
            for j in range(rng.integers(3, 8)):
                img[b, y:y + 14, x + j * 10:x + j * 10 + 6] = 0.0
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    return ((img - mean) / std).transpose(0, 3, 1, 2).copy()


def _onnx(zoo, name: str, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(zoo(name) / "model.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("name", list(MODELS))
def test_recognised_from_the_graph_not_the_file_name(name, zoo, tmp_path):
    from ocrconvert.native import recognise

    renamed = tmp_path / "ppocrv4-cls-onnx" / "model.onnx"  # a misleading folder name changes nothing
    renamed.parent.mkdir()
    shutil.copy(zoo(name) / "model.onnx", renamed)
    found = recognise(renamed)
    assert found is not None and found.architecture.name == MODELS[name][0]


@pytest.mark.parametrize("name", ["ppocrv4-det-onnx", "ppocrv4-rec-onnx", "ppocrv4-cls-onnx", "ppocrv5-mobile-det-onnx",
                                  "ppocrv5-mobile-rec-onnx", "slanet-plus-onnx", "picodet-layout-cdla-onnx"])
def test_other_onnx_graphs_are_not_claimed(name, zoo):
    from ocrconvert.native import recognise

    assert recognise(zoo(name) / "model.onnx") is None


@pytest.mark.parametrize("name", list(MODELS))
def test_complete_mapping_and_parity_with_onnx(name, zoo, native):
    from ocrconvert.native import load_native

    folder, report = native(name)
    assert report.complete and report.unmapped_source == [] and report.unset_target == []
    meta = json.loads((folder / "ocrconvert_native.json").read_text())
    assert meta["source_format"] == "onnx" and meta["architecture"] == MODELS[name][0]
    x = _input(name)
    ref = _onnx(zoo, name, x)
    if MODELS[name][1] == "det-db":
        assert ref.max() > 0.5 and ref.min() < 0.1, "the det input drives no text response: vacuous parity"
    for fused in (True, False):
        with torch.no_grad():
            got = load_native(folder, fused=fused)(torch.from_numpy(x)).numpy()
        assert got.shape == ref.shape
        err = float(np.abs(got - ref).max())
        assert err < ATOL, f"{name} {'fused' if fused else 'trainable'}: max abs {err}"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_onnx2torch_native_route_verifies_against_the_onnx(name, zoo, cli_here, tmp_path):
    out = tmp_path / "native"
    res = cli_here("onnx2torch", zoo(name), "-o", out, "--route", "native", "--json")
    assert res.code == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout)
    manifest = json.loads((out / "ocrconvert.json").read_text())
    assert manifest["hops"][0]["converter"] == "native" and manifest["hops"][0]["from"] == "onnx"
    assert manifest["hops"][0]["produced"]["mapping_report"]["unmapped_source"] == []
    for ver in (manifest["verification"], manifest["verification_trainable_form"]):
        assert ver["passed"] and ver["family"] == MODELS[name][1] and ver["informative_cases"] >= 1, ver["summary"]
    assert doc  # --json: one object on stdout


@pytest.mark.slow
def test_damage_on_either_side_fails_verification(zoo, native, tmp_path):
    """Negative controls: the native module against an ONNX with one conv x1.02, and a native module with one
    conv x1.02 against the ONNX original, both FAIL (the rendered-page det metric and the numeric check)."""
    import ocrconvert

    name = "ppocrv6-tiny-det-onnx"
    folder, _ = native(name)
    bad_onnx = tmp_path / "bad" / "model.onnx"
    assert damaged_onnx(zoo(name) / "model.onnx", bad_onnx, "conv x1.02")
    assert not ocrconvert.verify(bad_onnx, folder).passed
    bad_native = tmp_path / "bad_native"
    shutil.copytree(folder, bad_native)
    assert damaged_safetensors(bad_native, "conv x1.02")
    assert not ocrconvert.verify(zoo(name), bad_native).passed
    assert ocrconvert.verify(zoo(name), folder).passed  # the undamaged pair, same cases


@pytest.mark.parametrize("name", list(MODELS))
def test_fused_form_exports_and_compiles(name, native):
    from ocrconvert.families.resolve import FAMILIES
    from ocrconvert.native import load_native

    folder, _ = native(name)
    m = load_native(folder, fused=True)
    x = torch.from_numpy(_input(name))
    ep = torch.export.export(m, (x,), dynamic_shapes={"pixel_values": FAMILIES[MODELS[name][1]].export_dims(4)})
    wider = torch.randn(3, *x.shape[1:3], x.shape[3] + (0 if MODELS[name][1] == "cls" else 64))
    with torch.no_grad():
        assert torch.allclose(ep.module()(wider), m(wider), atol=1e-5)
        compiled = torch.compile(m, fullgraph=True, backend="eager")  # graph capture, no break
        assert torch.allclose(compiled(x), m(x), atol=1e-6)


@pytest.mark.parametrize("name", ["ppocrv6-tiny-det-onnx", "ppocrv6-tiny-rec-onnx", "doc-orientation-onnx"])
def test_trainable_module_trains(name, native):
    from ocrconvert.native import trainable_module

    folder, _ = native(name)
    model = trainable_module(folder).train()
    params = [p for p in model.parameters() if p.requires_grad]
    assert params
    x = torch.from_numpy(_input(name))
    out = model(x).last_hidden_state
    out.float().pow(2).mean().backward()
    assert sum(int(p.grad is not None and bool(p.grad.abs().sum() > 0)) for p in params) > len(params) // 2


def test_cli_route_errors(zoo, cli_here, tmp_path):
    res = cli_here("onnx2torch", zoo("ppocrv6-tiny-rec-onnx"), "-o", tmp_path / "a", "--route", "bogus")
    assert res.code == 2 and "--route" in res.stderr
    res = cli_here("onnx2torch", zoo("ppocrv5-mobile-det-onnx"), "-o", tmp_path / "b", "--route", "native")
    assert res.code == 3, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "not recognised" in res.stderr
    assert not (tmp_path / "b").exists()
