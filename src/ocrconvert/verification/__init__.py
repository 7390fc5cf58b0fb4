"""Verification: the target against the ORIGINAL source, numerically and at the OCR level."""
from .compare import Tolerances, compare_arrays
from .report import CaseResult, ParityReport
from .run import record_reference, verify_artifacts

__all__ = ["Tolerances", "compare_arrays", "CaseResult", "ParityReport", "verify_artifacts", "record_reference"]
