"""The project's PyTorch graph artifact: a graph description plus safetensors, never a pickle.

Layout of ``NAME/``: ``graph.onnx`` (the graph as an ONNX proto whose initializers carry names,
shapes and dtypes but no data), ``model.safetensors`` (every weight, keyed by initializer name),
``ocrconvert.json`` (the manifest). Loading rebuilds the ``torch.fx.GraphModule`` with onnx2torch
from the description and fills it from safetensors: no code is unpickled or executed from disk.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._compat import require
from .errors import CorruptModelError, UnsupportedModelError, UnsupportedOpsError
from .formats import TORCH_GRAPH_FILE, WEIGHTS_FILE


def split_weights(model) -> tuple[object, dict[str, np.ndarray]]:
    """Return (description, weights): a copy of ``model`` whose initializers hold no data."""
    import onnx
    from onnx import numpy_helper

    desc = onnx.ModelProto()
    desc.CopyFrom(model)
    weights: dict[str, np.ndarray] = {}
    for init in desc.graph.initializer:
        arr = numpy_helper.to_array(init)
        weights[init.name] = np.ascontiguousarray(arr)
        dims, dtype, name = list(init.dims), init.data_type, init.name
        init.Clear()
        init.name, init.data_type = name, dtype
        init.dims.extend(dims)
    return desc, weights


def write_graph_artifact(model, folder: Path) -> None:
    import onnx
    from safetensors.numpy import save_file

    desc, weights = split_weights(model)
    onnx.save(desc, str(folder / TORCH_GRAPH_FILE))
    save_file(weights, str(folder / WEIGHTS_FILE), metadata={"format": "ocrconvert-torch-graph"})


def read_graph_artifact(folder: Path):
    """The full ONNX model (description + weights) of a graph artifact."""
    from onnx import numpy_helper
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from .onnx_io import load_onnx

    desc = load_onnx(folder / TORCH_GRAPH_FILE, load_weights=False)
    try:
        weights = load_file(str(folder / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CorruptModelError(f"{folder / WEIGHTS_FILE} is not a valid safetensors file: {exc}") from None
    missing = []
    for init in desc.graph.initializer:
        arr = weights.get(init.name)
        if arr is None or arr.size != int(np.prod(init.dims)):
            missing.append(init.name)
            continue
        init.CopyFrom(numpy_helper.from_array(arr.reshape(tuple(init.dims)), init.name))  # 0-d kept as 0-d
    if missing:
        raise CorruptModelError(
            f"{len(missing)} weight(s) missing or of the wrong shape in {folder / WEIGHTS_FILE}: {', '.join(missing[:5])}"
        )
    return desc


def weights_count(path: Path) -> int:
    """How many numbers a safetensors file holds, from its header alone."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return int(sum(int(np.prod(f.get_slice(k).get_shape() or [1])) for k in f.keys()))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CorruptModelError(f"{path} is not a valid safetensors file: {exc}") from None


def unsupported_ops(model) -> list[str]:
    """Every (op, opset) in ``model`` that onnx2torch has no converter for — all of them at once."""
    require("onnx2torch", "converting ONNX to PyTorch")
    from onnx2torch.node_converters.registry import get_converter

    from .onnx_io import opset
    from .onnx2torch_ops import subgraphs  # registers Loop, If, ScatterElements, OneHot with onnx2torch

    versions = {o.domain or "": o.version for o in model.opset_import}
    bad = []

    def walk(graph) -> None:  # sub-graphs too (Loop bodies, If branches): every op at once
        for node in graph.node:
            domain = node.domain or ""
            try:
                get_converter(node.op_type, versions.get(domain, opset(model)), domain or "")
            except NotImplementedError:
                bad.append(f"{domain + '::' if domain else ''}{node.op_type}")
            for sub in subgraphs(node):
                walk(sub)

    walk(model.graph)
    return sorted(set(bad))


def build_module(model):
    """onnx2torch GraphModule for a full ONNX model (after preflight)."""
    require("torch", "building the PyTorch model")
    require("onnx2torch", "building the PyTorch model")
    bad = unsupported_ops(model)
    if bad:
        raise UnsupportedOpsError(bad, target="PyTorch (onnx2torch)")
    from .onnx2torch_ops import convert  # onnx2torch.convert, with the model's opsets for its sub-graphs

    try:
        module = convert(model)
    except NotImplementedError as exc:  # an attribute combination onnx2torch lacks (e.g. auto_pad at stride > 1)
        raise UnsupportedModelError(f"onnx2torch cannot convert this model: {exc}") from None
    return module.eval()
