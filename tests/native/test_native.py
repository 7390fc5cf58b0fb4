"""Native PyTorch route: recognition, complete mapping, parity with Paddle inference, fusion, training,
export.  Inputs are small (2-core CI)."""

from __future__ import annotations

import functools
import json
import os
import shutil

import numpy as np
import pytest
import torch

from ocrconvert.native import NativeMappingError, convert_to_transformers, load_native, recognise, trainable_module

from _native_models import SHAPES, TASKS, require_model

ATOL = 1e-4
ALL = ["v4_det", "v4_rec", "v2_cls", "v5_det", "v5_rec"]


@functools.lru_cache(maxsize=None)
def _paddle_runner(model_dir):
    from ocrconvert.formats import detect
    from ocrconvert.runners.paddle import PaddleRunner

    return PaddleRunner(detect(model_dir), threads=2)  # one predictor per model for the module (seconds each)


def run_paddle_inference(model_dir, x: np.ndarray) -> np.ndarray:
    """The reference: Paddle Inference on CPU through the project's runner (first output)."""
    runner = _paddle_runner(model_dir)
    return next(iter(runner.infer({runner.input_names[0]: x}).values()))


def _input(key: str, seed: int = 0) -> np.ndarray:
    # standard normal ~ the scale of normalised images
    return np.random.default_rng(seed).standard_normal(SHAPES[key]).astype(np.float32)


def _text_like(shape, seed: int = 0) -> np.ndarray:
    """White page with dark glyph-like strokes, ImageNet-normalised: drives det maps over the whole [0, 1]
    range (random noise leaves them at ~1e-7, which would make the det parity check vacuous)."""
    _, _, h, w = shape
    rng = np.random.default_rng(seed)
    img = np.ones((h, w, 3), np.float32)
    for _ in range(6):
        y, x = rng.integers(8, h - 24), rng.integers(4, w - 80)
        for j in range(rng.integers(3, 8)):
            img[y:y + 14, x + j * 10:x + j * 10 + 6] = 0.0
            img[y + 6:y + 8, x + j * 10:x + j * 10 + 9] = 0.0
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    return ((img - mean) / std).transpose(2, 0, 1)[None].copy()


@pytest.mark.paddle
@pytest.mark.parametrize("key", ALL)
def test_recognise(key, tmp_path):
    src = require_model(key)
    # the folder name carries no information: recognise from a renamed copy
    anon = tmp_path / "model_x"
    anon.mkdir()
    for f in src.iterdir():
        if f.is_file():
            os.symlink(f, anon / f.name)
    spec = recognise(anon)
    assert spec is not None
    assert spec.task == TASKS[key]
    assert spec.architecture.name in {"pp_ocrv5_mobile_rec", "pp_ocrv5_mobile_det", "ppocr_mobilenetv3_cls"}
    if key.endswith("rec"):
        assert spec.config["backbone_config"]["scale"] == 0.95
        assert spec.config["layer_norm_eps"] == 1e-5
        assert spec.config["ocrconvert_final_norm_eps"] == 1e-6


@pytest.mark.paddle
@pytest.mark.parametrize("key", ALL)
def test_parity_with_paddle(key, converted):
    src = require_model(key)
    folder = converted(key)
    inputs = [_input(key)]
    if TASKS[key] == "det":
        inputs.append(_text_like(SHAPES[key]))
    models = {fused: load_native(folder, fused=fused) for fused in (False, True)}
    for x in inputs:
        ref = run_paddle_inference(src, x)
        for fused, m in models.items():
            with torch.no_grad():
                y = m(torch.from_numpy(x)).numpy()
            assert y.shape == ref.shape
            err = float(np.abs(y - ref).max())
            assert err <= ATOL, f"{key} fused={fused}: max abs {err}"
        if TASKS[key] == "det" and len(inputs) == 2 and x is inputs[1]:
            assert ref.max() > 0.9 and (ref > 0.3).mean() > 0.01  # the check is not vacuous


@pytest.mark.paddle
def test_saved_folder_is_standard_transformers(converted):
    """transformers alone (its Auto classes, no ocrconvert code) loads the folder completely and computes the
    Paddle output; AutoModel gives the headless base model with the same weights."""
    from transformers import AutoConfig, AutoModel, AutoModelForTextRecognition, PPOCRV5MobileRecForTextRecognition

    folder = converted("v5_rec")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert AutoConfig.from_pretrained(folder).model_type == "pp_ocrv5_mobile_rec"
    m, info = AutoModelForTextRecognition.from_pretrained(folder, output_loading_info=True)
    assert type(m) is PPOCRV5MobileRecForTextRecognition
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info
    x = _input("v5_rec")
    ref = run_paddle_inference(require_model("v5_rec"), x)
    with torch.no_grad():
        y = m.eval()(pixel_values=torch.from_numpy(x)).last_hidden_state.numpy()
    assert y.shape == ref.shape and np.abs(y - ref).max() <= ATOL
    base, base_info = AutoModel.from_pretrained(folder, output_loading_info=True)
    assert not base_info["missing_keys"] and {k.split(".")[0] for k in base_info["unexpected_keys"]} == {"head"}
    full = m.state_dict()
    assert all(torch.equal(t, full["model." + k]) for k, t in base.state_dict().items())
    meta = json.loads((folder / "ocrconvert_native.json").read_text())
    assert meta["report"]["complete"] and not meta["report"]["unset_target"]
    # trainable form: 1035 tensors; the Paddle inference export holds 234
    assert len(full) == 1035


@pytest.mark.paddle
def test_wrong_square_linear_orientation_is_caught(converted, tmp_path):
    """Transposing a square Linear (the 120x120 attention projection) keeps every shape valid; the parity check
    against Paddle must catch it."""
    from safetensors.torch import load_file, save_file

    key = "v4_rec"
    src = require_model(key)
    folder = tmp_path / "bad"
    shutil.copytree(converted(key), folder)
    sd = load_file(folder / "model.safetensors")
    name = "head.encoder.svtr_block.0.self_attn.projection.weight"
    assert sd[name].shape[0] == sd[name].shape[1]
    sd[name] = sd[name].t().contiguous()
    save_file(sd, folder / "model.safetensors", metadata={"format": "pt"})
    x = _input(key)
    ref = run_paddle_inference(src, x)
    with torch.no_grad():
        good = load_native(converted(key), fused=False)(torch.from_numpy(x)).numpy()
        bad = load_native(folder, fused=False)(torch.from_numpy(x)).numpy()
    assert np.abs(good - ref).max() <= ATOL
    assert np.abs(bad - ref).max() > 10 * ATOL


def test_linear_weight_is_transposed_by_type_even_when_square():
    from ocrconvert.native.layers import Rec
    from ocrconvert.native.mapping import MappingReport, WeightWriter
    from ocrconvert.paddle_program import Op

    lin = torch.nn.Linear(4, 4)
    w = np.arange(16, dtype=np.float32).reshape(4, 4)  # Paddle layout [in, out]
    b = np.arange(4, dtype=np.float32)
    rec = Rec("linear", Op(0, "matmul", [], [], {}), "x", "y", {"weight": "w", "bias": "b"}, {"transpose_y": False})
    writer = WeightWriter(lin, {"w": w, "b": b}, MappingReport("t", "t"))
    writer.linear(lin, rec)
    writer.finish({"w", "b"})
    assert torch.equal(lin.weight, torch.from_numpy(w.T.copy()))
    x = torch.randn(3, 4)
    assert torch.allclose(lin(x), x @ torch.from_numpy(w) + torch.from_numpy(b))


@pytest.mark.paddle
def test_incomplete_mapping_raises(monkeypatch, tmp_path):
    from ocrconvert.native.mapping import WeightWriter

    src = require_model("v2_cls")
    # simulate a mapper that forgets a layer: the fc weight/bias stay unset and the source params unused
    monkeypatch.setattr(WeightWriter, "linear", lambda self, lin, rec: None)
    with pytest.raises(NativeMappingError, match="unmapped|unset"):
        convert_to_transformers(src, tmp_path / "a")
    report = convert_to_transformers(src, tmp_path / "b", allow_partial=True)
    assert not report.complete
    assert "fc.weight" in report.unset_target and any(s.startswith("fc") for s in report.unmapped_source)


@pytest.mark.paddle
def test_training_form_trains(converted):
    folder = converted("v5_det")
    m = trainable_module(folder)
    m.train()
    x = torch.randn(2, 3, 64, 64)
    out = m(x).last_hidden_state
    loss = out.mean()
    loss.backward()
    rep = m.model.backbone.encoder.blocks[1].layers[0].depthwise_convolution
    # the main branch and the neutralised training branches all receive gradients
    assert rep.conv_symmetric[0].convolution.weight.grad.abs().sum() > 0
    assert rep.conv_symmetric[1].convolution.weight.grad.abs().sum() > 0
    assert rep.lab.scale.grad is not None and float(rep.lab.scale.grad.abs().sum()) > 0


def _batch(key: str, shape, seed: int) -> torch.Tensor:
    """det: text-like pages (on noise the map is ~1e-7 everywhere and any export would agree with it)."""
    if TASKS[key] == "det":
        return torch.from_numpy(np.concatenate([_text_like((1, *shape[1:]), seed + i) for i in range(shape[0])]))
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


@pytest.mark.paddle
@pytest.mark.parametrize("key", ["v5_rec", "v5_det", "v2_cls"])
def test_fused_export_and_compile(key, converted):
    m = load_native(converted(key), fused=True)
    n, c, h, w = SHAPES[key]
    det = TASKS[key] == "det"
    x = _batch(key, (2, c, h, w), 0)
    dims = {0: torch.export.Dim("batch", min=1, max=64), 3: torch.export.Dim.DYNAMIC}
    if det:
        dims[2] = torch.export.Dim.DYNAMIC
    ep = torch.export.export(m, (x,), dynamic_shapes={"pixel_values": dims})
    x2 = _batch(key, (3, c, h if not det else h - 64, w + 32), 1)
    with torch.no_grad():
        ref = m(x2)
        if det:
            assert ref.max() > 0.9 and (ref > 0.3).float().mean() > 0.01   # the comparison is not vacuous
        assert torch.allclose(ep.module()(x2), ref, atol=1e-5)
        compiled = torch.compile(m, fullgraph=True, backend="eager", dynamic=True)
        assert torch.allclose(compiled(x2), ref, atol=1e-5)


@pytest.mark.paddle
def test_fused_onnx_dynamo_export(converted, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript", reason="torch.onnx dynamo export needs onnxscript")
    import onnxruntime as ort

    m = load_native(converted("v2_cls"), fused=True)
    x = torch.randn(2, 3, 48, 192)
    path = tmp_path / "cls.onnx"
    torch.onnx.export(
        m, (x,), str(path), dynamo=True, input_names=["pixel_values"],
        dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch", min=1, max=64), 3: torch.export.Dim.DYNAMIC}},
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x2 = torch.randn(3, 3, 48, 160)
    y = sess.run(None, {sess.get_inputs()[0].name: x2.numpy()})[0]
    with torch.no_grad():
        assert np.abs(y - m(x2).numpy()).max() < 1e-5


def test_architecture_registry_is_strict_and_consistent():
    pytest.importorskip("transformers")
    from ocrconvert.native import architectures as reg

    archs = reg.architectures()
    assert [a.name for a in archs] == ["pp_ocrv5_mobile_rec", "pp_ocrv5_mobile_det", "ppocr_mobilenetv3_cls",
                                       "pp_ocrv6_small_det", "pp_ocrv6_small_rec", "pp_ocrv6_tiny_rec", "pp_lcnet_cls"]
    # the PP-OCRv6 / PP-LCNet records are recognised from ONNX graphs only (no Paddle programs of them here)
    assert [a.name for a in archs if a.parse is None] == [a.name for a in archs if a.parse_onnx is not None]
    for arch in archs:
        assert arch.model_class().config_class.model_type == arch.model_type  # what a saved folder says
        assert reg.for_model_type(arch.model_type) is arch
    with pytest.raises(ValueError, match="already registered"):
        reg.register(archs[0])
    with pytest.raises(NativeMappingError, match="no native architecture"):
        reg.for_model_type("bert")


@pytest.mark.paddle
def test_unrecognised_program_says_why_for_every_architecture(tmp_path):
    from ocrconvert.formats import detect
    from ocrconvert.native import architectures as reg
    from ocrconvert.paddle_program import read_program

    program = read_program(detect(require_model("v2_cls")))
    assert reg.recognise(program).architecture.name == "ppocr_mobilenetv3_cls"
    program._graph = program.graph()[:60]  # a program cut short matches nothing
    with pytest.raises(NativeMappingError) as exc:
        reg.recognise(program)
    assert all(a.name in exc.value.message for a in reg.architectures())
    assert "--route graph" in exc.value.hint
