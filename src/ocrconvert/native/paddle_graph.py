"""Read a Paddle inference program (legacy ``inference.pdmodel`` or PIR ``inference.json``) into a
small, framework-independent op list plus the parameter tensors.

Legacy programs are translated to PIR by Paddle itself (``paddle.pir.translate_to_pir``), so the rest of
the native route sees one op vocabulary (``pd_op.*``) for both formats.  Paddle is only needed here, i.e.
at conversion / verification time; loading a converted folder never imports paddle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_SKIP_ATTRS = {"stop_gradient", "op_callstack", "persistable", "is_persistable", "place", "struct_name"}


@dataclass
class Op:
    index: int
    type: str  # e.g. "conv2d", "batch_norm_", "matmul" (without the "pd_op." prefix)
    inputs: list[str | None]  # value ids ("v12"), parameter references ("p:<name>") or None for absent optional inputs
    outputs: list[str | None]
    attrs: dict[str, Any]
    in_shapes: list[list[int] | None] = field(default_factory=list)
    out_shapes: list[list[int] | None] = field(default_factory=list)


@dataclass
class PaddleProgram:
    model_dir: Path
    format: str  # "pir" or "legacy"
    ops: list[Op]
    params: dict[str, np.ndarray]
    feed_shapes: list[list[int]]
    fetch_values: list[str]
    yml: dict | None = None

    # ---- helpers -----------------------------------------------------------------------------------------
    def consumers(self) -> dict[str, list[Op]]:
        out: dict[str, list[Op]] = {}
        for op in self.ops:
            for v in op.inputs:
                if v is not None:
                    out.setdefault(v, []).append(op)
        return out

    def producers(self) -> dict[str, Op]:
        out: dict[str, Op] = {}
        for op in self.ops:
            for v in op.outputs:
                if v is not None:
                    out[v] = op
        return out


def program_files(model_dir: Path) -> tuple[str, Path, Path] | None:
    model_dir = Path(model_dir)
    params = model_dir / "inference.pdiparams"
    if not params.is_file():
        return None
    if (model_dir / "inference.json").is_file():
        return "pir", model_dir / "inference.json", params
    if (model_dir / "inference.pdmodel").is_file():
        return "legacy", model_dir / "inference.pdmodel", params
    return None


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


def load_program(model_dir: Path) -> PaddleProgram:
    """Load the program + parameters with Paddle's own loaders (no execution)."""
    files = program_files(model_dir)
    if files is None:
        raise FileNotFoundError(f"no Paddle inference program (inference.json/.pdmodel + .pdiparams) in {model_dir}")
    fmt, _, _ = files
    os.environ.setdefault("GLOG_minloglevel", "2")
    import paddle  # noqa: PLC0415 - optional heavy dependency

    paddle.enable_static()
    prefix = str(Path(model_dir) / "inference")
    exe = paddle.static.Executor(paddle.CPUPlace())
    scope = paddle.static.Scope()
    if fmt == "pir":
        with paddle.pir_utils.IrGuard():
            with paddle.static.scope_guard(scope):
                prog, _feeds, _fetches = paddle.static.load_inference_model(prefix, exe)
            pir_prog = prog
            ops, params, feed_shapes, fetch_values = _walk_pir(pir_prog, scope)
    else:
        with paddle.pir_utils.OldIrGuard():
            with paddle.static.scope_guard(scope):
                prog, _feeds, _fetches = paddle.static.load_inference_model(prefix, exe)
            pir_prog = paddle.pir.translate_to_pir(prog.desc)
        ops, params, feed_shapes, fetch_values = _walk_pir(pir_prog, scope)
    yml = None
    yml_path = Path(model_dir) / "inference.yml"
    if yml_path.is_file():
        try:
            import yaml  # noqa: PLC0415

            yml = yaml.safe_load(yml_path.read_text(encoding="utf-8"))
        except Exception:  # noqa: BLE001 - yml is optional metadata
            yml = None
    return PaddleProgram(Path(model_dir), fmt, ops, params, feed_shapes, fetch_values, yml)


def _walk_pir(prog, scope):
    ids: dict[str, str] = {}

    def vid(v) -> str | None:
        if v is None or not v.initialized():
            return None
        k = v.id
        if k not in ids:
            ids[k] = f"v{len(ids)}"
        return ids[k]

    ops: list[Op] = []
    params: dict[str, np.ndarray] = {}
    param_of: dict[str, str] = {}
    feed_shapes: list[list[int]] = []
    fetch_values: list[str] = []
    for op in prog.global_block().ops:
        name = op.name()
        if name == "builtin.parameter":
            pname = op.attrs()["parameter_name"]
            param_of[vid(op.results()[0])] = pname
            var = scope.find_var(pname)
            if var is None:
                raise RuntimeError(f"parameter {pname} not found in the loaded scope")
            params[pname] = np.array(var.get_tensor())
            continue
        inputs, in_shapes = [], []
        for v in op.operands_source():
            i = vid(v)
            if i is not None and i in param_of:
                i = "p:" + param_of[i]
            inputs.append(i)
            in_shapes.append(_shape(v) if v is not None and v.initialized() else None)
        outputs = [vid(v) for v in op.results()]
        out_shapes = [_shape(v) if v.initialized() else None for v in op.results()]
        attrs = {k: _clean_attr(v) for k, v in op.attrs().items() if k not in _SKIP_ATTRS}
        short = name.split(".", 1)[1] if "." in name else name
        if name == "pd_op.feed" or name == "pd_op.data":
            feed_shapes.append(out_shapes[0])
        if name == "pd_op.fetch":
            fetch_values.append(inputs[0])
        ops.append(Op(len(ops), short, inputs, outputs, attrs, in_shapes, out_shapes))
    return ops, params, feed_shapes, fetch_values


def run_paddle_inference(model_dir: Path, x: np.ndarray) -> np.ndarray:
    """Reference output from ``paddle.inference`` on CPU, fp32, IR optimisation and oneDNN off."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    import paddle.inference as pinf  # noqa: PLC0415

    fmt, prog_file, params_file = program_files(model_dir)
    cfg = pinf.Config(str(prog_file), str(params_file))
    cfg.disable_gpu()
    cfg.switch_ir_optim(False)
    cfg.disable_mkldnn()
    cfg.disable_glog_info()
    cfg.set_cpu_math_library_num_threads(2)
    pred = pinf.create_predictor(cfg)
    name = pred.get_input_names()[0]
    h = pred.get_input_handle(name)
    h.reshape(list(x.shape))
    h.copy_from_cpu(np.ascontiguousarray(x, dtype=np.float32))
    pred.run()
    return pred.get_output_handle(pred.get_output_names()[0]).copy_to_cpu()
