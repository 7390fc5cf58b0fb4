"""Exact attention in query blocks, so a ViT over 16k patches never holds the 16×N×N score tensor.

PyTorch side: the ``ocrconvert::blocked_attention`` custom op (a loop over query blocks in eager mode,
one opaque node under ``torch.export``). ONNX side: the exporter writes it as one
``ocrconvert.BlockedAttention`` node, which :func:`expand_blocked_attention` replaces by a standard
``Loop`` over query blocks (queries padded to a whole number of blocks, the padding cut off after), so
the model stays dynamic in the sequence length and runs in any ONNX runtime.
"""
from __future__ import annotations

import torch

DOMAIN = "ocrconvert"
OP_TYPE = "BlockedAttention"


@torch.library.custom_op("ocrconvert::blocked_attention", mutates_args=())
def blocked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, block: int) -> torch.Tensor:
    """softmax(q·kᵀ·scale)·v over the last two dims, ``block`` query rows at a time (exact)."""
    kt = k.transpose(-1, -2)
    outs = []
    for s in range(0, q.shape[-2], block):
        w = torch.softmax(torch.matmul(q[..., s:s + block, :], kt) * scale, dim=-1, dtype=torch.float32)
        outs.append(torch.matmul(w.to(q.dtype), v))
    return torch.cat(outs, dim=-2)


@blocked_attention.register_fake
def _(q, k, v, scale, block):
    return torch.empty_like(q)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, mode: str, block: int) -> torch.Tensor:
    """softmax(q·kᵀ·scale)·v as the wrappers run it: ``blocked`` (the custom op, for ONNX), ``sdpa``
    (PyTorch's fused kernel, for AOT/GPU) or ``eager`` (matmul + fp32 softmax, as transformers' eager)."""
    if mode == "blocked":
        return torch.ops.ocrconvert.blocked_attention(q, k, v, float(scale), block)
    if mode == "sdpa":
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale)
    w = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale, dim=-1, dtype=torch.float32)
    return torch.matmul(w.to(q.dtype), v)


def onnx_translation_table() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export``: the op becomes one custom-domain node."""
    from onnxscript import values

    _register_schema()
    op = values.Opset(DOMAIN, 1).BlockedAttention

    def blocked_attention_onnx(q, k, v, scale: float, block: int):
        return op(q, k, v, scale=scale, block=block)

    return {torch.ops.ocrconvert.blocked_attention.default: blocked_attention_onnx}


def _register_schema() -> None:
    """An ONNX schema for the placeholder node, so the exporter can type it (it never reaches a runtime)."""
    from onnx import defs

    if defs.has(OP_TYPE, DOMAIN):
        return
    T = "T"
    schema = defs.OpSchema(
        OP_TYPE, DOMAIN, 1, doc="softmax(q·kᵀ·scale)·v in query blocks; expanded to a Loop by ocrconvert",
        inputs=[defs.OpSchema.FormalParameter(n, T) for n in ("q", "k", "v")],
        outputs=[defs.OpSchema.FormalParameter("out", T)],
        type_constraints=[(T, ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"], "float types")],
        attributes=[defs.OpSchema.Attribute("scale", defs.OpSchema.AttrType.FLOAT, "score scale"),
                    defs.OpSchema.Attribute("block", defs.OpSchema.AttrType.INT, "query rows per block")])
    defs.register_schema(schema)


def expand_blocked_attention(model) -> int:
    """Replace every ``ocrconvert.BlockedAttention`` node of an ``onnx.ModelProto`` by a ``Loop``.

    Returns how many nodes were replaced; drops the custom domain from the opset imports.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    nodes = list(graph.node)
    new_nodes, count = [], 0
    for node in nodes:
        if node.domain != DOMAIN or node.op_type != OP_TYPE:
            new_nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        block, scale = int(attrs["block"]), float(attrs["scale"])
        q, k, v = node.input
        (out,) = node.output
        p = f"{node.name or 'blocked_attention'}_{count}/"
        count += 1

        def n(op, inputs, outputs, **kw):
            new_nodes.append(helper.make_node(op, inputs, outputs, name=p + outputs[0].rsplit("/", 1)[-1], **kw))
            return outputs[0]

        def const(name, value, dtype=TensorProto.INT64, dims=(1,)):
            return n("Constant", [], [p + name], value=helper.make_tensor(p + name + "_v", dtype, list(dims), value))

        c_block = const("block", [block])
        c_block_m1 = const("block_m1", [block - 1])
        c_zero = const("zero", [0])
        c_zeros4 = const("zeros4", [0, 0, 0, 0], dims=(4,))
        c_axis2 = const("axis2", [2])
        elem = _elem_type(model, q)
        c_scale = n("Constant", [], [p + "scale"], value=numpy_helper.from_array(
            np.asarray(scale, dtype=helper.tensor_dtype_to_np_dtype(elem)), p + "scale_v"))
        seq = n("Shape", [q], [p + "seq"], start=2, end=3)                       # [N]
        nblk = n("Div", [n("Add", [seq, c_block_m1], [p + "seq_up"]), c_block], [p + "nblk"])
        pad = n("Sub", [n("Mul", [nblk, c_block], [p + "padded"]), seq], [p + "pad"])
        pads = n("Concat", [c_zeros4, c_zero, c_zero, pad, c_zero], [p + "pads"], axis=0)
        qp = n("Pad", [q, pads], [p + "q_pad"])
        kt = n("Transpose", [k], [p + "k_t"], perm=[0, 1, 3, 2])
        trips = n("Squeeze", [nblk, c_zero], [p + "trips"])
        # body: block i -> softmax(q[:, :, i*B:(i+1)*B] · kᵀ · scale) · v   (all outer-scope reads)
        b = p + "body/"
        body_nodes = [
            helper.make_node("Unsqueeze", [b + "i", c_zero], [b + "i1"]),
            helper.make_node("Mul", [b + "i1", c_block], [b + "start"]),
            helper.make_node("Add", [b + "start", c_block], [b + "end"]),
            helper.make_node("Slice", [qp, b + "start", b + "end", c_axis2], [b + "q"]),
            helper.make_node("MatMul", [b + "q", kt], [b + "s"]),
            helper.make_node("Mul", [b + "s", c_scale], [b + "ss"]),
            helper.make_node("Softmax", [b + "ss"], [b + "w"], axis=-1),
            helper.make_node("MatMul", [b + "w", v], [b + "o"]),
            helper.make_node("Identity", [b + "cond_in"], [b + "cond_out"]),
        ]
        body = helper.make_graph(
            body_nodes, b + "graph",
            [helper.make_tensor_value_info(b + "i", TensorProto.INT64, []),
             helper.make_tensor_value_info(b + "cond_in", TensorProto.BOOL, [])],
            [helper.make_tensor_value_info(b + "cond_out", TensorProto.BOOL, []),
             helper.make_tensor_value_info(b + "o", elem, None)])
        stacked = p + "stacked"
        new_nodes.append(helper.make_node("Loop", [trips, ""], [stacked], name=p + "loop", body=body))
        moved = n("Transpose", [stacked], [p + "moved"], perm=[1, 2, 0, 3, 4])  # [B,H,nblk,block,d]
        lead = n("Shape", [q], [p + "lead"], start=0, end=2)
        last = n("Shape", [q], [p + "last"], start=3, end=4)
        c_m1 = const("minus1", [-1])
        flat = n("Reshape", [moved, n("Concat", [lead, c_m1, last], [p + "flat_shape"], axis=0)], [p + "flat"])
        n("Slice", [flat, c_zero, seq, c_axis2], [out])
    if not count:
        return 0
    del graph.node[:]
    graph.node.extend(new_nodes)
    keep = [o for o in model.opset_import if o.domain != DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    for f in [f for f in model.functions if f.domain == DOMAIN]:
        model.functions.remove(f)
    return count


def _elem_type(model, name: str) -> int:
    from onnx import TensorProto

    for vi in list(model.graph.value_info) + list(model.graph.input):
        if vi.name == name and vi.type.tensor_type.elem_type:
            return vi.type.tensor_type.elem_type
    return TensorProto.FLOAT
