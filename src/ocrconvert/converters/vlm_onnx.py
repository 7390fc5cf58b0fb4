"""VLM vision tower -> ONE ONNX model for any image size (``vlm-onnx``).

torch.onnx's dynamo exporter at one size with symbolic sides; the blocked-attention custom op is expanded to
an ONNX ``Loop`` (bounded memory at 2048x2048); FP16 inside with an fp32 boundary. The spine verifies the
result against the transformers tower (``vlm.export.TowerVerifier``) at >= 3 sizes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._compat import version_of
from ..errors import UsageError
from ..formats import Artifact, Format
from ..options import Precision, check_opset
from ..registry import HopResult, VerificationPolicy, register_converter
from ..vlm import export as vlm_export
from ..vlm.export import VlmExportOptions


@dataclass(frozen=True)
class VlmOnnxOptions(VlmExportOptions):
    opset: int = 18
    block: int = 512                      # query rows per attention block (bounds memory)

    def validate(self) -> None:
        super().validate()
        if self.precision is Precision.BF16:
            raise UsageError("bf16 ONNX is not supported by ONNX Runtime's CPU kernels",
                             hint="Use --fp16, or a .pt2 output (AOTInductor).")
        check_opset(self.opset, 17, 23, "torch.onnx's dynamo exporter")
        if self.block < 1:
            raise UsageError("--block must be >= 1")


@register_converter("vlm", "onnx", "vlm-onnx", options=VlmOnnxOptions, requires=("torch", "transformers", "onnxscript"),
                    description="VLM vision tower -> one ONNX for any image size (blocked attention as a Loop)")
class VlmTowerToOnnx(vlm_export.TowerConverter):
    tool = "torch.onnx.export(dynamo=True)"

    def convert(self, source: Artifact, dest: Path, options: VlmOnnxOptions) -> HopResult:
        job = vlm_export.ExportJob.resolve(source, options)
        tower, encoder = job.build(attention="blocked", block=options.block)
        facts = vlm_export.export_onnx(encoder, dest, job, opset=options.opset)
        return HopResult(Artifact(dest, Format.ONNX, {"model": dest}), facts=facts,
                         manifest=job.manifest_blocks(tower),
                         policy=VerificationPolicy(precision=options.precision, verifier=job.verifier(tower)))

    def versions(self) -> dict:
        return {p: version_of(p) for p in ("torch", "transformers", "onnx", "onnxscript")}
