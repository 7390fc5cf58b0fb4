"""Weight provenance at reduced precision: every weight of an fp16 / INT8 ONNX is its source weight, rounded.

Why a weight check: at fp16 and INT8 the outputs carry the precision's own error, and a weight damaged by less
than that error moves nothing the output checks can see (measured: a head conv x1.02 leaves INT8 det IoU at 0.919
against the undamaged 0.920; at fp16 the det map error of an honest PP-OCRv5 cast, p99.9 0.30, exceeds that of a
damaged PP-OCRv4 one, 0.05-0.15, so no output bound serves every model). A weight has no such floor: an honest cast
or quantisation leaves each weight within one step of the precision of the ORIGINAL source weight —

* fp16: one fp16 spacing at the weight's magnitude (round to nearest is half of it);
* INT8 Q/DQ: one quantisation step, i.e. the DequantizeLinear scale of the weight's channel (round to nearest is
  half of it; a symmetric per-channel scale maps each channel's largest weight to 127 exactly);
* fp32 tensors kept by the cast (biases, folded BatchNorm): 2^-16 relative, far above fp32 folding noise.

A conv x1.02 is then ~2.5 INT8 steps off on its largest weight and ~20 fp16 spacings; two swapped channels are
off by many steps. Target names map back to the source: the converter keeps Paddle parameter names
(``conv2d_140.w_0``), onnxslim names a conv folded with its BatchNorm ``<bn output>_weight`` / ``_bias`` (folded
here the same way from the source's conv and BatchNorm parameters), the FP16 cast names unshared copies
``<name>__useN`` and the quantiser ``<name>_quantized``. A compute weight (conv, matmul) whose name the source
lacks (a PIR program's folded BatchNorm, whose names paddle2onnx invents; an ONNX twin exported with other parameter
names) is traced by value (``VALUE_TRACE_REL``); one that traces to nothing leaves the check incomplete, which the
report turns into INCONCLUSIVE. Other tensors that trace to nothing (the quantiser's activation scales, constants
paddle2onnx invents) are listed as untraced, never counted as checked.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..formats import Artifact, Format

FP32_KEPT_RELATIVE = 2.0 ** -16
FOLDED = "folded:"   # a fold the target can only name differently (traced by value)
# tracing by value: the source tensor of the same shape whose median relative error over output channels is below
# this and at most half the runner-up's (INT8 rounding is ~0.5 %, a conv x1.02 2 %, two swapped channels of many
# 0 %); a compute weight that traces to nothing leaves the check incomplete, and the verdict with it
VALUE_TRACE_REL = 0.1
# the FP16 cast (onnxconverter-common) raises magnitudes below 1e-7 to 1e-7, which fp16 holds as 2^-23: a weight
# may be that far off its source however small it is (twice that, as margin; a real weight is ~1e-3 or more)
FP16_FLOOR = 2.0 ** -22


@dataclass
class WeightCheck:
    """The target's weights against the source's: how many were traced and checked, and the worst of them."""
    precision: str
    max_steps: float                 # a weight may be this many steps of the precision off its source weight
    checked: int = 0
    untraced: list[str] = field(default_factory=list)     # tensors of other ops that trace to no source tensor
    incomplete: list[str] = field(default_factory=list)   # compute weights (conv, matmul) that trace to none
    worst: str = ""                  # the tensor with the largest error, in steps
    worst_steps: float = 0.0
    mismatches: list[dict] = field(default_factory=list)   # {"tensor", "steps", "channel", "kind"}
    skipped: str = ""                # why the check did not run ("" = it ran)

    @property
    def ran(self) -> bool:
        return not self.skipped and self.checked > 0

    @property
    def passed(self) -> bool:
        return not self.mismatches

    @property
    def complete(self) -> bool:
        """Every compute weight was traced and checked (else a damage in one could not be seen)."""
        return self.ran and not self.incomplete

    def line(self) -> str:
        if self.skipped:
            return f"weights not checked ({self.skipped})"
        if self.mismatches:
            m = self.mismatches[0]
            more = f" (+{len(self.mismatches) - 1} more)" if len(self.mismatches) > 1 else ""
            return (f"weights FAILED: {m['tensor']} channel {m['channel']} is {m['steps']:.3g} {m['unit']} off its "
                    f"source weight (allowed {self.max_steps:g}){more}")
        if self.incomplete:
            return (f"weights incomplete: {len(self.incomplete)} compute weight(s) trace to no source weight "
                    f"({', '.join(self.incomplete[:3])}); {self.checked} checked")
        return f"weights {self.checked} within {self.worst_steps:.2g} steps of the source"

    def to_dict(self) -> dict:
        return {"precision": self.precision, "max_steps": self.max_steps, "checked": self.checked,
                "untraced": len(self.untraced), "incomplete": self.incomplete[:20], "worst": self.worst,
                "worst_steps": self.worst_steps,
                "passed": self.passed, "mismatches": self.mismatches[:20],
                **({"skipped": self.skipped} if self.skipped else {})}


# ---- the source's weights, by the names the target carries ---------------------------------------
def _onnx_tensors(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    out = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:  # paddle2onnx writes weights as Constant nodes
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None and value.data_type in (1, 10, 11):
                out[node.output[0]] = numpy_helper.to_array(value)
    return out


def _fold(w: np.ndarray, b: np.ndarray | None, scale, bias, mean, var, eps: float,
          transposed: bool = False) -> dict[str, np.ndarray]:
    """A conv (``w``, ``b``) followed by BatchNorm, folded into one conv, in float64 (a transposed conv holds
    its output channels on axis 1)."""
    k = np.asarray(scale, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    shape = [1] * w.ndim
    shape[1 if transposed else 0] = k.size
    w2 = np.asarray(w, np.float64) * k.reshape(shape)
    b0 = np.zeros_like(k) if b is None else np.asarray(b, np.float64).reshape(-1)
    return {"weight": w2, "bias": (b0 - np.asarray(mean, np.float64)) * k + np.asarray(bias, np.float64)}


def onnx_source_weights(path: Path) -> dict[str, np.ndarray]:
    """An fp32 ONNX's weights, plus each Conv -> BatchNormalization pair folded as onnxslim names it."""
    from ..onnx_io import load_onnx

    model = load_onnx(path)
    tensors = _onnx_tensors(model)
    producer = {o: n for n in model.graph.node for o in n.output}

    def const(name):  # a weight, also behind a Reshape (a conv_transpose's bias)
        if name in tensors:
            return tensors[name]
        node = producer.get(name)
        return tensors.get(node.input[0]) if node is not None and node.op_type in ("Reshape", "Unsqueeze") else None

    def conv_and_bias(node):
        """(conv, the bias added to its output) for a Conv/ConvTranspose, or one followed by an Add of a constant."""
        if node is not None and node.op_type == "Add":  # paddle2onnx adds a conv's bias as its own node
            consts = [const(x) for x in node.input]
            if sum(c is not None for c in consts) == 1:
                bias = next(c for c in consts if c is not None)
                conv = producer.get(next(x for x, c in zip(node.input, consts) if c is None))
                if conv is not None and conv.op_type in ("Conv", "ConvTranspose"):
                    return conv, bias
        return node, None

    for add in (n for n in model.graph.node if n.op_type == "Add"):  # onnxslim folds a bias Add into its conv
        conv, bias = conv_and_bias(add)
        if bias is not None:
            own = const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
            tensors[f"{add.output[0]}_bias"] = np.asarray(bias, np.float64).reshape(-1) + (0 if own is None else own)
    for bn in (n for n in model.graph.node if n.op_type == "BatchNormalization"):
        conv, bias = conv_and_bias(producer.get(bn.input[0]))
        if conv is None or conv.op_type not in ("Conv", "ConvTranspose") or conv.input[1] not in tensors or \
                not all(x in tensors for x in bn.input[1:5]):
            continue
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        if bias is None and len(conv.input) > 2 and conv.input[2]:
            bias = tensors.get(conv.input[2])
        folded = _fold(tensors[conv.input[1]], bias, *(tensors[x] for x in bn.input[1:5]), eps,
                       transposed=conv.op_type == "ConvTranspose")
        for part, arr in folded.items():
            tensors[f"{bn.output[0]}_{part}"] = arr
    return tensors


def paddle_source_weights(artifact: Artifact) -> dict[str, np.ndarray]:
    """A Paddle program's parameters, plus (legacy programs, whose variables keep their names) each conv ->
    batch_norm pair folded under the name the ONNX twin gives the BatchNorm's output."""
    from ..paddle_program import legacy_op_list, read_program

    program = read_program(artifact)
    tensors = dict(program.weights())
    if artifact.format is not Format.PADDLE_LEGACY:
        tensors.update(_pir_folds(program, tensors))
        return tensors
    ops = legacy_op_list(program)
    producer = {a: op for op in ops for args in op["outputs"].values() for a in args}
    for op in (o for o in ops if o["type"] == "batch_norm"):
        x = op["inputs"].get("X", [None])[0]
        conv, bias = producer.get(x), None
        if conv is not None and conv["type"] == "elementwise_add" and conv["inputs"].get("Y", [None])[0] in tensors:
            bias = tensors[conv["inputs"]["Y"][0]]
            conv = producer.get(conv["inputs"]["X"][0])
        if conv is None or conv["type"] not in ("conv2d", "depthwise_conv2d", "conv2d_transpose"):
            continue
        names = [op["inputs"].get(k, [None])[0] for k in ("Scale", "Bias", "Mean", "Variance")]
        filt = conv["inputs"].get("Filter", [None])[0]
        if filt not in tensors or not all(n in tensors for n in names):
            continue
        folded = _fold(tensors[filt], bias, *(tensors[n] for n in names), float(op["attrs"].get("epsilon", 1e-5)),
                       transposed=conv["type"] == "conv2d_transpose")
        for part, arr in folded.items():
            tensors[f"{op['outputs']['Y'][0]}_{part}"] = arr
    for op in (o for o in ops if o["type"] == "elementwise_add"):  # a conv's bias, folded into it by onnxslim
        y, conv = op["inputs"].get("Y", [None])[0], producer.get(op["inputs"].get("X", [None])[0])
        if y in tensors and conv is not None and conv["type"] in ("conv2d", "depthwise_conv2d", "conv2d_transpose"):
            tensors[f"{op['outputs']['Out'][0]}_bias"] = tensors[y]
    return tensors


def _pir_folds(program, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A PIR program's conv -> batch_norm pairs, folded. PIR values have no names and paddle2onnx invents the
    ONNX ones, so these carry their BatchNorm's scale parameter as name and are traced by value. Reading the op
    graph needs Paddle; without it there are none (those target weights stay untraced)."""
    from ..errors import OcrConvertError

    try:
        ops = program.graph()
    except OcrConvertError:
        return {}
    producer = {v: op for op in ops for v in op.outputs if v}
    def param(ref):  # a parameter operand, also behind a reshape (a conv_transpose's bias)
        if isinstance(ref, str) and ref.startswith("p:"):
            return ref[2:]
        op = producer.get(ref)
        return param(op.inputs[0]) if op is not None and op.type in ("reshape", "reshape_") and op.inputs else None

    out = {}
    for bn in (o for o in ops if o.type in ("batch_norm", "batch_norm_")):
        names = [param(x) for x in bn.inputs[1:5]]   # mean, variance, scale, bias
        conv, bias = producer.get(bn.inputs[0]), None
        if conv is not None and conv.type in ("add", "add_") and len(conv.inputs) > 1 and \
                param(conv.inputs[1]) in tensors:
            bias, conv = tensors[param(conv.inputs[1])], producer.get(conv.inputs[0])
        if conv is None or conv.type not in ("conv2d", "depthwise_conv2d", "conv2d_transpose") or \
                param(conv.inputs[1]) not in tensors or not all(n in tensors for n in names):
            continue
        mean, var, scale, beta = (tensors[n] for n in names)
        folded = _fold(tensors[param(conv.inputs[1])], bias, scale, beta, mean, var,
                       float(bn.attrs.get("epsilon", 1e-5)),
                       transposed=conv.type == "conv2d_transpose")
        out.update({f"{FOLDED}{names[2]}_{part}": arr for part, arr in folded.items()})
    return out


def source_weights(source: Artifact) -> dict[str, np.ndarray]:
    if source.format is Format.ONNX:
        return onnx_source_weights(source.files["model"])
    if source.format in (Format.PADDLE_LEGACY, Format.PADDLE_PIR):
        return paddle_source_weights(source)
    raise ValueError(f"no weights to read in a {source.format.value} source")


# ---- the target's weights, each with its step ----------------------------------------------------
def _source_name(name: str) -> str:
    return re.sub(r"(__use\d+)$", "", re.sub(r"_quantized$", "", name))


COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def target_weights(model):
    """(target tensor, value as float64, one step of its precision broadcast like it, channel axis, unit, whether
    it is a compute op's weight) per weight; the quantiser's own activation scales and zero points are none."""
    from onnx import TensorProto, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    weight_inputs = {n.input[1] for n in model.graph.node if n.op_type in COMPUTE_OPS and len(n.input) > 1}
    qdq_params = {x for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                  for x in n.input[1:]}
    for n in model.graph.node:
        if n.op_type != "DequantizeLinear" or n.input[0] not in inits or n.input[1] not in inits:
            continue
        q = numpy_helper.to_array(inits[n.input[0]]).astype(np.float64)
        scale = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
        zp = numpy_helper.to_array(inits[n.input[2]]).astype(np.float64) if len(n.input) > 2 and n.input[2] in inits \
            else np.zeros_like(scale)
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1) % max(q.ndim, 1)
        if scale.size > 1:  # per channel, along the DequantizeLinear's axis
            shape = [1] * q.ndim
            shape[axis] = scale.size
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        yield (n.input[0], (q - zp) * scale, np.broadcast_to(scale, q.shape), axis if scale.size > 1 else 0,
               "int8 steps", n.output[0] in weight_inputs)
    dequantized = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for name, init in inits.items():
        if name in dequantized or name in qdq_params or init.data_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
            continue
        w = numpy_helper.to_array(init)
        a = np.abs(w.astype(np.float64))
        if init.data_type == TensorProto.FLOAT16:  # the fp16 spacing at each value, at least FP16_FLOOR
            step, unit = np.maximum(np.spacing(a.astype(np.float16)).astype(np.float64), FP16_FLOOR), "fp16 steps"
        else:
            step, unit = np.maximum(a * FP32_KEPT_RELATIVE, 1e-30), "fp32 steps of 2^-16"
        yield name, w.astype(np.float64), step, 0, unit, name in weight_inputs


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float64).reshape(-1)


def _trace_by_value(value: np.ndarray, pool: dict[tuple, list]) -> tuple[str, np.ndarray] | None:
    """The one source tensor of this shape clearly nearest to ``value`` (see VALUE_TRACE_REL), or None."""
    cands = pool.get(np.squeeze(value).shape, [])
    if not cands or value.size < 8:  # a handful of numbers could match anything
        return None
    v = np.asarray(value, np.float64).reshape(value.shape[0] if value.ndim else 1, -1)

    def distance(c):  # the median over output channels of the relative error: a damaged channel or two still traces
        c = np.asarray(c, np.float64).reshape(v.shape)
        return float(np.median(np.linalg.norm(v - c, axis=1) / np.maximum(np.linalg.norm(c, axis=1), 1e-30)))

    rel = sorted((distance(c), i) for i, (_, c) in enumerate(cands))
    best, i = rel[0]
    if best < VALUE_TRACE_REL and (len(rel) == 1 or rel[1][0] > 2 * best):
        name, arr = cands[i]
        return name, np.asarray(arr).reshape(value.shape)
    return None


def check_weights(source_tensors: dict[str, np.ndarray], target_model, precision: str, max_steps: float) -> WeightCheck:
    """Every target weight that traces to a source tensor (by name, else by value) must lie within ``max_steps``
    steps of it; a compute op's weight that traces to none leaves the check incomplete."""
    res = WeightCheck(str(precision), max_steps)
    weights = list(target_weights(target_model))
    by_name, rest = [], []
    for w in weights:
        src = source_tensors.get(_source_name(w[0]))
        if src is not None and src.shape != w[1].shape and np.squeeze(src).shape == np.squeeze(w[1]).shape:
            src = np.asarray(src).reshape(w[1].shape)  # a bias as [C] on one side, [1, C, 1, 1] on the other
        (by_name if src is not None and src.shape == w[1].shape and src.size else rest).append((w, src))
    named = {_source_name(w[0]) for w, _ in by_name}
    pool: dict[tuple, list] = {}
    for name, arr in source_tensors.items():
        arr = np.asarray(arr)
        if name not in named and arr.size:
            pool.setdefault(np.squeeze(arr).shape, []).append((name, arr))
            if arr.ndim == 2 and arr.shape[0] != arr.shape[1]:  # a MatMul weight a Gemm holds transposed (transB)
                pool.setdefault(arr.T.shape, []).append((f"{name} (transposed)", arr.T))
    traced = list(by_name)
    for w, _ in rest:  # by value for compute weights only: a short bias vector could match a wrong one
        hit = _trace_by_value(w[1], pool) if w[5] else None
        if hit is not None:
            traced.append((w, hit[1]))
        elif w[5]:
            res.incomplete.append(_source_name(w[0]))
        else:
            res.untraced.append(w[0])
    for (name, value, step, axis, unit, _), src in traced:
        res.checked += 1
        err = np.abs(value - np.asarray(src, np.float64)) / step
        worst = float(err.max())
        if worst > res.worst_steps:
            res.worst, res.worst_steps = name, worst
        if worst > max_steps:
            per_channel = np.moveaxis(err, axis, 0).reshape(err.shape[axis], -1).max(-1) if err.ndim else err.reshape(1)
            res.mismatches.append({"tensor": _source_name(name), "steps": worst, "unit": unit,
                                   "channel": int(per_channel.argmax()),
                                   "channels_off": int((per_channel > max_steps).sum())})
    # the precision's own weights first (an INT8 weight before the fp32 bias that moved with it), worst first
    res.mismatches.sort(key=lambda m: (not m["unit"].startswith(res.precision), -m["steps"]))
    return res


def weight_check(source: Artifact, target: Artifact, precision: str, max_steps: float) -> WeightCheck:
    """The check for one verification: the target ONNX's weights against the ORIGINAL source's, or why not."""
    from ..onnx_io import load_onnx
    from ..errors import OcrConvertError

    if target.format is not Format.ONNX:
        return WeightCheck(str(precision), max_steps, skipped=f"the weights of a {target.format.value} target "
                                                              "are not read back")
    try:
        tensors = source_weights(source)
    except (ValueError, OcrConvertError) as exc:
        return WeightCheck(str(precision), max_steps, skipped=str(exc).splitlines()[0])
    res = check_weights(tensors, load_onnx(target.files["model"]), precision, max_steps)
    if not res.checked:
        res.skipped = f"no weight of the target traces to a source tensor ({len(res.untraced)} untraced)"
    return res
