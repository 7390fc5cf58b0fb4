"""Read a Paddle inference program (legacy protobuf or 3.x PIR JSON) without running it.

Gives inputs/outputs with their declared (dynamic) shapes, the op histogram and the parameter
shapes: what ``inspect``, family resolution and converter preflight need.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CorruptModelError
from .families.base import TensorSpec
from .formats import Artifact, Format

_PIR_DTYPES = {"0.t_f32": "float32", "0.t_f16": "float16", "0.t_f64": "float64", "0.t_i64": "int64",
               "0.t_i32": "int32", "0.t_bool": "bool", "0.t_bf16": "bfloat16", "0.t_ui8": "uint8"}
_LEGACY_DTYPES = {0: "bool", 1: "int16", 2: "int32", 3: "int64", 4: "float16", 5: "float32", 6: "float64",
                  20: "uint8", 21: "int8", 22: "bfloat16"}


@dataclass
class PaddleProgram:
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    ops: Counter
    params: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)  # name -> (shape, dtype)

    @property
    def parameter_count(self) -> int:
        return int(sum(int(np.prod(s)) for s, _ in self.params.values()))


def _dims(dims) -> tuple:
    return tuple(int(d) if int(d) >= 0 else None for d in dims)


def read_legacy(path: Path) -> PaddleProgram:
    from ._compat import require

    # the protobuf descriptor only: no program runs
    framework_pb2 = require("paddle.base.proto.framework_pb2", "reading a Paddle program")
    from google.protobuf.message import DecodeError

    desc = framework_pb2.ProgramDesc()
    try:
        desc.ParseFromString(path.read_bytes())
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise CorruptModelError(f"{path} is not a valid Paddle program: {exc}") from None
    if not desc.blocks or not desc.blocks[0].ops:
        raise CorruptModelError(f"{path} holds no Paddle program (no ops)")
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
    return PaddleProgram(inputs, outputs, ops, params)


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
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError) as exc:
        raise CorruptModelError(f"{path} is not a valid Paddle PIR program: {type(exc).__name__} {exc}") from None
    inputs, outputs, params = [], [], {}
    ops: Counter = Counter()

    def walk(block_list):
        for blk in block_list:
            for op in blk.get("ops", []) or []:
                kind = op.get("#", "")
                if kind == "p":
                    a = op.get("A") or []
                    name = a[3] if len(a) > 3 else f"param_{len(params)}"
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
    return PaddleProgram(inputs, outputs, ops, params)


_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4, "int16": 2,
             "int8": 1, "uint8": 1, "bool": 1}


def check_params_size(artifact: Artifact, program: PaddleProgram) -> None:
    """A truncated .pdiparams makes Paddle abort deep inside C++; catch it from the declared shapes first."""
    params = artifact.files.get("params")
    if params is None:
        return
    need = sum(int(np.prod(shape)) * _ITEMSIZE.get(dtype, 1)
               for shape, dtype in program.params.values() if all(d > 0 for d in shape))
    have = params.stat().st_size
    if have < need:
        raise CorruptModelError(f"{params} is truncated: {have:,} bytes, but the program's parameters need "
                                f"at least {need:,}")


def read_program(artifact: Artifact) -> PaddleProgram:
    prog = artifact.files["program"]
    program = read_pir(prog) if artifact.format is Format.PADDLE_PIR else read_legacy(prog)
    check_params_size(artifact, program)
    return program
