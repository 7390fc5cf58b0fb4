from __future__ import annotations

import json
import os
from functools import cached_property

import numpy as np

from .._compat import require
from ..errors import ConversionError
from ..families.base import TensorSpec
from ..formats import MANIFEST_FILE
from .base import Runner


def _torch():
    torch = require("torch", "running PyTorch models")
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    return torch


class _TorchRunner(Runner):
    backend = "torch"

    def __init__(self, artifact, device: str = "cpu"):
        super().__init__(artifact)
        self.device = device

    def _infer(self, feed):
        torch = _torch()
        module = self.session
        args = [torch.from_numpy(np.asarray(feed[n])).to(self.device) for n in self.input_names]
        try:
            with torch.inference_mode():
                out = module(*args)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ConversionError(f"PyTorch inference failed: {str(exc).strip().splitlines()[0]}") from None
        if isinstance(out, dict):
            out = list(out.values())
        elif not isinstance(out, (list, tuple)):
            out = [out]
        return [o.detach().float().cpu().numpy() if o.dtype.is_floating_point else o.cpu().numpy() for o in out]


class TorchGraphRunner(_TorchRunner):
    """onnx2torch GraphModule rebuilt from the artifact's graph description + safetensors."""

    @cached_property
    def model(self):
        from ..torch_graph import read_graph_artifact

        return read_graph_artifact(self.artifact.path)

    @cached_property
    def inputs(self):
        from ..onnx_io import graph_inputs

        return graph_inputs(self.model)

    @cached_property
    def outputs(self):
        from ..onnx_io import graph_outputs

        return graph_outputs(self.model)

    def metadata(self):
        from ..onnx_io import metadata

        return metadata(self.model)

    def _load(self):
        from ..torch_graph import build_module

        _torch()
        return build_module(self.model).to(self.device)


class TorchNativeRunner(_TorchRunner):
    """A transformers-style folder made by the native route; runs the fused inference form."""

    backend = "torch-native"

    def __init__(self, artifact, device: str = "cpu", fused: bool = True):
        super().__init__(artifact, device)
        self.fused = fused

    @cached_property
    def _io(self) -> dict:
        p = self.artifact.path / MANIFEST_FILE
        if p.is_file():
            return json.loads(p.read_text()).get("io", {})
        return {}

    @cached_property
    def inputs(self):
        specs = self._io.get("inputs") or [{"name": "x", "shape": [None, 3, None, None]}]
        return [TensorSpec(s["name"], tuple(d if isinstance(d, int) and d > 0 else None for d in s["shape"]),
                           s.get("dtype", "float32")) for s in specs]

    @cached_property
    def outputs(self):
        specs = self._io.get("outputs") or [{"name": "output", "shape": []}]
        return [TensorSpec(s["name"], tuple(d if isinstance(d, int) and d > 0 else None for d in s["shape"]),
                           s.get("dtype", "float32")) for s in specs]

    def metadata(self):
        p = self.artifact.path / MANIFEST_FILE
        if p.is_file():
            return json.loads(p.read_text()).get("model_metadata", {})
        return {}

    def _load(self):
        _torch()
        from ..native import load_native

        from safetensors import SafetensorError

        try:
            return load_native(self.artifact.path, fused=self.fused).eval().to(self.device)
        except SafetensorError as exc:  # e.g. a pickle saved under the safetensors name: refused, never unpickled
            from ..errors import CorruptModelError

            raise CorruptModelError(f"{self.artifact.path / 'model.safetensors'} is not a valid safetensors file: {exc}") from None
