"""Paddle inference (legacy or PIR) -> ONNX through paddle2onnx, in a child process."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from .._compat import available, version_of
from ..errors import ConversionError, MissingDependencyError, UnsupportedOpsError
from ..formats import Artifact, Format
from ..registry import register_converter
from .common import carry_metadata

log = logging.getLogger(__name__)
_UNSUPPORTED = re.compile(r"=+\s*([A-Za-z0-9_.]+)\s*=+")


@register_converter("paddle", "onnx", "paddle2onnx", requires=("paddle2onnx", "paddle"),
                    description="paddle2onnx (child process), dictionary + pre/post-processing in metadata")
class PaddleToOnnx:
    tool = "paddle2onnx"

    def check(self, source: Artifact, options: dict) -> list[str]:
        from ..paddle_program import read_program

        read_program(source)  # raises on a corrupt program
        return []

    def convert(self, source: Artifact, dest: Path, options: dict) -> Artifact:
        if not available("paddle2onnx"):
            raise MissingDependencyError("paddle2onnx", "paddle")
        opset = int(options.get("opset") or 14)
        files = source.files
        cmd = [sys.executable, "-m", "ocrconvert.converters._paddle2onnx_worker",
               str(files["program"]), str(files["params"]), str(dest), str(opset)]
        # paddle2onnx picks its program reader from FLAGS_*; a caller's PIR flags break legacy programs
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGS_")}
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=env,
                              timeout=int(options.get("timeout") or 1800))
        log.debug("paddle2onnx output:\n%s%s", proc.stdout, proc.stderr)
        text = proc.stdout + proc.stderr
        if proc.returncode != 0 or not dest.is_file():
            if "not supported" in text.lower() or "unsupported" in text.lower():
                ops = _UNSUPPORTED.findall(text)
                if ops:
                    raise UnsupportedOpsError(ops, target="ONNX (paddle2onnx)")
            tail = [ln for ln in text.strip().splitlines() if ln.strip()][-3:]
            raise ConversionError(f"paddle2onnx failed (exit {proc.returncode}): {' | '.join(tail)[:400]}")
        fixes = self._finish(source, dest)
        art = Artifact(dest, Format.ONNX, {"model": dest})
        if fixes:
            art.meta["fixes"] = fixes
        return art

    @staticmethod
    def _finish(source: Artifact, dest: Path) -> dict:
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
        return fixes

    def versions(self) -> dict:
        return {"paddle2onnx": version_of("paddle2onnx"), "paddlepaddle": version_of("paddlepaddle")}
