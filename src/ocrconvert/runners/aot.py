from __future__ import annotations

from functools import cached_property

import numpy as np

from .._compat import require
from ..errors import ConversionError, CorruptModelError
from ..families.base import TensorSpec
from ..manifest import read_manifest
from .base import Runner


class AotRunner(Runner):
    """An AOTInductor package (.pt2); runs on the device it was built for (from its manifest).

    ``cuda_graphs=True`` (CUDA packages): each input shape's first call is captured into a CUDA graph (static
    input buffer, the package loaded ``run_single_threaded`` so its run holds no event queries a capture
    forbids) and every later call of that shape copies the input in and replays it: one launch instead of the
    package's per-kernel launches. Up to ``MAX_GRAPHS`` shapes are kept (least recently used dropped)."""

    backend = "torch-aot"
    MAX_GRAPHS = 16
    CAPTURE_ERROR_MODE = "global"  # torch.cuda.graph's capture_error_mode

    def __init__(self, artifact, device: str | None = None, trust: bool = False, cuda_graphs: bool = False):
        super().__init__(artifact)
        self._device = device
        self.trust = trust
        self.cuda_graphs = bool(cuda_graphs)
        self._graphs: dict = {}

    @cached_property
    def manifest(self) -> dict:
        return read_manifest(self.artifact.path) or {}

    @property
    def device(self) -> str:
        return self._device or (self.manifest.get("aot") or {}).get("device") or "cpu"

    def _specs(self, key):
        return [TensorSpec.from_dict(s) for s in (self.manifest.get("io") or {}).get(key, [])] or [
            TensorSpec("x" if key == "inputs" else "output", ())]

    @cached_property
    def inputs(self):
        return self._specs("inputs")

    @cached_property
    def outputs(self):
        return self._specs("outputs")

    def metadata(self):
        return dict(self.manifest.get("model_metadata") or {})

    def _check_provenance(self) -> None:
        """Loading a .pt2 dlopens the native code inside it: only packages ocrconvert built (manifest
        beside it, sha256 matching) load unless the caller passes ``trust=True``."""
        from ..errors import UnsupportedModelError
        from ..manifest import sha256_file

        if self.trust:
            return
        recorded = (self.manifest.get("artifact") or {}).get("sha256")
        if not recorded or recorded != sha256_file(self.artifact.path):
            raise UnsupportedModelError(
                f"{self.artifact.path} has no matching ocrconvert manifest; loading it would run its native code",
                hint="Only packages built by `ocrconvert aot-build` load by default (Python: load(path, trust=True)).")

    def _load(self):
        torch = require("torch")
        self._check_provenance()
        if self.cuda_graphs and not self.device.startswith("cuda"):
            from ..errors import UsageError

            raise UsageError(f"CUDA graphs need a CUDA package; {self.artifact.path} runs on {self.device}",
                             hint="Drop cuda_graphs, or build the package with --device cuda.")
        if self.device.startswith("cuda"):
            from .._compat import fp32_on_cuda

            fp32_on_cuda(torch)
        try:
            return torch._inductor.aoti_load_package(str(self.artifact.path), run_single_threaded=self.cuda_graphs)
        except Exception as exc:  # noqa: BLE001
            raise CorruptModelError(f"cannot load AOTInductor package {self.artifact.path}: {str(exc).splitlines()[0]}") from None

    def _check_shape(self, arr: np.ndarray) -> None:
        """AOTInductor does not check static dims at run time (it returns garbage): we do."""
        from ..errors import UsageError

        aot = (self.manifest.get("aot") or {})
        example, dynamic = aot.get("example_shape"), set(aot.get("dynamic_axes", []))
        if example is None:
            return
        bad = [i for i, (got, want) in enumerate(zip(arr.shape, example)) if i not in dynamic and got != want]
        if len(arr.shape) != len(example) or bad:
            raise UsageError(f"input shape {tuple(arr.shape)} does not fit this package (static dims of "
                             f"{tuple(example)}, dynamic axes {sorted(dynamic)})")

    def run_tensors(self, *args):
        """The package on tensors already on its device; returns its output tensors (a list). With
        ``cuda_graphs`` the outputs are the graph's static buffers: read them before the next call."""
        torch = require("torch")
        fn = self.session
        try:
            with torch.inference_mode():
                out = self._replay(fn, args) if self.cuda_graphs else fn(*args)
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"AOT package inference failed: {str(exc).strip().splitlines()[0]}") from None
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def _replay(self, fn, args):
        torch = require("torch")
        key = tuple((tuple(a.shape), a.dtype) for a in args)
        entry = self._graphs.pop(key, None)
        if entry is None:
            entry = self._capture(torch, fn, args)
            while len(self._graphs) >= self.MAX_GRAPHS:
                self._graphs.pop(next(iter(self._graphs)))
        self._graphs[key] = entry  # most recently used last
        graph, static_in, static_out = entry
        for buf, a in zip(static_in, args):
            buf.copy_(a)
        graph.replay()
        return static_out

    def _capture(self, torch, fn, args):
        static_in = [a.detach().clone() for a in args]
        side = torch.cuda.Stream(device=static_in[0].device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up off the capture: kernels load, the allocator settles
            for _ in range(2):
                fn(*static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode=self.CAPTURE_ERROR_MODE):
            out = fn(*static_in)
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        return graph, static_in, outs

    def _infer(self, feed):
        return [o.detach().float().cpu().numpy() for o in self._forward(feed)]

    def _best(self, feed):
        from .base import best_class_torch

        return best_class_torch(self._forward(feed)[0])

    def _forward(self, feed):
        torch = require("torch")
        for n in self.input_names:
            self._check_shape(np.asarray(feed[n]))
        return self.run_tensors(*[torch.from_numpy(np.asarray(feed[n])).to(self.device) for n in self.input_names])
