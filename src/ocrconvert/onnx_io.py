"""Safe ONNX loading: corrupt-file detection, external data confined to the model's folder."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import CorruptModelError, UnsupportedModelError
from .specs import TensorSpec

_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
                10: "float16", 11: "float64", 16: "bfloat16"}


def _tensors_with_external_data(model):
    from onnx.external_data_helper import _get_all_tensors

    for t in _get_all_tensors(model):
        if t.data_location == 1:  # TensorProto.EXTERNAL
            yield t


def check_external_data(model, base_dir: Path) -> None:
    """Refuse external-data locations that leave the model's folder (absolute, '..', symlinks)."""
    base = base_dir.resolve()
    for t in _tensors_with_external_data(model):
        loc = next((e.value for e in t.external_data if e.key == "location"), "")
        target = (base / loc).resolve()
        if os.path.isabs(loc) or not str(target).startswith(str(base) + os.sep):
            raise UnsupportedModelError(
                f"tensor {t.name!r} reads external data from {loc!r}, outside the model folder {base}",
                hint="External data files must sit inside the model's own folder.",
            )
        if not target.is_file():
            raise CorruptModelError(f"tensor {t.name!r} needs external data file {loc!r}, which is missing")


def load_onnx(path: str | Path, *, load_weights: bool = True):
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError, UnicodeDecodeError) as exc:
        raise CorruptModelError(f"{path} is not a valid ONNX model: {type(exc).__name__}: {exc}") from None
    if not model.graph.node:
        raise CorruptModelError(f"{path} is not a valid ONNX model: the graph has no nodes")
    check_external_data(model, path.parent)
    if load_weights:
        from onnx.external_data_helper import load_external_data_for_model

        if any(True for _ in _tensors_with_external_data(model)):
            load_external_data_for_model(model, str(path.parent))
    return model


def value_specs(values, initializer_names=()) -> list[TensorSpec]:
    out = []
    for v in values:
        if v.name in initializer_names:
            continue
        tt = v.type.tensor_type
        dims = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None)
            for d in tt.shape.dim
        )
        out.append(TensorSpec(v.name, dims, _ONNX_DTYPES.get(tt.elem_type, "float32")))
    return out


def graph_inputs(model) -> list[TensorSpec]:
    inits = {i.name for i in model.graph.initializer}
    return value_specs(model.graph.input, inits)


def graph_outputs(model) -> list[TensorSpec]:
    return value_specs(model.graph.output)


def metadata(model) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
