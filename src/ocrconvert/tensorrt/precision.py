"""The precision-carrying ONNX TensorRT builds strongly typed: the FP16 cast (onnxconverter-common) and the
INT8 Q/DQ model (onnxruntime.quantization, explicit quantization)."""
from __future__ import annotations

import collections
import contextlib
import copy
import logging
import tempfile
import warnings
from pathlib import Path

from ..errors import ConversionError, UsageError
from .calibration import CalibrationSet

log = logging.getLogger(__name__)

# ops kept in fp32 by the FP16 cast: reductions and transcendental ops whose range or precision fp16
# cannot hold (LayerNorm's pow/sqrt, softmax/sigmoid tails, resize coordinate math).
FP16_KEEP_FP32_OPS = ("Softmax", "Sigmoid", "HardSigmoid", "ReduceMean", "Pow", "Sqrt", "Exp", "Log", "Erf",
                      "LayerNormalization", "Resize", "Upsample")
# control flow stays fp32 whole (body, carried state, outputs), with casts at its boundary: the caster retypes a
# body's inputs and outputs to fp16 but not the ops inside (SLANet's decoder Loop: a Cast to float fed an fp16
# body output, which ONNX Runtime refuses), and an autoregressive decoder compounds fp16 error step by step
FP16_FP32_CONTROL_FLOW = ("Loop", "If", "Scan")
# ops TensorRT runs in INT8 when wrapped by Q/DQ; the rest stay in higher precision (explicit quantization)
INT8_QUANTIZED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
CALIB_METHODS = ("percentile", "minmax", "entropy")


def copy_metadata(src, dst) -> None:
    """``metadata_props`` of ``src`` that ``dst`` lacks (family, dictionary, config travel with the model)."""
    have = {p.key for p in dst.metadata_props}
    for p in src.metadata_props:
        if p.key not in have:
            e = dst.metadata_props.add()
            e.key, e.value = p.key, p.value


def _unshare_initializers(model) -> None:
    """One initializer per consumer: the caster cannot keep a constant fp32 for one node and fp16 for another."""
    inits = {i.name: i for i in model.graph.initializer}
    uses = collections.Counter(x for n in model.graph.node for x in n.input if x in inits)
    seen: collections.Counter = collections.Counter()
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in inits and uses[name] > 1:
                seen[name] += 1
                if seen[name] > 1:
                    dup = copy.deepcopy(inits[name])
                    dup.name = f"{name}__use{seen[name]}"
                    model.graph.initializer.append(dup)
                    node.input[i] = dup.name


def _identity_outputs(model) -> None:
    """An Identity before each graph output; onnxconverter-common fails when a kept-fp32 op feeds an output."""
    from onnx import helper

    outs = {o.name for o in model.graph.output}
    for node in list(model.graph.node):
        for i, name in enumerate(node.output):
            if name in outs:
                node.output[i] = name + "__fp32"
    for o in model.graph.output:
        model.graph.node.append(helper.make_node("Identity", [o.name + "__fp32"], [o.name], name=o.name + "__out"))


def _subgraphs(node):
    from onnx import AttributeProto

    for a in node.attribute:
        if a.type == AttributeProto.GRAPH:
            yield a.g
        elif a.type == AttributeProto.GRAPHS:
            yield from a.graphs


def _free_names(graph) -> set[str]:
    """Names ``graph`` (and the graphs nested in it) reads from enclosing scopes."""
    defined = {v.name for v in graph.input} | {i.name for i in graph.initializer}
    defined |= {o for n in graph.node for o in n.output}
    used = {o.name for o in graph.output}
    for node in graph.node:
        used.update(node.input)
        for sub in _subgraphs(node):
            used |= _free_names(sub)
    return {u for u in used if u and u not in defined}


def _rename_reads(graph, old: str, new: str) -> None:
    """``old`` -> ``new`` wherever ``graph`` or a nested graph reads it (it is free there: never defined inside)."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for sub in _subgraphs(node):
            _rename_reads(sub, old, new)
    for o in graph.output:
        if o.name == old:  # a body output that is the outer value itself (outputs are positional)
            o.name = new


def _control_flow(graph):
    return [n for n in graph.node if n.op_type in FP16_FP32_CONTROL_FLOW]


def _fp32_initializers_into_bodies(model) -> None:
    """A float initializer that a control-flow body reads from the outer graph is copied into that body, so the
    caster (which converts the outer graph's initializers) leaves the body's weights unrounded."""
    from onnx import TensorProto

    inits = {i.name: i for i in model.graph.initializer if i.data_type == TensorProto.FLOAT}
    for k, node in enumerate(_control_flow(model.graph)):
        for b, body in enumerate(_subgraphs(node)):
            for name in sorted(_free_names(body) & inits.keys()):
                dup = copy.deepcopy(inits[name])
                dup.name = f"{name}__fp32_cf{k}_{b}"
                _rename_reads(body, name, dup.name)
                body.initializer.append(dup)
    g = model.graph
    read = {o.name for o in g.output} | {i for n in g.node for i in n.input}
    read |= {f for n in g.node for sub in _subgraphs(n) for f in _free_names(sub)}
    for init in [i for i in g.initializer if i.name in inits and i.name not in read]:
        g.initializer.remove(init)  # read by the bodies only: now their own copies


def _fp16_outer_reads_to_fp32(model) -> None:
    """After the cast: an outer value a kept-fp32 body reads that became fp16 is cast back to fp32 before the
    control-flow node (the caster casts the node's explicit inputs only)."""
    from onnx import TensorProto, helper

    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.value_info]}
    types.update({i.name: i.data_type for i in g.initializer})
    casts: dict[str, str] = {}
    for node in _control_flow(g):
        fp16 = set()
        for body in _subgraphs(node):
            fp16 |= {n for n in _free_names(body) if types.get(n) == TensorProto.FLOAT16}
        for name in sorted(fp16):
            if name not in casts:
                casts[name] = f"{name}__fp32"
                at = list(g.node).index(node)
                g.node.insert(at, helper.make_node("Cast", [name], [casts[name]], name=f"{name}__to_fp32",
                                                   to=TensorProto.FLOAT))
            for body in _subgraphs(node):
                _rename_reads(body, name, casts[name])


def _cast_targets_follow_retyping(model) -> None:
    """A Cast to float in the converted graph whose output the caster retyped to fp16 casts to fp16 (the caster
    rewrites value types, never a Cast's ``to``)."""
    from onnx import TensorProto

    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in g.value_info}
    for node in g.node:
        if node.op_type == "Cast" and types.get(node.output[0]) == TensorProto.FLOAT16:
            for a in node.attribute:
                if a.name == "to" and a.i == TensorProto.FLOAT:
                    a.i = TensorProto.FLOAT16


def name_nodes(model):
    """Every node named (``<op>__<index>`` where it has none), in place: a precision plan names nodes, and the
    caster names its boundary casts after them. Returns ``model``."""
    for i, node in enumerate(model.graph.node):
        node.name = node.name or f"{node.op_type}__{i}"
    return model


def cast_fp16(model, *, keep_fp32_ops=FP16_KEEP_FP32_OPS, keep_fp32_nodes=()):
    """The FP16 ONNX TensorRT 11 builds strongly typed (I/O stays fp32; sensitive ops stay fp32; Loop/If/Scan
    stay fp32 with their bodies, cast at their boundary). ``keep_fp32_nodes``: a precision plan's node names,
    kept fp32 with casts at their boundary (the casts TensorRT 11's strongly typed network obeys)."""
    from .._compat import require

    require("onnxconverter_common", "casting the ONNX to FP16")
    from onnxconverter_common import float16
    m = copy.deepcopy(model)
    _unshare_initializers(m)
    del m.graph.value_info[:]   # stale fp32 value_info would contradict the cast graph
    _identity_outputs(m)
    name_nodes(m)  # the caster names its boundary casts after the node
    _fp32_initializers_into_bodies(m)
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(keep_fp32_ops) | set(FP16_FP32_CONTROL_FLOW))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning per clamped constant
        try:
            out = float16.convert_float_to_float16(m, keep_io_types=True, op_block_list=block,
                                                   node_block_list=list(keep_fp32_nodes) or None)
        except Exception as exc:  # noqa: BLE001 - the caster raises bare ValueErrors on odd graphs
            raise ConversionError(f"FP16 cast failed: {type(exc).__name__}: {exc}") from None
    _fp16_outer_reads_to_fp32(out)
    _cast_targets_follow_retyping(out)
    copy_metadata(model, out)
    return out


class _LogWriter:
    """A file-like sink sending third-party prints to the debug log (stdout carries results only)."""

    def write(self, text: str) -> int:
        if text.strip():
            log.debug("%s", text.rstrip())
        return len(text)

    def flush(self) -> None:
        pass


class _BatchReader:
    """onnxruntime.quantization CalibrationDataReader over the calibration batches."""

    def __init__(self, calib: CalibrationSet):
        self._calib = calib
        self._it = iter(calib.batches)

    def get_next(self):
        b = next(self._it, None)
        return None if b is None else {self._calib.input_name: b}

    def rewind(self):
        self._it = iter(self._calib.batches)


def quantize_qdq(model, calib: CalibrationSet, out_path: Path, *, method: str = "percentile", keep_fp32_nodes=(),
                 ranges_cache: Path | None = None):
    """INT8 Q/DQ ONNX for TensorRT's explicit quantization: symmetric int8 activations and per-channel
    symmetric int8 weights on Conv/ConvTranspose/MatMul/Gemm, bias left in float (TensorRT fuses it).
    ``keep_fp32_nodes``: a precision plan's node names, left without Q/DQ (fp32 in TensorRT's typed network).
    ``ranges_cache``: a file for the calibrated activation ranges, written by the first call and read by the next
    (a plan search calibrates once; ONNX Runtime >= 1.24's ``calibration_cache_path``, else recalibrated)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from ..onnx_io import opset

    methods = {"percentile": CalibrationMethod.Percentile, "minmax": CalibrationMethod.MinMax,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise UsageError(f"unknown calibration method {method!r}", hint=f"One of: {', '.join(methods)}")
    import inspect

    cache = {}
    if ranges_cache is not None and "calibration_cache_path" in inspect.signature(quantize_static).parameters:
        cache = {"calibration_cache_path": str(ranges_cache)}
    m = name_nodes(copy.deepcopy(model))
    if opset(m) < 13:  # per-channel DequantizeLinear (axis) needs opset 13
        from onnx import version_converter

        m = version_converter.convert_version(m, 13)
    with tempfile.TemporaryDirectory(prefix=".qdq.", dir=out_path.parent) as tmp:
        src = Path(tmp) / "fp32.onnx"
        onnx.save(m, str(src))
        try:
            with contextlib.redirect_stdout(_LogWriter()):  # ORT prints calibration progress on stdout
                quantize_static(str(src), str(out_path), _BatchReader(calib), quant_format=QuantFormat.QDQ,
                                op_types_to_quantize=list(INT8_QUANTIZED_OPS), per_channel=True,
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                                calibrate_method=methods[method],
                                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                               "QuantizeBias": False},
                                nodes_to_exclude=list(keep_fp32_nodes) or None, **cache)
        except Exception as exc:  # noqa: BLE001 - ORT's quantizer raises untyped errors
            raise ConversionError(f"INT8 Q/DQ quantization failed: {type(exc).__name__}: {exc}") from None
    q = onnx.load(str(out_path))
    copy_metadata(model, q)
    onnx.save(q, str(out_path))
    return q


__all__ = ["cast_fp16", "name_nodes", "quantize_qdq", "copy_metadata", "FP16_KEEP_FP32_OPS", "FP16_FP32_CONTROL_FLOW",
           "INT8_QUANTIZED_OPS", "CALIB_METHODS"]
