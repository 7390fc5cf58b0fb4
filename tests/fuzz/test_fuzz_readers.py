"""Short hypothesis runs of scripts/fuzz_readers.py: readers raise only OcrConvertError subclasses."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("hypothesis", reason="hypothesis not installed (extra 'test')")

_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz_readers.py"


def _load():
    spec = importlib.util.spec_from_file_location("fuzz_readers", _SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_readers"] = mod
    spec.loader.exec_module(mod)
    return mod


fuzz = _load()
EXAMPLES = {"detect": 60, "legacy": 80, "pir": 80, "onnx": 80, "config": 120, "safetensors": 80}


@pytest.mark.parametrize("target", sorted(EXAMPLES))
def test_reader_raises_only_our_errors(target):
    if target == "legacy":
        pytest.importorskip("paddle", reason="paddlepaddle not installed (extra 'paddle')")
    fuzz.make_test(target, EXAMPLES[target])()
