"""What any model's inputs and outputs look like, whatever its format: the records every reader fills
(ONNX, Paddle programs, torch folders, engines) and every family reads."""
from __future__ import annotations

from dataclasses import dataclass, field

Dim = int | str | None  # int = fixed, str/None = dynamic


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[Dim, ...]
    dtype: str = "float32"

    @property
    def dynamic_axes(self) -> list[int]:
        return [i for i, d in enumerate(self.shape) if not isinstance(d, int) or d < 0]

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": [d if isinstance(d, int) and d >= 0 else (d or "?") for d in self.shape],
                "dtype": self.dtype}


@dataclass
class ModelInfo:
    """What verification needs to know about a model, whatever its format."""
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    config: dict = field(default_factory=dict)      # parsed inference.yml (PaddleX layout), if any
    dictionary: list[str] | None = None             # recognition character list, if any
    metadata: dict = field(default_factory=dict)    # ONNX metadata_props etc.
