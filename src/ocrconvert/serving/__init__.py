"""Serving converted model sets with NVIDIA Triton Inference Server.

``write_repository(set, out, backend=...)`` writes the model repository (``triton-repo``), ``validate_config`` /
``validate_repository`` hold every ``config.pbtxt`` to Triton's schema, ``TritonServer`` runs the real
``tritonserver`` that the ``nvidia-pytriton`` wheel ships (tests, ``scripts/bench_triton.py``).
"""
from __future__ import annotations

from .config import InvalidConfigError, ModelConfig, TensorConfig, parse_config, validate_config, validate_repository
from .repository import OCR_MODEL, RECORD_FILE, RepositoryResult, write_repository

__all__ = ["write_repository", "RepositoryResult", "validate_config", "validate_repository", "parse_config",
           "InvalidConfigError", "ModelConfig", "TensorConfig", "OCR_MODEL", "RECORD_FILE", "TritonServer"]


def __getattr__(name):
    if name == "TritonServer":
        from .server import TritonServer

        return TritonServer
    raise AttributeError(name)
