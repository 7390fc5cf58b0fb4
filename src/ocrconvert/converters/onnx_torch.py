"""ONNX -> PyTorch graph artifact: onnxslim (Constant weights -> initializers), then onnx2torch."""
from __future__ import annotations

from pathlib import Path

from .._compat import require, version_of
from ..errors import ConversionError
from ..formats import TORCH_GRAPH_FILE, Artifact, Format
from ..onnx_io import load_onnx
from ..registry import Converter, HopResult, register_converter


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


def explicit_same_pads(model):
    """onnx2torch lacks auto_pad=SAME_*; at stride 1 the pads do not depend on the input size, so write them out."""
    from onnx import helper

    for node in model.graph.node:
        if node.op_type not in ("Conv", "MaxPool", "AveragePool"):
            continue
        attrs = {a.name: a for a in node.attribute}
        mode = helper.get_attribute_value(attrs["auto_pad"]).decode() if "auto_pad" in attrs else "NOTSET"
        kernel = list(helper.get_attribute_value(attrs["kernel_shape"])) if "kernel_shape" in attrs else None
        if mode not in ("SAME_UPPER", "SAME_LOWER") or kernel is None:
            continue
        strides = list(helper.get_attribute_value(attrs["strides"])) if "strides" in attrs else [1] * len(kernel)
        if any(s != 1 for s in strides):
            continue  # size-dependent pads: left to onnx2torch, which reports it
        dil = list(helper.get_attribute_value(attrs["dilations"])) if "dilations" in attrs else [1] * len(kernel)
        total = [d * (k - 1) for k, d in zip(kernel, dil)]
        small = [t // 2 for t in total]
        begin = small if mode == "SAME_UPPER" else [t - s for t, s in zip(total, small)]
        end = [t - b for t, b in zip(total, begin)]
        node.attribute.remove(attrs["auto_pad"])
        if "pads" in attrs:
            node.attribute.remove(attrs["pads"])
        node.attribute.append(helper.make_attribute("pads", begin + end))
    return model


def fx_name_map(original, slimmed, module) -> dict:
    """ONNX tensor -> torch.fx node: onnx2torch names each module after its ONNX node (``/`` for ``.``); a
    tensor onnxslim folded away (a BatchNorm into its Conv) has no node and is left out."""
    from ..verification.names import name_map

    produced = {n.name: n.output[0] for n in slimmed.graph.node if len(n.output) == 1}
    kept = {o for n in original.graph.node for o in n.output}
    order = {o: i for i, o in enumerate(o for n in original.graph.node for o in n.output)}
    pairs = []
    for node in module.graph.nodes:
        tensor = produced.get(str(node.target).replace("/", ".")) if node.op == "call_module" else None
        if tensor in kept:
            pairs.append((tensor, node.name))
    pairs.sort(key=lambda p: order[p[0]])
    return name_map("onnx", "torch", pairs, how="names (onnx2torch module names)", source_keys="onnx tensor",
                    target_keys="torch.fx node", unmatched=len(kept) - len(pairs))


@register_converter("onnx", "torch", "onnx2torch", requires=("torch", "onnx2torch", "onnxslim"),
                    description="onnxslim + onnx2torch; graph description + safetensors (no pickle)")
class OnnxToTorchGraph(Converter):
    tool = "onnx2torch"

    def check(self, source: Artifact, options) -> list[str]:
        from ..torch_graph import unsupported_ops

        model = load_onnx(source.files["model"])
        bad = unsupported_ops(model)
        return [f"unsupported op: {op}" for op in bad]

    def convert(self, source: Artifact, dest: Path, options) -> HopResult:
        from ..onnx_io import graph_inputs
        from ..torch_graph import build_module, write_graph_artifact

        require("torch")
        model = explicit_same_pads(slim(load_onnx(source.files["model"])))
        module = build_module(model)  # proves onnx2torch can build it before anything is written
        dest.mkdir(parents=True, exist_ok=True)
        write_graph_artifact(model, dest)
        art = Artifact(dest, Format.TORCH_GRAPH, {"graph": dest / TORCH_GRAPH_FILE, "weights": dest / "model.safetensors"})
        axes = {s.name: list(s.dynamic_axes) for s in graph_inputs(model)}
        return HopResult(art, facts={"precision": "fp32", "dynamic_axes": axes,
                                     "name_map": fx_name_map(load_onnx(source.files["model"], load_weights=False),
                                                             model, module)})

    def versions(self) -> dict:
        return {"onnx2torch": version_of("onnx2torch"), "onnxslim": version_of("onnxslim"), "torch": version_of("torch")}
