from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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


@dataclass
class TaskResult:
    name: str
    value: float
    threshold: float
    passed: bool
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"metric": self.name, "value": self.value, "threshold": self.threshold,
                "passed": self.passed, **({"detail": self.detail} if self.detail else {})}


class Family:
    """Base family: random inputs only, numeric comparison only."""

    name = "generic"
    task = "generic"
    # preferred sizes for dynamic dims, per verification case: (batch, height, width)
    random_shapes: tuple[tuple[int, int, int], ...] = ((1, 224, 224), (2, 160, 256))
    image_layout = "nchw"

    def __init__(self, info: ModelInfo):
        self.info = info

    # ---- inputs -----------------------------------------------------------------------
    def concrete_shape(self, spec: TensorSpec, batch: int, height: int, width: int) -> tuple[int, ...]:
        dims = list(spec.shape)
        wanted = {0: batch}
        if len(dims) == 4:
            wanted.update({2: height, 3: width})
        elif len(dims) == 3:
            wanted.update({1: height, 2: width})
        out = []
        for i, d in enumerate(dims):
            if isinstance(d, int) and d > 0:
                out.append(d)
            else:
                out.append(wanted.get(i, 1))
        return tuple(out)

    def random_feeds(self, seed: int = 0) -> list[tuple[str, dict[str, np.ndarray]]]:
        rng = np.random.default_rng(seed)
        feeds = []
        for b, h, w in self.random_shapes:
            feed = {}
            for spec in self.info.inputs:
                shape = self.concrete_shape(spec, b, h, w)
                if spec.dtype.startswith("float"):
                    arr = rng.uniform(-1.0, 1.0, size=shape).astype(spec.dtype)
                elif spec.dtype.startswith("int"):
                    arr = rng.integers(0, 2, size=shape).astype(spec.dtype)
                else:
                    arr = rng.integers(0, 2, size=shape).astype(bool)
                feed[spec.name] = arr
            label = "x".join(str(s) for s in self.concrete_shape(self.info.inputs[0], b, h, w))
            feeds.append((f"random {label}", feed))
        return feeds

    def synthetic_images(self):
        """Rendered images with known content for this task (list of PIL images + labels)."""
        return []

    def image_feeds(self, images) -> list[tuple[str, dict[str, np.ndarray]]]:
        return []

    # ---- outputs ----------------------------------------------------------------------
    def task_metric(self, ref: dict[str, np.ndarray], out: dict[str, np.ndarray],
                    labels: list[str] | None = None) -> TaskResult | None:
        return None

    def primary_output(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        return outputs[self.info.outputs[0].name] if self.info.outputs else next(iter(outputs.values()))


class GenericFamily(Family):
    """Any model: seeded random inputs at two shapes, numeric comparison only."""
