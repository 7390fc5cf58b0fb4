"""An ONNX graph as the native route's layer records (``layers.Rec``), for architectures recognised from ONNX.

The exporters (paddle2onnx's two generations) write the same layers differently: BatchNorm folded into the
conv (conv with bias), a conv followed by an ``Add`` of a [1, C, 1, 1] bias, or a real
``BatchNormalization``; LayerNorm and GELU / SiLU / hard-swish as chains of elementary ops. This module
folds each back into one record (conv with its bias and BN, linear with its bias, layer_norm, act), so
that an architecture reads a short typed sequence, never op names or file names.

Every initializer is accounted for: a weight a record names (``params``), or a constant of an elementary
chain whose value is checked here (GELU's sqrt(2), a LayerNorm's eps, the attention scale...). What is
neither is reported as unmapped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..paddle_program import Op
from .errors import NativeMappingError
from .layers import Rec

SHAPE_OPS = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Cast", "Slice", "Concat", "Reshape", "Transpose",
             "Flatten", "ConstantOfShape", "Range", "Expand", "Div", "Mul", "Add", "Sub", "Floor", "Ceil"}
PLUMBING = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten"}  # move data, carry no weight


@dataclass
class OnnxLayers:
    """The records of one ONNX graph, the weights they name and the constants checked on the way."""
    path: Path
    records: list[Rec]
    weights: dict[str, np.ndarray]  # initializer name -> array, in the shape its record uses
    constants: set[str] = field(default_factory=set)  # initializers consumed as checked constants
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    @property
    def params(self) -> set[str]:
        return set(self.weights)


def _attrs(node) -> dict:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else (list(v) if isinstance(v, (list, tuple)) else v)
    return out


def read_onnx_layers(model, path: Path | str = "<onnx>") -> OnnxLayers:
    """Records of ``model`` (an ``onnx.ModelProto`` with its weights loaded), in graph order."""
    from onnx import numpy_helper

    g = model.graph
    if any(n.op_type in ("Loop", "If", "Scan") for n in g.node):
        raise NativeMappingError("a graph with control flow is no native architecture")
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    init_names = set(consts)
    nodes = []
    for n in g.node:
        if n.op_type == "Constant":
            a = _attrs(n)
            if "value" in a:
                consts[n.output[0]] = numpy_helper.to_array(a["value"])
            continue
        nodes.append(n)
    rename: dict[str, str] = {}

    def R(v: str) -> str:
        while v in rename:
            v = rename[v]
        return v

    for n in nodes:
        if n.op_type == "Identity":
            rename[n.output[0]] = n.input[0]
    nodes = [n for n in nodes if n.op_type != "Identity"]
    for n in nodes:  # a stored weight reshaped in the graph (a [C] bias made [1, C, 1, 1]) is that weight
        if n.op_type in ("Reshape", "Unsqueeze", "Squeeze") and R(n.input[0]) in init_names \
                and all(R(v) in consts for v in n.input[1:] if v):
            rename[n.output[0]] = R(n.input[0])
    consumers: dict[str, list] = {}
    for n in nodes:
        for v in n.input:
            if v:
                consumers.setdefault(R(v), []).append(n)
    # values computed from shapes and constants only (reshape targets, ...): not data
    static = set(consts)
    for n in nodes:
        ins = [R(v) for v in n.input if v]
        if n.op_type == "Shape" or (ins and all(v in static for v in ins) and n.op_type in SHAPE_OPS):
            static.update(n.output)

    used_w: set[str] = set()
    used_c: set[str] = set()
    weights: dict[str, np.ndarray] = {}

    def const(v: str | None) -> np.ndarray | None:
        return consts.get(R(v)) if v else None

    def take_const(v: str) -> np.ndarray:
        name = R(v)
        if name in init_names:
            used_c.add(name)
        return consts[name]

    def weight(v: str, shape=None) -> str:
        name = R(v)
        if name not in init_names:
            raise NativeMappingError(f"weight {name} is computed in the graph, not stored")
        arr = consts[name]
        weights[name] = arr.reshape(shape) if shape is not None else arr
        used_w.add(name)
        return name

    def sole(v: str):
        c = consumers.get(R(v), [])
        return c[0] if len(c) == 1 else None

    def other_input(node, v: str) -> str:
        a, b = (R(x) for x in node.input[:2])
        return b if a == R(v) else a

    def is_scalar(arr, value, tol=1e-5) -> bool:
        return arr is not None and arr.size == 1 and math.isclose(float(arr.reshape(-1)[0]), value, rel_tol=tol,
                                                                  abs_tol=tol)

    absorbed: set[int] = set()
    recs: list[Rec] = []
    index = {id(n): i for i, n in enumerate(nodes)}

    def op_of(n, in_shapes=None, attrs=None) -> Op:
        return Op(index[id(n)], n.op_type, [R(v) for v in n.input], list(n.output), attrs or _attrs(n),
                  in_shapes or [])

    def absorb(n):
        absorbed.add(index[id(n)])

    for n in nodes:
        i = index[id(n)]
        if i in absorbed:
            continue
        if all(o in static for o in n.output):  # shape arithmetic: its constants are no weights
            for v in n.input:
                if v and R(v) in init_names:
                    take_const(v)
            continue
        t = n.op_type
        x = R(n.input[0]) if n.input else None
        if t in ("Conv", "ConvTranspose"):
            w = consts.get(R(n.input[1]))
            if w is None:
                raise NativeMappingError(f"{t} {n.name}: its filter is not a stored weight")
            a = _attrs(n)
            params = {"weight": weight(n.input[1])}
            out = n.output[0]
            bias_shape = (w.shape[1] * a.get("group", 1),) if t == "ConvTranspose" else (w.shape[0],)
            if len(n.input) > 2 and n.input[2]:
                params["bias"] = weight(n.input[2], bias_shape)
            nxt = sole(out)
            if nxt is not None and nxt.op_type == "Add" and "bias" not in params:
                b = const(other_input(nxt, out))
                if b is not None and b.size == bias_shape[0] and R(other_input(nxt, out)) in init_names:
                    params["bias"] = weight(other_input(nxt, out), bias_shape)
                    absorb(nxt)
                    out = nxt.output[0]
                    nxt = sole(out)
            attrs = {"type": t, "strides": a.get("strides", [1, 1]), "pads": a.get("pads", [0, 0, 0, 0]),
                     "dilations": a.get("dilations", [1, 1]), "groups": int(a.get("group", 1)),
                     "auto_pad": a.get("auto_pad", "NOTSET"), "kernel": list(w.shape[2:])}
            if nxt is not None and nxt.op_type in ("Squeeze", "Unsqueeze") and sole(nxt.output[0]) is not None \
                    and sole(nxt.output[0]).op_type == "BatchNormalization":
                attrs["then"] = nxt.op_type  # a Conv2d of height 1 standing for a Conv1d, its BN on 3-D data
                for v in nxt.input[1:]:
                    if v and R(v) in init_names:
                        take_const(v)
                absorb(nxt)
                nxt = sole(nxt.output[0])
            if nxt is not None and nxt.op_type == "BatchNormalization":
                scale, bias, mean, var = (weight(v) for v in nxt.input[1:5])
                params.update(bn_weight=scale, bn_bias=bias, bn_mean=mean, bn_var=var)
                attrs["bn_eps"] = float(_attrs(nxt).get("epsilon", 1e-5))
                absorb(nxt)
                out = nxt.output[0]
            recs.append(Rec("conv", op_of(n, [None, list(w.shape)], attrs), x, out, params, attrs))
        elif t in ("MatMul", "Gemm") and R(n.input[1]) in init_names:
            a = _attrs(n)
            if t == "Gemm" and (a.get("transA") or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0):
                raise NativeMappingError(f"Gemm {n.name} with transA/alpha/beta")
            wt = consts[R(n.input[1])]
            params = {"weight": weight(n.input[1])}
            out = n.output[0]
            if t == "Gemm" and len(n.input) > 2 and n.input[2]:
                params["bias"] = weight(n.input[2], (wt.shape[0 if a.get("transB") else 1],))
            nxt = sole(out)
            if "bias" not in params and nxt is not None and nxt.op_type == "Add":
                other = other_input(nxt, out)
                if other in init_names and const(other).ndim == 1:
                    params["bias"] = weight(other)
                    absorb(nxt)
                    out = nxt.output[0]
            attrs = {"transpose_y": bool(a.get("transB", 0))}
            recs.append(Rec("linear", op_of(n, [None, list(wt.shape)], attrs), x, out, params, attrs))
        elif t == "MatMul":
            recs.append(Rec("matmul", op_of(n), x, n.output[0], extra_inputs=[R(n.input[1])]))
        elif t == "BatchNormalization":
            raise NativeMappingError(f"BatchNormalization {n.name} not after a conv")
        elif t == "LayerNormalization":
            a = _attrs(n)
            params = {"weight": weight(n.input[1]), "bias": weight(n.input[2])}
            recs.append(Rec("layer_norm", op_of(n), x, n.output[0], params, {"eps": float(a.get("epsilon", 1e-5))}))
        elif t == "ReduceMean" and _ln_chain(n, x, sole, consumers, R, const, nodes) is not None:
            chain = _ln_chain(n, x, sole, consumers, R, const, nodes)
            for m in chain["nodes"]:
                absorb(m)
            for c in chain["consts"]:
                take_const(c)
            params = {"weight": weight(chain["gamma"]), "bias": weight(chain["beta"])}
            recs.append(Rec("layer_norm", op_of(n), x, chain["out"], params, {"eps": chain["eps"]}))
        elif t in ("ReduceMean", "GlobalAveragePool"):
            a = _attrs(n)
            axes = a.get("axes")
            if t == "ReduceMean" and axes is None and len(n.input) > 1:
                axes = [int(v) for v in take_const(n.input[1]).reshape(-1)]
            if t == "ReduceMean" and (sorted(axes or []) != [2, 3] or not a.get("keepdims", 1)):
                raise NativeMappingError(f"ReduceMean {n.name} over {axes} is no global pool")
            recs.append(Rec("pool", op_of(n), x, n.output[0], {}, {"pooling_type": "avg", "global": True}))
        elif t in ("AveragePool", "MaxPool"):
            a = _attrs(n)
            attrs = {"pooling_type": "avg" if t == "AveragePool" else "max", "global": False,
                     "kernel": a.get("kernel_shape"), "strides": a.get("strides", [1, 1]),
                     "pads": a.get("pads", [0, 0, 0, 0]), "auto_pad": a.get("auto_pad", "NOTSET"),
                     "ceil_mode": int(a.get("ceil_mode", 0))}
            recs.append(Rec("pool", op_of(n), x, n.output[0], {}, attrs))
        elif t == "Div" and is_scalar(const(n.input[1]), math.sqrt(2.0)) and sole(n.output[0]) is not None \
                and sole(n.output[0]).op_type == "Erf":
            # GELU (erf form): x / sqrt2 -> Erf -> + 1 -> * x -> * 0.5 (the last two in either order)
            erf = sole(n.output[0])
            add = sole(erf.output[0])
            m1 = sole(add.output[0]) if add is not None and add.op_type == "Add" else None
            m2 = sole(m1.output[0]) if m1 is not None and m1.op_type == "Mul" else None
            if add is None or not is_scalar(const(other_input(add, erf.output[0])), 1.0) or m2 is None \
                    or m2.op_type != "Mul" or other_input(m1, add.output[0]) != x \
                    or not is_scalar(const(other_input(m2, m1.output[0])), 0.5):
                raise NativeMappingError(f"Erf chain at {n.name} is not GELU")
            take_const(n.input[1])
            take_const(other_input(add, erf.output[0]))
            take_const(other_input(m2, m1.output[0]))
            for m in (erf, add, m1, m2):
                absorb(m)
            recs.append(Rec("act", op_of(n), x, m2.output[0], {}, {"act": "gelu"}))
        elif t in ("Sigmoid", "HardSigmoid") and sole(n.output[0]) is not None \
                and sole(n.output[0]).op_type == "Mul" and other_input(sole(n.output[0]), n.output[0]) == x:
            # x * sigmoid(x) = SiLU; x * hardsigmoid(x) with torch's slope/offset = hard-swish
            a = _attrs(n)
            if t == "HardSigmoid" and not (math.isclose(a.get("alpha", 0.2), 1 / 6, rel_tol=1e-5)
                                           and math.isclose(a.get("beta", 0.5), 0.5)):
                raise NativeMappingError(f"x * HardSigmoid(x) at {n.name} is not hard-swish")
            mul = sole(n.output[0])
            absorb(mul)
            recs.append(Rec("act", op_of(n), x, mul.output[0], {}, {"act": "silu" if t == "Sigmoid" else "hardswish"}))
        elif t in ("Relu", "Sigmoid", "HardSwish", "HardSigmoid", "Softmax", "Tanh"):
            a = _attrs(n)
            attrs = {"act": {"Relu": "relu", "Sigmoid": "sigmoid", "HardSwish": "hardswish", "Softmax": "softmax",
                             "HardSigmoid": "hardsigmoid", "Tanh": "tanh"}[t]}
            if t == "HardSigmoid":
                attrs.update(slope=float(a.get("alpha", 0.2)), offset=float(a.get("beta", 0.5)))
            if t == "Softmax":
                attrs["axis"] = int(a.get("axis", -1))
            recs.append(Rec("act", op_of(n), x, n.output[0], {}, attrs))
        elif t == "Resize":
            a = _attrs(n)
            scales = const(n.input[2]) if len(n.input) > 2 and n.input[2] else None
            if scales is None or scales.size != 4:
                raise NativeMappingError(f"Resize {n.name} without constant scales")
            for v in n.input[1:]:
                if v and R(v) in init_names:
                    take_const(v)
            recs.append(Rec("interp", op_of(n), x, n.output[0], {},
                            {"mode": a.get("mode", "nearest"), "scale": [float(s) for s in scales.reshape(-1)[2:]],
                             "coordinate_transformation_mode": a.get("coordinate_transformation_mode")}))
        elif t == "Concat":
            parts = [R(v) for v in n.input]
            recs.append(Rec("concat", op_of(n), None, n.output[0], {}, {"axis": int(_attrs(n).get("axis", 0))},
                            extra_inputs=parts))
        elif t in ("Add", "Mul", "Sub", "Div"):
            a_, b_ = (R(v) for v in n.input[:2])
            ca, cb = a_ in static, b_ in static
            if ca and cb:
                continue
            if ca or cb:
                data, c = (b_, a_) if ca else (a_, b_)
                arr = consts.get(c)
                if arr is None or arr.size != 1 or t not in ("Mul", "Div"):
                    raise NativeMappingError(f"{t} {n.name} with a constant that is no bias or scalar scale")
                take_const(c)
                s = float(arr.reshape(-1)[0])
                recs.append(Rec("scale", op_of(n), data, n.output[0], {}, {"scale": s if t == "Mul" else 1.0 / s}))
            elif t in ("Add", "Mul"):
                recs.append(Rec("add" if t == "Add" else "multiply", op_of(n), a_, n.output[0], extra_inputs=[b_]))
            else:
                raise NativeMappingError(f"{t} {n.name} of two tensors is not supported")
        elif t in PLUMBING or t in ("Shape", "Gather", "Cast", "Slice"):
            for v in n.input[1:]:  # axes, starts, shapes: constants
                if v and R(v) in init_names:
                    take_const(v)
            continue
        else:
            raise NativeMappingError(f"op {t} ({n.name}) is not part of any native architecture")
    used_c -= used_w
    leftover = sorted(init_names - used_w - used_c)
    if leftover:
        raise NativeMappingError(f"initializers outside the recognised layers: {leftover[:5]}")
    return OnnxLayers(Path(path), recs, weights, used_c, [i.name for i in g.input if i.name not in init_names],
                      [o.name for o in g.output])


def _ln_chain(n, x, sole, consumers, R, const, nodes):
    """LayerNorm written out: mean = ReduceMean(x); d = x - mean; var = ReduceMean(d ** 2);
    y = d / sqrt(var + eps) * gamma + beta. Returns the chain's nodes, constants and weights, or None."""
    mean = n.output[0]
    sub = sole(mean)
    if sub is None or sub.op_type != "Sub" or R(sub.input[0]) != x or R(sub.input[1]) != mean:
        return None
    d = sub.output[0]
    cons = consumers.get(d, [])
    pow_ = next((c for c in cons if c.op_type == "Pow"), None)
    div = next((c for c in cons if c.op_type == "Div"), None)
    if pow_ is None or div is None or len(cons) != 2:
        return None
    rm = sole(pow_.output[0])
    add = sole(rm.output[0]) if rm is not None else None
    sq = sole(add.output[0]) if add is not None else None
    if rm is None or rm.op_type != "ReduceMean" or add is None or add.op_type != "Add" or sq is None \
            or sq.op_type != "Sqrt" or R(div.input[1]) != sq.output[0]:
        return None
    two, eps = const(pow_.input[1]), const(add.input[1])
    if two is None or float(two.reshape(-1)[0]) != 2.0 or eps is None:
        return None
    mul = sole(div.output[0])
    badd = sole(mul.output[0]) if mul is not None else None
    if mul is None or mul.op_type != "Mul" or badd is None or badd.op_type != "Add":
        return None
    gamma = mul.input[1] if R(mul.input[0]) == div.output[0] else mul.input[0]
    beta = badd.input[1] if R(badd.input[0]) == mul.output[0] else badd.input[0]
    consts_ = [pow_.input[1], add.input[1]]
    if len(rm.input) > 1:
        consts_.append(rm.input[1])
    if len(n.input) > 1:
        consts_.append(n.input[1])
    return {"nodes": [sub, pow_, rm, add, sq, div, mul, badd], "consts": consts_, "gamma": gamma, "beta": beta,
            "eps": float(f"{float(eps.reshape(-1)[0]):.7g}"), "out": badd.output[0]}
