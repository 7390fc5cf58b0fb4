"""The registry of native architectures: one ``NativeArchitecture`` record per architecture.

A record says everything the native route needs about one architecture: how to recognise it in a
Paddle program (config + the layers its weights come from), how to build and fill the transformers-style
model, how to load the trainable form back from a saved folder and how to fuse it for inference. The
converter and the loaders only ask this registry; adding an architecture is adding a record
(``register(NativeArchitecture(...))`` in its module, and the module in ``_BUILTIN``).

The registry imports no architecture module itself: the built-in ones are imported on the first
question, so ``native.fused`` (used by the graph-route torch runner) never needs transformers.
"""
from __future__ import annotations

import importlib
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .errors import NativeMappingError
from .layers import LayerSequence, extract_records
from .mapping import MappingReport, WeightWriter

if TYPE_CHECKING:
    from torch import nn

    from ..paddle_program import PaddleProgram

log = logging.getLogger(__name__)

_BUILTIN = ("lcnetv3", "mobilenetv3_cls", "ppocrv6", "pp_lcnet")  # modules under ocrconvert.native that register records


def _unchanged(model: "nn.Module") -> None:
    return None


def _same(output):
    return output


@contextmanager
def quiet_transformers():
    """transformers' own progress bars ("Loading weights", "Writing model shards") off: the CLI renders."""
    from transformers.utils import logging as hf_logging  # noqa: PLC0415

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


@dataclass(frozen=True)
class NativeArchitecture:
    name: str  # registry key, e.g. "pp_ocrv5_mobile_rec"
    task: str  # "rec" | "det" | "cls"
    model_type: str  # config.json ``model_type`` of a saved folder
    output: str  # what ``forward`` returns, for the folder's report
    model_class: Callable[[], type]  # the PreTrainedModel class (a function: its import is heavy)
    parse: Callable[[LayerSequence], tuple[dict, Any]] | None  # Paddle records -> (config, layers); None: not
    write: Callable[[WeightWriter, "nn.Module", Any], None]  # layers' weights -> model tensors
    fuse: Callable[["nn.Module"], "nn.Module"]  # trainable form -> fused inference form
    configure: Callable[["nn.Module"], None] = _unchanged  # config values the model class does not apply
    parse_onnx: Callable[[LayerSequence], tuple[dict, Any]] | None = None  # ONNX records (``onnx_layers``)
    finish: Callable[[Any], Any] = _same  # the class's output tensor -> the source's output (e.g. softmax)

    def recognise(self, records: list, params: set[str], *, onnx: bool = False) -> "Recognised":
        """This architecture's config and layers in the program (or ONNX graph), or NativeMappingError saying
        why not."""
        parse = self.parse_onnx if onnx else self.parse
        if parse is None:
            raise NativeMappingError(f"not recognised from {'ONNX' if onnx else 'Paddle programs'}")
        seq = LayerSequence(records)
        try:
            config, layers = parse(seq)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise NativeMappingError(f"{type(exc).__name__}: {exc}") from None
        seq.expect_end(params)
        return Recognised(self, config, layers)

    def build(self, config: dict) -> "nn.Module":
        """A model of this config, weights not yet set."""
        cls = self.model_class()
        model = cls(cls.config_class(**{k: v for k, v in config.items() if k != "model_type"}))
        self.configure(model)
        return model.eval()

    def fill(self, model: "nn.Module", layers: Any, weights: dict) -> MappingReport:
        """Write the program's weights into ``model``; the report lists what was (not) mapped."""
        report = MappingReport(self.name, self.task)
        writer = WeightWriter(model, weights, report)
        self.write(writer, model, layers)
        writer.finish(set(weights))
        return report

    def load_trainable(self, folder: Path) -> "nn.Module":
        with quiet_transformers():
            model = self.model_class().from_pretrained(folder, use_safetensors=True)  # never a pickle
        self.configure(model)
        return model.eval()


@dataclass
class Recognised:
    architecture: NativeArchitecture
    config: dict  # transformers config kwargs (backbone as a nested dict)
    layers: Any  # the parsed layer records ``fill`` writes from

    @property
    def task(self) -> str:
        return self.architecture.task


_REGISTRY: dict[str, NativeArchitecture] = {}
_loaded = False


def register(arch: NativeArchitecture) -> NativeArchitecture:
    clash = next((a for a in _REGISTRY.values() if arch.name == a.name or arch.model_type == a.model_type), None)
    if clash is not None:
        raise ValueError(f"native architecture {arch.name} ({arch.model_type}) is already registered as {clash.name}")
    _REGISTRY[arch.name] = arch
    return arch


def architectures() -> list[NativeArchitecture]:
    global _loaded
    if not _loaded:
        from .._compat import require

        require("transformers", "the native PyTorch route")
        for module in _BUILTIN:
            importlib.import_module(f"{__package__}.{module}")
        _loaded = True
    return list(_REGISTRY.values())


def for_model_type(model_type: str | None) -> NativeArchitecture:
    for arch in architectures():
        if arch.model_type == model_type:
            return arch
    raise NativeMappingError(f"model_type {model_type!r} is no native architecture",
                             hint=f"Known: {', '.join(a.model_type for a in architectures())}.")


def recognise(program: "PaddleProgram") -> Recognised:
    """The architecture the program is (never judged from names), or NativeMappingError with each reason."""
    why: dict[str, str] = {}
    try:
        records = extract_records(program.graph())
    except (NativeMappingError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise NativeMappingError(f"{program.program_file}: no native architecture: {exc}") from None
    params = set(program.params)
    for arch in architectures():
        try:
            return arch.recognise(records, params)
        except NativeMappingError as exc:
            why[arch.name] = exc.message
    log.debug("no native architecture matched: %s", why)
    raise NativeMappingError(f"{program.program_file}: not a natively supported architecture: {why}",
                             hint="Use --route graph for the traced route.")


def recognise_onnx(layers) -> Recognised:
    """The architecture an ONNX graph (``onnx_layers.OnnxLayers``) is, judged from its layers and weight shapes
    (never from names), or NativeMappingError with each architecture's reason."""
    why: dict[str, str] = {}
    for arch in architectures():
        if arch.parse_onnx is None:
            continue
        try:
            return arch.recognise(layers.records, layers.params, onnx=True)
        except NativeMappingError as exc:
            why[arch.name] = exc.message
    log.debug("no native architecture matched: %s", why)
    raise NativeMappingError(f"{layers.path}: not a natively supported architecture: {why}",
                             hint="Use --route graph (onnx2torch) for the traced route.")
