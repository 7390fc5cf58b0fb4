"""Graph rewrites that make converter output run where the runtime lacks a kernel.

Each fix is exact (no numeric change) and reported in the manifest hop.
"""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper


def _subgraphs(graph):
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield attr.g
            for g in attr.graphs:
                yield g


def _elem_types(graph, outer: dict[str, int]) -> dict[str, int]:
    types = dict(outer)
    for v in [*graph.input, *graph.output, *graph.value_info]:
        if v.type.HasField("tensor_type"):
            types[v.name] = v.type.tensor_type.elem_type
    for init in graph.initializer:
        types[init.name] = init.data_type
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    types[node.output[0]] = a.t.data_type
    return types


def bool_where_to_int(model) -> int:
    """ONNX Runtime has no ``Where`` kernel for bool X/Y (paddle2onnx emits one in SLANet's decoder
    loop): compute it on uint8 and cast back. Returns how many nodes were rewritten."""
    inferred = onnx.shape_inference.infer_shapes(model)
    count = 0

    def fix(graph, inferred_graph, outer):
        nonlocal count
        types = _elem_types(inferred_graph, outer)
        new_nodes = []
        for node in graph.node:
            if node.op_type == "Where" and types.get(node.input[1]) == TensorProto.BOOL:
                x8, y8, out8 = (f"{node.name or node.output[0]}__{s}_u8" for s in ("x", "y", "out"))
                new_nodes += [
                    helper.make_node("Cast", [node.input[1]], [x8], to=TensorProto.UINT8),
                    helper.make_node("Cast", [node.input[2]], [y8], to=TensorProto.UINT8),
                    helper.make_node("Where", [node.input[0], x8, y8], [out8], name=node.name),
                    helper.make_node("Cast", [out8], [node.output[0]], to=TensorProto.BOOL),
                ]
                count += 1
            else:
                new_nodes.append(node)
        for g, ig in zip(_subgraphs(graph), _subgraphs(inferred_graph)):
            fix(g, ig, types)
        del graph.node[:]
        graph.node.extend(new_nodes)

    fix(model.graph, inferred.graph, {})
    return count
