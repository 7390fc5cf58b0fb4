"""The whole HunyuanOCR outside PyTorch (`vlm-export --parts all`, `vlm-generate`): a 2-layer model with seeded
random weights and small widths, exported once per module; greedy generation in ONNX Runtime against
transformers' own `generate` at three image sizes; a damaged decoder weight fails the check."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from _cli_helpers import run_cli

pytestmark = pytest.mark.native
torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
SIZES = ("64x96", "128x64", "96x160")   # 64x96 and 96x160 differ from the encoder's 512x512 export in both sides
NEW_TOKENS = 64
# small widths, 2 layers each, the real structure (GQA, q/k norm, 4 XD-RoPE axes, merger with newline/begin/end);
# a wide init so greedy argmaxes are far from ties and the tokens vary
VISION = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
          "patch_size": 16, "spatial_merge_size": 2, "max_image_size": 2048, "hidden_act": "gelu",
          "interpolate_mode": "bilinear", "rms_norm_eps": 1e-5, "num_channels": 3}
TEXT = {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-5,
        "initializer_range": 0.2, "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "dynamic", "rope_theta": 10000.0, "alpha": 1000.0, "factor": 1.0,
                            "mrope_section": [2, 2, 2, 2]},
        "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
TOKENS = {"image_token_id": 500, "im_start_id": 501, "im_end_id": 502, "im_newline_id": 503}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from transformers.models.hunyuan_vl.configuration_hunyuan_vl import HunYuanVLConfig
    from transformers.models.hunyuan_vl.modeling_hunyuan_vl import HunYuanVLForConditionalGeneration

    folder = tmp_path_factory.mktemp("hy-ckpt")
    torch.manual_seed(5)
    model = HunYuanVLForConditionalGeneration(HunYuanVLConfig(text_config=TEXT, vision_config=VISION, **TOKENS))
    model.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def model(checkpoint):
    from ocrconvert.vlm.hunyuan_lm import build_model

    return build_model(checkpoint)


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("hy-all") / "hunyuan"
    args = ["vlm-export", "hunyuan-ocr", "--checkpoint", checkpoint, "--parts", "all", "-o", out,
            "--new-tokens", NEW_TOKENS, "--json"]
    for s in SIZES:
        args += ["--size", s]
    res = run_cli(*args, timeout=1500)
    assert res.code == 0, res.stderr[-3000:]
    return out, json.loads(res.stdout)


def _page(path, w=300, h=180):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    for i in range(5):
        d.text((10, 10 + 32 * i), f"line {i}: ocrconvert {i * 37}", fill=(0, 0, 0))
    img.save(path)
    return path


def test_parts_all_tokens_identical_at_three_sizes(exported):
    out, data = exported
    assert data["passed"] and data["status"] == "verified" and data["encoder_verdict"] == "PASSED"
    rep = data["verification"]
    assert rep["verdict"] == "PASSED" and len(rep["cases"]) == 3
    assert [c["label"] for c in rep["cases"]] == list(SIZES)
    for case in rep["cases"]:
        detail = case["task"]["detail"]
        assert detail["tokens_onnx"] == detail["tokens_reference"] and len(detail["tokens_onnx"]) == NEW_TOKENS
        assert detail["distinct_tokens"] >= 8          # the tokens carry signal, not one repeated id
        for o in case["outputs"]:
            assert o["passed"] and o["max_abs"] <= 1e-4, o
    names = sorted(p.name for p in out.iterdir())
    for f in ("encoder.onnx", "encoder.onnx.ocrconvert.json", "embed.onnx", "decoder.onnx", "config.json",
              "generation_config.json", "preprocessor_config.json", "ocrconvert-vlm.json"):
        assert f in names, names
    info = json.loads((out / "ocrconvert-vlm.json").read_text())
    assert info["status"] == "verified" and info["rope_axes"] == 4 and info["text"]["num_hidden_layers"] == 2
    enc = json.loads((out / "encoder.onnx.ocrconvert.json").read_text())
    assert enc["artifact"]["path"] == str(out / "encoder.onnx") and enc["status"] == "verified"


def test_decoder_io_is_dynamic_with_kv_cache(exported):
    import onnx

    out, _ = exported
    m = onnx.load(str(out / "decoder.onnx"))
    ins = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in m.graph.input}
    outs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in m.graph.output}
    assert ins["position_ids"][0] == 4 and isinstance(ins["position_ids"][2], str)
    assert isinstance(ins["inputs_embeds"][1], str)
    assert sorted(n for n in ins if n.startswith("past_")) == ["past_key_0", "past_key_1", "past_value_0", "past_value_1"]
    assert ins["past_key_0"][:2] == [1, 2] and isinstance(ins["past_key_0"][2], str) and ins["past_key_0"][3] == 16
    assert isinstance(outs["present_key_0"][2], str) and outs["logits"] == [1, 512]


def test_vlm_generate_cli_equals_transformers_on_an_image_without_torch(exported, model, tmp_path):
    """The CLI in ONNX Runtime (torch never imported: NumPy preprocessing) gives transformers' tokens on a page."""
    from ocrconvert.vlm.generate import expand_prompt
    from ocrconvert.vlm.hunyuan import preprocess
    from ocrconvert.vlm.hunyuan_lm import reference_generate

    out, _ = exported
    page = _page(tmp_path / "page.png")
    prompt = [7, 500, 9, 11]          # the image token in the middle of the prompt
    res = run_cli("vlm-generate", out, page, "--prompt-ids", ",".join(map(str, prompt)), "--max-new-tokens", 40,
                  "--json", timeout=600, prelude="import atexit, sys\n"
                  "atexit.register(lambda: sys.stderr.write('TORCH=%s' % ('torch' in sys.modules)))")
    assert res.code == 0, res.stderr[-2000:]
    assert res.stderr == "TORCH=False"            # no torch, and no third-party noise
    got = json.loads(res.stdout)
    x = preprocess(page, min_pixels=512 * 512)
    info = json.loads((out / "ocrconvert-vlm.json").read_text())
    ids, mm = expand_prompt(prompt, got["image_tokens"], info["tokens"])
    assert ids[0] == 7 and ids[-2:].tolist() == [9, 11] and mm.sum() == got["image_tokens"]
    ref = reference_generate(model, x, ids, mm, max_new_tokens=40)
    assert got["tokens"] == ref["tokens"].tolist() and got["prompt_length"] == len(ids)


def test_damaged_decoder_weight_fails_generation_check(exported, model, tmp_path):
    import onnx
    from onnx import numpy_helper

    from ocrconvert.vlm.bundle import verify_generation

    out, _ = exported
    bad = tmp_path / "damaged"
    shutil.copytree(out, bad)
    m = onnx.load(str(bad / "decoder.onnx"))
    # the exporter folds each Linear's transpose into its weight (names val_N): the last [intermediate, hidden]
    # initializer is layer 1's down_proj
    init = [t for t in m.graph.initializer if list(t.dims) == [TEXT["intermediate_size"], TEXT["hidden_size"]]][-1]
    w = numpy_helper.to_array(init).copy()
    w.flat[::97] *= 1.05                              # ~1 % of one MLP weight, 5 % off
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(m, str(bad / "decoder.onnx"))
    rep = verify_generation(bad, model, sizes=[(64, 96)], precision="fp32", new_tokens=NEW_TOKENS)
    assert rep.verdict == "FAILED"
    case = rep.cases[0]
    assert not case.outputs[1].passed and case.outputs[1].max_abs > 1e-4     # the prefill logits
    good = verify_generation(out, model, sizes=[(64, 96)], precision="fp32", new_tokens=NEW_TOKENS)
    assert good.verdict == "PASSED"                   # the same check on the undamaged folder


def test_fp16_decoder_judged_by_tokens_and_cosine(exported, model, tmp_path):
    from ocrconvert.vlm.bundle import export_language_parts, verify_generation

    out, _ = exported
    half = tmp_path / "fp16"
    half.mkdir()
    shutil.copy(out / "encoder.onnx", half / "encoder.onnx")
    export_language_parts(model, half, precision="fp16", opset=18, encoder_manifest=None)
    import onnx

    dtypes = {t.data_type for t in onnx.load(str(half / "decoder.onnx")).graph.initializer if t.dims}
    assert onnx.TensorProto.FLOAT16 in dtypes
    rep = verify_generation(half, model, sizes=[(96, 160)], precision="fp16", new_tokens=NEW_TOKENS)
    case = rep.cases[0]
    assert rep.verdict == "PASSED", rep.summary_line()
    assert case.task.value >= 0.9 and case.task.detail["logit_cosine"] >= 0.999
    assert case.outputs[1].max_abs > 0                # fp16 really differs from fp32


def test_usage_errors_are_one_message_exit_2(exported, tmp_path):
    out, _ = exported
    page = _page(tmp_path / "p.png")
    from ocrconvert.errors import UsageError
    from ocrconvert.vlm.generate import generate_cli

    # in process (each CLI child costs seconds of imports): the same messages the CLI renders
    for kwargs, msg in [({"prompt_ids": "1,x"}, "comma-separated"), ({"prompt_ids": "1,99999"}, "outside the vocabulary"),
                        ({"prompt": "hi", "prompt_ids": "1"}, "exactly one of")]:
        with pytest.raises(UsageError, match=msg):
            generate_cli(out, page, **kwargs)
    with pytest.raises(UsageError, match="not a folder written by"):
        generate_cli(tmp_path, page, prompt_ids="1")
    cases = [
        (["vlm-generate", out, page, "--prompt", "read the page"], "no tokenizer"),
        (["vlm-export", "paddleocr-vl", "--parts", "all", "-o", tmp_path / "pv"], "not available for paddleocr-vl"),
        (["vlm-export", "hunyuan-ocr", "--parts", "all", "--block", "8", "-o", tmp_path / "y"], "encoder alone"),
    ]
    from ocrconvert.pipeline import convert_vlm

    with pytest.raises(UsageError, match="names a file"):
        convert_vlm("hunyuan-ocr", tmp_path / "x.onnx")
    for args, msg in cases:
        res = run_cli(*args, "--json")
        assert res.code == 2, (args, res.stderr[-800:])
        assert msg in res.stdout and "Traceback" not in res.stderr, (args, res.stdout, res.stderr[-800:])
        json.loads(res.stdout)
    assert not (tmp_path / "pv").exists() and not (tmp_path / "x.onnx").exists() and not (tmp_path / "y").exists()


def test_numpy_preprocessing_equals_the_processor(tmp_path):
    """vlm-generate's torch-free preprocessing is bit-identical to the HunyuanOCR processor (via hunyuan.preprocess,
    itself held to transformers' HunYuanVLImageProcessorPil in test_vlm_parts)."""
    from ocrconvert.vlm.generate import preprocess_image
    from ocrconvert.vlm.hunyuan import PREPROCESS, preprocess

    for w, h in [(1234, 517), (97, 1500), (3000, 2500)]:    # upscaled, a strip, downscaled
        page = _page(tmp_path / f"p{w}.png", w, h)
        ours, ref = preprocess_image(page, PREPROCESS), preprocess(page)
        assert ours.shape == ref.shape and np.array_equal(ours, ref), (w, h)


def test_decoder_over_one_onnx_file_is_refused_before_work(model, monkeypatch):
    """The 2 GiB limit of one ONNX file, scaled to the tiny decoder: fp32 refused (exit 2), fp16 fits."""
    from ocrconvert.errors import UsageError
    from ocrconvert.vlm import export as vlm_export
    from ocrconvert.vlm.hunyuan_lm import check_decoder_size

    lm = model.model.language_model
    fp32_bytes = 4 * (sum(p.numel() for p in lm.layers.parameters()) + model.lm_head.weight.numel())
    monkeypatch.setattr(vlm_export, "ONNX_LIMIT", fp32_bytes * 3 // 4)
    with pytest.raises(UsageError, match="exceed what one ONNX file holds"):
        check_decoder_size(model, "fp32")
    check_decoder_size(model, "fp16")
