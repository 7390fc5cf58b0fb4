"""What any model's inputs and outputs look like, whatever its format: the records every reader fills
(ONNX, Paddle programs, torch folders, engines) and every family reads."""
from __future__ import annotations

from dataclasses import dataclass, field

Dim = int | str | None  # int = fixed, str/None = dynamic
DTYPES = frozenset({"float32", "float16", "float64", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "uint16",
                    "uint32", "uint64", "bool"})


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

    @classmethod
    def from_dict(cls, d, *, dynamic_below: int | None = None) -> "TensorSpec":
        """``to_dict``'s output read back from a file (a manifest, a reference header); ValueError says what
        does not fit. Dims below ``dynamic_below`` (or not whole numbers) are dynamic (None)."""
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not isinstance(d.get("shape"), list):
            raise ValueError(f"a tensor should be an object with a name and a shape, not {str(d)[:80]}")
        if not all(isinstance(x, (int, str, type(None))) and not isinstance(x, bool) for x in d["shape"]):
            raise ValueError(f"tensor {d['name']!r}: its shape should hold whole numbers, names or nulls")
        dtype = d.get("dtype", "float32")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise ValueError(f"tensor {d['name']!r}: unknown dtype {str(dtype)[:40]!r}")
        low = dynamic_below
        dims = tuple(x if isinstance(x, int) and (low is None or x >= low) else None for x in d["shape"])
        return cls(d["name"], dims, dtype)


@dataclass
class ModelInfo:
    """What verification needs to know about a model, whatever its format."""
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    config: dict = field(default_factory=dict)      # parsed inference.yml (PaddleX layout), if any
    dictionary: list[str] | None = None             # recognition character list, if any
    metadata: dict = field(default_factory=dict)    # ONNX metadata_props etc.
