"""The plan options are one record's fields: the batch YAML validates them as the CLI and the API do."""
from __future__ import annotations

import pytest

from ocrconvert.errors import UsageError


def _job(tmp_path, target: str, extra: str):
    from ocrconvert.zoo.batch import load_config

    p = tmp_path / "b.yaml"
    p.write_text(f"output: out\nmodels:\n  - {{model: ppocrv4-cls-onnx, targets: [{{target: {target}{extra}}}]}}\n")
    (job,) = load_config(p).jobs
    return job


def test_batch_yaml_passes_the_plan_through_the_record(tmp_path):
    from ocrconvert import registry
    from ocrconvert.pipeline import available_converters

    available_converters()
    if "plan" not in registry.get("trt-build").options_type.field_names():
        pytest.skip("trt-build is a plugin's here")
    job = _job(tmp_path, "tensorrt", ", precision: fp16, options: {plan: auto, plan_max_evals: 6}")
    assert job.options == {"precision": "fp16", "plan": "auto", "plan_max_evals": 6}
    with pytest.raises(UsageError, match="fp16 or int8"):
        _job(tmp_path, "tensorrt", ", options: {plan: auto}")
    with pytest.raises(UsageError, match="plan_max_evals"):
        _job(tmp_path, "tensorrt", ", precision: fp16, options: {plan: auto, plan_max_evals: many}")
