"""Negative controls for the PyTorch tests: the damage helpers of tests/verification/_damage.py."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def damage():
    """``tests/verification/_damage.py``: small damages of real models that every verdict must catch."""
    path = Path(__file__).resolve().parents[1] / "verification" / "_damage.py"
    spec = importlib.util.spec_from_file_location("ocx_test_damage_torch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
