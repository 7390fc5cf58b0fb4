"""ONNX -> PyTorch graph artifact: onnxslim (Constant weights -> initializers), then onnx2torch."""
from __future__ import annotations

from pathlib import Path

from .._compat import require, version_of
from ..errors import ConversionError
from ..formats import TORCH_GRAPH_FILE, Artifact, Format
from ..onnx_io import load_onnx
from ..registry import register_converter


def slim(model):
    """onnxslim folds Paddle's Constant-node weights into initializers, which onnx2torch needs."""
    import onnxslim

    meta = [(p.key, p.value) for p in model.metadata_props]
    try:
        out = onnxslim.slim(model)
    except Exception as exc:  # noqa: BLE001 - onnxslim raises assorted errors on odd graphs
        raise ConversionError(f"onnxslim failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if out is None:
        raise ConversionError("onnxslim returned no model")
    have = {p.key for p in out.metadata_props}
    for k, v in meta:
        if k not in have:
            e = out.metadata_props.add()
            e.key, e.value = k, v
    return out


@register_converter("onnx", "torch", "onnx2torch", requires=("torch", "onnx2torch", "onnxslim"),
                    description="onnxslim + onnx2torch; graph description + safetensors (no pickle)")
class OnnxToTorchGraph:
    tool = "onnx2torch"

    def check(self, source: Artifact, options: dict) -> list[str]:
        from ..torch_graph import unsupported_ops

        model = load_onnx(source.files["model"])
        bad = unsupported_ops(model)
        return [f"unsupported op: {op}" for op in bad]

    def convert(self, source: Artifact, dest: Path, options: dict) -> Artifact:
        from ..torch_graph import build_module, write_graph_artifact

        require("torch")
        model = slim(load_onnx(source.files["model"]))
        build_module(model)  # proves onnx2torch can build it before anything is written
        dest.mkdir(parents=True, exist_ok=True)
        write_graph_artifact(model, dest)
        return Artifact(dest, Format.TORCH_GRAPH, {"graph": dest / TORCH_GRAPH_FILE, "weights": dest / "model.safetensors"})

    def versions(self) -> dict:
        return {"onnx2torch": version_of("onnx2torch"), "onnxslim": version_of("onnxslim"), "torch": version_of("torch")}
