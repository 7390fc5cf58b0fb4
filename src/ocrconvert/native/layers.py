"""Turn the flat Paddle op list into a sequence of typed layer records (conv / linear / layer_norm / affine /
activation / pool / ...), in program order, with their data-flow links.

Weights are identified by the op that consumes them (a ``matmul`` right operand is a Linear weight, a
``batch_norm_`` operand list is (mean, variance, scale, bias) by position), never by their shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..paddle_program import Op
from .errors import NativeMappingError

CONV_OPS = {"conv2d", "depthwise_conv2d", "conv2d_transpose"}
ACT_OPS = {"relu", "hardswish", "swish", "silu", "hardsigmoid", "sigmoid", "softmax", "gelu", "relu6", "tanh"}
PASS_OPS = {"assign", "dropout"}  # identity at inference (dropout is checked for mode)


@dataclass
class Rec:
    kind: str  # conv | linear | layer_norm | affine | act | pool | interp | concat | add | multiply | scale
    op: Op
    inp: str | None  # main data input value id
    out: str  # final output value id (after folded bias / BN)
    params: dict[str, str] = field(default_factory=dict)  # role -> paddle param name
    attrs: dict[str, Any] = field(default_factory=dict)
    extra_inputs: list[str] = field(default_factory=list)

    def __repr__(self) -> str:  # compact for error messages
        return f"<{self.kind} op#{self.op.index} {self.op.type} {self.params or ''} {self.attrs or ''}>"


class LayerSequence:
    """Sequential reader over the records with typed ``take`` calls and param bookkeeping."""

    def __init__(self, records: list[Rec]):
        self.records = records
        self.pos = 0
        self.used_params: set[str] = set()

    def peek(self, offset: int = 0) -> Rec | None:
        i = self.pos + offset
        return self.records[i] if i < len(self.records) else None

    def take(self, kind: str, op_type: str | set[str] | None = None, what: str = "") -> Rec:
        r = self.peek()
        types = {op_type} if isinstance(op_type, str) else op_type
        if r is None or r.kind != kind or (types is not None and r.op.type not in types):
            raise NativeMappingError(
                f"program structure mismatch while reading {what or kind}: expected {kind}"
                f"{'/' + '|'.join(sorted(types)) if types else ''}, found {r!r}"
            )
        self.pos += 1
        self.used_params.update(r.params.values())
        return r

    def at(self, kind: str, op_type: str | set[str] | None = None) -> bool:
        r = self.peek()
        types = {op_type} if isinstance(op_type, str) else op_type
        return r is not None and r.kind == kind and (types is None or r.op.type in types)

    def expect_end(self, params: set[str]) -> None:
        """Every layer read and every parameter of the program used: nothing left unconverted."""
        if self.peek() is not None:
            raise NativeMappingError(f"trailing layers not covered: {self.peek()!r}")
        if self.used_params != params:
            raise NativeMappingError(f"parameters outside the recognised layers: {sorted(params - self.used_params)[:5]}")


def _param(ref: str | None) -> str | None:
    return ref[2:] if ref is not None and ref.startswith("p:") else None


def extract_records(ops: list[Op]) -> list[Rec]:
    consumers: dict[str, list[Op]] = {}
    producer: dict[str, Op] = {}
    for op in ops:
        for v in op.inputs:
            if v is not None:
                consumers.setdefault(v, []).append(op)
        if op.outputs:
            producer[op.outputs[0]] = op
    # values that are just a reshaped / assigned parameter -> the parameter
    alias: dict[str, str] = {}
    # values that are constants from pd_op.full -> python float
    const: dict[str, float] = {}
    for op in ops:
        if op.type in ("reshape", "assign") and op.inputs and _param(op.inputs[0]):
            alias[op.outputs[0]] = op.inputs[0]
        if op.type == "full" and isinstance(op.attrs.get("value"), (int, float)):
            const[op.outputs[0]] = float(op.attrs["value"])

    def as_param(v: str | None) -> str | None:
        if v is None:
            return None
        return _param(alias.get(v, v))

    def sole_consumer(v: str) -> Op | None:
        c = consumers.get(v, [])
        return c[0] if len(c) == 1 else None

    # pass-through renames (assign / dropout in test mode)
    rename: dict[str, str] = {}

    def R(v: str | None) -> str | None:
        while v in rename:
            v = rename[v]
        return v

    recs: list[Rec] = []
    absorbed: set[int] = set()
    for op in ops:
        if op.index in absorbed:
            continue
        t = op.type
        if t in CONV_OPS:
            w = as_param(op.inputs[1])
            if w is None:
                raise ValueError(f"conv op #{op.index} without a parameter filter")
            attrs = {
                "type": t,
                "strides": list(op.attrs.get("strides", [1, 1])),
                "paddings": list(op.attrs.get("paddings", [0, 0])),
                "dilations": list(op.attrs.get("dilations", [1, 1])),
                "groups": int(op.attrs.get("groups", 1)),
                "padding_algorithm": op.attrs.get("padding_algorithm", "EXPLICIT"),
            }
            if t == "conv2d_transpose":
                attrs["output_padding"] = list(op.attrs.get("output_padding", []) or [])
            params = {"weight": w}
            out = op.outputs[0]
            nxt = sole_consumer(out)
            if nxt is not None and nxt.type == "add":
                other = nxt.inputs[1] if nxt.inputs[0] == out else nxt.inputs[0]
                b = as_param(other)
                if b is not None:
                    params["bias"] = b
                    absorbed.add(nxt.index)
                    out = nxt.outputs[0]
                    nxt = sole_consumer(out)
            if nxt is not None and nxt.type in ("batch_norm_", "batch_norm"):
                # pd_op.batch_norm_ operands: x, mean, variance, scale, bias
                params.update(
                    bn_mean=as_param(nxt.inputs[1]),
                    bn_var=as_param(nxt.inputs[2]),
                    bn_weight=as_param(nxt.inputs[3]),
                    bn_bias=as_param(nxt.inputs[4]),
                )
                attrs["bn_eps"] = float(nxt.attrs.get("epsilon", 1e-5))
                absorbed.add(nxt.index)
                out = nxt.outputs[0]
            recs.append(Rec("conv", op, R(op.inputs[0]), out, params, attrs))
        elif t == "matmul":
            w = as_param(op.inputs[1])
            if w is None:
                recs.append(Rec("matmul", op, R(op.inputs[0]), op.outputs[0], {}, dict(op.attrs),
                                extra_inputs=[R(op.inputs[1])]))
                continue
            if op.attrs.get("transpose_x"):
                raise ValueError(f"matmul #{op.index}: transposed activation operand is not supported")
            params = {"weight": w}
            out = op.outputs[0]
            nxt = sole_consumer(out)
            if nxt is not None and nxt.type == "add":
                other = nxt.inputs[1] if nxt.inputs[0] == out else nxt.inputs[0]
                b = as_param(other)
                if b is not None:
                    params["bias"] = b
                    absorbed.add(nxt.index)
                    out = nxt.outputs[0]
            recs.append(Rec("linear", op, R(op.inputs[0]), out, params,
                            {"transpose_y": bool(op.attrs.get("transpose_y", False))}))
        elif t == "layer_norm":
            params = {"weight": as_param(op.inputs[1]), "bias": as_param(op.inputs[2])}
            recs.append(Rec("layer_norm", op, R(op.inputs[0]), op.outputs[0], params,
                            {"eps": float(op.attrs["epsilon"]), "begin_norm_axis": op.attrs.get("begin_norm_axis")}))
        elif t == "batch_norm_":
            raise ValueError(f"batch_norm #{op.index} not preceded by a conv is not supported")
        elif t == "multiply":
            a, b = op.inputs
            pa, pb = as_param(a), as_param(b)
            if pa is not None or pb is not None:
                scale_p = pa if pa is not None else pb
                data = b if pa is not None else a
                params = {"scale": scale_p}
                out = op.outputs[0]
                nxt = sole_consumer(out)
                if nxt is not None and nxt.type == "add":
                    other = nxt.inputs[1] if nxt.inputs[0] == out else nxt.inputs[0]
                    bp = as_param(other)
                    if bp is not None:
                        params["bias"] = bp
                        absorbed.add(nxt.index)
                        out = nxt.outputs[0]
                recs.append(Rec("affine", op, R(data), out, params))
            else:
                recs.append(Rec("multiply", op, R(a), op.outputs[0], extra_inputs=[R(b)]))
        elif t == "add":
            a, b = op.inputs
            if as_param(a) or as_param(b):
                raise ValueError(f"add #{op.index} with a parameter that is not a conv/linear bias")
            recs.append(Rec("add", op, R(a), op.outputs[0], extra_inputs=[R(b)]))
        elif t in ACT_OPS:
            recs.append(Rec("act", op, R(op.inputs[0]), op.outputs[0], {}, dict(op.attrs)))
        elif t == "pool2d":
            ks = None
            kop = producer.get(op.inputs[1])
            if kop is not None and kop.type == "full_int_array":
                ks = list(kop.attrs["value"])
            attrs = dict(op.attrs)
            attrs["kernel_size"] = ks
            recs.append(Rec("pool", op, R(op.inputs[0]), op.outputs[0], {}, attrs))
        elif t in ("nearest_interp", "bilinear_interp"):
            recs.append(Rec("interp", op, R(op.inputs[0]), op.outputs[0], {}, dict(op.attrs)))
        elif t == "concat":
            comb = producer.get(op.inputs[0])
            parts = [R(v) for v in comb.inputs] if comb is not None and comb.type == "combine" else []
            recs.append(Rec("concat", op, None, op.outputs[0], {}, {}, extra_inputs=parts))
        elif t == "scale":
            s = const.get(op.inputs[1]) if len(op.inputs) > 1 else op.attrs.get("scale")
            recs.append(Rec("scale", op, R(op.inputs[0]), op.outputs[0], {},
                            {"scale": s, "bias": op.attrs.get("bias", 0.0)}))
        elif t in PASS_OPS:
            if t == "dropout" and op.attrs.get("mode") not in ("upscale_in_train", None):
                raise ValueError(f"dropout #{op.index} with mode {op.attrs.get('mode')!r} scales at inference")
            rename[op.outputs[0]] = op.inputs[0]
        # shape plumbing (reshape/transpose/slice/shape/full/flatten/squeeze/feed/fetch) carries no weights
    return recs
