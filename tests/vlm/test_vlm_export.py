"""`ocrconvert vlm-export hunyuan-ocr` end to end (reduced depth): one ONNX for any image size, verified
against the transformers tower, bounded memory at 2048x2048, image -> embeddings, TensorRT profiles."""
from __future__ import annotations

import json

import numpy as np
import pytest

from _cli_helpers import run_cli

pytestmark = pytest.mark.native
torch = pytest.importorskip("torch")
LAYERS = 2


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("vlm") / "encoder.onnx"
    res = run_cli("vlm-export", "hunyuan-ocr", "--layers", LAYERS, "-o", out, "--json", timeout=900)
    assert res.code == 0, res.stderr[-2000:]
    return out, json.loads(res.stdout)


@pytest.fixture(scope="module")
def tower():
    from ocrconvert.vlm.hunyuan import build_tower

    return build_tower(layers=LAYERS, seed=0)  # the same seeded weights the export used


def _run(path, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["image_embeds", "last_hidden_state"], {"pixel_values": x})


def test_export_verifies_at_three_sizes_and_records_everything(exported):
    import onnx

    from ocrconvert.vlm import attention

    path, data = exported
    rep = data["verification"]
    assert data["passed"] and rep["passed"]
    sizes = [c["input_shapes"]["pixel_values"][2:] for c in rep["cases"]]
    assert sizes == [[512, 512], [640, 960], [1024, 768]]   # 640x960 and 1024x768 differ from 512x512 in both sides
    for case in rep["cases"]:
        for o in case["outputs"]:
            assert o["max_abs"] <= 1e-4, (case["label"], o)
    assert "interpolation=transformers" in rep["family"] and "output size" in rep["source"]
    manifest = json.loads(path.with_name(path.name + ".ocrconvert.json").read_text())
    assert manifest["interpolation"]["convention"] == "transformers"
    assert manifest["preprocess"]["factor"] == 32 and manifest["preprocess"]["resample"] == "bicubic"
    assert manifest["source"]["vision_config"]["num_hidden_layers"] == LAYERS
    model = onnx.load(str(path), load_external_data=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 1 and dims[1].dim_value == 3
    assert dims[2].dim_param and dims[3].dim_param            # symbolic height and width
    assert [n.op_type for n in model.graph.node].count("Loop") == LAYERS
    assert not [n for n in model.graph.node if n.domain == attention.DOMAIN]
    assert not [f for f in path.parent.iterdir() if ".partial" in f.name]


def test_one_model_runs_any_size_with_parity(exported, tower):
    """Sizes never seen at export or verification, incl. a long strip and a side above the 2048 grid."""
    from ocrconvert.vlm.hunyuan import output_tokens, reference_forward

    path, _ = exported
    rng = np.random.default_rng(5)
    for h, w in [(416, 1536), (96, 2304), (2048, 64)]:
        x = rng.standard_normal((1, 3, h, w), dtype=np.float32)
        emb, hidden = _run(path, x)
        ref_emb, ref_hidden = reference_forward(tower, torch.from_numpy(x))
        assert emb.shape == (1, output_tokens(h, w), 1024) and hidden.shape == (1, (h // 16) * (w // 16), 1152)
        assert np.abs(emb - ref_emb.numpy()).max() <= 1e-4, (h, w)
        assert np.abs(hidden - ref_hidden.numpy()).max() <= 1e-4, (h, w)


def test_the_two_interpolation_conventions_give_different_numbers(exported, tower):
    """Why the report must name its convention: the original/vLLM scale-factor form is another model."""
    from ocrconvert.vlm.hunyuan import reference_forward

    path, _ = exported
    x = np.random.default_rng(6).standard_normal((1, 3, 640, 960), dtype=np.float32)
    emb, _ = _run(path, x)
    same = np.abs(emb - reference_forward(tower, torch.from_numpy(x), "transformers")[0].numpy()).max()
    other = np.abs(emb - reference_forward(tower, torch.from_numpy(x), "original")[0].numpy()).max()
    assert same <= 1e-4 < 1e-3 < other


def test_2048_square_runs_in_bounded_memory(exported):
    """16,384 patches: an unblocked 16xNxN score tensor alone would be 17 GB; blocked, the whole run fits."""
    from ocrconvert.vlm.memory import peak_rss

    path, _ = exported
    info = peak_rss(path, 2048, 2048)
    assert info["patches"] == 16384 and info["finite"]
    assert info["output_shapes"] == [[1, 64 * 65 + 2, 1024], [1, 16384, 1152]]
    assert info["peak_rss_gib"] < 4.5, info


def test_image_file_to_embeddings(exported, tower, tmp_path):
    from PIL import Image, ImageDraw

    from ocrconvert.vlm.hunyuan import preprocess, reference_forward

    path, _ = exported
    img = Image.new("RGB", (900, 300), "white")
    ImageDraw.Draw(img).text((30, 120), "HunyuanOCR vision encoder, exported by ocrconvert", fill="black")
    png = tmp_path / "line.png"
    img.save(png)
    out = tmp_path / "emb" / "line.npy"
    res = run_cli("vlm-embed", path, png, "-o", out, "--json")
    assert res.code == 0, res.stderr
    emb = np.load(out)
    x = preprocess(png)
    ref = reference_forward(tower, torch.from_numpy(x))[0][0].numpy()
    assert emb.shape == ref.shape == (x.shape[2] // 32 * (x.shape[3] // 32 + 1) + 2, 1024)
    assert np.abs(emb - ref).max() <= 1e-4


def test_trt_profiles_come_from_the_encoder_metadata(exported):
    from ocrconvert.families import resolve_family
    from ocrconvert.formats import detect
    from ocrconvert.trt_prep import derive_profiles, model_info

    path, _ = exported
    info = model_info(detect(path))
    (p,) = derive_profiles(info, resolve_family(info, None))
    assert p.origin == "model metadata" and p.name == "pixel_values"
    assert p.min == (1, 3, 32, 32) and p.opt == (1, 3, 1024, 768) and p.max == (1, 3, 2048, 2048)
    (q,) = derive_profiles(info, resolve_family(info, None), ["pixel_values:1x3x64x64:1x3x512x512:1x3x1024x1024"])
    assert q.origin == "--shapes"


def test_parity_failure_is_reported(tower):
    from ocrconvert.vlm.export import verify_encoder
    from ocrconvert.vlm.hunyuan import HunyuanVisionEncoder

    enc = HunyuanVisionEncoder(tower, interpolation="original").eval()  # the wrong convention for the reference

    def target(x):
        with torch.no_grad():
            return [t.numpy() for t in enc(torch.from_numpy(x))]
    rep = verify_encoder(target, tower, interpolation="transformers", sizes=[(256, 384)])
    assert not rep.passed and "exceeds atol" in rep.cases[0].outputs[0].problem


def test_reduced_precision_rule_scales_with_the_output(tower):
    """fp16/bf16: max abs <= c·rms(ref) and a cosine floor; noise of 0.5 % RMS passes, 5 % fails."""
    from ocrconvert.vlm.export import REDUCED, verify_encoder
    from ocrconvert.vlm.hunyuan import reference_forward

    def noisy(scale):
        def target(x):
            outs = [t.numpy() for t in reference_forward(tower, torch.from_numpy(x))]
            rng = np.random.default_rng(0)
            return [o + scale * np.sqrt(np.mean(o ** 2)) * rng.standard_normal(o.shape).astype(np.float32) / 4
                    for o in outs]
        return target
    ok = verify_encoder(noisy(0.005), tower, interpolation="transformers", sizes=[(256, 320)], precision="fp16")
    bad = verify_encoder(noisy(0.05), tower, interpolation="transformers", sizes=[(256, 320)], precision="fp16")
    assert ok.passed and not bad.passed
    assert ok.tolerances["rms_factor"] == REDUCED["fp16"][0]
    assert verify_encoder(noisy(0.05), tower, interpolation="transformers", sizes=[(256, 320)], precision="bf16").passed


@pytest.mark.parametrize("args,needle", [
    (["hunyuan-ocr", "--size", "500x500"], "not valid for the encoder"),
    (["hunyuan-ocr", "--size", "big"], "is not HxW"),
    (["qwen-vl"], "unknown VLM"),
    (["hunyuan-ocr", "--bf16"], "bf16 ONNX"),
    (["hunyuan-ocr", "--fp16", "--bf16"], "exclude each other"),
    (["hunyuan-ocr", "--layers", "99"], "outside 1..27"),
    (["hunyuan-ocr", "--interpolation", "nearest"], "unknown interpolation"),
    (["hunyuan-ocr", "--checkpoint", "/nonexistent"], "is not a folder"),
    (["hunyuan-ocr", "--reference-device", "tpu"], "is not cpu or cuda"),
    (["hunyuan-ocr", "--size", "512x512", "--export-size", "512x512"], "differs from the export size"),
])
def test_bad_input_exits_2_with_one_message(tmp_path, args, needle):
    out = tmp_path / "o" / "enc.onnx"
    res = run_cli("vlm-export", *args, "-o", out, *([] if "--layers" in args else ["--layers", "1"]))
    assert res.code == 2, (res.code, res.stderr[-1500:])
    assert needle in res.stderr and "Traceback" not in res.stderr
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_embed_refuses_a_model_it_did_not_export(tmp_path, exported):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    other = tmp_path / "other.onnx"
    onnx.save(helper.make_model(g), str(other))
    png = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (64, 64)).save(png)
    res = run_cli("vlm-embed", other, png, "-o", tmp_path / "e.npy")
    assert res.code == 2 and "not written by `ocrconvert vlm-export`" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "e.npy").exists()


def test_external_data_model_is_committed_whole_and_verifies(tmp_path):
    """Weights in a side file (what a > 2 GB model gets): both files land together and load confined."""
    from ocrconvert.formats import detect
    from ocrconvert.onnx_io import load_onnx
    from ocrconvert.vlm.export import VlmExportOptions, export_encoder

    out = tmp_path / "ext" / "enc.onnx"
    res = export_encoder(out, VlmExportOptions(layers=1, external_data=True, sizes=((256, 320), (320, 256))))
    assert res.passed and res.manifest["hops"][0]["external_data"] is True
    assert sorted(p.name for p in out.parent.iterdir()) == ["enc.onnx", "enc.onnx.data", "enc.onnx.ocrconvert.json"]
    assert out.stat().st_size < 10 << 20 < (out.parent / "enc.onnx.data").stat().st_size
    model = load_onnx(detect(out).files["model"])   # external data resolved inside the folder
    assert sum(len(t.raw_data) for t in model.graph.initializer) == res.manifest["hops"][0]["weight_bytes"]
