"""Damaged copies of real models, for negative controls: each damage is small and must still FAIL verification.

ONNX models are damaged in their initializers (as a broken converter would write them); PyTorch artifacts in
their safetensors. Every function returns the name of what it damaged, so a test can say which damage slipped.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _inits(model) -> dict:
    return {i.name: i for i in model.graph.initializer}


def _set(model, name: str, arr: np.ndarray) -> None:
    init = _inits(model)[name]
    init.CopyFrom(numpy_helper.from_array(arr.astype(numpy_helper.to_array(init).dtype), name))


def _weight_of(model, node) -> str | None:
    """The initializer holding a node's weight: itself, or the scale of the DequantizeLinear feeding it (Q/DQ)."""
    inits = _inits(model)
    name = node.input[1] if len(node.input) > 1 else None
    if name in inits:
        return name
    producer = next((n for n in model.graph.node if name in n.output), None)
    if producer is not None and producer.op_type == "DequantizeLinear" and producer.input[1] in inits:
        return producer.input[1]
    return None


def _weighted(model, op_types=("Conv",)) -> list:
    return [n for n in model.graph.node if n.op_type in op_types and _weight_of(model, n)]


def scale_conv(model, factor: float = 1.02, which: int = -1) -> str:
    """One conv's weights × ``factor`` (default: the last conv, whose change reaches the output whole)."""
    name = _weight_of(model, _weighted(model)[which])
    w = numpy_helper.to_array(_inits(model)[name])
    _set(model, name, w * factor)
    return name


def swap_channels(model, which: int = -2) -> str:
    """Two output channels of one conv swapped (weights and bias), a wrong layout mapping."""
    convs = [n for n in _weighted(model) if numpy_helper.to_array(_inits(model)[n.input[1]]).shape[0] >= 2]
    node = convs[which]
    for name in node.input[1:3]:
        if name in _inits(model):
            a = numpy_helper.to_array(_inits(model)[name]).copy()
            a[[0, 1]] = a[[1, 0]]
            _set(model, name, a)
    return node.input[1]


def transpose_square_linear(model) -> str | None:
    """A square Linear (MatMul/Gemm) weight transposed, the classic Paddle->PyTorch Linear mistake."""
    inits = _inits(model)
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            for name in node.input[1:2]:
                if name in inits:
                    w = numpy_helper.to_array(inits[name])
                    if w.ndim == 2 and w.shape[0] == w.shape[1] and not np.allclose(w, w.T):
                        _set(model, name, w.T.copy())
                        return name
    return None


def zero_output(model, index: int = 0) -> str:
    """The graph's output multiplied by zero (an exporter that lost the head)."""
    out = model.graph.output[index]
    for node in model.graph.node:
        for i, name in enumerate(node.output):
            if name == out.name:
                node.output[i] = name + "__undamaged"
    zero = numpy_helper.from_array(np.zeros((), np.float32), out.name + "__zero")
    model.graph.initializer.append(zero)
    model.graph.node.append(helper.make_node("Mul", [out.name + "__undamaged", zero.name], [out.name]))
    return out.name


ONNX_DAMAGES = {"conv x1.02": scale_conv, "channels swapped": swap_channels, "output zeroed": zero_output,
                "square linear transposed": transpose_square_linear}


def _constants_to_initializers(model) -> None:
    """Paddle-exported ONNX keeps weights in Constant nodes; make them initializers so they can be found."""
    keep = []
    for node in model.graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is not None and value.t.dims:
            t = onnx.TensorProto()
            t.CopyFrom(value.t)
            t.name = node.output[0]
            model.graph.initializer.append(t)
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def damaged_onnx(src: Path, dst: Path, damage: str) -> str | None:
    model = onnx.load(str(src))
    _constants_to_initializers(model)
    what = ONNX_DAMAGES[damage](model)
    if what is None:
        return None
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return what


# ---- PyTorch artifacts (graph and native folders): damage in model.safetensors ------------------------
def damaged_safetensors(folder: Path, damage: str) -> str | None:
    """Damage a PyTorch artifact folder in place (a copy made by the caller)."""
    from safetensors.numpy import load_file, save_file

    path = Path(folder) / "model.safetensors"
    tensors = load_file(str(path))
    convs = [k for k, v in tensors.items() if v.ndim == 4 and v.shape[0] >= 2 and v.shape[2] * v.shape[3] > 1]
    what = None
    if damage == "conv x1.02":
        what = convs[-1]
        tensors[what] = tensors[what] * np.float32(1.02)
    elif damage == "channels swapped":
        what = convs[-2]
        a = tensors[what].copy()
        a[[0, 1]] = a[[1, 0]]
        tensors[what] = a
    elif damage == "square linear transposed":
        for k, v in tensors.items():
            if v.ndim == 2 and v.shape[0] == v.shape[1] and v.shape[0] > 8 and not np.allclose(v, v.T):
                tensors[k], what = v.T.copy(), k
                break
    if what is not None:
        save_file(tensors, str(path), metadata={"format": "pt"})
    return what
