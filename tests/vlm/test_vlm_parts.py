"""The pieces behind vlm-export, each against the PyTorch/transformers behaviour it must equal."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.native
torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("convention", ["transformers", "original"])
def test_position_grid_interpolation_equals_torch(convention):
    from ocrconvert.vlm.hunyuan import interpolate_grid

    g = torch.randn(1, 6, 128, 128, generator=torch.Generator().manual_seed(0))
    # sides below, equal to (identity axis) and above the 128 grid; odd and non-square
    for h, w in [(32, 32), (40, 60), (64, 48), (128, 64), (128, 128), (2, 200), (127, 33), (200, 2), (96, 256)]:
        ours = interpolate_grid(g, h, w, convention)
        if convention == "transformers":
            ref = F.interpolate(g, size=(h, w), mode="bilinear", align_corners=False)
        else:
            ref = F.interpolate(g, scale_factor=((h + 0.1) / 128, (w + 0.1) / 128), mode="bilinear", align_corners=False)
        assert ours.shape == ref.shape == (1, 6, h, w)
        assert (ours - ref).abs().max().item() < 5e-5, (convention, h, w)


def test_conventions_really_differ():
    from ocrconvert.vlm.hunyuan import interpolate_grid

    g = torch.randn(1, 4, 128, 128, generator=torch.Generator().manual_seed(1))
    d = (interpolate_grid(g, 64, 48, "transformers") - interpolate_grid(g, 64, 48, "original")).abs().max().item()
    assert d > 1e-2


@pytest.mark.parametrize("n,block", [(10, 4), (16, 4), (7, 32), (1, 1)])
def test_blocked_attention_is_exact(n, block):
    import ocrconvert.vlm.attention  # noqa: F401

    gen = torch.Generator().manual_seed(n)
    q, k, v = (torch.randn(1, 3, n, 8, generator=gen) for _ in range(3))
    out = torch.ops.ocrconvert.blocked_attention(q, k, v, 0.35, block)
    ref = torch.softmax(q @ k.transpose(-1, -2) * 0.35, dim=-1) @ v
    assert (out - ref).abs().max().item() < 1e-6


def test_blocked_attention_loop_in_onnx_is_dynamic_and_exact(tmp_path):
    """The custom node becomes a Loop; ONNX Runtime runs it at sequence lengths not divisible by the block."""
    import onnx
    import onnxruntime as ort
    from torch.export import Dim

    from ocrconvert.vlm import attention

    class M(torch.nn.Module):
        def forward(self, q, k, v):
            return torch.ops.ocrconvert.blocked_attention(q, k, v, 0.5, 4) * 2.0

    gen = torch.Generator().manual_seed(0)
    ex = tuple(torch.randn(1, 2, 8, 4, generator=gen) for _ in range(3))
    n = Dim("n", min=1, max=4096)
    prog = torch.onnx.export(M(), ex, dynamo=True, dynamic_shapes=({2: n}, {2: n}, {2: n}),
                             custom_translation_table=attention.onnx_translation_table(), opset_version=18)
    model = prog.model_proto
    assert attention.expand_blocked_attention(model) == 1
    assert not [nd for nd in model.graph.node if nd.domain == attention.DOMAIN]
    assert [nd.op_type for nd in model.graph.node].count("Loop") == 1
    assert all(o.domain != attention.DOMAIN for o in model.opset_import)
    onnx.checker.check_model(model)
    path = tmp_path / "attn.onnx"
    onnx.save(model, str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    for length in (1, 3, 4, 9, 37):
        q, k, v = (np.random.default_rng(length + i).standard_normal((1, 2, length, 4)).astype(np.float32) for i in range(3))
        (out,) = sess.run(None, dict(zip(names, (q, k, v))))
        s = q @ k.transpose(0, 1, 3, 2) * 0.5
        w = np.exp(s - s.max(-1, keepdims=True))
        ref = 2.0 * (w / w.sum(-1, keepdims=True)) @ v
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() < 1e-5, length


def test_encoder_wrapper_equals_transformers_tower():
    """Both attention forms and both conventions, against the transformers module as shipped."""
    from ocrconvert.vlm.hunyuan import HunyuanVisionEncoder, build_tower, reference_forward

    tower = build_tower(layers=1, seed=3)
    x = torch.randn(1, 3, 320, 448, generator=torch.Generator().manual_seed(2))
    for convention in ("transformers", "original"):
        ref_emb, ref_hidden = reference_forward(tower, x, convention)
        assert ref_emb.shape == (1, (320 // 32) * (448 // 32 + 1) + 2, 1024)
        for attention in ("blocked", "sdpa", "eager"):
            enc = HunyuanVisionEncoder(tower, interpolation=convention, attention=attention, block=64).eval()
            with torch.no_grad():
                emb, hidden = enc(x)
            assert (emb - ref_emb).abs().max().item() < 2e-5, (convention, attention)
            assert (hidden - ref_hidden).abs().max().item() < 2e-5, (convention, attention)


def test_preprocess_matches_the_hunyuan_processor(tmp_path):
    """Image layout [1,3,H,W] patchified == the processor's flat patches; sides multiples of 32."""
    from PIL import Image, ImageDraw
    from transformers.models.hunyuan_vl.image_processing_pil_hunyuan_vl import HunYuanVLImageProcessorPil

    from ocrconvert.vlm.hunyuan import patchify, preprocess

    img = Image.new("RGB", (1234, 517), "white")
    d = ImageDraw.Draw(img)
    for i in range(12):
        d.text((20 + 90 * (i % 6), 40 + 200 * (i // 6)), f"line {i} ocrconvert", fill=(10 * i, 0, 200))
    path = tmp_path / "doc.png"
    img.save(path)
    x = preprocess(path)
    assert x.dtype == np.float32 and x.shape[0] == 1 and x.shape[1] == 3
    assert x.shape[2] % 32 == 0 and x.shape[3] % 32 == 0
    ref = HunYuanVLImageProcessorPil()(images=img, return_tensors="np")
    flat, grid = patchify(torch.from_numpy(x))
    assert grid.tolist() == ref["image_grid_thw"].tolist()
    assert np.array_equal(flat.numpy(), ref["pixel_values"])


def _reverse_rename(key: str) -> str:
    """transformers tower key -> the original HunyuanOCR checkpoint naming."""
    import re

    key = key.replace("mlp.fc1", "mlp.dense_h_to_4h").replace("mlp.fc2", "mlp.dense_4h_to_h")
    key = re.sub(r"layers\.(\d+)\.layer_norm1\.", r"layers.\1.input_layernorm.", key)
    key = re.sub(r"layers\.(\d+)\.layer_norm2\.", r"layers.\1.post_attention_layernorm.", key)
    key = key.replace("patch_merger.proj_conv.", "perceive.proj.0.").replace("patch_merger.proj_out.", "perceive.proj.2.")
    return "vit." + key.replace("patch_merger.", "perceive.")


@pytest.mark.parametrize("naming", ["original", "transformers"])
def test_checkpoint_folder_loads_in_both_namings(tmp_path, naming):
    from safetensors.torch import save_file

    from ocrconvert.vlm.hunyuan import VISION_CONFIG, build_tower

    src = build_tower(layers=2, seed=11)
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    if naming == "original":
        tensors = {_reverse_rename(k): v for k, v in state.items()}
    else:
        tensors = {"model.vision_tower." + k: v for k, v in state.items()}
    tensors["model.language_model.embed_tokens.weight"] = torch.zeros(4, 8)  # other parts are ignored
    half = len(tensors) // 2
    items = sorted(tensors.items())
    save_file(dict(items[:half]), str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file(dict(items[half:]), str(tmp_path / "model-00002-of-00002.safetensors"))
    # the text config's width is the merger's output width (HunYuanVLConfig copies it over)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "hunyuan_vl", "text_config": {"hidden_size": 1024},
                                                      "vision_config": {**VISION_CONFIG, "num_hidden_layers": 2}}))
    loaded = build_tower(tmp_path, seed=99)  # a different seed: every tensor must come from the files
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, state[k]), k
    first = build_tower(tmp_path, layers=1)
    assert len(first.layers) == 1 and torch.equal(first.layers[0].mlp.fc1.weight, state["layers.0.mlp.fc1.weight"])


def test_checkpoint_errors(tmp_path):
    from ocrconvert.errors import CorruptModelError, UsageError
    from ocrconvert.vlm.hunyuan import VISION_CONFIG, build_tower

    with pytest.raises(UsageError, match="no config.json"):
        build_tower(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"vision_config": {**VISION_CONFIG, "num_hidden_layers": 1}}))
    with pytest.raises(UsageError, match="no .safetensors"):
        build_tower(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(CorruptModelError):
        build_tower(tmp_path)
    from safetensors.torch import save_file

    save_file({"vit.embeddings.patch_embedding.weight": torch.zeros(2, 2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CorruptModelError, match="does not fit"):
        build_tower(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"vision_config": {**VISION_CONFIG, "num_hidden_layers": 1}}))
    good = {"vit." + k: v for k, v in build_tower(layers=1).state_dict().items()}  # 1024-wide merger
    save_file(good, str(tmp_path / "model.safetensors"))
    with pytest.raises(CorruptModelError, match="does not fit"):  # config without text_config: 3072-wide
        build_tower(tmp_path)
