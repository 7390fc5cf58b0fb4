import pytest

from ocrconvert.errors import CorruptModelError, ModelNotFoundError, UnsupportedModelError
from ocrconvert.formats import Format, detect
from ocrconvert.manifest import manifest_path


def test_nonexistent_and_empty(tmp_path):
    with pytest.raises(ModelNotFoundError):
        detect(tmp_path / "missing")
    with pytest.raises(ModelNotFoundError, match="no model"):
        detect(tmp_path)


def test_pickles_are_refused_without_reading(tmp_path):
    p = tmp_path / "model.pth"
    p.write_bytes(b"\x80\x04garbage")
    with pytest.raises(UnsupportedModelError, match="never unpickles"):
        detect(p)


def test_program_without_params_and_empty_files(tmp_path):
    (tmp_path / "inference.pdmodel").write_bytes(b"x")
    with pytest.raises(CorruptModelError, match="pdiparams"):
        detect(tmp_path)
    (tmp_path / "inference.pdiparams").write_bytes(b"")
    with pytest.raises(CorruptModelError, match="empty"):
        detect(tmp_path)


def test_folder_with_two_onnx_files_is_ambiguous(tmp_path):
    (tmp_path / "a.onnx").write_bytes(b"1")
    (tmp_path / "b.onnx").write_bytes(b"1")
    with pytest.raises(ModelNotFoundError, match="which one"):
        detect(tmp_path)


@pytest.mark.zoo
@pytest.mark.parametrize("name,fmt,roles", [
    ("ppocrv4-rec", Format.PADDLE_LEGACY, {"program", "params", "dict"}),
    ("ppocrv5-mobile-det", Format.PADDLE_PIR, {"program", "params", "config"}),
    ("ppocrv4-det-onnx", Format.ONNX, {"model"}),
    ("ppocrv6-tiny-rec-onnx", Format.ONNX, {"model", "config"}),
])
def test_real_models(zoo, name, fmt, roles):
    art = detect(zoo(name))
    assert art.format is fmt
    assert roles <= set(art.files)


def test_manifest_sidecar_locations(tmp_path):
    d = tmp_path / "torch_out"
    d.mkdir()
    assert manifest_path(d).name == "ocrconvert.json"
    assert manifest_path(tmp_path / "m.onnx").name == "m.onnx.ocrconvert.json"
