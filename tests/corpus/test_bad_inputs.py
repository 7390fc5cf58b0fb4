"""Bad-input corpus, driven through the CLI: every case must end with its documented exit code, one
clear message (no traceback) and NOTHING written at the output (no artifact, no ``.partial``).

Inputs are generated on the fly in tmp folders, from real zoo models where a realistic file is needed.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from _cli_helpers import needs_paddle, needs_torch, run_cli

USAGE, UNSUPPORTED, CONVERSION = 2, 3, 5


@dataclass
class Case:
    id: str
    build: Callable[[Path, Callable[[str], Path]], list]   # (tmp, zoo) -> CLI args; output is tmp/"out"/"result"
    code: int
    fragment: str
    marks: tuple = ()


def _copy(zoo, name: str, tmp: Path) -> Path:
    dst = tmp / "src"
    shutil.copytree(zoo(name), dst)
    return dst


def _truncate(p: Path, frac: float = 0.5) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * frac)])


def _tiny_onnx(path: Path, nodes, *, opsets=(("", 17),), initializers=()) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _external_onnx(path: Path, location: str) -> Path:
    """An ONNX whose weight ``w`` claims to live in ``location`` (external data)."""
    from onnx import TensorProto, helper

    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1, 4])
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        e = w.external_data.add()
        e.key, e.value = k, v
    return _tiny_onnx(path, [helper.make_node("Add", ["x", "w"], ["y"])], initializers=[w])


def _o(tmp: Path) -> Path:
    return tmp / "out" / "result"


# ------------------------------------------------------------------------------------- builders
def onnx_truncated(tmp, zoo):
    src = _copy(zoo, "ppocrv4-cls-onnx", tmp)
    _truncate(src / "model.onnx")
    return ["onnx2torch", src / "model.onnx", "-o", _o(tmp)]


def onnx_random_bytes(tmp, zoo):
    p = tmp / "src" / "model.onnx"
    p.parent.mkdir()
    p.write_bytes(os.urandom(4096))
    return ["onnx2torch", p, "-o", _o(tmp)]


def onnx_bitflip(tmp, zoo):
    src = _copy(zoo, "ppocrv4-cls-onnx", tmp)
    data = bytearray((src / "model.onnx").read_bytes())
    data[:64] = b"\xff" * 64
    (src / "model.onnx").write_bytes(bytes(data))
    return ["onnx2torch", src / "model.onnx", "-o", _o(tmp)]


def onnx_empty(tmp, zoo):
    p = tmp / "src" / "model.onnx"
    p.parent.mkdir()
    p.touch()
    return ["onnx2torch", p, "-o", _o(tmp)]


def onnx_is_text(tmp, zoo):
    p = tmp / "src" / "model.onnx"
    p.parent.mkdir()
    p.write_text("this is not a model\n" * 10)
    return ["onnx2torch", p, "-o", _o(tmp)]


def onnx_no_nodes(tmp, zoo):
    return ["onnx2torch", _tiny_onnx(tmp / "src" / "model.onnx", []), "-o", _o(tmp)]


def onnx_unsupported_ops(tmp, zoo):
    from onnx import helper

    nodes = [helper.make_node("Frobnicate", ["x"], ["a"], domain="com.acme"),
             helper.make_node("Twiddle", ["a"], ["b"], domain="com.acme"),
             helper.make_node("Det", ["b"], ["c"]),
             helper.make_node("Relu", ["c"], ["y"])]
    p = _tiny_onnx(tmp / "src" / "model.onnx", nodes, opsets=(("", 17), ("com.acme", 1)))
    return ["onnx2torch", p, "-o", _o(tmp)]


def onnx_unsupported_in_loop_body(tmp, zoo):
    """Loop and If convert (ocrconvert.onnx2torch_ops); an op onnx2torch lacks inside the body is still named."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    vi = helper.make_tensor_value_info
    body = helper.make_graph([helper.make_node("Det", ["v_in"], ["d"]),
                              helper.make_node("Add", ["v_in", "d"], ["v_out"]),
                              helper.make_node("Identity", ["c_in"], ["c_out"])], "body",
                             [vi("i", TensorProto.INT64, []), vi("c_in", TensorProto.BOOL, []),
                              vi("v_in", TensorProto.FLOAT, [1, 4])],
                             [vi("c_out", TensorProto.BOOL, []), vi("v_out", TensorProto.FLOAT, [1, 4])])
    nodes = [helper.make_node("Loop", ["M", "", "x"], ["y"], body=body)]
    p = _tiny_onnx(tmp / "src" / "model.onnx", nodes,
                   initializers=[numpy_helper.from_array(np.asarray(2, np.int64), "M")])
    return ["onnx2torch", p, "-o", _o(tmp)]


def onnx_external_parent(tmp, zoo):
    (tmp / "secret.bin").write_bytes(b"\0" * 16)
    return ["onnx2torch", _external_onnx(tmp / "src" / "model.onnx", "../secret.bin"), "-o", _o(tmp)]


def onnx_external_absolute(tmp, zoo):
    (tmp / "abs.bin").write_bytes(b"\0" * 16)
    return ["onnx2torch", _external_onnx(tmp / "src" / "model.onnx", str(tmp / "abs.bin")), "-o", _o(tmp)]


def onnx_external_symlink(tmp, zoo):
    (tmp / "outside.bin").write_bytes(b"\0" * 16)
    p = _external_onnx(tmp / "src" / "model.onnx", "weights.bin")
    (p.parent / "weights.bin").symlink_to(tmp / "outside.bin")
    return ["onnx2torch", p, "-o", _o(tmp)]


def onnx_external_missing(tmp, zoo):
    return ["onnx2torch", _external_onnx(tmp / "src" / "model.onnx", "weights.bin"), "-o", _o(tmp)]


def wrong_type_txt(tmp, zoo):
    p = tmp / "src" / "notes.txt"
    p.parent.mkdir()
    p.write_text("hello")
    return ["onnx2torch", p, "-o", _o(tmp)]


def wrong_type_png_as_onnx(tmp, zoo):
    from PIL import Image

    p = tmp / "src" / "model.onnx"
    p.parent.mkdir()
    Image.new("RGB", (8, 8)).save(p, format="PNG")
    return ["onnx2torch", p, "-o", _o(tmp)]


def pickle_pt(tmp, zoo):
    import pickle

    p = tmp / "src" / "model.pt"
    p.parent.mkdir()
    p.write_bytes(pickle.dumps({"w": [1, 2, 3]}))
    return ["torch2onnx", p, "-o", tmp / "out" / "result.onnx"]


def _pickle_bomb() -> bytes:
    """A pickle that would create a file if it were ever unpickled."""
    import pickle

    class Bomb:
        def __reduce__(self):
            return (os.system, ("touch PWNED",))

    return pickle.dumps(Bomb())


def pickle_safetensors_graph(tmp, zoo):
    src = tmp / "src"
    _tiny_onnx(src / "graph.onnx", [__import__("onnx").helper.make_node("Relu", ["x"], ["y"])])
    (src / "model.safetensors").write_bytes(_pickle_bomb())
    return ["torch2onnx", src, "-o", tmp / "out" / "result.onnx"]


def pickle_safetensors_native(tmp, zoo):
    src = tmp / "src"
    src.mkdir()
    (src / "config.json").write_text('{"model_type": "pp_ocrv5_mobile_rec"}')
    (src / "model.safetensors").write_bytes(_pickle_bomb())
    return ["torch2onnx", src, "-o", tmp / "out" / "result.onnx"]


def safetensors_truncated(tmp, zoo):
    src = tmp / "src"
    _tiny_onnx(src / "graph.onnx", [__import__("onnx").helper.make_node("Relu", ["x"], ["y"])])
    from safetensors.numpy import save_file
    import numpy as np

    save_file({"w": np.zeros((64, 64), np.float32)}, str(src / "model.safetensors"))
    _truncate(src / "model.safetensors", 0.3)
    return ["torch2onnx", src, "-o", tmp / "out" / "result.onnx"]


def empty_folder(tmp, zoo):
    (tmp / "src").mkdir()
    return ["onnx2torch", tmp / "src", "-o", _o(tmp)]


def nonexistent(tmp, zoo):
    return ["onnx2torch", tmp / "no" / "such" / "model.onnx", "-o", _o(tmp)]


def two_onnx_in_folder(tmp, zoo):
    from onnx import helper

    for n in ("a", "b"):
        _tiny_onnx(tmp / "src" / f"{n}.onnx", [helper.make_node("Relu", ["x"], ["y"])])
    return ["onnx2torch", tmp / "src", "-o", _o(tmp)]


def pdmodel_truncated(tmp, zoo):
    src = _copy(zoo, "ppocrv4-cls", tmp)
    _truncate(src / "inference.pdmodel", 0.3)
    return ["paddle2onnx", src, "-o", _o(tmp)]


def pdmodel_empty(tmp, zoo):
    src = _copy(zoo, "ppocrv4-cls", tmp)
    (src / "inference.pdmodel").write_bytes(b"")
    return ["paddle2onnx", src, "-o", _o(tmp)]


def pdmodel_garbage(tmp, zoo):
    src = _copy(zoo, "ppocrv4-cls", tmp)
    (src / "inference.pdmodel").write_bytes(b"\x0a\xff\xff\xff\xff\x0f" + os.urandom(2000))
    return ["paddle2onnx", src, "-o", _o(tmp)]


def pdiparams_missing(tmp, zoo):
    src = _copy(zoo, "ppocrv4-cls", tmp)
    (src / "inference.pdiparams").unlink()
    return ["paddle2onnx", src, "-o", _o(tmp)]


def pdiparams_truncated(tmp, zoo):
    src = _copy(zoo, "ppocrv4-cls", tmp)
    _truncate(src / "inference.pdiparams", 0.5)
    return ["paddle2onnx", src, "-o", _o(tmp)]


def pdiparams_empty(tmp, zoo):
    src = _copy(zoo, "ppocrv4-cls", tmp)
    (src / "inference.pdiparams").write_bytes(b"")
    return ["paddle2onnx", src, "-o", _o(tmp)]


def pir_json_truncated(tmp, zoo):
    src = _copy(zoo, "ppocrv5-mobile-det", tmp)
    _truncate(src / "inference.json", 0.5)
    return ["paddle2onnx", src, "-o", _o(tmp)]


def pir_json_wrong_shape(tmp, zoo):
    src = _copy(zoo, "ppocrv5-mobile-det", tmp)
    (src / "inference.json").write_text('{"program": {"regions": []}}')
    return ["paddle2onnx", src, "-o", _o(tmp)]


def pir_json_binary(tmp, zoo):
    src = _copy(zoo, "ppocrv5-mobile-det", tmp)
    (src / "inference.json").write_bytes(b"\xff\xfe\x00garbage" * 50)
    return ["paddle2onnx", src, "-o", _o(tmp)]


def inference_yml_invalid(tmp, zoo):
    src = _copy(zoo, "ppocrv5-mobile-det", tmp)
    (src / "inference.yml").write_text("PreProcess: [unclosed\n  - : :\n")
    return ["paddle2onnx", src, "-o", _o(tmp)]


def dict_missing(tmp, zoo):
    return ["onnx2torch", zoo("ppocrv4-cls-onnx") / "model.onnx", "-o", _o(tmp), "--dict", tmp / "nowhere.txt"]


def dict_size_mismatch(tmp, zoo):
    (tmp / "dict.txt").write_text("a\nb\nc\n")
    return ["onnx2torch", zoo("ppocrv4-rec-onnx") / "model.onnx", "-o", _o(tmp), "--dict", tmp / "dict.txt"]


def output_under_a_file(tmp, zoo):
    (tmp / "blocker").write_text("a file, not a folder")
    return ["onnx2torch", zoo("ppocrv4-cls-onnx") / "model.onnx", "-o", tmp / "blocker" / "result"]


def output_foreign_folder(tmp, zoo):
    (tmp / "out" / "result").mkdir(parents=True)
    (tmp / "out" / "result" / "precious.txt").write_text("not ours")
    return ["onnx2torch", zoo("ppocrv4-cls-onnx") / "model.onnx", "-o", _o(tmp)]


def bad_tolerance(tmp, zoo):
    return ["onnx2torch", zoo("ppocrv4-cls-onnx") / "model.onnx", "-o", _o(tmp), "--atol", "lots"]


def bad_route(tmp, zoo):
    return ["paddle2torch", zoo("ppocrv4-cls"), "-o", _o(tmp), "--route", "teleport"]


def _batch_config(tmp: Path, text: str) -> list:
    cfg = tmp / "batch.yaml"
    cfg.write_text(text.replace("OUT", str(_o(tmp))))
    return ["batch", cfg]


def batch_bad_yaml(tmp, zoo):
    return _batch_config(tmp, "output: OUT\nmodels: [ppocrv4-cls\n  - : {\n")


def batch_unknown_top_key(tmp, zoo):
    return _batch_config(tmp, "output: OUT\nmodles: [ppocrv4-cls]\n")


def batch_unknown_model_key(tmp, zoo):
    return _batch_config(tmp, "output: OUT\nmodels:\n  - model: ppocrv4-cls\n    targets: [onnx]\n    atoll: 1e-3\n")


def batch_unknown_target(tmp, zoo):
    return _batch_config(tmp, "output: OUT\nmodels:\n  - model: ppocrv4-cls\n    targets: [onnxx]\n")


def batch_python_tag(tmp, zoo):
    return _batch_config(tmp, "output: OUT\nmodels: !!python/object/apply:os.system ['touch PWNED']\n")


def batch_not_a_mapping(tmp, zoo):
    return _batch_config(tmp, "- just\n- a list\n")


def batch_no_models(tmp, zoo):
    return _batch_config(tmp, "output: OUT\nmodels: []\n")


def batch_bad_timeout(tmp, zoo):
    return _batch_config(tmp, "output: OUT\ndefaults: {timeout: -3, targets: [onnx]}\nmodels: [ppocrv4-cls]\n")


def batch_duplicate_job(tmp, zoo):
    return _batch_config(tmp, "output: OUT\ndefaults: {targets: [onnx]}\nmodels: [ppocrv4-cls, ppocrv4-cls]\n")


def batch_missing_config(tmp, zoo):
    return ["batch", tmp / "nope.yaml"]


T, P = (needs_torch, pytest.mark.torch), (needs_paddle, pytest.mark.paddle)
CASES = [
    Case("onnx-truncated", onnx_truncated, UNSUPPORTED, "not a valid ONNX model", T),
    Case("onnx-random-bytes", onnx_random_bytes, UNSUPPORTED, "not a valid ONNX model", T),
    Case("onnx-bitflip-header", onnx_bitflip, UNSUPPORTED, "not a valid ONNX model", T),
    Case("onnx-empty", onnx_empty, UNSUPPORTED, "is empty", T),
    Case("onnx-is-text", onnx_is_text, UNSUPPORTED, "not a valid ONNX model", T),
    Case("onnx-no-nodes", onnx_no_nodes, UNSUPPORTED, "no nodes", T),
    Case("onnx-unsupported-ops-all-listed", onnx_unsupported_ops, UNSUPPORTED,
         "3 operator(s) have no torch converter: Det, com.acme::Frobnicate, com.acme::Twiddle", T),
    Case("onnx-unsupported-op-in-loop-body", onnx_unsupported_in_loop_body, UNSUPPORTED,
         "have no torch converter: Det", T),
    Case("onnx-external-data-parent", onnx_external_parent, UNSUPPORTED, "outside the model folder", T),
    Case("onnx-external-data-absolute", onnx_external_absolute, UNSUPPORTED, "outside the model folder", T),
    Case("onnx-external-data-symlink-escape", onnx_external_symlink, UNSUPPORTED, "outside the model folder", T),
    Case("onnx-external-data-missing", onnx_external_missing, UNSUPPORTED, "which is missing", T),
    Case("wrong-type-txt", wrong_type_txt, UNSUPPORTED, "not a model format"),
    Case("wrong-type-png-named-onnx", wrong_type_png_as_onnx, UNSUPPORTED, "not a valid ONNX model", T),
    Case("pickle-pt", pickle_pt, UNSUPPORTED, "never unpickles"),
    Case("pickle-as-safetensors-graph", pickle_safetensors_graph, UNSUPPORTED, "not a valid safetensors file", T),
    Case("pickle-as-safetensors-native", pickle_safetensors_native, UNSUPPORTED, "safetensors", T + (pytest.mark.native,)),
    Case("safetensors-truncated", safetensors_truncated, UNSUPPORTED, "not a valid safetensors file", T),
    Case("empty-folder", empty_folder, USAGE, "holds no model"),
    Case("nonexistent-path", nonexistent, USAGE, "does not exist"),
    Case("two-onnx-in-folder", two_onnx_in_folder, USAGE, "which one"),
    Case("pdmodel-truncated", pdmodel_truncated, UNSUPPORTED, "not a valid Paddle program", P),
    Case("pdmodel-empty", pdmodel_empty, UNSUPPORTED, "is empty", P),
    Case("pdmodel-garbage", pdmodel_garbage, UNSUPPORTED, "Paddle program", P),
    Case("pdiparams-missing", pdiparams_missing, UNSUPPORTED, "no matching .pdiparams", P),
    Case("pdiparams-truncated", pdiparams_truncated, UNSUPPORTED, "is truncated", P),
    Case("pdiparams-empty", pdiparams_empty, UNSUPPORTED, "is empty", P),
    Case("pir-json-truncated", pir_json_truncated, UNSUPPORTED, "not a valid Paddle PIR program", P),
    Case("pir-json-wrong-shape", pir_json_wrong_shape, UNSUPPORTED, "not a valid Paddle PIR program", P),
    Case("pir-json-binary", pir_json_binary, UNSUPPORTED, "not a valid Paddle PIR program", P),
    Case("inference-yml-invalid", inference_yml_invalid, UNSUPPORTED, "not valid YAML", P),
    Case("dict-missing", dict_missing, USAGE, "nowhere.txt"),
    Case("dict-size-mismatch", dict_size_mismatch, USAGE, "dictionary", T),
    Case("output-under-a-file", output_under_a_file, USAGE, "not a writable folder"),
    Case("output-foreign-folder", output_foreign_folder, USAGE, "did not write"),
    Case("bad-tolerance", bad_tolerance, USAGE, "--atol"),
    Case("bad-route", bad_route, USAGE, "teleport"),
    Case("batch-bad-yaml", batch_bad_yaml, USAGE, "not valid YAML"),
    Case("batch-unknown-top-key", batch_unknown_top_key, USAGE, "unknown key 'modles'"),
    Case("batch-unknown-model-key", batch_unknown_model_key, USAGE, "unknown key 'atoll'"),
    Case("batch-unknown-target", batch_unknown_target, USAGE, "unknown target 'onnxx'"),
    Case("batch-python-tag", batch_python_tag, USAGE, "not valid YAML"),
    Case("batch-not-a-mapping", batch_not_a_mapping, USAGE, "must be a mapping"),
    Case("batch-no-models", batch_no_models, USAGE, "'models' must be a non-empty list"),
    Case("batch-bad-timeout", batch_bad_timeout, USAGE, "timeout must be a positive number"),
    Case("batch-duplicate-job", batch_duplicate_job, USAGE, "listed twice"),
    Case("batch-missing-config", batch_missing_config, USAGE, "does not exist"),
]


def _snapshot(tmp: Path) -> set[str]:
    return {str(p.relative_to(tmp)) for p in tmp.rglob("*")}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=list(c.marks)) for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, zoo_model, cli_here):
    args = case.build(tmp_path, zoo_model)
    before = _snapshot(tmp_path)
    if case.marks == P:  # Paddle may abort inside C++ on a damaged program: those run in a process of their own
        res = run_cli(*args, env={"PWD": str(tmp_path)})
    else:  # in this process (a child costs an interpreter and a torch import per case)
        res = cli_here(*args)
    assert res.code == case.code, f"exit {res.code}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    assert case.fragment in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    assert "error:" in res.stderr
    created = _snapshot(tmp_path) - before
    assert not created, f"written despite the failure: {sorted(created)}"
    assert not (Path.cwd() / "PWNED").exists() and not (tmp_path / "PWNED").exists()


def test_every_builder_is_a_case_once():
    """A bad input written but never listed would be silently untested; two cases of one id hide each other."""
    import inspect
    import sys

    module = sys.modules[__name__]
    builders = {f for name, f in vars(module).items()
                if inspect.isfunction(f) and f.__module__ == __name__ and not name.startswith(("_", "test_"))}
    listed = [c.build for c in CASES]
    assert sorted(f.__name__ for f in builders - set(listed)) == []
    assert len(listed) == len(set(listed)) and len({c.id for c in CASES}) == len(CASES)


@needs_torch
@pytest.mark.torch
def test_unsupported_ops_json_lists_all(tmp_path, zoo_model):
    import json

    args = onnx_unsupported_ops(tmp_path, zoo_model)
    res = run_cli(*args, "--json")
    assert res.code == UNSUPPORTED
    doc = json.loads(res.stdout)
    assert doc["unsupported_ops"] == ["Det", "com.acme::Frobnicate", "com.acme::Twiddle"]
    assert not (tmp_path / "out").exists()


@needs_torch
@pytest.mark.torch
def test_disk_full_leaves_nothing(tmp_path, zoo_model):
    """ENOSPC while writing the weights: exit 5, a clear message, no artifact and no staging left."""
    prelude = (
        "import errno, safetensors.numpy as st\n"
        "def full(tensors, filename, metadata=None):\n"
        "    open(filename, 'wb').write(b'x' * 1000)\n"
        "    raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "st.save_file = full\n"
    )
    out = tmp_path / "out" / "result"
    res = run_cli("onnx2torch", zoo_model("ppocrv4-cls-onnx") / "model.onnx", "-o", out, prelude=prelude)
    assert res.code == CONVERSION, res.stderr
    assert "no space left" in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()
    assert not (tmp_path / "out").exists()  # not even the parent folder the run created


@needs_torch
@pytest.mark.torch
def test_read_only_output_folder(tmp_path, zoo_model):
    """A folder we may not write to (chmod 555; as root, EACCES is simulated at mkdtemp)."""
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    prelude = ""
    if os.geteuid() == 0:  # root ignores modes: make the staging step fail the way a read-only folder would
        prelude = ("import errno, tempfile\n"
                   "def denied(*a, **k):\n"
                   "    raise PermissionError(errno.EACCES, 'Permission denied')\n"
                   "tempfile.mkdtemp = denied\n")
    try:
        res = run_cli("onnx2torch", zoo_model("ppocrv4-cls-onnx") / "model.onnx", "-o", parent / "result",
                      prelude=prelude)
        assert res.code == USAGE, res.stderr
        assert "Traceback" not in res.stderr
        assert "write" in res.stderr
        assert list(parent.iterdir()) == []
    finally:
        parent.chmod(0o755)
