import pytest

from ocrconvert import converters, pipeline, registry
from ocrconvert.formats import Artifact, Format


def test_duplicate_key_raises():
    @registry.register_converter("unit-a", "unit-b", "dup-test")
    class A:
        pass

    with pytest.raises(ValueError, match="already registered"):
        @registry.register_converter("unit-a", "unit-b", "dup-test")
        class B:
            pass

    registry._REGISTRY.pop(registry.ConverterKey("unit-a", "unit-b", "dup-test"))


def test_paddle_to_torch_has_a_direct_native_route_and_a_two_hop_graph_route():
    routes = registry.plan_routes("paddle", "torch")
    names = [[s.key.name for s in r] for r in routes]
    assert ["paddle2onnx", "onnx2torch"] in names
    assert ["native"] in names
    native_ok = all(s.available for s in routes[names.index(["native"])])
    # the direct route comes first when it can run; routes that cannot run are sorted last
    assert (names.index(["native"]) < names.index(["paddle2onnx", "onnx2torch"])) == native_ok


def test_prefer_filters_routes_and_unknown_target_is_unsupported():
    graph = registry.plan_routes("paddle", "torch", prefer="onnx2torch")
    assert [[s.key.name for s in r] for r in graph] == [["paddle2onnx", "onnx2torch"]]
    from ocrconvert.errors import UnsupportedModelError

    art = Artifact(__import__("pathlib").Path("x.onnx"), Format.ONNX)
    with pytest.raises(UnsupportedModelError):
        registry.plan(art, "no-such-format")


def test_broken_plugin_is_reported_not_fatal(monkeypatch):
    class EP:
        name = "bad-plugin"

        def load(self):
            raise ImportError("No module named 'nowhere'")

    monkeypatch.setattr(converters, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "_BROKEN_PLUGINS", {})
    import importlib.metadata as md

    monkeypatch.setattr(md, "entry_points", lambda group=None: [EP()] if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    assert "bad-plugin" in pipeline.broken_plugins()
    assert "nowhere" in pipeline.broken_plugins()["bad-plugin"]
    assert any(s.key.name == "paddle2onnx" for s in pipeline.available_converters())  # the tool still works


def test_plugin_converter_registers_through_entry_point(monkeypatch):
    class Plugin:
        def check(self, source, options):
            return []

    class EP:
        name = "good-plugin"

        def load(self):
            registry.register_converter("onnx", "unit-target", "plugin-conv")(Plugin)

    monkeypatch.setattr(converters, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "_BROKEN_PLUGINS", {})
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    import importlib.metadata as md

    monkeypatch.setattr(md, "entry_points", lambda group=None: [EP()] if group == registry.ENTRY_POINT_GROUP else [])
    pipeline.available_converters()
    routes = registry.plan_routes("onnx", "unit-target")
    assert [[s.key.name for s in r] for r in routes] == [["plugin-conv"]]
