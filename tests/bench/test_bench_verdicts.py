"""Exit codes of ``ocrconvert bench``: CUDA asked for where there is none is refused before any work (2);
a failed variant fails the run (5) and the others are still measured and reported; children print nothing
on the parent's stdout."""
from __future__ import annotations

import json

import pytest
from _bench_helpers import TINY_SHAPE, as_json, bench_env, run_bench_cli

pytestmark = [pytest.mark.zoo]
QUICK = ("--runs", "4", "--rounds", "2", "--warmup", "1", "--threads", "1")


def test_cuda_without_cuda_exits_2_before_any_work(cls_onnx):
    env = bench_env(CUDA_VISIBLE_DEVICES="")   # no visible device, on any machine
    p = run_bench_cli(cls_onnx, "--device", "cuda", env=env)
    assert p.returncode == 2, p.stderr
    assert p.stdout == "" and "no CUDA device" in p.stderr and "Traceback" not in p.stderr
    d = as_json(run_bench_cli(cls_onnx, "--device", "cuda", "--json", env=env))
    assert d["exit_code"] == 2 and d["error"] == "UsageError"


def test_help_documents_the_exit_codes():
    p = run_bench_cli("--help")
    assert p.returncode == 0
    text = " ".join(p.stdout.split())
    assert "Exit 0: every variant ran" in text and "Exit 5: one or more variants failed" in text
    assert "--device cuda with no visible CUDA device" in text


def test_device_is_checked_before_any_child_starts(cls_onnx, monkeypatch):
    from ocrconvert import bench
    from ocrconvert.errors import UsageError

    monkeypatch.setattr(bench, "_cuda_device_count", lambda: 0)
    monkeypatch.setattr(bench._Child, "start", lambda self: pytest.fail("a child was started"))
    monkeypatch.setattr(bench, "_family_shape", lambda paths: pytest.fail("the model was read"))
    with pytest.raises(UsageError, match="no CUDA device"):
        bench.run_bench([cls_onnx], device="cuda")


def test_one_failed_variant_exits_5_and_the_others_are_reported(cls_onnx, tiny_onnx):
    p = run_bench_cli(cls_onnx, tiny_onnx, "--shape", "8x3x48x192", *QUICK, "--json")
    assert p.returncode == 5, p.stderr
    d = as_json(p)
    good, bad = d["results"]
    assert d["passed"] is False and d["exit_code"] == 5 and d["summary"].startswith("FAILED | 1 of 2")
    assert good["error"] == "" and good["median_ms"] > 0 and good["peak_mem_mb"] > 0 and good["ratio"] == 1.0
    assert len(good["runs_ms"]) == 4 and len(good["round_medians_ms"]) == 2
    assert "invalid dimensions" in bad["error"] and bad["median_ms"] is None and bad["ratio"] is None
    # the table says the same, and ends with the verdict line
    p = run_bench_cli(cls_onnx, tiny_onnx, "--shape", "8x3x48x192", *QUICK)
    assert p.returncode == 5 and "invalid dimensions" in p.stdout
    assert p.stdout.strip().splitlines()[-1].startswith("FAILED | 1 of 2 variant(s) failed: onnxruntime (tiny.onnx)")


def test_a_shape_every_variant_rejects_exits_5(cls_onnx, tiny_onnx):
    p = run_bench_cli(cls_onnx, tiny_onnx, "--shape", "8x5x7x9", *QUICK, "--json")
    assert p.returncode == 5, p.stderr
    d = as_json(p)
    assert d["passed"] is False and d["baseline"] is None
    assert all(r["error"] and r["median_ms"] is None for r in d["results"])


def test_a_passing_run_exits_0(tiny_onnx):
    shape = "x".join(map(str, TINY_SHAPE))
    p = run_bench_cli(tiny_onnx, tiny_onnx, "--shape", shape, *QUICK, "--json")
    assert p.returncode == 0, p.stderr
    d = as_json(p)
    assert d["passed"] and [r["variant"] for r in d["results"]] == ["onnxruntime (tiny.onnx)", "onnxruntime (tiny.onnx) #2"]
    assert p.stdout.count("\n") > 3 and json.loads(p.stdout)["summary"].startswith("PASSED")


def test_children_print_nothing_on_the_parents_stdout(tiny_onnx, tmp_path):
    """Every child prints to its stdout (at start and at exit, from Python and from C): none of it reaches
    the parent's stdout, which stays one JSON object, and the replies still arrive. The hook also logs each
    print to a file, so the test knows the noise was really made (a hook that never ran would pass silently)."""
    made = tmp_path / "made.txt"
    (tmp_path / "sitecustomize.py").write_text(
        "import atexit, os, sys\n"
        "if '--child' in sys.orig_argv:\n"
        f"    def made(what): open({str(made)!r}, 'a').write(f'{{os.getpid()}} {{what}}\\n')\n"
        "    print('NOISE from python', flush=True); made('python')\n"
        "    os.write(1, b'NOISE from C\\n'); made('C')\n"
        "    atexit.register(lambda: (print('NOISE at exit'), made('exit')))\n")
    env = bench_env(PYTHONPATH=str(tmp_path))
    shape = "x".join(map(str, TINY_SHAPE))
    p = run_bench_cli(tiny_onnx, "--shape", shape, *QUICK, "--json", env=env)
    assert p.returncode == 0, p.stderr
    lines = made.read_text().split()
    # one child, and it printed at start (python and C) and at exit
    assert len(set(lines[0::2])) == 1 and lines[1::2] == ["python", "C", "exit"], lines
    assert "NOISE" not in p.stdout and "NOISE" not in p.stderr
    assert as_json(p)["passed"]
