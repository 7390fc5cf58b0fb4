"""One fresh fuzz seed per session, printed at the end of the run; ``OCRCONVERT_FUZZ_SEED=N`` replays a run."""
from __future__ import annotations

import importlib.util
import os
import secrets
import sys
from pathlib import Path

import pytest

SEED_ENV = "OCRCONVERT_FUZZ_SEED"
_SEED = int(os.environ[SEED_ENV]) if os.environ.get(SEED_ENV, "").strip() else secrets.randbits(32)
_USED: list[str] = []
_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz_readers.py"


def _load_script():
    if "fuzz_readers" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fuzz_readers", _SCRIPT)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["fuzz_readers"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["fuzz_readers"]


@pytest.fixture(scope="session")
def fuzz():
    """scripts/fuzz_readers.py as a module: the same targets and mutators as the long run."""
    return _load_script()


@pytest.fixture(scope="session")
def fuzz_seed(request) -> int:
    _USED.append(request.node.name)
    return _SEED


@pytest.fixture(scope="session")
def fuzz_corpus(fuzz, zoo):
    """Seed files: the real zoo models (pulled once, cached), as the long run uses them."""
    return fuzz.Corpus(find=zoo)


def pytest_terminal_summary(terminalreporter):
    if _USED:
        terminalreporter.write_sep("-", "fuzz seed")
        terminalreporter.write_line(f"fuzz seed {_SEED}: replay with {SEED_ENV}={_SEED} pytest tests/fuzz "
                                    f"(one input: python scripts/fuzz_readers.py --seed {_SEED} --replay TARGET:INDEX)")
