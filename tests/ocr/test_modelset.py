"""read_set on the three layouts (set folder, PaddleOCR model-set folder, stage YAML) and its usage errors.

Real zoo models; nothing runs inference here (stages are recognised from their programs), so this is fast."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from ocrconvert.errors import ExitCode, ModelNotFoundError, OcrConvertError, UsageError
from ocrconvert.ocr.modelset import SET_FILE, ModelSet, from_stages, read_set


@pytest.fixture(scope="module")
def v4(zoo):
    return {"det": zoo("ppocrv4-det"), "cls": zoo("ppocrv4-cls"), "rec": zoo("ppocrv4-rec")}


def _link(folder: Path, name: str, target: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    os.symlink(target, folder / name)
    return folder / name


def _usage(exc_info) -> OcrConvertError:
    err = exc_info.value
    assert err.exit_code == ExitCode.USAGE and err.hint, (err.message, err.hint)
    return err


def test_paddle_folder_stages_by_family_not_folder_name(tmp_path, v4):
    # the names lie on purpose: the det model sits in "rec_model", the rec model in "det_model"
    _link(tmp_path / "set", "rec_model", v4["det"])
    _link(tmp_path / "set", "det_model", v4["rec"])
    _link(tmp_path / "set", "x", v4["cls"])
    (tmp_path / "set" / "ppocr_keys_v1.txt").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "set" / "notes").mkdir()  # not a model: not part of the set
    s = read_set(tmp_path / "set")
    assert s.det.name == "rec_model" and s.rec.name == "det_model" and s.cls.name == "x"
    assert s.dictionary == tmp_path / "set" / "ppocr_keys_v1.txt"
    assert s.origin.kind == "paddle-folder" and s.status is None
    assert list(s.stages) == ["det", "cls", "rec"]


def test_paddle_folder_without_cls(tmp_path, v4):
    _link(tmp_path / "set", "d", v4["det"])
    _link(tmp_path / "set", "r", v4["rec"])
    s = read_set(tmp_path / "set")
    assert s.cls is None and list(s.stages) == ["det", "rec"] and s.dictionary is None


def test_stage_yaml_relative_paths_and_params(tmp_path, v4):
    models = tmp_path / "models"
    for k, p in v4.items():
        _link(models, k, p)
    (models / "keys.txt").write_text("a\nb\n", encoding="utf-8")
    cfg = tmp_path / "conf" / "set.yaml"
    cfg.parent.mkdir()
    cfg.write_text(yaml.safe_dump({"det": "../models/det", "rec": "../models/rec", "cls": "../models/cls",
                                   "dict": "../models/keys.txt", "params": {"det": {"box_thresh": 0.5},
                                                                            "rec_score_thresh": 0.1}}))
    s = read_set(cfg)
    assert s.det == cfg.parent / "../models/det" and s.dictionary == cfg.parent / "../models/keys.txt"
    assert s.params == {"det_box_thresh": 0.5, "rec_score_thresh": 0.1}
    assert s.origin.kind == "stage-yaml"
    ocr = s.pipeline("cpu")  # runners are lazy: building the pipeline loads no model
    assert ocr.params.det.box_thresh == 0.5 and ocr.params.rec.score_thresh == 0.1
    assert ocr.dictionary == ["a", "b"]


def test_set_folder_record(tmp_path, v4):
    folder = tmp_path / "out"
    for k, p in v4.items():
        _link(folder, k, p)
    shutil.copy(Path(v4["rec"]) / "ppocr_keys_v1.txt", folder / "dict.txt")
    record = {"ocrconvert_set": 1, "status": "verified", "target": "onnx",
              "stages": {k: {"path": k, "format": "paddle-legacy"} for k in v4}, "dictionary": "dict.txt",
              "params": {}}
    (folder / SET_FILE).write_text(yaml.safe_dump(record))
    s = read_set(folder)
    assert s.origin.kind == "set-folder" and s.status == "verified" and s.record["target"] == "onnx"
    assert s.rec == folder / "rec" and s.dictionary == folder / "dict.txt"
    # a set recorded as failed is not loaded
    (folder / SET_FILE).write_text(yaml.safe_dump({**record, "status": "failed-verification"}))
    with pytest.raises(OcrConvertError) as e:
        read_set(folder).pipeline()
    assert e.value.exit_code == ExitCode.PARITY_FAILED and "allow_failed" in e.value.hint


def test_two_det_models(tmp_path, v4):
    _link(tmp_path / "set", "a", v4["det"])
    _link(tmp_path / "set", "b", v4["det"])
    _link(tmp_path / "set", "r", v4["rec"])
    with pytest.raises(UsageError) as e:
        read_set(tmp_path / "set")
    err = _usage(e)
    assert "2 det models (a, b)" in err.message and "YAML" in err.hint


def test_missing_rec_names_what_was_found(tmp_path, v4):
    _link(tmp_path / "set", "d", v4["det"])
    _link(tmp_path / "set", "c", v4["cls"])
    with pytest.raises(UsageError) as e:
        read_set(tmp_path / "set")
    err = _usage(e)
    assert "no rec model" in err.message and "d (det)" in err.message and "c (cls)" in err.message


def test_two_dictionaries(tmp_path, v4):
    _link(tmp_path / "set", "d", v4["det"])
    _link(tmp_path / "set", "r", v4["rec"])
    for name in ("a_dict.txt", "b_keys.txt"):
        (tmp_path / "set" / name).write_text("x\n")
    with pytest.raises(UsageError) as e:
        read_set(tmp_path / "set")
    assert "2 dictionary files" in _usage(e).message


def test_one_model_is_not_a_set(v4):
    with pytest.raises(UsageError) as e:
        read_set(v4["det"])
    assert "one model (det-db), not a model set" in _usage(e).message


def test_yaml_stage_of_the_wrong_family(tmp_path, v4):
    cfg = tmp_path / "set.yaml"
    cfg.write_text(yaml.safe_dump({"det": str(v4["rec"]), "rec": str(v4["det"])}))
    with pytest.raises(UsageError) as e:
        read_set(cfg)
    err = _usage(e)
    assert "named as the det model but is a rec-ctc model" in err.message and "Swap" in err.hint


@pytest.mark.parametrize("doc, words", [
    ({"rec": "r"}, "names no det model"),
    ({"det": "d", "rec": "r", "detector": "x"}, "unknown key(s) ['detector']"),
    ({"det": "d", "rec": 3}, "stage rec must name a model path"),
    ({"det": "d", "rec": "r", "params": {"det_nonsense": 1}}, "unknown OCR parameter 'det_nonsense'"),
    ([1, 2], "should hold a mapping"),
])
def test_yaml_usage_errors(tmp_path, v4, doc, words):
    (tmp_path / "d").symlink_to(v4["det"])
    (tmp_path / "r").symlink_to(v4["rec"])
    cfg = tmp_path / "set.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    with pytest.raises(UsageError) as e:
        read_set(cfg)
    assert words in _usage(e).message


def test_missing_paths(tmp_path, v4):
    with pytest.raises(ModelNotFoundError):
        read_set(tmp_path / "nowhere")
    cfg = tmp_path / "set.yaml"
    cfg.write_text(yaml.safe_dump({"det": str(v4["det"]), "rec": "missing/"}))
    with pytest.raises(ModelNotFoundError) as e:
        read_set(cfg)
    assert "the rec model" in e.value.message and e.value.exit_code == ExitCode.USAGE
    cfg.write_text(yaml.safe_dump({"det": str(v4["det"]), "rec": str(v4["rec"]), "dict": "nope.txt"}))
    with pytest.raises(ModelNotFoundError) as e:
        read_set(cfg)
    assert "dictionary" in e.value.message


def test_from_stages_and_to_dict(v4):
    s = from_stages(v4["det"], v4["rec"])
    assert isinstance(s, ModelSet) and s.cls is None
    d = s.to_dict()
    assert d["det"] == str(v4["det"]) and d["cls"] is None and d["status"] is None
