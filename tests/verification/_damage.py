"""Damaged copies of real models, for negative controls: each damage is small and must still FAIL verification.

ONNX models are damaged in their initializers (as a broken converter would write them); PyTorch artifacts in
their safetensors. Every function returns the name of what it damaged, so a test can say which damage slipped.
INT8 Q/DQ models are damaged behind their DequantizeLinear (the int8 weight, its per-channel scale), and a
damage never lands on a tensor where it changes nothing (the all-zero branches of a re-parameterised block,
two equal channels): such a "damage" would prove nothing about the verifier.
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


def _dequantizer(model, name: str):
    """The DequantizeLinear whose inputs are all initializers and that produces ``name`` (Q/DQ weights), or None."""
    inits = _inits(model)
    node = next((n for n in model.graph.node if name in n.output), None)
    if node is not None and node.op_type == "DequantizeLinear" and all(i in inits for i in node.input if i):
        return node
    return None


def _weight_of(model, node) -> str | None:
    """The initializer holding a node's weight: itself, or the scale of the DequantizeLinear feeding it (Q/DQ)."""
    name = node.input[1] if len(node.input) > 1 else None
    if name in _inits(model):
        return name
    dq = _dequantizer(model, name) if name else None
    return dq.input[1] if dq is not None else None


def _float_weight(model, name: str) -> np.ndarray | None:
    """The weight a node sees through input ``name``: the initializer, or its dequantized value."""
    inits = _inits(model)
    if name in inits:
        return numpy_helper.to_array(inits[name]).astype(np.float64)
    dq = _dequantizer(model, name)
    if dq is None:
        return None
    q = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float64)
    scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
    zp = numpy_helper.to_array(inits[dq.input[2]]).astype(np.float64) if len(dq.input) > 2 and dq.input[2] else 0.0
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    if scale.ndim == 1 and scale.size > 1:  # per-channel: broadcast along the quantization axis
        shape = [1] * q.ndim
        shape[axis] = scale.size
        scale, zp = scale.reshape(shape), np.broadcast_to(zp, scale.shape).reshape(shape)
    return (q - zp) * scale


def _weighted(model, op_types=("Conv",)) -> list:
    return [n for n in model.graph.node if n.op_type in op_types and _weight_of(model, n)]


def _matters(w: np.ndarray | None) -> bool:
    return w is not None and bool(np.abs(w).max() > 0)


def scale_conv(model, factor: float = 1.02, which: int = -1) -> str:
    """One conv's weights × ``factor`` (default: the last conv, whose change reaches the output whole)."""
    convs = [n for n in _weighted(model) if _matters(_float_weight(model, n.input[1]))]
    name = _weight_of(model, convs[which])
    w = numpy_helper.to_array(_inits(model)[name])
    _set(model, name, w * factor)
    return name


def swap_channels(model, which: int = -2) -> str:
    """Two output channels of one conv swapped (weights and bias), a wrong layout mapping. Q/DQ: the int8
    weight, its per-channel scale and zero point are swapped together."""
    def distinct(node) -> bool:
        w = _float_weight(model, node.input[1])
        return w is not None and w.shape[0] >= 2 and not np.array_equal(w[0], w[1])

    node = [n for n in _weighted(model) if distinct(n)][which]
    inits = _inits(model)
    dq = _dequantizer(model, node.input[1])
    channels = _float_weight(model, node.input[1]).shape[0]
    names = [i for i in (dq.input if dq is not None else node.input[1:2]) if i] + list(node.input[2:3])
    for name in names:
        if name in inits:
            a = numpy_helper.to_array(inits[name]).copy()
            if a.ndim and a.shape[0] == channels:
                a[[0, 1]] = a[[1, 0]]
                _set(model, name, a)
    return dq.input[0] if dq is not None else node.input[1]


def transpose_square_linear(model) -> str | None:
    """A square Linear (MatMul/Gemm) weight transposed, the classic Paddle->PyTorch Linear mistake (Q/DQ: the
    int8 weight transposed, its per-column scales left in place)."""
    inits = _inits(model)
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1:
            dq = _dequantizer(model, node.input[1])
            name = dq.input[0] if dq is not None else node.input[1]
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
    elem = out.type.tensor_type.elem_type or onnx.TensorProto.FLOAT
    zero = numpy_helper.from_array(np.zeros((), onnx.helper.tensor_dtype_to_np_dtype(elem)), out.name + "__zero")
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
    """A damaged copy of the ONNX ``src`` at ``dst``; None (nothing written) when the model has no such part."""
    model = onnx.load(str(src))
    _constants_to_initializers(model)
    what = ONNX_DAMAGES[damage](model)
    if what is None:
        return None
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return what


# ---- PyTorch artifacts (graph and native folders): damage in model.safetensors ------------------------
SAFETENSORS_DAMAGES = ("conv x1.02", "channels swapped", "square linear transposed")


def damaged_safetensors(folder: Path, damage: str) -> str | None:
    """Damage a PyTorch artifact folder in place (a copy made by the caller); None when it has no such part."""
    from safetensors.numpy import load_file, save_file

    path = Path(folder) / "model.safetensors"
    tensors = load_file(str(path))
    # spatial conv kernels that carry weight (re-parameterised blocks keep all-zero branches: damage is a no-op)
    convs = [k for k, v in tensors.items() if v.ndim == 4 and v.shape[0] >= 2 and v.shape[2] * v.shape[3] > 1
             and np.abs(v).max() > 0]
    what = None
    if damage == "conv x1.02":
        what = convs[-1]
        tensors[what] = tensors[what] * np.float32(1.02)
    elif damage == "channels swapped":
        what = [k for k in convs if not np.array_equal(tensors[k][0], tensors[k][1])][-2]
        a = tensors[what].copy()
        a[[0, 1]] = a[[1, 0]]
        tensors[what] = a
    elif damage == "square linear transposed":
        for k, v in tensors.items():
            if v.ndim == 2 and v.shape[0] == v.shape[1] and v.shape[0] > 8 and not np.allclose(v, v.T):
                tensors[k], what = v.T.copy(), k
                break
    else:
        raise KeyError(f"unknown damage {damage!r}; one of {SAFETENSORS_DAMAGES}")
    if what is not None:
        save_file(tensors, str(path), metadata={"format": "pt"})
    return what


# ---- AOTInductor packages (.pt2): damage the weights compiled into the package's shared library ----------
def damaged_aot(package: Path, native: Path, dst: Path, damage: str) -> str | None:
    """A damaged copy of the .pt2 ``package`` built from the native folder ``native``, at ``dst``.

    AOTInductor embeds the constants it did not fold (here: the 1x1 convs and the Linear, which have no BatchNorm
    to fuse) verbatim in the package's .so; the damage rewrites one of them in place, found by its exact bytes
    in ``native``'s safetensors (it must occur exactly once). The package no longer matches its manifest's
    sha256, so it loads only with ``trust=True``. None when no tensor fits the damage.
    """
    import zipfile

    from safetensors.numpy import load_file

    with zipfile.ZipFile(package) as z:
        entries = [(info, z.read(info)) for info in z.infolist()]
    so = next(i for i, (info, _) in enumerate(entries) if info.filename.endswith(".so"))
    blob = entries[so][1]
    kept = []  # (offset, name, tensor) of the weights kept verbatim, in the library's order
    for name, t in load_file(str(Path(native) / "model.safetensors")).items():
        raw = np.ascontiguousarray(t).tobytes()
        if t.ndim >= 2 and t.shape[0] >= 2 and np.abs(t).max() > 0 and blob.count(raw) == 1:
            kept.append((blob.find(raw), name, t))
    kept.sort(key=lambda k: k[0])
    convs = [(o, n, t) for o, n, t in kept if t.ndim == 4 and not np.array_equal(t[0], t[1])]
    if damage == "conv x1.02" and convs:
        offset, what, t = convs[-1]
        new = t * np.float32(1.02)
    elif damage == "channels swapped" and len(convs) >= 2:
        offset, what, t = convs[-2]
        new = t.copy()
        new[[0, 1]] = new[[1, 0]]
    else:
        return None
    raw = np.ascontiguousarray(new.astype(t.dtype)).tobytes()
    entries[so] = (entries[so][0], blob[:offset] + raw + blob[offset + len(raw):])
    dst.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dst, "w") as z:
        for info, data in entries:
            z.writestr(info, data)
    return what
