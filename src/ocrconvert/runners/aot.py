from __future__ import annotations

import json
from functools import cached_property

import numpy as np

from .._compat import require
from ..errors import ConversionError, CorruptModelError
from ..families.base import TensorSpec
from ..manifest import manifest_path
from .base import Runner


class AotRunner(Runner):
    """An AOTInductor package (.pt2); runs on the device it was built for (from its manifest)."""

    backend = "torch-aot"

    def __init__(self, artifact, device: str | None = None):
        super().__init__(artifact)
        self._device = device

    @cached_property
    def manifest(self) -> dict:
        mp = manifest_path(self.artifact.path)
        return json.loads(mp.read_text()) if mp.is_file() else {}

    @property
    def device(self) -> str:
        return self._device or self.manifest.get("aot", {}).get("device") or "cpu"

    def _specs(self, key):
        return [TensorSpec(s["name"], tuple(d if isinstance(d, int) else None for d in s["shape"]), s.get("dtype", "float32"))
                for s in self.manifest.get("io", {}).get(key, [])] or [TensorSpec("x" if key == "inputs" else "output", ())]

    @cached_property
    def inputs(self):
        return self._specs("inputs")

    @cached_property
    def outputs(self):
        return self._specs("outputs")

    def metadata(self):
        return self.manifest.get("model_metadata", {})

    def _load(self):
        torch = require("torch")
        if self.device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = False  # fp32 parity: no TF32 (costs ~1e-2)
            torch.backends.cudnn.allow_tf32 = False
        try:
            return torch._inductor.aoti_load_package(str(self.artifact.path))
        except Exception as exc:  # noqa: BLE001
            raise CorruptModelError(f"cannot load AOTInductor package {self.artifact.path}: {str(exc).splitlines()[0]}") from None

    def _infer(self, feed):
        torch = require("torch")
        fn = self.session
        args = [torch.from_numpy(np.asarray(feed[n])).to(self.device) for n in self.input_names]
        try:
            with torch.inference_mode():
                out = fn(*args)
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"AOT package inference failed: {str(exc).strip().splitlines()[0]}") from None
        outs = out if isinstance(out, (list, tuple)) else [out]
        return [o.detach().float().cpu().numpy() for o in outs]
