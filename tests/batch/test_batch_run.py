"""Real batch runs on small zoo models: the seed and the precision reach the spine, expected failures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from _batch_helpers import batch, write_config
from _cli_helpers import needs_paddle, needs_torch

pytestmark = [pytest.mark.zoo]


def _random_errors(manifest: str) -> list:
    """Per random case: its label and every output's max/mean abs error, from the job's manifest."""
    ver = json.loads(Path(manifest).read_text())["verification"]
    return [(c["label"], [(o["max_abs"], o["mean_abs"]) for o in c["outputs"]]) for c in ver["cases"]
            if c["kind"] == "random"]


@needs_paddle
@pytest.mark.paddle
def test_seed_reaches_the_verification(tmp_path, zoo_model):
    cfg = write_config(tmp_path, zoo_model, """
models:
  - {model: ppocrv4-cls, name: seeded, seed: 7, targets: [onnx]}
  - {model: ppocrv4-cls, name: default, targets: [onnx]}
""")
    run = batch(cfg, "-j", "2")
    assert run.code == 0, run.stderr[-3000:]
    seeded, default = run.job("seeded.onnx"), run.job("default.onnx")
    assert (seeded["seed"], default["seed"]) == (7, 0)
    assert _random_errors(seeded["manifest"]) != _random_errors(default["manifest"])  # other inputs

    # --seed overrides every job's: only the job whose seed changed runs again, on the same inputs
    res = batch(cfg, "-j", "2", "--resume", "--seed", "7")
    assert res.code == 0, res.stderr[-3000:]
    assert res.status == {"seeded.onnx": "resumed", "default.onnx": "passed"}
    assert res.job("default.onnx")["seed"] == 7
    assert _random_errors(res.job("default.onnx")["manifest"]) == _random_errors(seeded["manifest"])


@needs_torch
@needs_paddle
@pytest.mark.paddle
@pytest.mark.native
def test_fp16_aot_job_builds_fp16_or_the_build_refuses_it(tmp_path, zoo_model):
    """The job's precision reaches aot-build: an fp16 package on a GPU; on a CPU the build refuses
    (exit 2), where the old batch built fp32 and only loosened the tolerances."""
    import torch

    cfg = write_config(tmp_path, zoo_model, """
models:
  - {model: ppocrv4-cls, targets: [{target: torch-aot, precision: fp16, verify: false}]}
""")
    run = batch(cfg)
    job = run.job("ppocrv4-cls.torch-aot")
    assert job["options"] == {"precision": "fp16"}
    if torch.cuda.is_available():
        assert run.code == 0, run.stderr[-3000:]
        hop = json.loads(Path(job["manifest"]).read_text())["hops"][-1]
        assert hop["converter"] == "aot-build"
        assert hop["options"]["precision"] == "fp16" and hop["produced"]["precision"] == "fp16"
    else:
        assert run.code == 5 and job["exit_code"] == 2, job
        assert "fp16" in job["error"]["message"] and "CUDA" in job["error"]["message"]
        assert not (tmp_path / "out" / "ppocrv4-cls" / "torch-aot" / "model.pt2").exists()


@needs_torch
@pytest.mark.torch
def test_expected_failure_reports_ops_and_passes(tmp_path, zoo_model):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save

    # an op onnx2torch lacks (Det) inside a Loop body: the preflight walks sub-graphs
    vi = helper.make_tensor_value_info
    body = helper.make_graph([helper.make_node("Det", ["v_in"], ["d"]),
                              helper.make_node("Add", ["v_in", "d"], ["v_out"]),
                              helper.make_node("Identity", ["c_in"], ["c_out"])], "body",
                             [vi("i", TensorProto.INT64, []), vi("c_in", TensorProto.BOOL, []),
                              vi("v_in", TensorProto.FLOAT, [2, 2])],
                             [vi("c_out", TensorProto.BOOL, []), vi("v_out", TensorProto.FLOAT, [2, 2])])
    graph = helper.make_graph([helper.make_node("Loop", ["M", "", "x"], ["y"], body=body)], "g",
                              [vi("x", TensorProto.FLOAT, [2, 2])], [vi("y", TensorProto.FLOAT, [2, 2])],
                              initializer=[numpy_helper.from_array(np.asarray(2, np.int64), "M")])
    (tmp_path / "src").mkdir()
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "src" / "detloop.onnx"))
    cfg = write_config(tmp_path, zoo_model, f"""
models:
  - model: {tmp_path / "src" / "detloop.onnx"}
    targets:
      - {{target: torch, expect: {{exit_code: 3, unsupported_ops: [Det]}}, reason: no Det converter}}
""")
    run = batch(cfg)
    assert run.code == 0, run.stderr[-2000:]
    job = run.report["jobs"][0]
    assert job["status"] == "xfail" and job["exit_code"] == 3
    assert job["error"]["unsupported_ops"] == ["Det"]
    md = (tmp_path / "report" / "summary.md").read_text()
    assert "no Det converter" in md
    # an expected failure is recorded: resumed, not run again
    res = batch(cfg, "--resume")
    assert res.code == 0 and res.status == {"detloop.torch": "xfail"}
    assert res.job("detloop.torch")["seconds"] == 0.0
