"""scripts/make_benchmarks_md.py: the generated block of docs/benchmarks.md from whatever raw runs exist."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_benchmarks_md.py"


@pytest.fixture
def script(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("make_benchmarks_md", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    (tmp_path / "docs" / "cpu-runs").mkdir(parents=True)
    (tmp_path / "docs" / "gpu-runs").mkdir(parents=True)
    (tmp_path / "docs" / "benchmarks.md").write_text("# Benchmarks\n\nhand-written prose\n")
    return mod


def _bench(ms: dict) -> dict:
    return {"device": "cpu", "shape": [8, 3, 48, 320], "threads": 1, "runs": 20, "rounds": 5,
            "date": "2026-11-30 00:00 UTC", "machine": "2 CPUs", "versions": {"torch": "2.14.1"},
            "command": "ocrconvert bench a b", "results": [
                {"variant": f"{k} (x)", "median_ms": v, "p10_ms": v * .9, "p90_ms": v * 1.1, "ratio": v / ms["onnxruntime"],
                 "ratio_p10": None, "ratio_p90": None, "error": ""} for k, v in ms.items()]}


def test_cpu_only_says_not_measured_for_the_gpu_and_judges_the_target(script, tmp_path):
    (tmp_path / "docs/cpu-runs/cpu-16-v4rec.json").write_text(json.dumps(_bench({"onnxruntime": 100.0, "aot": 90.0})))
    doc = tmp_path / "docs" / "benchmarks.md"
    assert script.main(["--doc", str(doc)]) == 0
    text = doc.read_text()
    assert "hand-written prose" in text and text.count(script.BEGIN) == 1
    assert "| aot | 90 [81–99], 0.90× | not measured |" in text
    assert "**GPU** (`docs/gpu-runs/h200-16-*.json`): not measured." in text
    assert "CPU target: aot ≤ 0.8× ONNX Runtime — missed (0.90×, aot)" in text
    assert "torch 2.14.1" in text and "`ocrconvert bench a b`" in text
    assert script.main(["--doc", str(doc), "--check"]) == 0  # idempotent: the block is replaced, not added


def test_gpu_runs_of_any_form_land_beside_the_cpu_column(script, tmp_path):
    (tmp_path / "docs/cpu-runs/cpu-16-v4rec.json").write_text(json.dumps(_bench({"onnxruntime": 100.0, "aot": 70.0})))
    (tmp_path / "docs/gpu-runs/h200-16-v4rec.json").write_text(json.dumps(
        {"gpu": "NVIDIA H200", "variants": {"aot": {"median_ms": 1.5}, "tensorrt": {"median_ms": 0.9}}}))
    (tmp_path / "docs/gpu-runs/h200-16-broken.json").write_text("{not json")
    doc = tmp_path / "docs" / "benchmarks.md"
    assert script.main(["--doc", str(doc), "--check"]) == 1  # out of date before the first run
    script.main(["--doc", str(doc)])
    text = doc.read_text()
    assert "| aot | 70 [63–77], 0.70× | 1.5 |" in text and "| tensorrt | not measured | 0.9 |" in text
    assert "met (0.70×, aot)" in text and "unreadable" in text
