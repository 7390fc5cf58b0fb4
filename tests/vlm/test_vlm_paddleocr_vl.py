"""PaddleOCR-VL's vision encoder through the same pattern: wrapper == transformers, one ONNX for any size."""
from __future__ import annotations

import json

import numpy as np
import pytest

from _vlm_helpers import export

pytestmark = pytest.mark.native
torch = pytest.importorskip("torch")


def test_wrapper_equals_transformers_vision_model_and_projector():
    from ocrconvert.vlm import paddleocr_vl as P

    tower = P.build_tower(layers=1, seed=4)
    x = torch.randn(1, 3, 280, 448, generator=torch.Generator().manual_seed(0))
    ref_emb, ref_hidden = P.reference_forward(tower, x)
    assert ref_emb.shape == (1, P.output_tokens(280, 448), 1024) and ref_hidden.shape == (1, 20 * 32, 1152)
    for attention in ("blocked", "sdpa"):
        with torch.no_grad():
            emb, hidden = P.Encoder(tower, attention=attention, block=100).eval()(x)
        assert (emb - ref_emb).abs().max().item() < 2e-5 and (hidden - ref_hidden).abs().max().item() < 2e-5


def test_preprocess_matches_the_paddleocr_vl_processor():
    from PIL import Image, ImageDraw
    from transformers.models.paddleocr_vl.image_processing_pil_paddleocr_vl import PaddleOCRVLImageProcessorPil

    from ocrconvert.vlm import paddleocr_vl as P

    img = Image.new("RGB", (1000, 333), "white")
    ImageDraw.Draw(img).text((40, 150), "PaddleOCR-VL 0.9B", fill="black")
    x = P.preprocess(img)
    assert x.shape[2] % 28 == 0 and x.shape[3] % 28 == 0
    ref = PaddleOCRVLImageProcessorPil()(images=img, return_tensors="np")
    flat, grid = P.patchify(torch.from_numpy(x))
    assert grid.tolist() == ref["image_grid_thw"].tolist()
    assert np.array_equal(flat.numpy().reshape(ref["pixel_values"].shape), ref["pixel_values"])


@pytest.mark.parametrize("naming", ["original", "transformers"])
def test_checkpoint_loads_in_both_namings(tmp_path, naming):
    """save_pretrained writes the original `visual.*`/`mlp_AR.*` naming; the transformers naming loads too."""
    from safetensors.torch import load_file, save_file
    from transformers.models.paddleocr_vl.configuration_paddleocr_vl import PaddleOCRVLConfig
    from transformers.models.paddleocr_vl.modeling_paddleocr_vl import PaddleOCRVLForConditionalGeneration

    from ocrconvert.vlm import paddleocr_vl as P

    cfg = PaddleOCRVLConfig(vision_config={"num_hidden_layers": 2},
                            text_config={"num_hidden_layers": 1, "vocab_size": 64, "intermediate_size": 64})
    torch.manual_seed(1)
    src = PaddleOCRVLForConditionalGeneration(cfg)
    src.save_pretrained(str(tmp_path))
    (st,) = tmp_path.glob("*.safetensors")
    tensors = load_file(str(st))
    assert any(k.startswith("mlp_AR.") for k in tensors) and any(k.startswith("visual.") for k in tensors)
    if naming == "transformers":
        renamed = {("model.language_model." + k[6:] if k.startswith("model.") else
                    "model.visual." + k[7:] if k.startswith("visual.") else
                    "model.projector." + k[7:] if k.startswith("mlp_AR.") else k): v for k, v in tensors.items()}
        st.unlink()
        save_file(renamed, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    tower = P.build_tower(tmp_path, seed=123)   # another seed: every tensor must come from the file
    expect = {**{"visual." + k: v for k, v in src.model.visual.state_dict().items()},
              **{"projector." + k: v for k, v in src.model.projector.state_dict().items()}}
    got = tower.state_dict()
    assert set(got) == set(expect)
    assert all(torch.equal(got[k], expect[k]) for k in got)
    assert len(P.build_tower(tmp_path, layers=1).visual.vision_model.encoder.layers) == 1


def test_export_one_onnx_for_any_size(tmp_path):
    import onnxruntime as ort

    from ocrconvert.vlm import paddleocr_vl as P

    res = export(tmp_path / "pvl.onnx", "paddleocr-vl", layers=1)
    assert res.passed and [c.label for c in res.report.cases] == ["448x448", "616x924", "1036x784"]
    assert all(o.max_abs <= 1e-4 for c in res.report.cases for o in c.outputs)
    manifest = json.loads((tmp_path / "pvl.onnx.ocrconvert.json").read_text())
    assert manifest["preprocess"]["factor"] == 28 and manifest["source"]["model"] == "paddleocr-vl"
    sess = ort.InferenceSession(str(tmp_path / "pvl.onnx"), providers=["CPUExecutionProvider"])
    tower = P.build_tower(layers=1, seed=0)
    x = np.random.default_rng(2).standard_normal((1, 3, 1540, 56), dtype=np.float32)
    emb, hidden = sess.run(["image_embeds", "last_hidden_state"], {"pixel_values": x})
    ref_emb, ref_hidden = P.reference_forward(tower, torch.from_numpy(x))
    assert emb.shape == (1, 55 * 2, 1024)
    assert np.abs(emb - ref_emb.numpy()).max() <= 1e-4 and np.abs(hidden - ref_hidden.numpy()).max() <= 1e-4


def test_sizes_must_fit_the_family(tmp_path):
    from ocrconvert.errors import UsageError

    with pytest.raises(UsageError, match="multiples of 28"):
        export(tmp_path / "x.onnx", "paddleocr-vl", sizes=("512x512",))
    with pytest.raises(UsageError, match="for paddleocr-vl"):
        export(tmp_path / "x.onnx", "paddleocr-vl", interpolation="original")
    assert not list(tmp_path.iterdir())
