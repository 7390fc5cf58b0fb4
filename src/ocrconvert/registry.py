"""The converter contract and its registry: ``@register_converter(source, target, name, options=...)``.

Keys are coarse formats (``paddle``, ``onnx``, ``torch``, ``torch-aot``, ``tensorrt``, ``tensorrt-plan``,
``vlm``). A converter is a class with ``check(source, options) -> list[str]`` (every problem, before any
work) and ``convert(source, dest, options) -> HopResult``; ``options`` is an instance of the record the
route declared here. The registry imports no converter: ``ocrconvert.converters`` registers the built-in
ones and the plugins (entry-point group ``ocrconvert.converters``) when the spine asks for them.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from ._compat import available
from .errors import UnsupportedModelError, UsageError
from .formats import Artifact, Format
from .options import NoOptions, Precision, RouteOptions

ENTRY_POINT_GROUP = "ocrconvert.converters"

# coarse node of the route graph for each concrete format
NODE_OF = {
    Format.PADDLE_LEGACY: "paddle", Format.PADDLE_PIR: "paddle", Format.ONNX: "onnx",
    Format.TORCH_GRAPH: "torch", Format.TORCH_NATIVE: "torch", Format.TORCH_AOT: "torch-aot",
    Format.TENSORRT: "tensorrt", Format.REFERENCE: "reference", Format.VLM_TOWER: "vlm",
}
# targets that are one file (OUTPUT itself, or OUTPUT/model<ext> when OUTPUT is a folder)
FILE_TARGETS = {"onnx": ".onnx", "tensorrt": ".engine", "torch-aot": ".pt2"}


@dataclass
class VerificationPolicy:
    """How the spine must judge what a hop produced.

    ``precision`` picks the tolerances; how each case is judged at that precision (INT8 random cases as loose
    gates, weight checks) is the model family's policy, the same for every route and for ``ocrconvert verify``;
    ``verifier``, when set, replaces the generic artifact-vs-source comparison (a VLM tower is compared with
    its transformers module); ``min_metric`` raises the task metric's threshold."""
    precision: Precision = Precision.FP32
    verifier: Callable[..., Any] | None = None
    # the task metric the output's image cases must reach where the hop asks more than the family's threshold for
    # the precision (a precision-plan build is judged at the plan's gate)
    min_metric: float | None = None


@dataclass
class HopContext:
    """What the spine will judge a hop's output against, given to the hop before it runs: a hop that searches
    against the ORIGINAL (``--plan auto``) judges its candidates on the same reference and inputs."""
    reference: Artifact
    images: Any = None
    seed: int = 0
    family: str | None = None


@dataclass
class HopResult:
    """What one hop produced: the artifact, the facts it established (opset, precision, dynamic axes,
    name maps, fixes, mapping report), the top-level manifest blocks only it knows (``engine``, ``aot``,
    ``model_metadata``, ``tensorrt_plan``), and the verification policy its output needs."""
    artifact: Artifact
    facts: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    policy: VerificationPolicy = field(default_factory=VerificationPolicy)


class Converter:
    """Base of every converter (built-in or plugin); ``options_type`` is set by ``register_converter``."""
    key: "ConverterKey"
    options_type: type[RouteOptions] = NoOptions
    tool: str = ""
    context: HopContext | None = None   # set by the spine before convert()
    # deterministic, one file out, default policy: within a batch the spine may reuse its output for the same input
    # bytes, options and versions (pipeline._run_hop) instead of running it again
    reusable: bool = False

    def preflight(self, options: RouteOptions) -> list[str]:
        """What this machine lacks for these options (a GPU, a runtime), asked of every hop before any
        hop runs; each problem is a usage error (exit 2)."""
        return []

    def check(self, source: Artifact, options: RouteOptions) -> list[str]:
        return []

    def convert(self, source: Artifact, dest, options: RouteOptions) -> HopResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def versions(self) -> dict:
        return {}


@dataclass(frozen=True)
class ConverterKey:
    source: str
    target: str
    name: str


@dataclass
class ConverterSpec:
    key: ConverterKey
    cls: type
    options_type: type[RouteOptions] = NoOptions
    requires: tuple[str, ...] = ()
    description: str = ""
    _missing: list[str] | None = field(default=None, repr=False)

    @property
    def missing(self) -> list[str]:
        if self._missing is None:
            self._missing = [m for m in self.requires if not available(m)]
        return self._missing

    @property
    def available(self) -> bool:
        return not self.missing

    def create(self) -> Converter:
        return self.cls()

    def parse_options(self, data: dict | None, where: str | None = None) -> RouteOptions:
        return self.options_type.from_mapping(data, where=where or f"{self.key.name} options")


_REGISTRY: dict[ConverterKey, ConverterSpec] = {}
_BROKEN_PLUGINS: dict[str, str] = {}


def register_converter(source: str, target: str, name: str | None = None, *, options: type[RouteOptions] = NoOptions,
                       requires: tuple[str, ...] = (), description: str = ""):
    def deco(cls):
        key = ConverterKey(source, target, name or cls.__name__)
        if key in _REGISTRY:
            raise ValueError(f"converter {key} is already registered (by {_REGISTRY[key].cls.__module__})")
        _REGISTRY[key] = ConverterSpec(key, cls, options, tuple(requires),
                                       description or (cls.__doc__ or "").strip().split("\n")[0])
        cls.key = key
        cls.options_type = options
        return cls

    return deco


def mark_broken(plugin: str, why: str) -> None:
    _BROKEN_PLUGINS[plugin] = why


def converters() -> list[ConverterSpec]:
    return sorted(_REGISTRY.values(), key=lambda s: (s.key.source, s.key.target, s.key.name))


def broken_plugins() -> dict[str, str]:
    return dict(_BROKEN_PLUGINS)


def get(name: str) -> ConverterSpec:
    """The converter registered under ``name`` (route names are unique across sources and targets)."""
    hits = [s for s in _REGISTRY.values() if s.key.name == name]
    if not hits:
        raise UsageError(f"no converter named {name!r}", hint="`ocrconvert routes` lists them.")
    return hits[0]


def plan_routes(source: str, target: str, *, prefer: str | None = None, max_hops: int = 3) -> list[list[ConverterSpec]]:
    """Every route from ``source`` to ``target`` of at most ``max_hops``, fewest hops first.

    ``prefer`` names a converter that must appear in the route. Routes through unavailable
    converters are kept (so errors can name the missing extra) but sorted last.
    """
    if source == target:
        return []
    routes, queue = [], deque([(source, [])])
    while queue:
        node, path = queue.popleft()
        if len(path) >= max_hops:
            continue
        for spec in converters():
            if spec.key.source != node or any(s.key.target == spec.key.target for s in path) or spec.key.target == source:
                continue
            new = path + [spec]
            if spec.key.target == target:
                routes.append(new)
            else:
                queue.append((spec.key.target, new))
    if prefer:
        routes = [r for r in routes if any(s.key.name == prefer for s in r)]
    return sorted(routes, key=lambda r: (not all(s.available for s in r), len(r)))


def plan(source: Artifact, target: str, *, prefer: str | None = None) -> list[list[ConverterSpec]]:
    node = NODE_OF[source.format]
    routes = plan_routes(node, target, prefer=prefer)
    if not routes:
        extra = f" through {prefer!r}" if prefer else ""
        raise UnsupportedModelError(f"no route from {source.format.value} to {target}{extra}",
                                    hint="`ocrconvert routes` lists the available converters.")
    return routes
