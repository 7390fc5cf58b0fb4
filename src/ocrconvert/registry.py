"""Converter registry: ``@register_converter(source, target, name=...)``, route planning, plugins.

Keys are coarse formats (``paddle``, ``onnx``, ``torch``, ``tensorrt``, ``torch-aot``). A converter
is a class with ``check(source, options) -> list[str]`` (every problem, before any work) and
``convert(source, dest, options) -> Artifact``. Third-party converters register from the
entry-point group ``ocrconvert.converters``; a plugin that fails to import is listed as broken.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from ._compat import available
from .errors import UnsupportedModelError, UsageError
from .formats import Artifact, Format

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "ocrconvert.converters"

# coarse node of the route graph for each concrete format
NODE_OF = {
    Format.PADDLE_LEGACY: "paddle", Format.PADDLE_PIR: "paddle", Format.ONNX: "onnx",
    Format.TORCH_GRAPH: "torch", Format.TORCH_NATIVE: "torch", Format.TORCH_AOT: "torch-aot",
    Format.TENSORRT: "tensorrt", Format.REFERENCE: "reference",
}


@dataclass(frozen=True)
class ConverterKey:
    source: str
    target: str
    name: str


@dataclass
class ConverterSpec:
    key: ConverterKey
    cls: type
    requires: tuple[str, ...] = ()
    description: str = ""
    plugin: str | None = None
    _missing: list[str] | None = field(default=None, repr=False)

    @property
    def missing(self) -> list[str]:
        if self._missing is None:
            self._missing = [m for m in self.requires if not available(m)]
        return self._missing

    @property
    def available(self) -> bool:
        return not self.missing

    def create(self):
        return self.cls()


_REGISTRY: dict[ConverterKey, ConverterSpec] = {}
_BROKEN_PLUGINS: dict[str, str] = {}
_loaded = False


def register_converter(source: str, target: str, name: str | None = None, *,
                       requires: tuple[str, ...] = (), description: str = ""):
    def deco(cls):
        key = ConverterKey(source, target, name or cls.__name__)
        if key in _REGISTRY:
            raise ValueError(f"converter {key} is already registered (by {_REGISTRY[key].cls.__module__})")
        _REGISTRY[key] = ConverterSpec(key, cls, tuple(requires), description or (cls.__doc__ or "").strip().split("\n")[0])
        cls.key = key
        return cls

    return deco


def _load_builtin_and_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import converters  # noqa: F401 - registers the built-in converters

    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the tool
            _BROKEN_PLUGINS[ep.name] = f"{type(exc).__name__}: {exc}"
            log.warning("converter plugin %s is broken: %s", ep.name, exc)


def converters() -> list[ConverterSpec]:
    _load_builtin_and_plugins()
    return sorted(_REGISTRY.values(), key=lambda s: (s.key.source, s.key.target, s.key.name))


def broken_plugins() -> dict[str, str]:
    _load_builtin_and_plugins()
    return dict(_BROKEN_PLUGINS)


def get(source: str, target: str, name: str) -> ConverterSpec:
    _load_builtin_and_plugins()
    try:
        return _REGISTRY[ConverterKey(source, target, name)]
    except KeyError:
        raise UsageError(f"no converter {source}->{target} named {name!r}",
                         hint="`ocrconvert routes` lists them.") from None


def plan_routes(source: str, target: str, *, prefer: str | None = None, max_hops: int = 3) -> list[list[ConverterSpec]]:
    """Every route from ``source`` to ``target`` of at most ``max_hops``, fewest hops first.

    ``prefer`` names a converter that must appear in the route. Routes through unavailable
    converters are kept (so errors can name the missing extra) but sorted last.
    """
    _load_builtin_and_plugins()
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
