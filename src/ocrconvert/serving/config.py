"""Triton ``config.pbtxt``: written from our tensor specs, checked against Triton's own model-configuration schema.

The schema is ``model_config.proto`` as ``tritonclient`` ships it (``tritonclient.grpc.model_config_pb2``); a config
is parsed with ``google.protobuf.text_format`` (an unknown field, a wrong type or a bad enum fails there), then held
to the rules the server applies when it loads a model (name = folder, a backend or platform, typed inputs and
outputs with valid dims, batching only with ``max_batch_size`` > 0, distinct tensor names).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .._compat import require
from ..errors import UsageError

# numpy dtype names (TensorSpec.dtype) -> Triton's DataType enum names
TRITON_DTYPE = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64", "int64": "TYPE_INT64",
                "int32": "TYPE_INT32", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL",
                "bytes": "TYPE_STRING"}
BACKENDS = {"onnxruntime": ("backend", "onnxruntime"), "tensorrt": ("platform", "tensorrt_plan"),
            "python": ("backend", "python")}


class InvalidConfigError(UsageError):
    default_hint = "Write the repository again with `ocrconvert triton-repo`; a hand-edited config.pbtxt must follow Triton's model_config.proto."


@dataclass(frozen=True)
class TensorConfig:
    """One input or output: its name, Triton data type (``TYPE_FP32``) and dims WITHOUT the batch dim when the
    model batches (``-1``: any size)."""
    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass
class ModelConfig:
    """What ``to_pbtxt`` writes: one model of the repository."""
    name: str
    backend: str                      # onnxruntime | tensorrt | python (our names; tensorrt -> platform tensorrt_plan)
    inputs: list[TensorConfig]
    outputs: list[TensorConfig]
    max_batch_size: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    instances: int = 1
    default_model_filename: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)

    def to_pbtxt(self) -> str:
        key, value = BACKENDS[self.backend]
        lines = [f'name: "{self.name}"', f'{key}: "{value}"', f"max_batch_size: {self.max_batch_size}"]
        if self.default_model_filename:
            lines.append(f'default_model_filename: "{self.default_model_filename}"')
        for kind, tensors in (("input", self.inputs), ("output", self.outputs)):
            for t in tensors:
                lines.append(f'{kind} {{ name: "{_escape(t.name)}" data_type: {t.data_type} '
                             f"dims: [ {', '.join(str(d) for d in t.dims)} ] }}")
        if self.max_batch_size > 0:
            pref = "".join(f" preferred_batch_size: {b}" for b in self.preferred_batch_sizes if b <= self.max_batch_size)
            lines.append(f"dynamic_batching {{{pref} max_queue_delay_microseconds: {self.max_queue_delay_us} }}")
        lines.append(f"instance_group [ {{ kind: KIND_CPU count: {self.instances} }} ]")
        for k, v in sorted(self.parameters.items()):
            lines.append(f'parameters {{ key: "{_escape(k)}" value {{ string_value: "{_escape(v)}" }} }}')
        return "\n".join(lines) + "\n"


def _escape(s: str) -> str:
    return str(s).replace("\\", "\\\\").replace('"', '\\"')


def parse_config(text: str, where: str = "config.pbtxt"):
    """``text`` as Triton's ``ModelConfig`` protobuf; a syntax or schema error is an :class:`InvalidConfigError`."""
    pb = require("tritonclient.grpc.model_config_pb2", "the Triton model-configuration schema")
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, pb.ModelConfig())
    except text_format.ParseError as exc:
        raise InvalidConfigError(f"{where} does not follow Triton's model configuration schema: {exc}") from None


def validate_config(path, *, folder_name: str | None = None):
    """Parse ``path`` (a ``config.pbtxt``) against the schema and the load-time rules; returns the protobuf.

    ``folder_name`` (default: the config's folder) must equal the config's ``name``, as Triton requires."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    cfg = parse_config(text, str(path))
    problems = config_problems(cfg, folder_name if folder_name is not None else path.parent.name)
    if problems:
        raise InvalidConfigError(f"{path}: {'; '.join(problems)}")
    return cfg


def config_problems(cfg, folder_name: str) -> list[str]:
    """Every load-time rule ``cfg`` breaks (empty: none)."""
    pb = require("tritonclient.grpc.model_config_pb2", "the Triton model-configuration schema")
    problems = []
    if cfg.name != folder_name:
        problems.append(f"name {cfg.name!r} is not its folder's name {folder_name!r}")
    if not (cfg.backend or cfg.platform):
        problems.append("neither a backend nor a platform is set")
    if cfg.platform and cfg.platform not in ("tensorrt_plan", "onnxruntime_onnx", "pytorch_libtorch", "ensemble"):
        problems.append(f"unknown platform {cfg.platform!r}")
    if cfg.max_batch_size < 0:
        problems.append(f"max_batch_size {cfg.max_batch_size} is negative")
    if cfg.HasField("dynamic_batching") and cfg.max_batch_size == 0:
        problems.append("dynamic_batching needs max_batch_size > 0")
    for b in cfg.dynamic_batching.preferred_batch_size:
        if b < 1 or b > cfg.max_batch_size:
            problems.append(f"preferred_batch_size {b} is outside 1..max_batch_size ({cfg.max_batch_size})")
    if cfg.platform != "ensemble":
        if not cfg.input:
            problems.append("no inputs")
        if not cfg.output:
            problems.append("no outputs")
    names: set[str] = set()
    for kind, tensors in (("input", cfg.input), ("output", cfg.output)):
        for t in tensors:
            if not t.name:
                problems.append(f"an {kind} has no name")
            if (kind, t.name) in names:
                problems.append(f"{kind} {t.name!r} is declared twice")
            names.add((kind, t.name))
            if t.data_type == pb.TYPE_INVALID:
                problems.append(f"{kind} {t.name!r} has no data_type")
            if not t.dims and not t.HasField("reshape"):
                problems.append(f"{kind} {t.name!r} has no dims")
            bad = [d for d in t.dims if d == 0 or d < -1]
            if bad:
                problems.append(f"{kind} {t.name!r} has invalid dims {list(t.dims)} (a size > 0, or -1 for any)")
    for group in cfg.instance_group:
        if group.count < 0:
            problems.append(f"instance_group count {group.count} is negative")
    return problems


def validate_repository(repo) -> dict[str, object]:
    """Every model folder of a repository validated: ``{model name: ModelConfig protobuf}``."""
    repo = Path(repo)
    found = {}
    for cfg_path in sorted(repo.glob("*/config.pbtxt")):
        found[cfg_path.parent.name] = validate_config(cfg_path)
    if not found:
        raise InvalidConfigError(f"{repo} holds no model folder with a config.pbtxt")
    return found
