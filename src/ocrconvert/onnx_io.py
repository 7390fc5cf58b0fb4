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


def _external_info(t) -> dict[str, str]:
    """A tensor's external-data entries (their text was checked by ``load_onnx``); a NUL names no file."""
    info = {e.key: e.value for e in t.external_data}
    if "\0" in info.get("location", ""):
        raise CorruptModelError(f"tensor {t.name!r} reads external data from a name with a NUL byte")
    return info


def _extent(t, info: dict[str, str], size: int) -> None:
    """``offset`` and ``length`` must be whole numbers that stay inside the data file (onnx trusts them)."""
    try:
        offset, length = int(info.get("offset") or 0), int(info.get("length") or size)
    except ValueError:
        raise CorruptModelError(f"tensor {t.name!r} has an external-data offset or length that is not a "
                                f"number: {info.get('offset')!r}, {info.get('length')!r}") from None
    if offset < 0 or length < 0 or offset + length > size:
        raise CorruptModelError(f"tensor {t.name!r} reads bytes {offset:,}..{offset + length:,} of "
                                f"{info.get('location')!r}, which holds {size:,}")


def not_text(msg) -> str | None:
    """The first string field that is not UTF-8 (protobuf hands those back as bytes, and every reader
    downstream expects str), by its protobuf name; None when all are text."""
    from google.protobuf.descriptor import FieldDescriptor
    from google.protobuf.message import Message

    for fd, value in msg.ListFields():
        if fd.type == FieldDescriptor.TYPE_STRING:
            if not all(isinstance(v, str) for v in ([value] if isinstance(value, (str, bytes)) else value)):
                return fd.full_name
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            for m in [value] if isinstance(value, Message) else value:
                if (where := not_text(m)):
                    return where
    return None


def check_external_data(model, base_dir: Path) -> None:
    """Refuse external-data locations that leave the model's folder (absolute, '..', symlinks) and extents
    that leave their file."""
    base = base_dir.resolve()
    for t in _tensors_with_external_data(model):
        info = _external_info(t)
        loc = info.get("location", "")
        try:
            target = (base / loc).resolve()
            outside = os.path.isabs(loc) or not str(target).startswith(str(base) + os.sep)
            size = None if outside or not target.is_file() else target.stat().st_size
        except OSError as exc:  # a name too long for the file system, a link loop
            raise CorruptModelError(f"tensor {t.name!r} needs external data file {loc!r}, which cannot be read: "
                                    f"{exc.strerror or type(exc).__name__}") from None
        if outside:
            raise UnsupportedModelError(
                f"tensor {t.name!r} reads external data from {loc!r}, outside the model folder {base}",
                hint="External data files must sit inside the model's own folder.",
            )
        if size is None:
            raise CorruptModelError(f"tensor {t.name!r} needs external data file {loc!r}, which is missing")
        _extent(t, info, size)


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
    if (where := not_text(model)):
        raise CorruptModelError(f"{path} is not a valid ONNX model: a {where} is not UTF-8 text")
    check_external_data(model, path.parent)
    if load_weights:
        from onnx.external_data_helper import load_external_data_for_model

        if any(True for _ in _tensors_with_external_data(model)):
            try:
                load_external_data_for_model(model, str(path.parent))
            except (OSError, ValueError) as exc:
                raise CorruptModelError(f"{path}: its external data cannot be read: {exc}") from None
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
