"""Every name the fake TensorRT modules expose exists in the real compiled bindings of that version, as the same
kind of thing, with compatible parameters and the same enum values (``_trt_bindings.compare``).

The bindings come from PyPI (``tensorrt-cu12-bindings`` 10.16.1.11, ``tensorrt-cu13-bindings`` 11.4.0.106,
sha256-pinned, cached in $OCRCONVERT_CACHE/wheels) and are read in a child process with libnvinfer absent
(see _trt_bindings.py). Negative controls: an invented name, a renamed parameter, a property turned method,
a wrong enum value and the 10.x fake judged against 11.x are all caught.
"""
from __future__ import annotations

import os

import pytest

import _trt_bindings as bindings
import fake_tensorrt

pytestmark = pytest.mark.zoo


@pytest.fixture(scope="session")
def real_bindings(tmp_path_factory):
    """``real_bindings(major, paths)`` -> the real description of each dotted path (one child per major)."""
    why = bindings.unsupported_here()
    if why:
        required = {s.strip() for s in os.environ.get("OCRCONVERT_REQUIRE", "").split(",")}
        if "zoo" in required:
            pytest.fail(f"OCRCONVERT_REQUIRE demands 'zoo': {why}", pytrace=False)
        pytest.skip(why)
    roots, cache = {}, {}

    def get(major: int, paths: list[str]) -> dict:
        if major not in roots:
            roots[major] = bindings.loadable_copy(bindings.bindings_wheel(major), tmp_path_factory.mktemp(f"trt{major}"))
        missing = [p for p in paths if (major, p) not in cache]
        if missing:
            out = bindings.real_catalogue(roots[major], missing)
            assert out["version"] == bindings.WHEELS[major][1]
            for p, info in out["names"].items():
                cache[(major, p)] = info
        return {p: cache[(major, p)] for p in paths}

    return get


def check(mod, major, real_bindings) -> tuple[int, list[str]]:
    paths = bindings.fake_paths(mod)
    return len(paths), bindings.compare(mod, real_bindings(major, paths))


@pytest.mark.parametrize("major", [10, 11])
def test_fake_names_exist_in_the_real_bindings(major, real_bindings):
    mod = fake_tensorrt.make(major)
    assert fake_tensorrt.CHECKED_AGAINST[major][1] == bindings.WHEELS[major][1]
    checked, problems = check(mod, major, real_bindings)
    assert problems == []
    # what ocrconvert relies on is among the names checked (a fake cannot pass by exposing nothing)
    paths = set(bindings.fake_paths(mod))
    used = {"Builder.create_network", "Builder.build_serialized_network", "OnnxParser.parse_from_file",
            "OnnxParser.num_errors", "IBuilderConfig.set_timing_cache", "IBuilderConfig.add_optimization_profile",
            "IOptimizationProfile.set_shape", "BuilderFlag.TF32", "MemoryPoolType.WORKSPACE", "ILogger.log",
            "Runtime.deserialize_cuda_engine", "ICudaEngine.num_io_tensors", "ICudaEngine.get_tensor_name",
            "ICudaEngine.get_tensor_mode", "ICudaEngine.get_tensor_shape", "ICudaEngine.get_tensor_dtype",
            "ICudaEngine.get_tensor_profile_shape", "IExecutionContext.set_input_shape",
            "IExecutionContext.set_tensor_address", "IExecutionContext.execute_async_v3", "TensorIOMode.INPUT",
            "ITimingCache.serialize", "nptype", "__version__"}
    if major == 10:
        used |= {"BuilderFlag.FP16", "BuilderFlag.INT8", "IInt8EntropyCalibrator2.get_batch",
                 "IInt8EntropyCalibrator2.read_calibration_cache", "IInt8EntropyCalibrator2.write_calibration_cache",
                 "IBuilderConfig.int8_calibrator", "IBuilderConfig.set_calibration_profile"}
    assert used <= paths
    assert checked == len(paths) > 100


def test_the_real_11_has_no_implicit_quantization(real_bindings):
    """What the 11.x fake leaves out is really gone, and really there in 10.x."""
    gone = ["IInt8EntropyCalibrator2", "BuilderFlag.FP16", "BuilderFlag.INT8", "IBuilderConfig.int8_calibrator",
            "IBuilderConfig.set_calibration_profile", "NetworkDefinitionCreationFlag.EXPLICIT_BATCH"]
    assert not any(info["exists"] for info in real_bindings(11, gone).values())
    assert all(info["exists"] for info in real_bindings(10, gone).values())


def test_a_fake_unlike_the_real_bindings_is_caught(real_bindings):
    mod = fake_tensorrt.make(10)
    mod.IBuilderConfig.set_fp16_mode = lambda self, on: None                       # invented method
    mod.Builder.create_network = lambda self, explicit_batch=0: None               # renamed parameter
    mod.IExecutionContext.execute_async_v3 = lambda self, stream_handle=0: True    # a default the real one lacks
    mod.OnnxParser.num_errors = lambda self: 0                                     # property turned method
    mod.BuilderFlag.TF32._value = 5                                                # wrong enum value
    mod.max_workspace_size = 1 << 30                                               # removed in TensorRT 10
    _, problems = check(mod, 10, real_bindings)
    expected = {"IBuilderConfig.set_fp16_mode": "not in the real bindings",
                "Builder.create_network": "match no real overload",
                "IExecutionContext.execute_async_v3": "match no real overload",
                "OnnxParser.num_errors": "a method in the fake, a property",
                "BuilderFlag.TF32": "value 5 in the fake, 6",
                "max_workspace_size": "not in the real bindings"}
    for path, words in expected.items():
        assert any(p.startswith(path + ":") and words in p for p in problems), (path, problems)
    assert len(problems) == len(expected)


def test_the_10_fake_judged_as_11_fails(real_bindings):
    _, problems = check(fake_tensorrt.make(10), 11, real_bindings)
    flagged = {p.split(":")[0] for p in problems}
    assert {"IInt8EntropyCalibrator2", "BuilderFlag.FP16", "BuilderFlag.INT8", "IBuilderConfig.int8_calibrator",
            "IBuilderConfig.set_calibration_profile", "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
            "NetworkDefinitionCreationFlag.STRONGLY_TYPED"} <= flagged   # STRONGLY_TYPED: 1 in 10.x, 0 in 11.x


def test_reading_the_bindings_loads_no_tensorrt_library(real_bindings, tmp_path):
    """The child imports the extension with libc standing in for libnvinfer: no TensorRT code is mapped."""
    import subprocess
    import sys

    root = bindings.loadable_copy(bindings.bindings_wheel(11), tmp_path)
    code = ("import os, sys; sys.path.insert(0, sys.argv[1]); sys.setdlopenflags(os.RTLD_LAZY); import tensorrt; "
            "print(tensorrt.__version__); print(open('/proc/self/maps').read())")
    out = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "11.4.0.106"
    assert "tensorrt.so" in out and "libnvinfer" not in out and "libnvonnxparser" not in out
