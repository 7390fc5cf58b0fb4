"""The one reader of Paddle inference programs (legacy protobuf ``.pdmodel`` or 3.x PIR ``.json``).

``read_program(artifact)`` reads the files ``formats.detect`` named and runs nothing: inputs/outputs with
their declared (dynamic) shapes, the op histogram and the declared parameters — what ``inspect``, family
resolution, the Paddle runner and every converter's preflight need. Two deeper reads, on demand:

* ``weights()`` — the parameter tensors, parsed here from ``.pdiparams`` (numpy) and checked against the
  parameters the program declares;
* ``graph()`` — the op list with its data flow, in PIR vocabulary (``conv2d``, ``batch_norm_``, ...), for
  the native route. Paddle deserialises the program (and translates a legacy one to PIR); it builds no
  scope, loads no weights and runs nothing.

Every failure to read is a ``CorruptModelError`` (exit 3), whichever of these three reads meets it.
"""
from __future__ import annotations

import json
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CorruptModelError
from .specs import TensorSpec
from .formats import Artifact, Format

_PIR_DTYPES = {"0.t_f32": "float32", "0.t_f16": "float16", "0.t_f64": "float64", "0.t_i64": "int64",
               "0.t_i32": "int32", "0.t_bool": "bool", "0.t_bf16": "bfloat16", "0.t_ui8": "uint8"}
_LEGACY_DTYPES = {0: "bool", 1: "int16", 2: "int32", 3: "int64", 4: "float16", 5: "float32", 6: "float64",
                  20: "uint8", 21: "int8", 22: "bfloat16"}
_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4, "int16": 2,
             "int8": 1, "uint8": 1, "bool": 1}
# attributes that say nothing about what an op computes
_SKIP_ATTRS = {"stop_gradient", "op_callstack", "persistable", "is_persistable", "place", "struct_name"}


@dataclass
class Op:
    """One op of the program graph, in PIR vocabulary."""
    index: int
    type: str  # e.g. "conv2d", "batch_norm_", "matmul" (without the "pd_op." prefix)
    inputs: list[str | None]  # value ids ("v12"), parameter references ("p:<name>") or None (absent optional)
    outputs: list[str | None]
    attrs: dict[str, Any]
    in_shapes: list[list[int] | None] = field(default_factory=list)
    out_shapes: list[list[int] | None] = field(default_factory=list)


@dataclass
class PaddleProgram:
    format: Format
    program_file: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    ops: Counter  # op type -> count (feed/fetch/data/parameter excluded)
    params: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)  # name -> (shape, dtype)
    params_file: Path | None = None
    _weights: dict[str, np.ndarray] | None = field(default=None, repr=False)
    _graph: list[Op] | None = field(default=None, repr=False)

    @property
    def parameter_count(self) -> int:
        return int(sum(int(np.prod(s)) for s, _ in self.params.values()))

    def weights(self) -> dict[str, np.ndarray]:
        """The parameter tensors (read once), each checked against its declared shape and dtype."""
        if self._weights is None:
            if self.params_file is None:
                raise CorruptModelError(f"{self.program_file} has no .pdiparams weights file beside it")
            self._weights = read_weights(self.params_file, self.params)
        return self._weights

    def graph(self) -> list[Op]:
        """The ops in program order (read once; needs Paddle)."""
        if self._graph is None:
            self._graph = _read_graph(self)
        return self._graph


def read_program(artifact: Artifact) -> PaddleProgram:
    prog = artifact.files["program"]
    program = read_pir(prog) if artifact.format is Format.PADDLE_PIR else read_legacy(prog)
    program.params_file = artifact.files.get("params")
    check_params_size(program)
    return program


# -- the program file ------------------------------------------------------------------------------------
def _dims(dims) -> tuple:
    return tuple(int(d) if int(d) >= 0 else None for d in dims)


def _framework_pb2():
    from ._compat import require

    # the protobuf descriptors only: nothing runs
    return require("paddle.base.proto.framework_pb2", "reading a Paddle program")


def read_legacy(path: Path) -> PaddleProgram:
    from google.protobuf.message import DecodeError

    desc = _framework_pb2().ProgramDesc()
    try:
        desc.ParseFromString(path.read_bytes())
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise CorruptModelError(f"{path} is not a valid Paddle program: {exc}") from None
    if not desc.blocks or not desc.blocks[0].ops:
        raise CorruptModelError(f"{path} holds no Paddle program (no ops)")
    problem = _legacy_problem(desc)
    if problem:
        raise CorruptModelError(f"{path} is not a valid Paddle program: {problem}")
    block = desc.blocks[0]
    vars_ = {v.name: v for v in block.vars}

    def spec(name: str) -> TensorSpec:
        v = vars_.get(name)
        if v is None or not v.type.HasField("dense_tensor"):
            return TensorSpec(name, ())
        t = v.type.dense_tensor.tensor
        return TensorSpec(name, _dims(t.dims), _LEGACY_DTYPES.get(int(t.data_type), "float32"))

    inputs, outputs = [], []
    ops: Counter = Counter()
    for blk in desc.blocks:
        for op in blk.ops:
            if op.type == "feed":
                for o in op.outputs:
                    inputs += [spec(a) for a in o.arguments]
            elif op.type == "fetch":
                for i in op.inputs:
                    outputs += [spec(a) for a in i.arguments]
            else:
                ops[op.type] += 1
    params = {}
    for v in block.vars:
        if v.persistable and v.type.HasField("dense_tensor") and v.name not in ("feed", "fetch"):
            t = v.type.dense_tensor.tensor
            params[v.name] = (tuple(int(d) for d in t.dims), _LEGACY_DTYPES.get(int(t.data_type), "float32"))
    return PaddleProgram(Format.PADDLE_LEGACY, path, inputs, outputs, ops, params)


# VarType.Type values that are element types (BOOL .. BF16, COMPLEX, FP8): a tensor of any other (a var kind
# such as SPARSE_CSR) makes Paddle's translator segfault
_ELEMENT_TYPES = frozenset({0, 1, 2, 3, 4, 5, 6, 20, 21, 22, 23, 24, 32, 33})


def _tensor_descs(msg):
    """Every TensorDesc inside a VarType (dense tensors, selected rows, tensor arrays, tuples...)."""
    from google.protobuf.message import Message

    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        for m in [value] if isinstance(value, Message) else value:
            if fd.message_type.name == "TensorDesc":
                yield m
            else:
                yield from _tensor_descs(m)


def _legacy_problem(desc) -> str | None:
    """What Paddle's own deserialiser would trust and crash on (SIGSEGV in BlockDesc::FindVarRecursive for a
    block whose parent does not exist): block indices and parents, sub-block references, op types, and names
    that are not UTF-8 (protobuf hands those back as bytes). None when the structure is sound."""
    from .onnx_io import not_text

    n = len(desc.blocks)
    for i, blk in enumerate(desc.blocks):
        if blk.idx != i:
            return f"block {i} says it is block {blk.idx}"
        # a block's parent is created before it: parents point backwards, so they cannot form a loop
        if (i == 0 and blk.parent_idx != -1) or (i > 0 and not 0 <= blk.parent_idx < i):
            return f"block {i} has parent block {blk.parent_idx} (of {n})"
        if blk.HasField("forward_block_idx") and not -1 <= blk.forward_block_idx < n:
            return f"block {i} names forward block {blk.forward_block_idx} (of {n})"
        for v in blk.vars:
            kinds = [t.data_type for t in _tensor_descs(v.type)]
            if any(k not in _ELEMENT_TYPES for k in kinds) or v.type.type in _ELEMENT_TYPES:
                return f"variable {v.name} of block {i} has a type Paddle does not know ({v.type.type}, {kinds})"
        for op in blk.ops:
            if not isinstance(op.type, str) or not op.type:
                return f"an op of block {i} has no type"
            for attr in op.attrs:
                refs = list(attr.blocks_idx) + ([attr.block_idx] if attr.HasField("block_idx") else [])
                if any(not 0 < r < n for r in refs):  # block 0 is nobody's sub-block
                    return f"op {op.type} of block {i} names sub-block(s) {refs} (of {n})"
    where = not_text(desc)
    return f"a {where} is not UTF-8 text" if where else None


def _pir_tensor(out: dict) -> tuple[tuple, str]:
    tt = (out or {}).get("TT", {})
    d = tt.get("D") or [{}, []]
    return _dims(d[1]), _PIR_DTYPES.get(d[0].get("#", ""), "float32")


def _pir_attr(op: dict, name: str):
    for a in op.get("A", []) or []:
        if isinstance(a, dict) and a.get("N") == name:
            return a.get("AT", {}).get("D")
    return None


def read_pir(path: Path) -> PaddleProgram:
    try:
        doc = json.loads(path.read_bytes())
        blocks = doc["program"]["regions"][0]["blocks"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError, RecursionError) as exc:
        raise CorruptModelError(f"{path} is not a valid Paddle PIR program: {type(exc).__name__} "
                                f"{str(exc)[:200]}") from None
    if not isinstance(doc.get("base_code"), dict):
        raise CorruptModelError(f"{path} is not a valid Paddle PIR program: no base_code header")
    version = doc["base_code"].get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version < 2**31:
        raise CorruptModelError(f"{path} is not a valid Paddle PIR program: base_code version {str(version)[:40]}")
    inputs, outputs, params = [], [], {}
    ops: Counter = Counter()

    def walk(block_list):
        for blk in block_list:
            for op in blk.get("ops", []) or []:
                kind = op.get("#", "")
                if kind == "p":
                    a = op.get("A") or []
                    name = a[3] if len(a) > 3 else f"param_{len(params)}"
                    if not isinstance(name, str):
                        raise ValueError(f"parameter name {str(name)[:40]} is not a string")
                    shape, dtype = _pir_tensor(op.get("O", {}))
                    params[name] = (tuple(d or 0 for d in shape), dtype)
                elif kind.endswith(".data"):
                    shape, dtype = _pir_tensor((op.get("O") or [{}])[0])
                    inputs.append(TensorSpec(str(_pir_attr(op, "name")), shape, dtype))
                elif kind.endswith(".fetch"):
                    shape, dtype = _pir_tensor((op.get("O") or [{}])[0])
                    outputs.append(TensorSpec(str(_pir_attr(op, "name")), shape, dtype))
                else:
                    ops[kind.split(".", 1)[-1]] += 1
                for region in op.get("regions", []) or []:
                    walk(region.get("blocks", []))

    try:
        walk(blocks)
    except (AttributeError, TypeError, IndexError, KeyError, ValueError) as exc:
        raise CorruptModelError(f"{path} has an unexpected PIR layout: {type(exc).__name__} {exc}") from None
    if not inputs or not outputs:
        raise CorruptModelError(f"{path} declares no inputs or outputs")
    return PaddleProgram(Format.PADDLE_PIR, path, inputs, outputs, ops, params)


def legacy_op_list(program: PaddleProgram) -> list[dict]:
    """A legacy program's ops with their variable names (``type``, ``inputs``/``outputs``: slot -> names, scalar
    ``attrs``), read from the protobuf; nothing runs. The weight check folds conv -> batch_norm pairs by them."""
    desc = _framework_pb2().ProgramDesc()
    desc.ParseFromString(program.program_file.read_bytes())
    ops = []
    for blk in desc.blocks:
        for op in blk.ops:
            attrs = {a.name: a.f if a.type == 1 else a.i if a.type == 0 else None for a in op.attrs}
            ops.append({"type": op.type, "inputs": {v.parameter: list(v.arguments) for v in op.inputs},
                        "outputs": {v.parameter: list(v.arguments) for v in op.outputs}, "attrs": attrs})
    return ops


# -- the weights file ------------------------------------------------------------------------------------
def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    return int(np.prod(shape)) * _ITEMSIZE.get(dtype, 1)


def check_params_size(program: PaddleProgram) -> None:
    """A truncated .pdiparams makes Paddle abort deep inside C++; catch it from the declared shapes first."""
    if program.params_file is None:
        return
    need = sum(_nbytes(shape, dtype) for shape, dtype in program.params.values() if all(d > 0 for d in shape))
    have = program.params_file.stat().st_size
    if have < need:
        raise CorruptModelError(f"{program.params_file} is truncated: {have:,} bytes, but the program's parameters "
                                f"need at least {need:,}")


def read_weights(path: Path, declared: dict[str, tuple[tuple[int, ...], str]]) -> dict[str, np.ndarray]:
    """Parse a combined ``.pdiparams`` as Paddle's ``load_combine`` does (one serialised tensor per declared
    parameter, in name order), checking every header against the declaration instead of trusting it."""
    buf = bytearray(path.stat().st_size)  # writable, so the arrays are too (torch.from_numpy wants that)
    with path.open("rb") as f:
        f.readinto(buf)
    pos = 0

    def bad(why: str) -> CorruptModelError:
        return CorruptModelError(f"{path} is not the weights of this program: {why}")

    def take(fmt: str, what: str):
        nonlocal pos
        if pos + struct.calcsize(fmt) > len(buf):
            raise bad(f"the file ends inside {what}")
        (value,) = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return value

    tensor_desc = _framework_pb2().VarType.TensorDesc
    from google.protobuf.message import DecodeError

    out: dict[str, np.ndarray] = {}
    for name in sorted(declared):
        shape, dtype = declared[name]
        if take("<I", name) != 0:
            raise bad(f"{name}: unknown tensor format version (at byte {pos - 4:,})")
        for _ in range(take("<Q", name)):  # LoD levels: meaningless for parameters, skipped
            size = take("<Q", name)
            if size > len(buf) - pos:
                raise bad(f"the file ends inside {name}")
            pos += size
        if take("<I", name) != 0:
            raise bad(f"{name}: unknown tensor version")
        desc_size = take("<i", name)
        if not 0 <= desc_size <= len(buf) - pos:
            raise bad(f"{name}: tensor header of {desc_size} bytes")
        desc = tensor_desc()
        try:
            desc.ParseFromString(bytes(buf[pos:pos + desc_size]))
        except DecodeError:
            raise bad(f"{name}: unreadable tensor header") from None
        pos += desc_size
        got_shape, got_dtype = tuple(int(d) for d in desc.dims), _LEGACY_DTYPES.get(int(desc.data_type))
        if got_dtype != dtype or (all(d > 0 for d in shape) and got_shape != tuple(shape)):
            raise bad(f"{name} is {got_dtype} {list(got_shape)} in the file, {dtype} {list(shape)} in the program")
        size = _nbytes(got_shape, got_dtype)
        if size > len(buf) - pos:
            raise bad(f"the file ends inside {name}")
        out[name] = _array(buf, pos, got_shape, got_dtype)
        pos += size
    if pos != len(buf):
        raise bad(f"{len(buf) - pos:,} bytes left after the {len(declared)} declared parameters")
    return out


def _array(buf: bytearray, pos: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    count = int(np.prod(shape))
    if dtype == "bfloat16":  # numpy has no bfloat16: widen to float32 exactly
        raw = np.frombuffer(buf, np.uint16, count, pos).astype(np.uint32) << 16
        return raw.view(np.float32).reshape(shape)
    return np.frombuffer(buf, np.dtype(dtype), count, pos).reshape(shape)


# -- the op graph (Paddle deserialises the program) -----------------------------------------------------
def _read_graph(program: PaddleProgram) -> list[Op]:
    from ._compat import require

    os.environ.setdefault("GLOG_minloglevel", "2")
    paddle = require("paddle", "reading a Paddle program's op graph")
    path = program.program_file
    try:
        if program.format is Format.PADDLE_PIR:
            with paddle.pir_utils.IrGuard():
                pir = paddle.static.Program()
                paddle.base.core.deserialize_pir_program(str(path), pir)
        else:
            pir = paddle.pir.translate_to_pir(paddle.base.core.ProgramDesc(path.read_bytes()))
    except (ValueError, RuntimeError, OSError, IndexError, SystemError) as exc:  # C++ exceptions: map::at, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CorruptModelError(f"Paddle could not read {path}: {first}") from None
    return _walk(pir, program)


def _shape(v) -> list[int] | None:
    try:
        return [int(d) for d in v.shape]
    except Exception:  # noqa: BLE001 - values without a dense type (combine results, optional outputs)
        return None


def _clean_attr(v):
    if isinstance(v, (list, tuple)):
        return [_clean_attr(x) for x in v]
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    return str(v)


def _walk(pir, program: PaddleProgram) -> list[Op]:
    ids: dict[Any, str] = {}

    def vid(v) -> str | None:
        if v is None or not v.initialized():
            return None
        return ids.setdefault(v.id, f"v{len(ids)}")

    ops: list[Op] = []
    param_of: dict[str, str] = {}
    for op in pir.global_block().ops:
        name = op.name()
        if name == "builtin.parameter":
            pname = op.attrs()["parameter_name"]
            if pname not in program.params:
                raise CorruptModelError(f"{program.program_file}: parameter {pname} is used but not declared")
            param_of[vid(op.results()[0])] = pname
            continue
        inputs, in_shapes = [], []
        for v in op.operands_source():
            i = vid(v)
            inputs.append("p:" + param_of[i] if i in param_of else i)
            in_shapes.append(_shape(v) if v is not None and v.initialized() else None)
        outputs = [vid(v) for v in op.results()]
        out_shapes = [_shape(v) if v.initialized() else None for v in op.results()]
        attrs = {k: _clean_attr(v) for k, v in op.attrs().items() if k not in _SKIP_ATTRS}
        ops.append(Op(len(ops), name.split(".", 1)[-1], inputs, outputs, attrs, in_shapes, out_shapes))
    return ops
