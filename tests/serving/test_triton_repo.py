"""triton-repo on a real converted v5 set: the repository's layout and every config.pbtxt against Triton's schema
(tritonclient's model_config_pb2); damaged configs fail the check; the CLI's refusals. No server here."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

from ocrconvert.serving import InvalidConfigError, parse_config, validate_config, validate_repository
from ocrconvert.serving.config import config_problems

pytestmark = [pytest.mark.zoo, pytest.mark.paddle]


@pytest.fixture(scope="module")
def python_repo(served_set, tmp_path_factory):
    from ocrconvert.serving import write_repository

    out = tmp_path_factory.mktemp("repo") / "py"
    write_repository(served_set, out, backend="python")
    return out


def test_python_repository(python_repo, served_set):
    from ocrconvert import load_set

    configs = validate_repository(python_repo)
    assert set(configs) == {"det", "cls", "rec", "ocr"}
    dims = {name: {t.name: list(t.dims) for t in cfg.input} for name, cfg in configs.items()}
    # shape ranges from the families: the rec height and the cls size are fixed, the det side and line width are not
    assert dims["rec"] == {"x": [3, 48, -1]} and dims["cls"] == {"x": [3, 48, 192]} and dims["det"] == {"x": [3, -1, -1]}
    assert configs["rec"].max_batch_size == 64 and configs["det"].max_batch_size == 1
    assert list(configs["rec"].dynamic_batching.preferred_batch_size) == [8]
    assert all(cfg.backend == "python" for cfg in configs.values())
    assert [o.name for o in configs["ocr"].output] == ["boxes", "texts", "scores"]
    for stage in ("det", "cls", "rec"):  # each stage's artifact travels with its manifest
        assert (python_repo / stage / "1" / "artifact" / "model.onnx").is_file()
        assert (python_repo / stage / "1" / "artifact" / "model.onnx.ocrconvert.json").is_file()
    spec = json.loads((python_repo / "ocr" / "1" / "pipeline.json").read_text())
    ocr = load_set(served_set)  # the BLS model runs exactly the in-process pipeline's parameters and dictionary
    assert spec["params"] == json.loads(json.dumps(ocr.params.to_dict()))
    assert spec["dictionary"] == list(ocr.dictionary) and len(spec["dictionary"]) > 18000
    assert list(spec["stages"]) == ["det", "cls", "rec"]


def test_onnxruntime_repository(served_set, tmp_path, cli_here):
    res = cli_here("triton-repo", served_set, "-o", tmp_path / "ort", "--backend", "onnxruntime", "--json", check=0)
    doc = json.loads(res.stdout)
    assert doc["backend"] == "onnxruntime" and set(doc["models"]) == {"det", "cls", "rec", "ocr"}
    configs = validate_repository(tmp_path / "ort")
    for stage in ("det", "cls", "rec"):
        assert configs[stage].backend == "onnxruntime" and configs[stage].default_model_filename == "model.onnx"
        copied = (tmp_path / "ort" / stage / "1" / "model.onnx").read_bytes()
        assert copied == (served_set / stage / "model.onnx").read_bytes()
    assert configs["ocr"].backend == "python"


def test_tensorrt_plan_config_follows_the_schema(served_set):
    """An engine set cannot be built here (no TensorRT); its stage configs come from the same specs and families."""
    from ocrconvert.families import resolve_family
    from ocrconvert.formats import detect
    from ocrconvert.runners import runner_for
    from ocrconvert.serving.repository import stage_config

    for stage in ("det", "cls", "rec"):
        info = runner_for(detect(served_set / stage)).info()
        cfg = parse_config(stage_config(stage, info, resolve_family(info), "tensorrt").to_pbtxt())
        assert cfg.platform == "tensorrt_plan" and cfg.default_model_filename == "model.plan" and not cfg.backend
        assert config_problems(cfg, stage) == []


def test_tensorrt_repository_from_engines(served_set, tmp_path, monkeypatch):
    """An engine set (the fake TensorRT 10 of tests/trt builds the engines here): model.plan is the engine, and the
    config batches and ranges as the ENGINE's profiles (rec: inference.yml's max batch 8), not the family defaults."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "trt"))
    from fake_tensorrt import install_fake_tensorrt

    from ocrconvert.manifest import read_manifest
    from ocrconvert.pipeline import convert
    from ocrconvert.serving import write_repository

    install_fake_tensorrt(monkeypatch, 10)
    for stage in ("det", "cls", "rec"):
        convert(served_set / stage / "model.onnx", tmp_path / f"{stage}.engine", target="tensorrt", route="trt-build",
                verify=False)
    (tmp_path / "set.yaml").write_text("det: det.engine\ncls: cls.engine\nrec: rec.engine\n")
    write_repository(tmp_path / "set.yaml", tmp_path / "repo", backend="tensorrt")
    configs = validate_repository(tmp_path / "repo")
    for stage in ("det", "cls", "rec"):
        cfg = configs[stage]
        assert cfg.platform == "tensorrt_plan" and cfg.default_model_filename == "model.plan"
        assert (tmp_path / "repo" / stage / "1" / "model.plan").read_bytes() == (tmp_path / f"{stage}.engine").read_bytes()
        prof = read_manifest(tmp_path / f"{stage}.engine")["engine"]["profiles"][0]
        assert cfg.max_batch_size == prof["max"][0]
        assert cfg.parameters["shape_range:x"].string_value == ";".join(
            "x".join(str(d) for d in prof[k]) for k in ("min", "opt", "max"))
    assert configs["rec"].max_batch_size == 8 and list(configs["rec"].input[0].dims) == [3, 48, -1]


def test_tensorrt_backend_refuses_an_onnx_set(served_set, tmp_path, cli_here):
    res = cli_here("triton-repo", served_set, "-o", tmp_path / "trt", "--backend", "tensorrt", check=2)
    assert "TensorRT engines" in res.stderr and "--backend python" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "trt").exists() and not any(tmp_path.iterdir())


@pytest.mark.parametrize("damage, expected", [
    (lambda t: t.replace('max_batch_size: 64', 'max_batch_size: 64\nmax_batch: 3'), "schema"),     # unknown field
    (lambda t: t.replace("TYPE_FP32", "TYPE_FLOAT32", 1), "schema"),                               # bad enum
    (lambda t: t.replace('name: "rec"', 'name: "recognizer"'), "folder"),                         # name != folder
    (lambda t: t.replace("dims: [ 3, 48, -1 ]", "dims: [ 3, 0, -1 ]"), "invalid dims"),
    (lambda t: t.replace("max_batch_size: 64", "max_batch_size: 0"), "dynamic_batching needs"),
    (lambda t: t.replace("preferred_batch_size: 8", "preferred_batch_size: 128"), "preferred_batch_size"),
    (lambda t: t.replace('backend: "python"', ""), "neither a backend"),
    (lambda t: t.replace("data_type: TYPE_FP32 dims: [ 3, 48, -1 ]", "dims: [ 3, 48, -1 ]"), "no data_type"),
    (lambda t: t + 'input { name: "x" data_type: TYPE_FP32 dims: [ 3 ] }\n', "declared twice"),
    (lambda t: t.replace('dims: [ 3, 48, -1 ] }', 'dims: [ 3, 48, -1 ] '), "schema"),                 # syntax
], ids=["unknown-field", "bad-enum", "name", "zero-dim", "batching-without-batch", "preferred", "no-backend",
        "no-dtype", "duplicate-input", "syntax"])
def test_damaged_config_fails(python_repo, tmp_path, damage, expected):
    good = (python_repo / "rec" / "config.pbtxt").read_text()
    validate_config(python_repo / "rec" / "config.pbtxt")  # the undamaged one passes
    bad = damage(good)
    assert bad != good
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "config.pbtxt").write_text(bad)
    with pytest.raises(InvalidConfigError) as exc:
        validate_config(tmp_path / "rec" / "config.pbtxt")
    assert expected in str(exc.value)


def test_existing_output_and_failed_set(served_set, python_repo, tmp_path, cli_here):
    before = sorted(p.name for p in python_repo.iterdir())
    res = cli_here("triton-repo", served_set, "-o", python_repo, check=2)
    assert "--force" in res.stderr and sorted(p.name for p in python_repo.iterdir()) == before
    failed = tmp_path / "failed-set"
    shutil.copytree(served_set, failed)
    record = yaml.safe_load((failed / "ocrconvert-set.yaml").read_text())
    record["status"] = "failed-verification"
    (failed / "ocrconvert-set.yaml").write_text(yaml.safe_dump(record))
    res = cli_here("triton-repo", failed, "-o", tmp_path / "repo", "--json", check=6)
    assert json.loads(res.stdout)["error"] == "ParityError" and not (tmp_path / "repo").exists()
