from __future__ import annotations

import os
from functools import cached_property

from ..errors import ConversionError, CorruptModelError, UnsupportedModelError
from ..onnx_io import graph_inputs, graph_outputs, load_onnx, metadata
from .base import Runner, default_threads


class OnnxRuntimeRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, artifact, providers: list[str] | None = None, threads: int | None = None):
        super().__init__(artifact)
        self.providers = providers or ["CPUExecutionProvider"]
        self.threads = threads or default_threads()

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

    # -- intermediate outputs (for ``ocrconvert diff``) -------------------------------------------------
    def layer_values(self) -> list[tuple[str, str]]:
        """(tensor name, op type) of every node output, in graph order."""
        full = load_onnx(self.artifact.files["model"], load_weights=False)
        return [(o, n.op_type) for n in full.graph.node if n.op_type != "Constant" for o in n.output if o]

    def output_keys(self) -> list[str]:
        """The keys of the declared outputs, in order."""
        return list(self.output_names)

    @cached_property
    def _exposed(self):
        """A session over a temporary copy whose graph outputs are every node output (the file is never touched)."""
        import tempfile

        import onnx
        import onnxruntime as ort
        from onnx import helper

        model = load_onnx(self.artifact.files["model"])
        have = {o.name for o in model.graph.output}
        for name, _ in self.layer_values():
            if name not in have:
                model.graph.output.append(helper.make_empty_tensor_value_info(name))
                have.add(name)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every node's own output
        with tempfile.TemporaryDirectory(prefix="ocrconvert-diff-") as tmp:
            path = os.path.join(tmp, "exposed.onnx")
            onnx.save(model, path, save_as_external_data=model.ByteSize() > 1_800_000_000)
            try:
                return ort.InferenceSession(path, opts, providers=self.providers)
            except Exception as exc:  # noqa: BLE001
                raise ConversionError(f"ONNX Runtime cannot run {self.artifact.path} with its intermediates exposed: "
                                      f"{str(exc).strip().splitlines()[0]}") from None

    def layer_outputs(self, feed, keys: list[str] | None = None) -> dict:
        """``{tensor name: array}`` of the floating-point node outputs (all, or ``keys``), in graph order."""
        sess = self._exposed
        names = [o.name for o in sess.get_outputs() if "float" in o.type and (keys is None or o.name in set(keys))]
        try:
            outs = sess.run(names, {k: feed[k] for k in self.input_names})
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"ONNX Runtime inference failed: {str(exc).strip().splitlines()[0]}") from None
        got = dict(zip(names, outs))
        return {name: got[name] for name, _ in self.layer_values() if name in got}
