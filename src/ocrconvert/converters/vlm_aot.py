"""VLM vision tower -> an AOTInductor package (.pt2) for any image size (``vlm-aot``).

torch.export at one size with symbolic sides (SDPA attention), then ``aoti_compile_and_package``; fp16/bf16
inside with an fp32 boundary on CUDA. The spine verifies the package against the fp32 transformers tower
(``vlm.export.TowerVerifier``, optionally on the GPU with TF32 off) at >= 3 sizes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._compat import version_of
from ..errors import UsageError
from ..formats import Artifact, Format
from ..options import Precision
from ..registry import HopResult, VerificationPolicy, register_converter
from ..vlm import export as vlm_export
from ..vlm.export import VlmExportOptions


@dataclass(frozen=True)
class VlmAotOptions(VlmExportOptions):
    device: str = "cpu"                   # where the package runs: cpu | cuda

    def validate(self) -> None:
        super().validate()
        vlm_export.check_device("--device", self.device)
        if self.precision is not Precision.FP32 and not self.device.startswith("cuda"):
            raise UsageError(f"{self.precision.value} AOT packages are built for CUDA", hint="Add --device cuda.")


@register_converter("vlm", "torch-aot", "vlm-aot", options=VlmAotOptions, requires=("torch", "transformers"),
                    description="VLM vision tower -> AOTInductor package (.pt2) for any image size; fp32/fp16/bf16")
class VlmTowerToAot(vlm_export.TowerConverter):
    tool = "torch.export + AOTInductor"

    def convert(self, source: Artifact, dest: Path, options: VlmAotOptions) -> HopResult:
        job = vlm_export.ExportJob.resolve(source, options)
        tower, encoder = job.build(attention="sdpa")
        facts = vlm_export.export_aot(encoder, dest, job, device=options.device)
        h, w = job.export_size
        blocks = job.manifest_blocks(tower)
        # what the AOT runner reads back: the device, and which axes may differ from the traced example
        blocks["aot"] = {"device": options.device, "precision": options.precision.value, "example_shape": [1, 3, h, w],
                         "dynamic_axes": [2, 3], "gpu": facts["gpu"]}
        return HopResult(Artifact(dest, Format.TORCH_AOT, {"package": dest}), facts=facts, manifest=blocks,
                         policy=VerificationPolicy(precision=options.precision,
                                                   verifier=job.verifier(tower, device=options.device)))

    def versions(self) -> dict:
        return {p: version_of(p) for p in ("torch", "transformers")}
