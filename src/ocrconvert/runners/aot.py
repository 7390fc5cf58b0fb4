from __future__ import annotations

from functools import cached_property

import numpy as np

from .._compat import require
from ..errors import ConversionError, CorruptModelError
from ..families.base import TensorSpec
from ..manifest import read_manifest
from .base import Runner


class AotRunner(Runner):
    """An AOTInductor package (.pt2); runs on the device it was built for (from its manifest)."""

    backend = "torch-aot"

    def __init__(self, artifact, device: str | None = None, trust: bool = False):
        super().__init__(artifact)
        self._device = device
        self.trust = trust

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
        if self.device.startswith("cuda"):
            from .._compat import fp32_on_cuda

            fp32_on_cuda(torch)
        try:
            return torch._inductor.aoti_load_package(str(self.artifact.path))
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

    def _infer(self, feed):
        torch = require("torch")
        for n in self.input_names:
            self._check_shape(np.asarray(feed[n]))
        fn = self.session
        args = [torch.from_numpy(np.asarray(feed[n])).to(self.device) for n in self.input_names]
        try:
            with torch.inference_mode():
                out = fn(*args)
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"AOT package inference failed: {str(exc).strip().splitlines()[0]}") from None
        outs = out if isinstance(out, (list, tuple)) else [out]
        return [o.detach().float().cpu().numpy() for o in outs]
