"""The dictionary and pre/post-processing travel with every converted artifact (issue 13 item 6).

* ``--dict`` lands in ONNX metadata under ``character`` (newline-joined, what RapidOCR reads) on the ONNX routes
  (paddle2onnx, torch2onnx) and in every torch artifact (graph, native; AOT / TensorRT in the manifest);
* a legacy Paddle program without ``inference.yml`` gets one written from the program and the family defaults;
* a recognition artifact without a dictionary is warned about (log + manifest note) and its verification report
  says "no dictionary: comparing class ids" instead of reading 0 of the drawn lines.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

import ocrconvert
from ocrconvert.converters.common import NO_DICTIONARY_NOTE, _stamp
from ocrconvert.families.rec import NO_DICTIONARY
from ocrconvert.formats import Artifact, Format
from ocrconvert.runners import load

pytestmark = pytest.mark.paddle


@pytest.fixture(scope="module")
def my_dict(zoo, tmp_path_factory) -> Path:
    """The v4 rec dictionary reversed: the size fits the head, every entry is another, so it cannot come from the
    source by accident."""
    chars = [c for c in (zoo("ppocrv4-rec") / "ppocr_keys_v1.txt").read_text(encoding="utf-8").split("\n") if c]
    path = tmp_path_factory.mktemp("dict") / "my_dict.txt"
    path.write_text("\n".join(reversed(chars)) + "\n", encoding="utf-8")
    return path


def _onnx_meta(path: Path) -> dict:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


@pytest.fixture(scope="module")
def rec_onnx(zoo, my_dict, tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "rec.onnx"
    return ocrconvert.convert(zoo("ppocrv4-rec"), out, target="onnx", verify=False, dictionary=my_dict)


def test_dict_goes_into_onnx_metadata_as_rapidocr_reads_it(rec_onnx, my_dict):
    expected = my_dict.read_text(encoding="utf-8").strip("\n")
    assert _onnx_meta(rec_onnx.artifact.path)["character"] == expected
    assert load(rec_onnx.artifact.path).info().dictionary == expected.split("\n")
    assert rec_onnx.manifest["processing"]["dictionary"] == "--dict"


def test_dict_goes_into_the_torch_graph(rec_onnx, my_dict, tmp_path):
    expected = my_dict.read_text(encoding="utf-8").strip("\n").split("\n")
    res = ocrconvert.convert(rec_onnx.artifact.path, tmp_path / "graph", target="torch", route="onnx2torch",
                             verify=False, dictionary=my_dict)
    assert _onnx_meta(res.artifact.path / "graph.onnx")["character"].split("\n") == expected
    assert (res.artifact.path / "dict.txt").read_text(encoding="utf-8").rstrip("\n").split("\n") == expected
    assert load(res.artifact.path).info().dictionary == expected


@pytest.mark.native
def test_dict_and_generated_yml_go_into_native_and_back_into_onnx(zoo, my_dict, tmp_path):
    expected = my_dict.read_text(encoding="utf-8").strip("\n").split("\n")
    native = ocrconvert.convert(zoo("ppocrv4-rec"), tmp_path / "native", target="torch", route="native",
                                verify=False, dictionary=my_dict)
    folder = native.artifact.path
    assert (folder / "dict.txt").read_text(encoding="utf-8").rstrip("\n").split("\n") == expected
    assert native.manifest["model_metadata"]["character"].split("\n") == expected
    info = load(folder).info()
    assert info.dictionary == expected
    assert info.config["PreProcess"]["transform_ops"][1]["RecResizeImg"]["image_shape"] == [3, 48, 320]
    assert (folder / "inference.yml").read_text(encoding="utf-8").startswith("# written by ocrconvert")

    # torch2onnx: the ONNX written from the native folder carries the dictionary under the same key
    back = ocrconvert.convert(folder, tmp_path / "back.onnx", target="onnx", route="torch2onnx", verify=False)
    assert _onnx_meta(back.artifact.path)["character"].split("\n") == expected


def test_aot_and_tensorrt_keep_them_in_the_manifest(tmp_path):
    for fmt in (Format.TORCH_AOT, Format.TENSORRT):
        manifest = {"model_metadata": {"ocrconvert.family": "rec-ctc"}}
        _stamp(Artifact(tmp_path / "model.bin", fmt, {}), {"character": "a\nb"}, None, None, manifest, None)
        assert manifest["model_metadata"] == {"ocrconvert.family": "rec-ctc", "character": "a\nb"}


@pytest.mark.parametrize("stage, key, expect", [
    ("det", "PostProcess", {"name": "DBPostProcess", "thresh": 0.3, "box_thresh": 0.6, "max_candidates": 1000,
                            "unclip_ratio": 1.5}),
    ("cls", "PreProcess", {"transform_ops": [{"ClsResizeImg": {"image_shape": [3, 48, 192]}}]}),
])
def test_legacy_program_without_yml_gets_one(zoo, converted, stage, key, expect):
    src = zoo(f"ppocrv4-{stage}")
    assert not list(src.glob("*.yml"))  # the legacy program ships none
    res = converted(f"ppocrv4-{stage}", "onnx", route="paddle2onnx", verify=False)  # shared, read only
    config = json.loads(_onnx_meta(res.artifact.path)["ocrconvert.config"])
    assert config[key] == expect
    assert load(res.artifact.path).info().config[key] == expect  # what the OCR pipeline reads back
    assert "written from the program" in res.manifest["processing"]["config"]


def test_a_dictionary_that_does_not_fit_the_head_is_refused(zoo, tmp_path):
    (tmp_path / "short.txt").write_text("a\nb\nc\n", encoding="utf-8")
    with pytest.raises(ocrconvert.OcrConvertError, match="classes"):
        ocrconvert.convert(zoo("ppocrv4-rec"), tmp_path / "rec.onnx", target="onnx", verify=False,
                           dictionary=tmp_path / "short.txt")
    assert not (tmp_path / "rec.onnx").exists()


def test_rec_without_dictionary_is_warned_and_compared_by_class_ids(zoo, tmp_path, caplog):
    bare = tmp_path / "bare-rec"
    bare.mkdir()
    for f in zoo("ppocrv4-rec").glob("inference.*"):
        shutil.copy(f, bare / f.name)
    with caplog.at_level(logging.WARNING):
        res = ocrconvert.convert(bare, tmp_path / "rec.onnx", target="onnx")
    assert any(NO_DICTIONARY_NOTE in r.getMessage() for r in caplog.records)
    assert NO_DICTIONARY_NOTE in res.manifest["notes"]
    assert "character" not in _onnx_meta(res.artifact.path)
    assert res.report is not None and NO_DICTIONARY in res.report.summary_line()
    assert "reads 0/" not in res.report.summary_line()
