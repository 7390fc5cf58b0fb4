from __future__ import annotations

import os
import warnings
from functools import cached_property

from .._compat import require
from ..errors import ConversionError, CorruptModelError
from ..paddle_program import read_program
from .base import Runner

class PaddleRunner(Runner):
    """Paddle Inference on CPU, IR passes and oneDNN off so results are the program's own."""

    backend = "paddle"

    def __init__(self, artifact, threads: int | None = None):
        super().__init__(artifact)
        self.threads = threads or min(4, os.cpu_count() or 1)

    @cached_property
    def program(self):
        return read_program(self.artifact)

    @cached_property
    def inputs(self):
        return self.program.inputs

    @cached_property
    def outputs(self):
        return self.program.outputs

    def _load(self):
        self.program  # the reader's checks come first: Paddle aborts inside C++ on some damaged files
        os.environ.setdefault("GLOG_minloglevel", "2")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pi = require("paddle.inference", "running Paddle inference")
        files = self.artifact.files
        cfg = pi.Config(str(files["program"]), str(files["params"]))
        cfg.disable_gpu()
        cfg.disable_mkldnn()
        cfg.switch_ir_optim(False)
        cfg.disable_glog_info()
        cfg.set_cpu_math_library_num_threads(self.threads)
        try:
            return pi.create_predictor(cfg)
        except (RuntimeError, ValueError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CorruptModelError(f"Paddle could not load {self.artifact.path}: {first}") from None

    def _infer(self, feed):
        pred = self.session
        for name in pred.get_input_names():
            pred.get_input_handle(name).copy_from_cpu(feed[name])
        try:
            pred.run()
        except (RuntimeError, ValueError) as exc:
            raise ConversionError(f"Paddle inference failed: {str(exc).strip().splitlines()[0]}") from None
        return [pred.get_output_handle(n).copy_to_cpu() for n in pred.get_output_names()]
