"""Security: nothing untrusted is unpickled, ONNX external data stays in the model folder, YAML is safe_load."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from ocrconvert.errors import CorruptModelError, UnsupportedModelError

SRC = Path(__file__).resolve().parents[2] / "src" / "ocrconvert"


def _sources() -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in SRC.rglob("*.py")}


def test_yaml_is_only_safe_loaded():
    bad = re.compile(r"yaml\.(load|unsafe_load|full_load|load_all)\s*\(|yaml\.(Unsafe|Full)?Loader\b")
    hits = [f"{p.relative_to(SRC)}:{i}" for p, text in _sources().items()
            for i, line in enumerate(text.splitlines(), 1) if bad.search(line)]
    assert not hits, hits
    assert any("yaml.safe_load" in t for t in _sources().values())


# AOTInductor packages (.pt2) hold a compiled shared library: loading one runs its native code (no
# pickle involved), so only the AOT runner may do it, on packages whose manifest vouches for them (the
# spine verifies a freshly built package through that runner as well), and aot-build, which times the package it
# has just compiled against its eager module (measure_speed: the reason load() records for choosing a form).
_ALLOWED = {("runners/aot.py", "aoti_load_package("), ("converters/torch_aot.py", "aoti_load_package(")}


_UNPICKLING = re.compile(r"\bpickle\.loads?\(|\bdill\.|\bjoblib\.load\(|torch\.load\(|np\.load\([^)]*allow_pickle=True"
                         r"|torch\.export\.load\(|aoti_load_package\(")


def _unpickling_hits(sources: dict[Path, str]) -> list[str]:
    return [f"{p.relative_to(SRC)}:{i}: {line.strip()}" for p, text in sources.items()
            for i, line in enumerate(text.splitlines(), 1)
            if (m := _UNPICKLING.search(line)) and not line.strip().startswith("#")
            and (str(p.relative_to(SRC)), m.group(0).split(".")[-1]) not in _ALLOWED]


def test_no_unpickling_calls():
    assert not _unpickling_hits(_sources())


@pytest.mark.parametrize("line", ["state = pickle.loads(blob)", "sd = torch.load(path)", "np.load(p, allow_pickle=True)",
                                  "m = torch.export.load(f)", "torch._inductor.aoti_load_package(p)", "joblib.load(p)"])
def test_the_unpickling_scan_catches_each_call_it_names(line):
    """The scan above can fail: each forbidden call, outside the allowed files, is a hit."""
    assert _unpickling_hits({SRC / "converters" / "x.py": f"def f(p):\n    {line}\n"})


def test_the_allowed_native_code_loads_still_exist():
    """An allow-list entry whose call is gone would silently allow the next one: each names a real call."""
    sources = {str(p.relative_to(SRC)): text for p, text in _sources().items()}
    for path, call in _ALLOWED:
        assert call in sources.get(path, ""), f"{path} no longer calls {call}; drop it from _ALLOWED"


def test_transformers_loads_are_safetensors_only():
    # weights: safetensors only; tokenizers and processors read JSON / text files (no weights, no pickle), and
    # nothing may run a checkpoint's own code
    assert not [p for p, text in _sources().items() if "trust_remote_code=True" in text]
    loads = [(p, line) for p, text in _sources().items() for line in text.splitlines() if ".from_pretrained(" in line
             and not re.search(r"(Tokenizer|Processor)\w*\.from_pretrained\(", line)]
    assert loads, "no from_pretrained call left: this check no longer checks anything"
    for p, line in loads:
        assert "use_safetensors=True" in line, f"{p.relative_to(SRC)}: {line.strip()}"


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "ckpt.ckpt", "pytorch_model.bin", "w.pkl", "w.pickle"])
def test_pickle_checkpoints_are_refused_by_name(tmp_path, name):
    from ocrconvert.formats import detect

    marker = tmp_path / "PWNED"
    p = tmp_path / name
    p.write_bytes(b"\x80\x04\x95" + f"cos\nsystem\n(Vtouch {marker}\ntR.".encode())
    with pytest.raises(UnsupportedModelError, match="never unpickles"):
        detect(p)
    assert not marker.exists()


class _Bomb:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _graph_folder(tmp_path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ocrconvert.torch_graph import split_weights

    w = numpy_helper.from_array(np.ones((1, 4), np.float32), "w")
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=[w])
    desc, _ = split_weights(helper.make_model(g))
    folder = tmp_path / "art"
    folder.mkdir()
    onnx.save(desc, str(folder / "graph.onnx"))
    return folder


def test_pickle_named_safetensors_is_never_unpickled(tmp_path):
    import pickle

    from ocrconvert.torch_graph import read_graph_artifact

    marker = tmp_path / "PWNED"
    folder = _graph_folder(tmp_path)
    (folder / "model.safetensors").write_bytes(pickle.dumps(_Bomb(marker)))
    with pytest.raises(CorruptModelError, match="not a valid safetensors"):
        read_graph_artifact(folder)
    assert not marker.exists()


def test_valid_safetensors_round_trip(tmp_path):
    from safetensors.numpy import save_file

    from ocrconvert.torch_graph import read_graph_artifact

    folder = _graph_folder(tmp_path)
    save_file({"w": np.full((1, 4), 2.0, np.float32)}, str(folder / "model.safetensors"))
    model = read_graph_artifact(folder)
    from onnx import numpy_helper

    assert numpy_helper.to_array(model.graph.initializer[0]).tolist() == [[2.0] * 4]


# ------------------------------------------------------------------------- external data confinement
def _model_with_external(location: str):
    from onnx import TensorProto, helper

    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1, 4])
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        e = w.external_data.add()
        e.key, e.value = k, v
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=[w])
    return helper.make_model(g)


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    (d / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    (d / "sub" / "w.bin").write_bytes(np.arange(4, 8, dtype=np.float32).tobytes())
    (tmp_path / "outside.bin").write_bytes(np.ones(4, np.float32).tobytes())
    (tmp_path / "model-evil").mkdir()
    (tmp_path / "model-evil" / "w.bin").write_bytes(np.ones(4, np.float32).tobytes())
    return d


@pytest.mark.parametrize("location, values", [("w.bin", [0, 1, 2, 3]), ("sub/w.bin", [4, 5, 6, 7]),
                                               ("./w.bin", [0, 1, 2, 3]), ("sub/../w.bin", [0, 1, 2, 3])])
def test_external_data_inside_is_accepted_and_read(model_dir, location, values):
    import onnx
    from onnx import numpy_helper

    from ocrconvert.onnx_io import load_onnx

    onnx.save(_model_with_external(location), str(model_dir / "m.onnx"))
    model = load_onnx(model_dir / "m.onnx")
    assert numpy_helper.to_array(model.graph.initializer[0]).ravel().tolist() == values  # the file it names, read


@pytest.mark.parametrize("location", ["../outside.bin", "sub/../../outside.bin", "ABS", "../model-evil/w.bin",
                                      "link.bin", "linkdir/w.bin"])
def test_external_data_escape_is_refused(model_dir, location):
    from ocrconvert.onnx_io import check_external_data

    (model_dir / "link.bin").symlink_to(model_dir.parent / "outside.bin")
    (model_dir / "linkdir").symlink_to(model_dir.parent / "model-evil", target_is_directory=True)
    if location == "ABS":
        location = str(model_dir.parent / "outside.bin")
    with pytest.raises(UnsupportedModelError, match="outside the model folder"):
        check_external_data(_model_with_external(location), model_dir)


def test_external_data_escape_refused_by_load_onnx(model_dir):
    import onnx

    from ocrconvert.onnx_io import load_onnx

    (model_dir / "link.bin").symlink_to(model_dir.parent / "outside.bin")
    onnx.save(_model_with_external("link.bin"), str(model_dir / "m.onnx"))
    with pytest.raises(UnsupportedModelError, match="outside the model folder"):
        load_onnx(model_dir / "m.onnx")


def test_external_data_missing_is_corrupt(model_dir):
    from ocrconvert.onnx_io import check_external_data

    with pytest.raises(CorruptModelError, match="missing"):
        check_external_data(_model_with_external("nope.bin"), model_dir)
