from __future__ import annotations

import os
import warnings
from functools import cached_property

import numpy as np

from .._compat import require
from ..errors import ConversionError, CorruptModelError
from ..paddle_program import read_program
from .base import Runner, default_threads

class PaddleRunner(Runner):
    """Paddle Inference on CPU, IR passes and oneDNN off so results are the program's own. ``mkldnn=True``: IR passes
    and oneDNN on, the configuration a deployment would pick for speed (``bench`` reports it beside the reference)."""

    backend = "paddle"

    def __init__(self, artifact, threads: int | None = None, mkldnn: bool = False):
        super().__init__(artifact)
        self.threads = threads or default_threads()
        self.mkldnn = mkldnn

    @cached_property
    def program(self):
        return read_program(self.artifact)

    @cached_property
    def inputs(self):
        return self.program.inputs

    @cached_property
    def outputs(self):
        return self.program.outputs

    def _load(self):
        self.program  # the reader's checks come first: Paddle aborts inside C++ on some damaged files
        os.environ.setdefault("GLOG_minloglevel", "2")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pi = require("paddle.inference", "running Paddle inference")
        files = self.artifact.files
        cfg = pi.Config(str(files["program"]), str(files["params"]))
        cfg.disable_gpu()
        if self.mkldnn:
            cfg.enable_mkldnn()
            cfg.switch_ir_optim(True)
        else:
            cfg.disable_mkldnn()
            cfg.switch_ir_optim(False)
        cfg.disable_glog_info()
        cfg.set_cpu_math_library_num_threads(self.threads)
        try:
            return pi.create_predictor(cfg)
        except (RuntimeError, ValueError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CorruptModelError(f"Paddle could not load {self.artifact.path}: {first}") from None

    def _infer(self, feed):
        pred = self.session
        for name in pred.get_input_names():
            pred.get_input_handle(name).copy_from_cpu(feed[name])
        try:
            pred.run()
        except (RuntimeError, ValueError) as exc:
            raise ConversionError(f"Paddle inference failed: {str(exc).strip().splitlines()[0]}") from None
        return [pred.get_output_handle(n).copy_to_cpu() for n in pred.get_output_names()]

    # -- intermediate outputs (for ``ocrconvert diff``) -------------------------------------------------
    _SIDE_SLOTS = {"SavedMean", "SavedVariance", "MeanOut", "VarianceOut", "ReserveSpace", "XShape"}

    @cached_property
    def _static(self):
        """(executor, program, scope, feed names, [(key, op type, fetch target)], legacy?) of the program loaded for the static
        executor, which fetches any variable (Paddle Inference returns only the declared outputs). Keys: a
        legacy program's variable names; in a PIR program, which names no values, ``pd_op.<type>.<k>.<i>``
        (the k-th op of that type, result i), the names paddle2onnx gives their ONNX tensors (after ``p2o.``)."""
        os.environ.setdefault("GLOG_minloglevel", "2")
        paddle = require("paddle", "running Paddle programs")
        self.program  # the reader's checks first
        prefix = str(self.artifact.files["program"].with_suffix(""))
        legacy = self.artifact.files["program"].suffix == ".pdmodel"
        was_dynamic = paddle.in_dynamic_mode()
        paddle.enable_static()
        try:
            with _ir_guard(legacy):
                scope = paddle.static.Scope()
                with paddle.static.scope_guard(scope):
                    exe = paddle.static.Executor(paddle.CPUPlace())
                    prog, feeds, _ = paddle.static.load_inference_model(prefix, exe)
                    if legacy:
                        values = _legacy_values(prog, self._SIDE_SLOTS)
                        outputs = [n for op in prog.global_block().ops if op.type == "fetch" for n in op.input_arg_names]
                    else:
                        values, outputs = _pir_values(prog)
        finally:
            if was_dynamic:
                paddle.disable_static()
        self._output_keys = outputs
        return exe, prog, scope, feeds, values, legacy

    def output_keys(self) -> list[str]:
        """The keys of the declared outputs, in order."""
        self._static
        return list(self._output_keys)

    def layer_values(self) -> list[tuple[str, str]]:
        """(key, op type) of every op output computed from the inputs, in program order."""
        return [(k, t) for k, t, _ in self._static[4]]

    @cached_property
    def aliases(self) -> dict[str, str]:
        """A legacy program's variable -> the key of the same value in its PIR translation (which paddle2onnx 2.x
        converts, naming tensors ``p2o.<key>``). The translation keeps the ops computed from the input one for
        one and in order (it only adds parameter reshapes and constants): paired in order, each pair's op type
        checked; empty for a PIR program, or when the two lists do not pair up."""
        paddle = require("paddle", "running Paddle programs")
        exe, prog, scope, feeds, values, legacy = self._static
        if not legacy:
            return {}
        translated, _ = _pir_values(paddle.pir.translate_to_pir(prog.desc))
        ops = _legacy_main_outputs(prog, self._SIDE_SLOTS)
        if len(ops) != len(translated):
            return {}
        out = {}
        for (name, ltype), (key, ptype, _) in zip(ops, translated):
            if _same_op(ltype, ptype):
                out[name] = key
        return out

    def layer_outputs(self, feed, keys: list[str] | None = None) -> dict:
        """``{key: array}`` of the program's intermediate values (all of them, or ``keys``), in program order."""
        paddle = require("paddle", "running Paddle programs")
        exe, prog, scope, feeds, values, legacy = self._static
        wanted = [v for v in values if keys is None or v[0] in set(keys)]
        was_dynamic = paddle.in_dynamic_mode()
        paddle.enable_static()
        try:
            with _ir_guard(legacy), paddle.static.scope_guard(scope):
                outs = exe.run(prog, feed={n: feed[n] for n in feeds}, fetch_list=[v[2] for v in wanted])
        except (RuntimeError, ValueError) as exc:
            raise ConversionError(f"Paddle static run failed: {str(exc).strip().splitlines()[0]}") from None
        finally:
            if was_dynamic:
                paddle.disable_static()
        return {k: np.asarray(o) for (k, _, _), o in zip(wanted, outs)}


def _ir_guard(legacy: bool):
    paddle = require("paddle", "running Paddle programs")
    return paddle.pir_utils.OldIrGuard() if legacy else paddle.pir_utils.IrGuard()


def _ops_from_input(blk):
    """The legacy block's ops computed from the fed input, in program order (feed, fetch and ops that read only
    parameters or constants left out)."""
    derived = set()
    for op in blk.ops:
        if op.type == "feed":
            derived.update(op.output_arg_names)
            continue
        if op.type == "fetch" or not derived.intersection(op.input_arg_names):
            continue
        derived.update(op.output_arg_names)
        yield op


def _legacy_values(prog, side_slots) -> list:
    blk = prog.global_block()
    values = []
    for op in _ops_from_input(blk):
        for slot in op.output_names:
            if slot in side_slots:
                continue
            for name in op.output(slot):
                var = blk._find_var_recursive(name)
                if var is not None and not var.persistable:
                    values.append((name, op.type, name))
    return values


_LEGACY_TO_PIR = {"elementwise_add": "add", "elementwise_mul": "multiply", "elementwise_sub": "subtract",
                  "elementwise_div": "divide", "hard_swish": "hardswish", "hard_sigmoid": "hardsigmoid",
                  "nearest_interp_v2": "nearest_interp", "bilinear_interp_v2": "bilinear_interp",
                  "batch_norm": "batch_norm_", "reshape2": "reshape", "transpose2": "transpose", "matmul_v2": "matmul",
                  "squeeze2": "squeeze", "unsqueeze2": "unsqueeze", "flatten_contiguous_range": "flatten",
                  "fill_constant": "full", "lookup_table_v2": "embedding", "swish": "swish"}


def _same_op(legacy: str, pir: str) -> bool:
    return _LEGACY_TO_PIR.get(legacy, legacy) == pir or pir.startswith(legacy) or legacy.startswith(pir)


def _legacy_main_outputs(prog, side_slots) -> list[tuple[str, str]]:
    """(first output, op type) of each legacy op computed from the input, in program order."""
    out = []
    for op in _ops_from_input(prog.global_block()):
        main = next((n for slot in op.output_names if slot not in side_slots for n in op.output(slot)), None)
        if main is not None:
            out.append((main, op.type))
    return out


def _pir_values(prog) -> list:
    from collections import Counter

    seen: Counter = Counter()
    derived, values = set(), []
    for op in prog.global_block().ops:
        name = op.name()
        k = seen[name]
        seen[name] += 1
        ins = [v for v in op.operands_source() if v is not None and v.initialized()]
        if name in ("pd_op.feed", "pd_op.data"):
            derived.add(op.results()[0].id)
            continue
        if not any(v.id in derived for v in ins):
            continue
        derived.update(r.id for r in op.results() if r.initialized())
        if name.startswith("builtin.") or name == "pd_op.fetch":
            continue
        first = op.results()[0] if op.results() else None
        if first is not None and first.initialized() and first.is_dense_tensor_type():
            values.append((f"{name}.{k}.0", name.split(".", 1)[-1], first))
    key_of = {v.id: key for key, _, v in values}
    outputs = []
    for op in list(prog.global_block().ops):  # its fetch columns would clash with the ones the executor adds
        if op.name() == "pd_op.fetch":
            src = op.operands_source()[0]
            if src is not None and src.id in key_of:
                outputs.append(key_of[src.id])
            prog.global_block().remove_op(op)
    return values, outputs
