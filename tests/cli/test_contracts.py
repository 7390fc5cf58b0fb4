"""The output and error contracts of the spine, each a regression test of a defect measured on the old main."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from _cli_helpers import needs_paddle, needs_torch, run_cli
from ocrconvert.manifest import sha256_artifact


@pytest.fixture
def cls_onnx(zoo, tmp_path):
    """A private copy of the real PP-OCR cls ONNX twin (tests may try to damage it)."""
    dst = tmp_path / "src" / "cls.onnx"
    dst.parent.mkdir()
    shutil.copy(next(zoo("ppocrv4-cls-onnx").glob("*.onnx")), dst)
    return dst


def _json(res) -> dict:
    data = json.loads(res.stdout)
    assert isinstance(data, dict)
    return data


@needs_torch
def test_output_equal_to_the_source_is_refused_and_the_source_survives(cls_onnx, cli_here):
    before = sha256_artifact(cls_onnx)
    res = cli_here("onnx2torch", cls_onnx, "-o", cls_onnx)
    assert res.code == 2 and "source" in res.stderr and "Traceback" not in res.stderr
    assert cls_onnx.is_file() and sha256_artifact(cls_onnx) == before
    res = cli_here("onnx2torch", cls_onnx, "-o", cls_onnx.parent, "--json")  # a folder holding the source
    assert res.code == 2 and _json(res)["exit_code"] == 2
    assert sorted(p.name for p in cls_onnx.parent.iterdir()) == ["cls.onnx"]


@needs_torch
def test_existing_artifact_needs_force(cls_onnx, tmp_path, cli_here):
    out = tmp_path / "out"
    assert cli_here("onnx2torch", cls_onnx, "-o", out, "--no-verify").code == 0
    first = sha256_artifact(out)
    res = cli_here("onnx2torch", cls_onnx, "-o", out, "--no-verify")
    assert res.code == 2 and "--force" in res.stderr
    assert sha256_artifact(out) == first
    assert cli_here("onnx2torch", cls_onnx, "-o", out, "--no-verify", "--force").code == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ocx-")]  # no staging, no lock left


@needs_torch
def test_output_side_os_errors_are_one_message_and_exit_2(cls_onnx, tmp_path, cli_here):
    a_file = tmp_path / "plain.txt"
    a_file.write_text("not a folder")
    long_name = tmp_path / ("n" * 250)
    for out in (a_file, "/proc/ocrconvert-out", long_name, a_file / "below"):
        res = cli_here("onnx2torch", cls_onnx, "-o", out, "--no-verify", "--json")
        assert res.code == 2, (out, res.stderr)
        err = _json(res)
        assert err["exit_code"] == 2 and err["message"] and err["hint"], out
        assert "Traceback" not in res.stderr
    assert a_file.read_text() == "not a folder"


@needs_torch
def test_two_runs_cannot_both_write_one_output(cls_onnx, tmp_path):
    from ocrconvert.atomic import OutputSlot

    out = tmp_path / "locked"
    with OutputSlot(out, is_dir=True, sources=[cls_onnx]):  # another run holds the output
        res = run_cli("onnx2torch", cls_onnx, "-o", out, "--no-verify")
    assert res.code == 2 and "another ocrconvert run" in res.stderr
    assert not out.exists()


def test_usage_errors_and_interrupts_print_json_with_json(tmp_path):
    res = run_cli("paddle2onnx", "--json")  # click's own usage error
    assert res.code == 2 and _json(res)["error"] == "UsageError"
    res = run_cli("no-such-command", "--json")
    assert res.code == 2 and _json(res)["exit_code"] == 2
    prelude = ("import ocrconvert.pipeline as p\n"
               "def _interrupted(*a, **k):\n    raise KeyboardInterrupt\n"
               "p.convert = _interrupted\n")
    res = run_cli("onnx2torch", tmp_path, "-o", tmp_path / "o", "--json", prelude=prelude)
    assert res.code == 130 and _json(res)["error"] == "Interrupted"


@needs_torch
def test_verify_refuses_models_that_are_not_comparable(zoo, cli_here):
    res = cli_here("verify", zoo("ppocrv4-cls-onnx"), zoo("ppocrv4-rec-onnx"), "--json")
    assert res.code == 2
    msg = _json(res)["message"]
    assert "not comparable" in msg and "cls" in msg and "rec-ctc" in msg


@needs_paddle
def test_paddle2onnx_opset_is_honoured_or_refused_and_recorded(zoo, tmp_path, cli_here):
    src = zoo("ppocrv4-cls")  # in-process: paddle2onnx itself runs in a child process of the library
    res = cli_here("paddle2onnx", src, "-o", tmp_path / "a.onnx", "--opset", "11", "--no-verify")
    assert res.code == 2 and "opset 14" in res.stderr and not (tmp_path / "a.onnx").exists()
    res = cli_here("paddle2onnx", src, "-o", tmp_path / "b.onnx", "--opset", "22")
    assert res.code == 2 and "7..21" in res.stderr
    res = cli_here("paddle2onnx", src, "-o", tmp_path / "c.onnx", "--opset", "15", "--json")
    assert res.code == 0, res.stderr
    man = json.loads((tmp_path / "c.onnx.ocrconvert.json").read_text())
    hop = man["hops"][0]
    assert hop["options"]["opset"] == 15 and hop["produced"]["opset"] == 15
    import onnx

    assert max(o.version for o in onnx.load(str(tmp_path / "c.onnx")).opset_import if o.domain in ("", "ai.onnx")) == 15
    assert man["precision"] == "fp32" and man["verification"]["tolerances"]["precision"] == "fp32"


@needs_torch
def test_a_route_refuses_an_option_it_cannot_honour(cls_onnx, tmp_path):
    import ocrconvert
    from ocrconvert.errors import UsageError

    with pytest.raises(UsageError, match="opset"):
        ocrconvert.convert(cls_onnx, tmp_path / "t", target="torch", options={"opset": 14})
    with pytest.raises(UsageError, match="precision"):
        ocrconvert.convert(cls_onnx, tmp_path / "t.pt2", target="torch-aot", options={"precision": "int8"})
    assert not (tmp_path / "t").exists() and not (tmp_path / "t.pt2").exists()


@needs_torch
def test_stale_staging_of_a_killed_run_is_removed_by_the_next_run(cls_onnx, tmp_path, cli_here):
    from ocrconvert.atomic import OutputSlot

    out = tmp_path / "o"
    slot = OutputSlot(out, is_dir=True).__enter__()
    stale = slot.stage
    (stale / "half-written").write_text("x")
    os.close(slot._file_lock.fd)  # the process "died": its lock is released, its staging stays
    slot._file_lock = None
    assert cli_here("onnx2torch", cls_onnx, "-o", out, "--no-verify").code == 0
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "src"]


@needs_torch
def test_seed_reaches_the_verification(cls_onnx, tmp_path, cli_here):
    def random_cases(seed):
        out = tmp_path / f"s{seed}"
        assert cli_here("onnx2torch", cls_onnx, "-o", out, "--seed", seed).code == 0
        man = json.loads((out / "ocrconvert.json").read_text())
        assert man["verification"]["seed"] == seed
        return [o["mean_abs"] for c in man["verification"]["cases"] if c["kind"] == "random" for o in c["outputs"]]

    assert random_cases(0) != random_cases(7)
