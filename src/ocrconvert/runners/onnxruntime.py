from __future__ import annotations

import os
from functools import cached_property

from ..errors import ConversionError, CorruptModelError, UnsupportedModelError
from ..onnx_io import graph_inputs, graph_outputs, load_onnx, metadata
from .base import Runner


class OnnxRuntimeRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, artifact, providers: list[str] | None = None, threads: int | None = None):
        super().__init__(artifact)
        self.providers = providers or ["CPUExecutionProvider"]
        self.threads = threads or min(4, os.cpu_count() or 1)

    @cached_property
    def model(self):
        return load_onnx(self.artifact.files["model"], load_weights=False)

    @cached_property
    def inputs(self):
        return graph_inputs(self.model)

    @cached_property
    def outputs(self):
        return graph_outputs(self.model)

    def metadata(self):
        return metadata(self.model)

    def _load(self):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.log_severity_level = 3
        load_onnx(self.artifact.files["model"], load_weights=False)  # confinement + corruption checks first
        try:
            return ort.InferenceSession(str(self.artifact.files["model"]), opts, providers=self.providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped errors
            msg = str(exc).strip().splitlines()[0]
            if "NOT_IMPLEMENTED" in msg or "Could not find an implementation" in msg:
                raise UnsupportedModelError(f"ONNX Runtime cannot run {self.artifact.path}: {msg}") from None
            raise CorruptModelError(f"ONNX Runtime cannot load {self.artifact.path}: {msg}") from None

    def _infer(self, feed):
        try:
            return self.session.run(None, feed)
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"ONNX Runtime inference failed: {str(exc).strip().splitlines()[0]}") from None
