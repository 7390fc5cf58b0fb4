"""A plain transformers checkpoint folder (config.json + model.safetensors, as published on the hub, no manifest)
of a PP-OCR / PP-LCNet model type is judged with its OCR family on every route, not the generic metric."""

from __future__ import annotations

import pytest

from ocrconvert.families.base import ModelInfo, TensorSpec
from ocrconvert.families.resolve import family_of_transformers_config, resolve_family


@pytest.mark.parametrize(("model_type", "archs", "family"), [
    ("pp_ocrv5_mobile_det", None, "det-db"),
    ("pp_ocrv6_small_det", None, "det-db"),
    ("pp_ocrv5_server_rec", None, "rec-ctc"),
    ("pp_ocrv6_tiny_rec", None, "rec-ctc"),
    ("pp_lcnet", None, "cls"),
    ("some_future_type", ["PPOCRV7NanoRecForTextRecognition"], "rec-ctc"),
    ("bert", ["BertForMaskedLM"], None),  # not ours: left to the shape rules
    (None, None, None),
])
def test_family_of_transformers_config(model_type, archs, family):
    assert family_of_transformers_config(model_type, archs) == family


def test_resolve_family_reads_the_config_before_shapes():
    # shapes alone say nothing (a hub folder has no manifest describing its outputs)
    info = ModelInfo([TensorSpec("x", (None, 3, None, None))], [TensorSpec("output", ())],
                     metadata={"transformers.model_type": "pp_ocrv5_mobile_det"})
    assert resolve_family(info).name == "det-db"
    info.metadata = {}
    assert resolve_family(info).name == "generic"


@pytest.mark.paddle
def test_hub_folder_converts_with_the_ocr_metric(zoo, tmp_path):
    """Paddle -> native, then ``save_pretrained`` alone (what the hub holds): torch2onnx on that folder is
    judged by the det-db family, and passes."""
    pytest.importorskip("paddle", reason="paddlepaddle is not installed")
    pytest.importorskip("transformers", reason="transformers is not installed")
    import ocrconvert
    from ocrconvert.formats import Format, detect
    from ocrconvert.native import convert_to_transformers, trainable_module
    from ocrconvert.runners import runner_for

    native = tmp_path / "native"
    assert convert_to_transformers(zoo("ppocrv5-mobile-det"), native).complete
    hub = tmp_path / "hub"
    trainable_module(native).save_pretrained(hub, safe_serialization=True)
    assert sorted(p.name for p in hub.iterdir()) == ["config.json", "model.safetensors"]
    art = detect(hub)
    assert art.format is Format.TORCH_NATIVE
    assert resolve_family(runner_for(art).info()).name == "det-db"

    result = ocrconvert.convert(hub, tmp_path / "det.onnx", target="onnx")
    assert result.report.family == "det-db"
    assert result.report.passed, result.report.summary_line()
    assert result.report.informative_cases >= 1


@pytest.mark.slow
@pytest.mark.parametrize(("name", "family"), [("ppocrv6-tiny-rec-onnx", "rec-ctc"), ("doc-orientation-onnx", "cls")])
def test_hub_folder_of_an_onnx_only_model_converts_with_its_family(name, family, zoo, tmp_path):
    """ONNX -> native, ``save_pretrained`` alone, then torch2onnx on that folder: judged by its family (here
    against the hub folder itself, the only original such a folder has)."""
    pytest.importorskip("transformers", reason="transformers is not installed")
    import ocrconvert
    from ocrconvert.native import convert_to_transformers, trainable_module

    native = tmp_path / "native"
    assert convert_to_transformers(zoo(name), native).complete
    hub = tmp_path / "hub"
    trainable_module(native).save_pretrained(hub, safe_serialization=True)
    result = ocrconvert.convert(hub, tmp_path / "m.onnx", target="onnx")
    assert result.report.family == family
    assert result.report.passed, result.report.summary_line()
