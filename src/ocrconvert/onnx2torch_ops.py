"""onnx2torch converters for the ONNX ops it lacks: ``Loop`` and ``If`` (control flow), ``ScatterElements``, ``OneHot``.

They plug into onnx2torch's own registry (``add_converter``) when this module is imported; nothing is forked.
A sub-graph (a ``Loop`` body, an ``If`` branch) becomes a ``torch.fx.GraphModule`` built by ``onnx2torch.convert``
itself: the sub-graph is made a model of its own first, with

- the names it reads from an enclosing scope (at any depth of nesting) made explicit: a constant of the enclosing
  graph (an initializer, a ``Constant`` output) is copied in as an initializer, because onnx2torch's converters
  read shapes, axes and pads from constants; any other value is lifted into an extra graph input, which the
  enclosing node's mapping lists, so the enclosing driver wires it like any other input;
- every output behind an ``Identity`` of its own, because onnx2torch's driver returns the *node* that makes an
  output (a body output that is a body input, or two outputs of one node, would otherwise be lost);
- the enclosing model's opsets, which onnx2torch does not hand to a converter: ``convert`` (or ``model_opsets``)
  records them for the converters below.

The loop runs in Python (``OnnxLoop.forward``) with the carried state, scan outputs stacked along a new first
axis, the trip count and the condition as the ONNX spec orders them; ``If`` runs one branch module. Both are
eager modules: correct under ``torch.inference_mode`` and ``torch.fx`` (they are leaves), not traceable by
``torch.export`` (the trip count depends on the data).

This module imports nothing of ocrconvert: it is an onnx2torch extension and sits at the bottom of the layers.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx2torch.node_converters.registry import add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OnnxToTorchModule, OperationConverterResult, onnx_mapping_from_node
from torch import nn

__all__ = ["OnnxIf", "OnnxLoop", "OnnxOneHot", "OnnxScatterElements", "convert", "free_names", "model_opsets"]

# {domain: version} of the model being converted; sub-graphs are converted under the same opsets
_OPSETS: ContextVar[dict[str, int] | None] = ContextVar("ocrconvert_onnx_opsets", default=None)
_IR_VERSION: ContextVar[int] = ContextVar("ocrconvert_onnx_ir_version", default=8)


@contextlib.contextmanager
def model_opsets(model: onnx.ModelProto):
    """Convert ``model``'s sub-graphs under its opsets (onnx2torch does not pass them to a converter)."""
    token = _OPSETS.set({o.domain or "": o.version for o in model.opset_import})
    token_ir = _IR_VERSION.set(max(model.ir_version, 3))
    try:
        yield
    finally:
        _OPSETS.reset(token)
        _IR_VERSION.reset(token_ir)


def convert(model: onnx.ModelProto) -> torch.fx.GraphModule:
    """``onnx2torch.convert`` with this module's converters and the model's opsets recorded for its sub-graphs."""
    import onnx2torch

    with model_opsets(model):
        return onnx2torch.convert(model)


def subgraphs(node) -> list[onnx.GraphProto]:
    """The sub-graphs a node carries (``Loop`` body, ``If`` branches, ``Scan`` body, ...)."""
    out = []
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            out.append(a.g)
        elif a.type == onnx.AttributeProto.GRAPHS:
            out.extend(a.graphs)
    return out


def free_names(graph: onnx.GraphProto) -> list[str]:
    """Names ``graph`` (or a sub-graph inside it, at any depth) reads but does not define, in first-use order."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    defined |= {t.values.name for t in graph.sparse_initializer}
    defined |= {o for n in graph.node for o in n.output if o}
    seen: dict[str, None] = {}
    for node in graph.node:
        used = list(node.input) + [name for g in subgraphs(node) for name in free_names(g)]
        for name in used:
            if name and name not in defined:
                seen.setdefault(name, None)
    for o in graph.output:  # an output may be an enclosing value passed straight through
        if o.name not in defined:
            seen.setdefault(o.name, None)
    return list(seen)


def _enclosing_constant(name: str, graph: OnnxGraph) -> TensorProto | None:
    """``name`` as a tensor when the enclosing graph holds it as a constant, else None."""
    if name in graph.initializers:
        t = TensorProto()
        t.CopyFrom(graph.initializers[name].proto)
        t.name = name
        return t
    try:
        node, _ = graph.value_as_node_output(name)
    except KeyError:
        return None
    if node.operation_type != "Constant" or node.domain not in ("", "ai.onnx"):
        return None
    (attr,) = node.proto.attribute
    if attr.name == "value":
        t = TensorProto()
        t.CopyFrom(attr.t)
        t.name = name
        return t
    simple = {"value_float": (np.float32, attr.f), "value_floats": (np.float32, list(attr.floats)),
              "value_int": (np.int64, attr.i), "value_ints": (np.int64, list(attr.ints))}
    if attr.name not in simple:
        return None  # sparse or string constants: lifted as inputs instead
    dtype, value = simple[attr.name]
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


class SubgraphModule(nn.Module):
    """A sub-graph as a module: ``forward(*graph_inputs, *lifted)`` -> tuple of its outputs, in order."""

    def __init__(self, graph: torch.fx.GraphModule, n_outputs: int):
        super().__init__()
        self.graph_module = graph
        self.n_outputs = n_outputs

    def forward(self, *args):
        out = self.graph_module(*args)
        return tuple(out) if self.n_outputs != 1 else (out,)


def build_subgraph(body: onnx.GraphProto, enclosing: OnnxGraph) -> tuple[SubgraphModule, list[str]]:
    """(module, lifted): ``body`` converted by onnx2torch itself, and the enclosing values it reads, which the
    module takes after the body's own inputs."""
    import onnx2torch

    opsets = _OPSETS.get()
    if opsets is None:
        raise NotImplementedError("ONNX sub-graphs need the model's opsets: convert through "
                                  "ocrconvert.onnx2torch_ops.convert (or inside model_opsets(model))")
    g = onnx.GraphProto()
    g.CopyFrom(body)
    lifted = []
    for name in free_names(body):
        const = _enclosing_constant(name, enclosing)
        if const is not None:
            g.initializer.append(const)
            continue
        lifted.append(name)
        info = enclosing.value_info.get(name)
        vi = onnx.ValueInfoProto()
        if info is not None:
            vi.CopyFrom(info)
        vi.name = name
        g.input.append(vi)
    for k, out in enumerate(g.output):
        renamed = f"{out.name}__out{k}"
        g.node.append(helper.make_node("Identity", [out.name], [renamed], name=f"output_{k}"))
        out.name = renamed
    model = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                              ir_version=_IR_VERSION.get())
    return SubgraphModule(onnx2torch.convert(model), len(g.output)), lifted


def _empty_scan(info: onnx.ValueInfoProto) -> torch.Tensor:
    """A scan output of zero iterations: ``[0, *dims]`` where the body declares its dims, else ``[0]``."""
    tt = info.type.tensor_type
    dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else np.float32
    known = tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim)
    dims = [d.dim_value for d in tt.shape.dim] if known else None
    return torch.from_numpy(np.zeros([0] + (dims if dims is not None else []), dtype=dtype))


class OnnxLoop(nn.Module, OnnxToTorchModule):
    """ONNX ``Loop``: ``forward([M], [cond], *v_initial, *lifted)`` -> (*v_final, *scan_outputs).

    ``M`` and ``cond`` are present only where the node names them (onnx2torch passes no empty inputs here).
    While ``i < M`` (when given) and ``cond``, run the body on (i, cond, v); it returns (cond, v, scans). A loop
    without an initial condition starts with ``True`` and, as in ONNX Runtime and ONNX's reference evaluator,
    still stops when the body's condition turns false (the spec's text calls it ignored; both runtimes differ)."""

    def __init__(self, body: SubgraphModule, n_carried: int, n_scan: int, has_trip_count: bool, has_cond: bool,
                 scan_infos: list[onnx.ValueInfoProto]):
        super().__init__()
        self.body = body
        self.n_carried, self.n_scan = n_carried, n_scan
        self.has_trip_count, self.has_cond = has_trip_count, has_cond
        self._empty_scans = [_empty_scan(i) for i in scan_infos]

    def forward(self, *args):
        device = args[0].device if args else torch.device("cpu")  # the counter lives where the state does
        k = 0
        trip = None
        if self.has_trip_count:
            trip, k = int(args[0].reshape(())), 1
        cond = torch.tensor(True, device=device)
        if self.has_cond:
            cond, k = args[k].reshape(()).to(torch.bool), k + 1
        state = list(args[k:k + self.n_carried])
        lifted = args[k + self.n_carried:]
        scans: list[list[torch.Tensor]] = [[] for _ in range(self.n_scan)]
        i = 0
        while (trip is None or i < trip) and bool(cond):
            out = self.body(torch.tensor(i, dtype=torch.int64, device=device), cond, *state, *lifted)
            cond = out[0].reshape(()).to(torch.bool)
            state = list(out[1:1 + self.n_carried])
            for s, v in zip(scans, out[1 + self.n_carried:]):
                s.append(v)
            i += 1
        stacked = [torch.stack(s) if s else e.to(device) for s, e in zip(scans, self._empty_scans)]
        result = (*state, *stacked)
        return result[0] if len(result) == 1 else result


class OnnxIf(nn.Module, OnnxToTorchModule):
    """ONNX ``If``: ``forward(cond, *lifted)`` runs one branch; each branch takes its own share of the lifted
    values (``then_args`` / ``else_args`` index into them)."""

    def __init__(self, then_branch: SubgraphModule, else_branch: SubgraphModule, then_args: list[int],
                 else_args: list[int]):
        super().__init__()
        self.then_branch, self.else_branch = then_branch, else_branch
        self.then_args, self.else_args = then_args, else_args

    def forward(self, cond, *lifted):
        if bool(cond.reshape(())):
            out = self.then_branch(*[lifted[i] for i in self.then_args])
        else:
            out = self.else_branch(*[lifted[i] for i in self.else_args])
        return out[0] if len(out) == 1 else out


def _graph_attr(node: OnnxNode, name: str) -> onnx.GraphProto:
    (g,) = [a.g for a in node.proto.attribute if a.name == name]
    return g


@add_converter(operation_type="Loop", version=1)
@add_converter(operation_type="Loop", version=11)
@add_converter(operation_type="Loop", version=13)
@add_converter(operation_type="Loop", version=16)
@add_converter(operation_type="Loop", version=19)
@add_converter(operation_type="Loop", version=21)
def _loop(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    body = _graph_attr(node, "body")
    trip_count, cond, *initial = node.input_values + ("",) * max(0, 2 - len(node.input_values))
    n_carried = len(initial)
    n_scan = len(body.output) - 1 - n_carried
    module, lifted = build_subgraph(body, graph)
    present = [x for x in (trip_count, cond) if x]
    return OperationConverterResult(
        torch_module=OnnxLoop(module, n_carried, n_scan, bool(trip_count), bool(cond),
                              list(body.output[1 + n_carried:])),
        onnx_mapping=OnnxMapping(inputs=tuple(present) + tuple(initial) + tuple(lifted), outputs=node.output_values),
    )


@add_converter(operation_type="If", version=1)
@add_converter(operation_type="If", version=11)
@add_converter(operation_type="If", version=13)
@add_converter(operation_type="If", version=16)
@add_converter(operation_type="If", version=19)
@add_converter(operation_type="If", version=21)
def _if(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    then_module, then_lifted = build_subgraph(_graph_attr(node, "then_branch"), graph)
    else_module, else_lifted = build_subgraph(_graph_attr(node, "else_branch"), graph)
    lifted = list(dict.fromkeys(then_lifted + else_lifted))
    return OperationConverterResult(
        torch_module=OnnxIf(then_module, else_module, [lifted.index(n) for n in then_lifted],
                            [lifted.index(n) for n in else_lifted]),
        onnx_mapping=OnnxMapping(inputs=(node.input_values[0], *lifted), outputs=node.output_values),
    )


class OnnxScatterElements(nn.Module, OnnxToTorchModule):
    """ONNX ``ScatterElements`` (negative indices count from the end of ``axis``)."""

    _REDUCE = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}

    def __init__(self, axis: int, reduction: str):
        super().__init__()
        self.axis, self.reduction = axis, reduction

    def forward(self, data, indices, updates):
        idx = indices.to(torch.int64)
        idx = torch.where(idx < 0, idx + data.shape[self.axis], idx)
        if self.reduction == "none":
            return torch.scatter(data, self.axis, idx, updates)
        return torch.scatter_reduce(data, self.axis, idx, updates, reduce=self._REDUCE[self.reduction],
                                    include_self=True)


@add_converter(operation_type="ScatterElements", version=11)
@add_converter(operation_type="ScatterElements", version=13)
@add_converter(operation_type="ScatterElements", version=16)
@add_converter(operation_type="ScatterElements", version=18)
def _scatter_elements(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:  # pylint: disable=unused-argument
    return OperationConverterResult(
        torch_module=OnnxScatterElements(int(node.attributes.get("axis", 0)), node.attributes.get("reduction", "none")),
        onnx_mapping=onnx_mapping_from_node(node),
    )


class OnnxOneHot(nn.Module, OnnxToTorchModule):
    """ONNX ``OneHot``: ``values[1]`` where ``indices`` (negative ones from ``depth``) hits, ``values[0]`` elsewhere;
    the new axis at ``axis`` of the output; an index outside [-depth, depth) gives a row of ``values[0]``."""

    def __init__(self, axis: int):
        super().__init__()
        self.axis = axis

    def forward(self, indices, depth, values):
        n = int(depth.reshape(-1)[0])
        idx = indices.to(torch.int64)
        idx = torch.where(idx < 0, idx + n, idx)
        hot = idx.unsqueeze(-1) == torch.arange(n, device=idx.device)
        axis = self.axis if self.axis >= 0 else self.axis + indices.dim() + 1
        hot = torch.movedim(hot, -1, axis)
        return torch.where(hot, values[1], values[0])


@add_converter(operation_type="OneHot", version=9)
@add_converter(operation_type="OneHot", version=11)
def _one_hot(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:  # pylint: disable=unused-argument
    return OperationConverterResult(
        torch_module=OnnxOneHot(int(node.attributes.get("axis", -1))),
        onnx_mapping=onnx_mapping_from_node(node),
    )
