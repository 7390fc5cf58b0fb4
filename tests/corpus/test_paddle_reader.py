"""The one Paddle program reader: every path that reads a damaged Paddle model (here ``paddle2torch``,
default route and ``--route native``) ends with exit 3, one message and a hint, never a traceback; and the
reader's weights and op graph agree with Paddle's own loader on the real models."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from _cli_helpers import run_cli

from ocrconvert.errors import CorruptModelError
from ocrconvert.formats import detect
from ocrconvert.paddle_program import read_program, read_weights

UNSUPPORTED = 3
pytestmark = [pytest.mark.paddle, pytest.mark.native]


def _copy(zoo, name: str, tmp: Path) -> Path:
    dst = tmp / "src"
    shutil.copytree(zoo(name), dst)
    return dst


def pir_json_truncated(tmp, zoo):
    src = _copy(zoo, "ppocrv5-mobile-det", tmp)
    data = (src / "inference.json").read_bytes()
    (src / "inference.json").write_bytes(data[: len(data) // 2])
    return src, "not a valid Paddle PIR program"


def pdmodel_garbage(tmp, zoo):
    src = _copy(zoo, "ppocrv4-cls", tmp)
    (src / "inference.pdmodel").write_bytes(b"\x0a\xff\xff\xff\xff\x0f" + os.urandom(2000))
    return src, "not a valid Paddle program"


def pir_json_without_header(tmp, zoo):
    # parses as JSON and walks like a program; Paddle's own loader rejects it (it raised out of paddle2torch)
    src = _copy(zoo, "ppocrv5-mobile-det", tmp)
    doc = json.loads((src / "inference.json").read_text())
    del doc["base_code"]
    (src / "inference.json").write_text(json.dumps(doc))
    return src, "no base_code header"


def pdiparams_garbage_full_size(tmp, zoo):
    # the size check passes; Paddle's loader raised out of paddle2torch on the first tensor header
    src = _copy(zoo, "ppocrv4-cls", tmp)
    size = (src / "inference.pdiparams").stat().st_size
    (src / "inference.pdiparams").write_bytes(np.random.default_rng(0).bytes(size))
    return src, "is not the weights of this program"


def pdiparams_of_another_model(tmp, zoo):
    # well-formed tensors, but not this program's: Paddle loads them in name order without a shape check
    src = _copy(zoo, "ppocrv5-mobile-det", tmp)
    shutil.copy(zoo("ppocrv5-mobile-rec") / "inference.pdiparams", src / "inference.pdiparams")
    return src, "in the file"


CASES = [pir_json_truncated, pdmodel_garbage, pir_json_without_header, pdiparams_garbage_full_size,
         pdiparams_of_another_model]


@pytest.mark.parametrize("route", [[], ["--route", "native"]], ids=["default-route", "native-route"])
@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_paddle2torch_on_a_damaged_program_is_one_clean_error(case, route, tmp_path, zoo_model):
    src, fragment = case(tmp_path, zoo_model)
    out = tmp_path / "out"
    res = run_cli("paddle2torch", src, "-o", out, *route)
    assert res.code == UNSUPPORTED, f"exit {res.code}\n{res.stderr[-3000:]}"
    assert "Traceback" not in res.stderr + res.stdout
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], res.stderr
    assert any(line.startswith("hint:") for line in res.stderr.splitlines()), res.stderr
    assert not out.exists()


@pytest.mark.parametrize("case", [pir_json_truncated, pdmodel_garbage, pdiparams_garbage_full_size],
                         ids=lambda c: c.__name__)
def test_paddle2torch_json_error_is_one_object_on_stdout(case, tmp_path, zoo_model):
    src, fragment = case(tmp_path, zoo_model)
    res = run_cli("paddle2torch", src, "-o", tmp_path / "out", "--json")
    assert res.code == UNSUPPORTED
    doc = json.loads(res.stdout)
    assert doc["error"] == "CorruptModelError" and doc["exit_code"] == UNSUPPORTED
    assert fragment in doc["message"] and doc["hint"]
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("name", ["ppocrv4-cls", "ppocrv5-mobile-det"])  # legacy and PIR
def test_weights_and_graph_agree_with_paddles_loader(name, zoo_model):
    paddle = pytest.importorskip("paddle")
    art = detect(zoo_model(name))
    program = read_program(art)
    weights = program.weights()

    scope = paddle.static.Scope()
    guard = paddle.pir_utils.IrGuard if name.startswith("ppocrv5") else paddle.pir_utils.OldIrGuard
    paddle.enable_static()
    try:
        with guard(), paddle.static.scope_guard(scope):
            paddle.static.load_inference_model(str(art.model_dir / "inference"), paddle.static.Executor(paddle.CPUPlace()))
    finally:
        paddle.disable_static()
    assert set(weights) == set(program.params)
    for pname, array in weights.items():
        assert np.array_equal(array, np.array(scope.find_var(pname).get_tensor())), pname

    graph = program.graph()
    used = {ref[2:] for op in graph for ref in op.inputs if ref and ref.startswith("p:")}
    assert used == set(program.params)


def test_weights_reader_refuses_a_header_that_disagrees(tmp_path, zoo_model):
    art = detect(zoo_model("ppocrv4-cls"))
    declared = dict(read_program(art).params)
    name = sorted(declared)[0]
    shape, dtype = declared[name]
    with pytest.raises(CorruptModelError, match=f"{name} is float32"):
        read_weights(art.files["params"], {**declared, name: ((*shape, 2), dtype)})
    extra = tmp_path / "extra.pdiparams"
    extra.write_bytes(art.files["params"].read_bytes() + b"\0" * 8)
    with pytest.raises(CorruptModelError, match="bytes left after"):
        read_weights(extra, declared)
