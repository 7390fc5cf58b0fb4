"""Short runs of scripts/fuzz_readers.py: every reader raises only OcrConvertError subclasses.

Each session fuzzes with a fresh seed (printed in the terminal summary; ``OCRCONVERT_FUZZ_SEED=N`` replays
it), so every CI run tries new inputs. The counts keep the whole file near 30 s on two cores; the long
run is ``python scripts/fuzz_readers.py --count 10000``.
"""
from __future__ import annotations

from pathlib import Path

import pytest

# inputs per session: about 1-3 s of CPU each on two cores (the expensive readers get fewer)
COUNTS = {"detect": 500, "onnx": 250, "paddle-legacy": 60, "paddle-pir": 50, "manifest": 300, "reference": 400,
          "inference-yml": 150, "batch-config": 300, "images": 15, "dict": 250, "safetensors": 300, "inspect": 60}
PADDLE = {"paddle-legacy", "paddle-pir"}
pytestmark = pytest.mark.zoo


def _assert_clean(fuzz, result) -> None:
    """The script's own report (per-reader counts, each escaped exception with its replay line) on failure."""
    if not result.passed:
        pytest.fail("\n" + fuzz.render(result), pytrace=False)


def _marks(t: str) -> list:
    return [pytest.mark.paddle] if t in PADDLE else []


@pytest.mark.parametrize("target", [pytest.param(t, marks=_marks(t)) for t in COUNTS])
def test_reader_raises_only_our_errors(target, fuzz, fuzz_seed, fuzz_corpus):
    result = fuzz.fuzz({target: COUNTS[target]}, fuzz_seed, corpus=fuzz_corpus)
    assert not result.skipped, result.skipped
    assert result.counts == {target: COUNTS[target]}
    _assert_clean(fuzz, result)


@pytest.mark.paddle
def test_paddle_graph_reader_in_a_worker(fuzz, fuzz_seed, zoo):
    """Paddle's C++ deserialiser may abort the process: a worker process runs it, so a crash is a failure
    with its reproducer instead of the end of the test session."""
    for name in ("ppocrv4-cls", "ppocrv5-mobile-det"):
        zoo(name)  # cached before the worker looks for them
    result = fuzz.fuzz({"paddle-graph": 8}, fuzz_seed, jobs=1, timeout=300)
    assert result.counts == {"paddle-graph": 8}
    _assert_clean(fuzz, result)


# ------------------------------------------------------------------ the harness itself can fail and replay
def _broken_target(fuzz, exc: type[BaseException]):
    def read(path, trial, corpus):
        from ocrconvert.formats import detect

        trial.call("detect", detect, path)     # a clean OcrConvertError is fine ...
        if path.read_bytes()[0] < 64:
            raise exc("a reader bug")           # ... anything else is reported

    def build(rng, corpus, folder, trial):
        trial.note("4 random bytes")
        return fuzz._write(folder / "model.onnx", rng.randbytes(4))

    return fuzz.Target("broken", build, read)


def test_an_escaping_exception_fails_the_run_with_a_reproducer(fuzz, monkeypatch, tmp_path):
    monkeypatch.setitem(fuzz.TARGETS, "broken", _broken_target(fuzz, ValueError))
    result = fuzz.fuzz({"broken": 200}, 1234, corpus=fuzz.Corpus(find=lambda name: tmp_path), crash_dir=tmp_path / "c")
    assert not result.passed and result.crashes
    (key, items), = result.groups()
    assert key == ("broken", "ValueError", "(outside ocrconvert)")
    first = items[0]
    assert "test_fuzz_readers.py" in first["raised_in"] and first["stage"] == "detect"
    assert first["recipe"] == ["4 random bytes"]
    assert Path(first["saved"], "model.onnx").read_bytes()[0] < 64   # the input, rebuilt for the bug report
    text = fuzz.render(result)
    assert text.splitlines()[-1].startswith("FAILED | fuzz_readers | 200 inputs")
    assert f"--seed 1234 --replay broken:{first['index']}" in text
    assert 20 < len(items) < 200 and result.outcomes["broken"]["detect: ok"] == 200  # every call counted


def test_inputs_are_a_function_of_seed_target_and_index(fuzz, fuzz_corpus, tmp_path):
    def files(seed, index, where):
        _, trial = fuzz.build_input(fuzz.TARGETS["onnx"], seed, index, fuzz_corpus, where)
        return trial.recipe, {p.relative_to(where): p.read_bytes() for p in where.rglob("*") if p.is_file()}

    a = files(7, 3, tmp_path / "a")
    assert a == files(7, 3, tmp_path / "b")                                  # a replay builds the same input
    assert a != files(8, 3, tmp_path / "c") or a != files(7, 4, tmp_path / "d")  # other seeds, other inputs
    assert a[0]  # every input says how it was made
