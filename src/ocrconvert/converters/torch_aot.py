"""PyTorch artifact -> AOTInductor package (.pt2): torch.export with dynamic batch/width(/height), then
``aoti_compile_and_package``. Built from the native model's fused form; the graph route is the fallback."""
from __future__ import annotations

import logging
from pathlib import Path

from .._compat import require, version_of
from ..errors import ConversionError, UsageError
from ..formats import Artifact, Format
from ..registry import register_converter
from .common import example_inputs

log = logging.getLogger(__name__)


def export_dims(family: str, rank: int):
    """torch.export Dims for the family's dynamic axes (batch, width; det also height)."""
    from torch.export import Dim

    batch = Dim("batch", min=1, max=512)
    if rank != 4:
        return {0: batch}
    if family == "det-db":  # DB det: sides divisible by 32 (the FPN adds upsampled maps), at least 64
        return {0: batch, 2: 32 * Dim("h32", min=2, max=256), 3: 32 * Dim("w32", min=2, max=256)}
    if family == "rec-ctc":  # any width whose sequence has > 1 step (export derives the bound, ~13)
        return {0: batch, 3: Dim.DYNAMIC}
    return {0: batch}



def build_module(source: Artifact, fp16: bool, device: str):
    torch = require("torch")
    from ..runners import runner_for

    runner = runner_for(source)
    if source.format is Format.TORCH_NATIVE:
        from ..native import load_native

        module = load_native(source.path, fused=True)
    else:
        module = runner.session
    module = module.eval().to(device)

    class Wrapped(torch.nn.Module):
        """fp16 inside, fp32 at the boundary: callers keep feeding float32 images."""

        def __init__(self, inner, half: bool):
            super().__init__()
            from ..native.fused import half_precision

            self.inner = half_precision(inner) if half else inner
            self.half_ = half

        def forward(self, x):
            y = self.inner(x.half() if self.half_ else x)
            if isinstance(y, (tuple, list)):
                y = y[0]
            return y.float()

    return runner, Wrapped(module, fp16).eval()


@register_converter("torch", "torch-aot", "aot-build", requires=("torch",),
                    description="AOTInductor package (.pt2) of the native fused model; dynamic batch/width")
class TorchToAot:
    tool = "torch._inductor.aoti"

    def check(self, source: Artifact, options: dict) -> list[str]:
        return []

    def convert(self, source: Artifact, dest: Path, options: dict) -> Artifact:
        torch = require("torch")
        device = options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        fp16 = bool(options.get("fp16"))
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError("--device cuda but no CUDA GPU is visible", hint="Use --device cpu.")
        if fp16 and not device.startswith("cuda"):
            raise UsageError("--fp16 AOT packages are built for CUDA", hint="Add --device cuda, or drop --fp16.")
        runner, module = build_module(source, fp16, device)
        family, feed = example_inputs(runner)
        x = torch.from_numpy(feed[runner.input_names[0]]).to(device)
        dims = export_dims(family.name, x.ndim)
        try:
            with torch.no_grad():
                ep = torch.export.export(module, (x,), dynamic_shapes=({k: v for k, v in dims.items()},))
        except Exception as exc:  # noqa: BLE001 - export errors come in many types
            raise ConversionError(f"torch.export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                                  hint="The native route exports cleanly; graph (onnx2torch) artifacts often do not.") from None
        inductor_cfg = {"max_autotune": bool(options.get("autotune"))}
        try:
            torch._inductor.aoti_compile_and_package(ep, package_path=str(dest), inductor_configs=inductor_cfg)
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"AOTInductor compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
        art = Artifact(dest, Format.TORCH_AOT, {"package": dest})
        art.meta["aot"] = {"device": device, "fp16": fp16, "example_shape": list(x.shape),
                           "dynamic_axes": sorted(int(k) for k in dims),
                           "dynamic_ranges": {str(k): str(v) for k, v in ep.range_constraints.items()},
                           "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None}
        return art

    def versions(self) -> dict:
        return {"torch": version_of("torch")}
