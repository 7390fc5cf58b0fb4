"""Built-in converters, one module per route; importing this package registers them.

``load_plugins()`` adds third-party converters from the entry-point group ``ocrconvert.converters``;
a plugin that fails to import is recorded as broken and never breaks the tool.
"""
import logging

from .. import registry
from . import onnx_torch, onnx_trt, paddle_onnx, paddle_torch, torch_aot, torch_onnx  # noqa: F401
from . import onnx_native  # noqa: F401 - after paddle_torch, whose options record it shares
from . import vlm_aot, vlm_onnx  # noqa: F401

log = logging.getLogger(__name__)
_plugins_loaded = False


def load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=registry.ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the tool
            registry.mark_broken(ep.name, f"{type(exc).__name__}: {exc}")
            log.warning("converter plugin %s is broken: %s", ep.name, exc)
