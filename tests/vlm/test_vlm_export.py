"""`ocrconvert vlm-export hunyuan-ocr` end to end (reduced depth) through the spine: one ONNX for any image
size, verified against the transformers tower, bounded memory at 2048x2048, image -> embeddings, TensorRT
profiles; a damaged export fails verification and lands only under its FAILED name."""
from __future__ import annotations

import json

import numpy as np
import pytest

from _cli_helpers import run_cli
from _vlm_helpers import export

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
    assert data["passed"] and rep["passed"] and data["route"] == ["vlm-onnx"] and data["artifact"] == str(path)
    sizes = [c["input_shapes"]["pixel_values"][2:] for c in rep["cases"]]
    assert sizes == [[512, 512], [640, 960], [1024, 768]]   # 640x960 and 1024x768 differ from 512x512 in both sides
    for case in rep["cases"]:
        for o in case["outputs"]:
            assert o["max_abs"] <= 1e-4, (case["label"], o)
    assert "interpolation=transformers" in rep["family"] and "output size" in rep["source"]
    manifest = json.loads(path.with_name(path.name + ".ocrconvert.json").read_text())
    assert manifest["status"] == "verified" and manifest["precision"] == "fp32"
    assert manifest["source"]["model"] == "hunyuan-ocr" and manifest["source"]["format"] == "vlm-tower"
    assert manifest["source"]["sha256"] is None                     # seeded random weights: no file
    assert manifest["tower"]["weights"] == "seeded random (seed 0)"
    assert manifest["tower"]["vision_config"]["num_hidden_layers"] == LAYERS
    (hop,) = manifest["hops"]
    assert hop["converter"] == "vlm-onnx" and hop["from"] == "vlm" and hop["to"] == "onnx"
    assert hop["produced"]["opset"] == 18 and hop["produced"]["blocked_attention_loops"] == LAYERS
    assert hop["produced"]["export_size"] == "512x512" and hop["options"]["precision"] == "fp32"
    assert manifest["interpolation"]["convention"] == "transformers"
    assert manifest["preprocess"]["factor"] == 32 and manifest["preprocess"]["resample"] == "bicubic"
    assert [s["name"] for s in manifest["io"]["outputs"]] == ["image_embeds", "last_hidden_state"]
    assert manifest["verification"]["passed"] and manifest["artifact"]["path"] == str(path)
    model = onnx.load(str(path), load_external_data=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 1 and dims[1].dim_value == 3
    assert dims[2].dim_param and dims[3].dim_param            # symbolic height and width
    assert [n.op_type for n in model.graph.node].count("Loop") == LAYERS
    assert not [n for n in model.graph.node if n.domain == attention.DOMAIN]
    assert sorted(f.name for f in path.parent.iterdir()) == ["encoder.onnx", "encoder.onnx.ocrconvert.json"]


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
    from ocrconvert.runners import runner_for
    from ocrconvert.tensorrt.profiles import derive_profiles

    path, _ = exported
    info = runner_for(detect(path)).info()
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
    (["hunyuan-ocr", "--device", "cuda"], "cannot be honoured by the route vlm-onnx"),  # ONNX takes no device
    (["hunyuan-ocr", "--opset", "12"], "outside what torch.onnx's dynamo exporter writes"),
])
def test_bad_input_exits_2_with_one_message(tmp_path, args, needle):
    out = tmp_path / "o" / "enc.onnx"
    res = run_cli("vlm-export", *args, "-o", out, *([] if "--layers" in args else ["--layers", "1"]))
    assert res.code == 2, (res.code, res.stderr[-1500:])
    assert needle in res.stderr and "Traceback" not in res.stderr
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_routes_lists_the_vlm_routes():
    res = run_cli("routes", "--json")
    assert res.code == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)["converters"]}
    onnx_route, aot_route = rows["vlm-onnx"], rows["vlm-aot"]
    assert (onnx_route["source"], onnx_route["target"]) == ("vlm", "onnx") and onnx_route["available"]
    assert (aot_route["source"], aot_route["target"]) == ("vlm", "torch-aot") and aot_route["available"]
    common = {"layers", "precision", "interpolation", "reference_device", "seed", "export_size", "sizes", "images"}
    assert common | {"opset", "block"} == set(onnx_route["options"])
    assert common | {"device"} == set(aot_route["options"])


# run inside the CLI's process: the exporter writes the model, then one weight of it is damaged on disk
_DAMAGE = """
import numpy as np, onnx
from onnx import numpy_helper
import ocrconvert.vlm.export as E
_export = E.export_onnx
def damaged(encoder, dest, job, **kw):
    facts = _export(encoder, dest, job, **kw)
    model = onnx.load(str(dest))
    t = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * np.float32(1.05), t.name))
    onnx.save(model, str(dest))
    return facts
E.export_onnx = damaged
"""


def test_damaged_export_fails_verification_and_lands_under_the_failed_name(exported, tmp_path):
    """Through the spine and the product's verifier: exit 6, FAILED name, the good artifact untouched."""
    import shutil

    from ocrconvert.errors import UsageError

    path, _ = exported
    good = tmp_path / "encoder.onnx"
    for p in (path, path.with_name(path.name + ".ocrconvert.json")):
        shutil.copy(p, tmp_path / p.name)
    before = good.read_bytes()
    small = dict(layers=1, export_size="256x256", sizes=("320x384",))
    with pytest.raises(UsageError, match="already exists"):        # replacing needs --force
        export(good, **small)
    res = run_cli("vlm-export", "hunyuan-ocr", "--layers", 1, "--export-size", "256x256", "--size", "320x384",
                  "-o", good, "--force", "--json", prelude=_DAMAGE)
    assert res.code == 6, (res.code, res.stderr[-1500:])
    data = json.loads(res.stdout)
    failed = tmp_path / "encoder.FAILED.onnx"
    assert not data["passed"] and data["artifact"] == str(failed)
    assert all("exceeds atol" in o["problem"] for o in data["verification"]["cases"][0]["outputs"])
    assert data["verification"]["summary"].startswith("FAILED")
    assert good.read_bytes() == before                              # never committed under the final name
    manifest = json.loads((tmp_path / "encoder.FAILED.onnx.ocrconvert.json").read_text())
    assert manifest["status"] == "failed-verification" and not manifest["verification"]["passed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "encoder.FAILED.onnx", "encoder.FAILED.onnx.ocrconvert.json", "encoder.onnx", "encoder.onnx.ocrconvert.json"]


def test_weights_beyond_one_onnx_file_are_refused_before_export(tmp_path, monkeypatch):
    """> 2 GiB needs ONNX external data, which the one-file commit cannot carry yet: refused, nothing written."""
    from ocrconvert.errors import UsageError
    from ocrconvert.vlm import export as vlm_export

    monkeypatch.setattr(vlm_export, "ONNX_LIMIT", 1 << 20)
    with pytest.raises(UsageError, match="exceed what one ONNX file holds"):
        export(tmp_path / "big" / "enc.onnx", layers=1)
    assert not (tmp_path / "big").exists()
