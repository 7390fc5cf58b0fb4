"""Paddle inference (legacy or PIR) -> ONNX through paddle2onnx, in a child process."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from dataclasses import dataclass

from .._compat import available, version_of
from ..errors import ConversionError, MissingDependencyError, UnsupportedOpsError, UsageError
from ..formats import Artifact, Format
from ..onnx_io import opset as opset_of
from ..options import RouteOptions, check_opset
from ..registry import Converter, HopResult, register_converter
from .common import carry_metadata

log = logging.getLogger(__name__)
_UNSUPPORTED = re.compile(r"=+\s*([A-Za-z0-9_.]+)\s*=+")
_NEEDS_OPSET = re.compile(r"set the opset_version to (\d+)")
OPSET_RANGE = (7, 21)  # what paddle2onnx 2.0.x writes; it aborts the process outside it


@dataclass(frozen=True)
class PaddleToOnnxOptions(RouteOptions):
    opset: int = 14
    timeout: float = 1800.0

    def validate(self) -> None:
        check_opset(self.opset, *OPSET_RANGE, "paddle2onnx")
        if self.timeout <= 0:
            raise UsageError("timeout must be positive")


@register_converter("paddle", "onnx", "paddle2onnx", options=PaddleToOnnxOptions, requires=("paddle2onnx", "paddle"),
                    description="paddle2onnx (child process), dictionary + pre/post-processing in metadata")
class PaddleToOnnx(Converter):
    tool = "paddle2onnx"
    reusable = True  # deterministic, one file: a batch converts a source once for all its routes (pipeline._run_hop)

    def check(self, source: Artifact, options: PaddleToOnnxOptions) -> list[str]:
        from ..paddle_program import read_program

        read_program(source)  # raises on a corrupt program
        return []

    def convert(self, source: Artifact, dest: Path, options: PaddleToOnnxOptions) -> HopResult:
        if not available("paddle2onnx"):
            raise MissingDependencyError("paddle2onnx", "paddle")
        opset = options.opset
        files = source.files
        cmd = [sys.executable, "-m", "ocrconvert.converters._paddle2onnx_worker",
               str(files["program"]), str(files["params"]), str(dest), str(opset)]
        # paddle2onnx picks its program reader from FLAGS_*; a caller's PIR flags break legacy programs
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGS_")}
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=env,
                              timeout=options.timeout)
        log.debug("paddle2onnx output:\n%s%s", proc.stdout, proc.stderr)
        text = proc.stdout + proc.stderr
        if proc.returncode != 0 or not dest.is_file():
            if needed := _NEEDS_OPSET.search(text):  # we never let paddle2onnx raise the opset behind our back
                raise UsageError(f"this model needs ONNX opset {needed.group(1)} or higher; --opset {opset} cannot "
                                 "be honoured", hint=f"Pass --opset {needed.group(1)} (paddle2onnx writes "
                                                     f"{OPSET_RANGE[0]}..{OPSET_RANGE[1]}).")
            if "not supported" in text.lower() or "unsupported" in text.lower():
                ops = _UNSUPPORTED.findall(text)
                if ops:
                    raise UnsupportedOpsError(ops, target="ONNX (paddle2onnx)")
            tail = [ln for ln in text.strip().splitlines() if ln.strip()][-3:]
            raise ConversionError(f"paddle2onnx failed (exit {proc.returncode}): {' | '.join(tail)[:400]}")
        fixes, produced = self._finish(source, dest)
        if produced != opset:
            raise ConversionError(f"paddle2onnx wrote opset {produced} when asked for {opset}")
        art = Artifact(dest, Format.ONNX, {"model": dest})
        return HopResult(art, facts={"opset": produced, **({"fixes": fixes} if fixes else {}),
                                     "name_map": self._name_map(source, art)})

    @staticmethod
    def _name_map(source: Artifact, art: Artifact) -> dict:
        """Paddle variable -> ONNX tensor: paddle2onnx names a tensor after the variable it computes (a PIR
        value, which has no name, as ``p2o.pd_op.<type>.<k>.<i>``); each pair is checked on one input."""
        from ..runners.onnxruntime import OnnxRuntimeRunner
        from ..runners.paddle import PaddleRunner
        from ..verification.names import record_map

        try:
            return record_map(PaddleRunner(source), OnnxRuntimeRunner(art), "paddle", "onnx",
                              source_keys="paddle variable", target_keys="onnx tensor")
        except Exception as exc:  # noqa: BLE001 - a missing map costs diff its names, never the conversion
            log.warning("no name map recorded: %s: %s", type(exc).__name__, exc)
            return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}

    @staticmethod
    def _finish(source: Artifact, dest: Path) -> tuple[dict, int]:
        import onnx

        from ..runners.paddle import PaddleRunner
        from .onnx_fixes import bool_where_to_int

        model = onnx.load(str(dest))
        fixes = {}
        if n := bool_where_to_int(model):
            fixes["bool_where_to_uint8"] = n
        info = PaddleRunner(source).info()
        carry_metadata(model, info, f"{source.format.value}:{source.path.name}")
        model.producer_name = "ocrconvert+paddle2onnx"
        onnx.checker.check_model(model)
        onnx.save(model, str(dest))
        return fixes, opset_of(model)

    def versions(self) -> dict:
        return {"paddle2onnx": version_of("paddle2onnx"), "paddlepaddle": version_of("paddlepaddle")}
