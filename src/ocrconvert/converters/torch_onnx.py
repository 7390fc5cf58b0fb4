"""PyTorch artifact (graph or native) -> ONNX: dynamic axes kept, checker, optional onnxslim."""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Optional
import logging
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from .._compat import require, version_of
from ..errors import ConversionError, UsageError
from ..formats import Artifact, Format
from ..options import RouteOptions, check_opset
from ..registry import Converter, HopResult, register_converter
from .common import carry_metadata, example_inputs

log = logging.getLogger(__name__)


def dynamic_axes(specs) -> dict[str, dict[int, str]]:
    return {s.name: {i: f"{s.name}_d{i}" for i in s.dynamic_axes} for s in specs if s.dynamic_axes}


def _check_still_dynamic(specs, model) -> None:
    """Tracing turns data-dependent shapes (Reshape targets from ``.tolist()``) into constants; then
    onnxslim pins the I/O dims too. Refuse such an export rather than ship a fixed-shape model."""
    from ..onnx_io import graph_inputs

    got = {s.name: s for s in graph_inputs(model)}
    baked = [f"{s.name}[{i}]" for s in specs for i in s.dynamic_axes
             if s.name in got and isinstance(got[s.name].shape[i], int) and got[s.name].shape[i] > 0]
    if baked:
        raise ConversionError(
            f"the exported ONNX fixed dynamic dimension(s) {', '.join(baked)}: the PyTorch graph computes "
            "shapes from data, which tracing bakes into constants",
            hint="Export a native artifact (`paddle2torch --route native`) instead, or use the source ONNX.")


@dataclass(frozen=True)
class TorchToOnnxOptions(RouteOptions):
    opset: Optional[int] = None   # None: the exporter's own (18 for torch.export/dynamo, 17 for tracing)
    slim: bool = True

    def validate(self) -> None:
        if self.opset is not None:
            check_opset(self.opset, 9, 23, "torch.onnx")


DYNAMO_MIN_OPSET = 18  # torch.onnx's dynamo exporter writes opset 18 or higher
TRACE_DEFAULT_OPSET = 17


@register_converter("torch", "onnx", "torch2onnx", options=TorchToOnnxOptions, requires=("torch",),
                    description="torch.onnx.export with dynamic axes, checker, optional onnxslim")
class TorchToOnnx(Converter):
    tool = "torch.onnx"

    def convert(self, source: Artifact, dest: Path, options: TorchToOnnxOptions) -> HopResult:
        import onnx

        torch = require("torch")
        from ..runners import runner_for

        runner = runner_for(source)
        module = runner.session
        family, feed = example_inputs(runner)
        args = tuple(torch.from_numpy(feed[n]) for n in runner.input_names)
        opset = options.opset
        axes = dynamic_axes(runner.inputs)
        axes.update(dynamic_axes(runner.outputs))
        errors = []
        # native modules export cleanly through torch.export (dynamo); onnx2torch graphs only by tracing
        order = (True, False) if source.format is Format.TORCH_NATIVE else (False, True)
        if opset is not None and opset < DYNAMO_MIN_OPSET:  # only tracing can honour an older opset
            order = (False,)
        for dynamo in order:
            try:
                buf = io.StringIO()
                with redirect_stdout(buf), redirect_stderr(buf), torch.no_grad():
                    if dynamo:
                        dims = {n: {i: torch.export.Dim.AUTO for i in spec.dynamic_axes}
                                for n, spec in zip(runner.input_names, runner.inputs)}
                        torch.onnx.export(module, args, str(dest), input_names=runner.input_names,
                                          output_names=runner.output_names, opset_version=opset or DYNAMO_MIN_OPSET,
                                          dynamo=True, dynamic_shapes=tuple(dims.values()), external_data=False)
                    else:
                        torch.onnx.export(module, args, str(dest), input_names=runner.input_names,
                                          output_names=runner.output_names, opset_version=opset or TRACE_DEFAULT_OPSET,
                                          dynamic_axes=axes, dynamo=False)
                break
            except Exception as exc:  # noqa: BLE001 - the exporters raise many types
                errors.append(f"{'dynamo' if dynamo else 'torchscript'}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                log.debug("export attempt failed", exc_info=True)
        else:
            raise ConversionError("torch.onnx.export failed: " + " ; ".join(errors))
        model = onnx.load(str(dest))
        if options.slim:
            from .onnx_torch import slim

            model = slim(model)
        _check_still_dynamic(runner.inputs, model)
        carry_metadata(model, runner.info(), f"{source.format.value}:{source.path.name}")
        try:
            onnx.checker.check_model(model, full_check=True)
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"the exported ONNX fails the checker: {exc}") from None
        from ..onnx_io import opset as opset_of

        produced = opset_of(model)
        if opset is not None and produced != opset:  # the dynamo exporter writes >= 18; refuse rather than record a wish
            raise UsageError(f"--opset {opset} cannot be honoured: the exporter that worked wrote opset {produced}",
                             hint=f"Pass --opset {produced}.")
        onnx.save(model, str(dest))
        return HopResult(Artifact(dest, Format.ONNX, {"model": dest}),
                         facts={"opset": produced, "exporter": "dynamo" if dynamo else "torchscript",
                                "dynamic_axes": {k: sorted(v) for k, v in axes.items()}, "slimmed": options.slim})

    def versions(self) -> dict:
        return {"torch": version_of("torch"), "onnx": version_of("onnx"), "onnxslim": version_of("onnxslim")}
