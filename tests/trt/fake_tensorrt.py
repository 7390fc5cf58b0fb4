"""Faithful fakes of the TensorRT 10.x and 11.x Python APIs, for the calls ocrconvert makes; they compute.

``make(10)`` / ``make(11)`` returns a fresh module to put in ``sys.modules["tensorrt"]``; ``HostCuda`` stands
in for ``runners.tensorrt.TorchCuda`` (device buffers are host numpy arrays, addresses are real addresses).

Fidelity, checked by ``test_trt_bindings.py`` against the compiled bindings of the wheels on PyPI
(``tensorrt-cu12-bindings`` 10.x, ``tensorrt-cu13-bindings`` 11.x): every public name of a fake module exists
in that version, with the same kind (method / property / enum member / class), the same parameter names
(and no default the real one lacks) and the same enum values. Beyond names, what real TensorRT does and
the fakes copy:

* classes without a Python constructor cannot be constructed; pybind11 trampolines (``ILogger``,
  ``IInt8EntropyCalibrator2``) refuse a subclass that skipped the base ``__init__``; arguments of the
  wrong type (another module's enum, a non-logger) raise ``TypeError`` as pybind11 does;
* 10.x: ``create_network(0)`` is weakly typed, precision comes from ``BuilderFlag.FP16`` / ``INT8``; INT8
  needs a calibrator and, for dynamic inputs, a calibration profile; the builder reads the calibration cache
  first and only without one pulls batches (``get_batch``) from device memory at the calibration profile's
  opt shape, then writes the cache. 11.x: no FP16/INT8 flags, no calibrators, every network strongly typed;
* the builder needs an optimization profile covering every dynamic input (fixed dims unchanged);
  ``add_optimization_profile`` returns -1 for an invalid profile; a timing cache made for another version
  or device is refused by ``set_timing_cache(..., ignore_mismatch=False)``; a failed build returns None;
* ``deserialize_cuda_engine`` returns None for a plan of another version or device; an execution context
  runs only with every input shape inside the profile and every tensor address set; ``trt.Logger`` prints
  on stdout (its docstring says so).

What runs: the "engine" is the parsed ONNX plus the build facts; the execution context reads the inputs from
their addresses, runs the ONNX in ONNX Runtime (CPU) and writes the outputs to their addresses. 10.x FP16
rounds the engine's I/O through float16; 10.x INT8 also quantizes the inputs with the calibrated scales.
11.x runs the precision-carrying ONNX (FP16 cast, Q/DQ) as it is. Kernels, tactics, fusions and TensorRT's
own reduced-precision arithmetic are NOT modelled: a fake pass says the calls and the data flow are right,
not that a real engine's numbers are.
"""
from __future__ import annotations

import ctypes
import json
import struct
import sys
import types
import warnings
from importlib.machinery import ModuleSpec
from pathlib import Path

import numpy as np

# the wheels each fake is checked against (test_trt_bindings.py)
CHECKED_AGAINST = {10: ("tensorrt-cu12-bindings", "10.16.1.11"), 11: ("tensorrt-cu13-bindings", "11.4.0.106")}
DEVICE = "fake-device"            # the "GPU" the fakes build for; tests change a module's _device to move it
GPU_NAME, COMPUTE_CAPABILITY = "host memory (fake CUDA)", "0.0"
_PLAN_MAGIC, _TIMING_MAGIC = b"FAKETRT-PLAN\0", b"FAKETRT-TIMING\0"

# real enum values, identical in 10.16 and 11.4 unless noted (checked against the bindings)
_SEVERITY = {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3, "VERBOSE": 4}
_DATATYPE = {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "BOOL": 4, "UINT8": 5, "INT64": 8}
_NP = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_,
       "UINT8": np.uint8, "INT64": np.int64}
_ONNX_TO_DT = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 9: "BOOL", 2: "UINT8", 7: "INT64"}


# --------------------------------------------------------------------------------------------------
# pybind11 look-alikes
# --------------------------------------------------------------------------------------------------
class _EnumBase:
    """A pybind11 enum: members are instances of the class, with ``name`` and ``value``."""

    __members__: dict = {}

    @property
    def name(self):
        return self._name

    @property
    def value(self):
        return self._value

    def __int__(self):
        return self._value

    def __index__(self):
        return self._value

    def __eq__(self, other):
        return type(other) is type(self) and other._value == self._value

    def __hash__(self):
        return hash((type(self).__name__, self._value))

    def __repr__(self):
        return f"<{type(self).__name__}.{self._name}: {self._value}>"


def _enum(name: str, members: dict[str, int]) -> type:
    cls = type(name, (_EnumBase,), {"__module__": "tensorrt.tensorrt", "__qualname__": name})
    cls.__members__ = {}
    for key, value in members.items():
        m = object.__new__(cls)
        m._name, m._value = key, value
        setattr(cls, key, m)
        cls.__members__[key] = m
    return cls


def _no_constructor(cls):
    """Classes the real bindings give no Python constructor: ``trt.ICudaEngine()`` raises TypeError."""

    def __init__(self, *a, **k):
        raise TypeError(f"tensorrt.tensorrt.{cls.__name__}: No constructor defined!")

    __init__._ocrconvert_no_constructor = True   # read by the bindings check (_trt_bindings.describe)
    cls.__init__ = __init__
    return cls


def _make(cls, **state):
    obj = object.__new__(cls)
    obj.__dict__.update(state)
    return obj


def _check_type(value, cls, what: str):
    if not isinstance(value, cls):
        raise TypeError(f"{what}(): incompatible function arguments: expected {cls.__name__}, got "
                        f"{type(value).__module__}.{type(value).__qualname__}")


def _read(address: int, shape, dtype) -> np.ndarray:
    """What TensorRT reads through a device pointer (host memory here)."""
    if not address:
        raise ValueError("null tensor address")
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    raw = (ctypes.c_char * nbytes).from_address(address)
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _write(address: int, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array)
    ctypes.memmove(address, array.ctypes.data, array.nbytes)


def _ort_session(onnx_bytes: bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 2
    return ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------------------------------
# the module factory
# --------------------------------------------------------------------------------------------------
def make(major: int) -> types.ModuleType:
    """A fresh fake ``tensorrt`` module for TensorRT ``major`` (10 or 11); its classes are its own, as two
    real installs' would be (another module's enum or logger is refused)."""
    if major not in CHECKED_AGAINST:
        raise ValueError(f"no fake for TensorRT {major}")
    v10 = major == 10
    version = CHECKED_AGAINST[major][1]
    mod = types.ModuleType("tensorrt", f"Fake TensorRT {version} Python API (tests/trt/fake_tensorrt.py)")
    mod.__spec__ = ModuleSpec("tensorrt", None)   # so importlib.util.find_spec("tensorrt") sees it
    mod.__version__ = f"{version}+fake"
    mod._device = DEVICE
    mod._major = major

    def emit(logger, severity: str, msg: str) -> None:
        logger.log(ILogger.Severity.__members__[severity], msg)

    # -- enums ----------------------------------------------------------------------------------------
    DataType = _enum("DataType", _DATATYPE)
    TensorIOMode = _enum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
    MemoryPoolType = _enum("MemoryPoolType", {"WORKSPACE": 0})
    BuilderFlag = _enum("BuilderFlag", {"FP16": 0, "INT8": 1, "TF32": 6, "OBEY_PRECISION_CONSTRAINTS": 9}
                        if v10 else {"TF32": 6})
    NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag",
                                          {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1} if v10 else {"STRONGLY_TYPED": 0})

    # -- logging ----------------------------------------------------------------------------------------
    class ILogger:
        """pybind11 trampoline: a Python subclass must call ``ILogger.__init__``."""

        Severity = _enum("Severity", _SEVERITY)

        def __init__(self):
            self._trampoline_ready = True

        def log(self, severity, msg):
            raise RuntimeError('Tried to call pure virtual function "ILogger::log"')

    for _k, _m in ILogger.Severity.__members__.items():
        setattr(ILogger, _k, _m)

    class Logger(ILogger):
        def __init__(self, min_severity=ILogger.Severity.WARNING):
            ILogger.__init__(self)
            _check_type(min_severity, ILogger.Severity, "Logger.__init__")
            self._min = min_severity

        @property
        def min_severity(self):
            return self._min

        @min_severity.setter
        def min_severity(self, value):
            self._min = value

        def log(self, severity, msg):
            if int(severity) <= int(self._min):   # the real one: "Logs a message to `stdout`."
                print(f"[TRT] [{severity.name[0]}] {msg}", file=sys.stdout)

    Logger.Severity = ILogger.Severity
    for _k, _m in ILogger.Severity.__members__.items():
        setattr(Logger, _k, _m)

    def need_logger(logger, where: str):
        _check_type(logger, ILogger, where)
        if not getattr(logger, "_trampoline_ready", False):
            raise TypeError(f"{type(logger).__name__}.__init__() must be called when overriding __init__")

    # -- small value types ----------------------------------------------------------------------------
    class Dims:
        def __init__(self, shape):
            self._d = tuple(int(d) for d in shape)

        def __getitem__(self, i):
            return self._d[i]

        def __len__(self):
            return len(self._d)

        def __eq__(self, other):
            return tuple(self) == tuple(other)

        def __repr__(self):
            return repr(self._d)

    @_no_constructor
    class IHostMemory:
        """The real one exposes Python's buffer protocol; ``bytes(...)`` is how ocrconvert reads it."""

        @property
        def nbytes(self):
            return len(self._data)

        @property
        def dtype(self):
            return DataType.UINT8

        def __bytes__(self):
            return bytes(self._data)

    @_no_constructor
    class ParserError:
        def desc(self):
            return self._desc

        def __str__(self):
            return f"In node {self._node} with name: {self._name}: {self._desc}"

    # -- network and parser ---------------------------------------------------------------------------
    @_no_constructor
    class ILayer:
        """One parsed ONNX node (the parser names a layer after its node). Per-layer precision (``precision``,
        ``set_output_type``) is a 10.x weakly typed network's; 11.x (strongly typed only) refuses it."""

        @property
        def name(self):
            return self._name

        @property
        def num_outputs(self):
            return len(self._outputs)

        @property
        def precision(self):
            return self._precision or DataType.FLOAT

        @precision.setter
        def precision(self, dtype):
            _check_type(dtype, DataType, "ILayer.precision")
            if self._network._strongly_typed or not v10:
                raise RuntimeError("ILayer::setPrecision is not allowed on a strongly typed network")
            self._precision = dtype

        @property
        def precision_is_set(self):
            return self._precision is not None

        def set_output_type(self, index, dtype):
            _check_type(dtype, DataType, "ILayer.set_output_type")
            if self._network._strongly_typed or not v10:
                raise RuntimeError("ILayer::setOutputType is not allowed on a strongly typed network")
            if not 0 <= index < len(self._outputs):
                raise IndexError(f"output index {index} out of range")
            self._output_types[index] = dtype

        def output_type_is_set(self, index):
            return index in self._output_types

    @_no_constructor
    class INetworkDefinition:
        @property
        def num_inputs(self):
            return len(self._inputs)

        @property
        def num_outputs(self):
            return len(self._outputs)

        @property
        def num_layers(self):
            return 0 if self._model is None else len(self._model.graph.node)

        def get_layer(self, index):
            if self._model is None or not 0 <= index < len(self._model.graph.node):
                raise IndexError(f"layer index {index} out of range")
            layers = self.__dict__.setdefault("_layers", {})
            if index not in layers:
                node = self._model.graph.node[index]
                layers[index] = _make(ILayer, _name=node.name or f"{node.op_type}_{index}", _outputs=list(node.output),
                                      _precision=None, _output_types={}, _network=self)
            return layers[index]

        def get_flag(self, flag):
            _check_type(flag, NetworkDefinitionCreationFlag, "get_flag")
            if flag == NetworkDefinitionCreationFlag.STRONGLY_TYPED:
                return self._strongly_typed
            return bool(self._flags & (1 << int(flag)))

    class OnnxParser:
        def __init__(self, network, logger):
            _check_type(network, INetworkDefinition, "OnnxParser.__init__")
            need_logger(logger, "OnnxParser.__init__")
            self._network, self._logger, self._errors = network, logger, []

        @property
        def num_errors(self):
            return len(self._errors)

        def get_error(self, index):
            return self._errors[index]

        def clear_errors(self):
            self._errors.clear()

        def parse_from_file(self, model):
            import onnx

            def fail(desc, node=-1, name=""):
                self._errors.append(_make(ParserError, _desc=desc, _node=node, _name=name))
                emit(self._logger, "ERROR", f"ModelImporter: {desc}")
                return False

            path = Path(model)
            if not path.is_file():
                return fail(f"Failed to open file: {model}")
            try:
                m = onnx.load(str(path))            # external data resolves beside the model
                onnx.checker.check_model(m)
            except Exception as exc:  # noqa: BLE001 - the real parser reports, it does not raise
                return fail(f"Failed to parse ONNX model from file: {model}: {type(exc).__name__}: {exc}")
            net = self._network
            inits = {i.name for i in m.graph.initializer}
            net._model = m
            net._inputs = [_tensor(t) for t in m.graph.input if t.name not in inits]
            net._outputs = [_tensor(t) for t in m.graph.output]
            bad = [t for t in net._inputs + net._outputs if t["dtype"] is None]
            if bad:
                net._model = None
                return fail(f"unsupported I/O data type of {bad[0]['name']}")
            return True

    def _tensor(vi):
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tt.shape.dim]
        return {"name": vi.name, "shape": dims, "dtype": _ONNX_TO_DT.get(tt.elem_type)}

    # -- builder config, profiles, timing cache ---------------------------------------------------------
    @_no_constructor
    class IOptimizationProfile:
        def set_shape(self, input, min, opt, max):
            lo, mid, hi = (tuple(int(d) for d in s) for s in (min, opt, max))
            if not (len(lo) == len(mid) == len(hi)) or any(not a <= b <= c for a, b, c in zip(lo, mid, hi)) \
                    or any(d < 0 for d in lo):
                emit(self._logger, "ERROR", f"IOptimizationProfile::setDimensions: invalid dims for {input}")
                self._valid = False
                return
            self._shapes[input] = (lo, mid, hi)

        def get_shape(self, input):
            return [Dims(s) for s in self._shapes.get(input, ())]

    @_no_constructor
    class ITimingCache:
        def serialize(self):
            body = json.dumps({"version": self._version, "device": self._device,
                               "entries": dict(sorted(self._entries.items()))}, sort_keys=True).encode()
            return _make(IHostMemory, _data=_TIMING_MAGIC + body)

    class IBuilderConfig_:
        def set_flag(self, flag):
            _check_type(flag, BuilderFlag, "set_flag")
            self._flags.add(flag.name)

        def clear_flag(self, flag):
            _check_type(flag, BuilderFlag, "clear_flag")
            self._flags.discard(flag.name)

        def get_flag(self, flag):
            _check_type(flag, BuilderFlag, "get_flag")
            return flag.name in self._flags

        def set_memory_pool_limit(self, pool, pool_size):
            _check_type(pool, MemoryPoolType, "set_memory_pool_limit")
            if int(pool_size) <= 0:
                raise TypeError("set_memory_pool_limit(): pool_size must be positive")
            self._pools[pool.name] = int(pool_size)

        def get_memory_pool_limit(self, pool):
            _check_type(pool, MemoryPoolType, "get_memory_pool_limit")
            return self._pools.get(pool.name, 1 << 40)

        def add_optimization_profile(self, profile):
            _check_type(profile, IOptimizationProfile, "add_optimization_profile")
            if not profile._valid or not profile._shapes:
                emit(self._logger, "ERROR", "IBuilderConfig::addOptimizationProfile: invalid profile")
                return -1
            self._profiles.append(profile)
            return len(self._profiles) - 1

        @property
        def num_optimization_profiles(self):
            return len(self._profiles)

        def create_timing_cache(self, serialized_timing_cache):
            blob = bytes(serialized_timing_cache)
            if not blob:
                return _make(ITimingCache, _version=version, _device=mod._device, _entries={})
            if not blob.startswith(_TIMING_MAGIC):
                emit(self._logger, "ERROR", "createTimingCache: the blob is not a timing cache")
                return None
            data = json.loads(blob[len(_TIMING_MAGIC):])
            return _make(ITimingCache, _version=data["version"], _device=data["device"], _entries=data["entries"])

        def set_timing_cache(self, cache, ignore_mismatch):
            _check_type(cache, ITimingCache, "set_timing_cache")
            if not ignore_mismatch and (cache._version != version or cache._device != mod._device):
                emit(self._logger, "ERROR", "setTimingCache: the timing cache was made for another device or version")
                return False
            self._timing = cache
            return True

        def get_timing_cache(self):
            return self._timing

    if v10:
        class IBuilderConfig(IBuilderConfig_):
            @property
            def int8_calibrator(self):
                return self._calibrator

            @int8_calibrator.setter
            def int8_calibrator(self, calibrator):
                warnings.warn("int8_calibrator is deprecated (TensorRT 10.1): use explicit quantization",
                              DeprecationWarning, stacklevel=2)
                if calibrator is not None:
                    _check_type(calibrator, IInt8EntropyCalibrator2, "int8_calibrator")
                    if not getattr(calibrator, "_trampoline_ready", False):
                        raise TypeError(f"{type(calibrator).__name__}.__init__() must be called when overriding "
                                        "__init__")
                self._calibrator = calibrator

            def set_calibration_profile(self, profile):
                _check_type(profile, IOptimizationProfile, "set_calibration_profile")
                if not profile._valid:
                    return False
                self._calib_profile = profile
                return True

            def get_calibration_profile(self):
                return self._calib_profile

        class IInt8EntropyCalibrator2:
            """pybind11 trampoline: a Python subclass must call the base ``__init__``."""

            def __init__(self):
                warnings.warn("IInt8EntropyCalibrator2 is deprecated (TensorRT 10.1): use explicit quantization",
                              DeprecationWarning, stacklevel=2)
                self._trampoline_ready = True

            def get_batch_size(self):
                raise RuntimeError('Tried to call pure virtual function "IInt8Calibrator::getBatchSize"')

            def get_batch(self, names):
                raise RuntimeError('Tried to call pure virtual function "IInt8Calibrator::getBatch"')

            def read_calibration_cache(self):
                raise RuntimeError('Tried to call pure virtual function "IInt8Calibrator::readCalibrationCache"')

            def write_calibration_cache(self, cache):
                raise RuntimeError('Tried to call pure virtual function "IInt8Calibrator::writeCalibrationCache"')
    else:
        IBuilderConfig = IBuilderConfig_
    IBuilderConfig.__name__ = IBuilderConfig.__qualname__ = "IBuilderConfig"
    IBuilderConfig = _no_constructor(IBuilderConfig)

    # -- the builder ----------------------------------------------------------------------------------
    class Builder:
        def __init__(self, logger):
            need_logger(logger, "Builder.__init__")
            self._logger = logger

        def create_network(self, flags=0):
            flags = int(flags)
            strongly = (not v10) or bool(flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)))
            return _make(INetworkDefinition, _builder=self, _flags=flags, _strongly_typed=strongly, _model=None,
                         _inputs=[], _outputs=[])

        def create_builder_config(self):
            return _make(IBuilderConfig, _builder=self, _logger=self._logger, _flags={"TF32"}, _pools={},
                         _profiles=[], _timing=None, _calibrator=None, _calib_profile=None)

        def create_optimization_profile(self):
            return _make(IOptimizationProfile, _logger=self._logger, _shapes={}, _valid=True)

        def build_serialized_network(self, network, config):
            _check_type(network, INetworkDefinition, "build_serialized_network")
            _check_type(config, IBuilderConfig, "build_serialized_network")

            def fail(msg):
                emit(self._logger, "ERROR", msg)
                return None

            if network._model is None:
                return fail("Network must have at least one output")
            flags = sorted(config._flags)
            if network._strongly_typed and {"FP16", "INT8"} & set(flags):
                return fail("BuilderFlag::kFP16/kINT8 is not allowed for a strongly typed network")
            profiles = []
            for prof in config._profiles:
                for name in prof._shapes:
                    if name not in {t["name"] for t in network._inputs}:
                        return fail(f"optimization profile names {name}, which is not a network input")
            dynamic = [t for t in network._inputs if any(d < 0 for d in t["shape"])]
            if dynamic and not config._profiles:
                return fail("Network has dynamic or shape inputs, but no optimization profile has been defined.")
            for prof in config._profiles:
                entry = {}
                for t in network._inputs:
                    if t["name"] not in prof._shapes:
                        if t in dynamic:
                            return fail(f"optimization profile is missing values for dynamic input {t['name']}")
                        entry[t["name"]] = [t["shape"]] * 3
                        continue
                    shapes = prof._shapes[t["name"]]
                    for s in shapes:
                        if len(s) != len(t["shape"]) or any(d >= 0 and d != x for d, x in zip(t["shape"], s)):
                            return fail(f"optimization profile dims {list(s)} do not match {t['name']} {t['shape']}")
                    entry[t["name"]] = [list(s) for s in shapes]
                profiles.append(entry)
            scales = None
            if "INT8" in flags:
                scales = self._calibrate(network, config, profiles)
                if scales is None:
                    return None
            if config._timing is not None:   # one "tactic" per node and shape: a second build hits them all
                hits = 0
                for node in network._model.graph.node:
                    key = f"{node.op_type}:{node.name}:{json.dumps(profiles[0] if profiles else {})}"
                    hits += key in config._timing._entries
                    config._timing._entries.setdefault(key, f"tactic-{len(config._timing._entries)}")
                emit(self._logger, "INFO", f"timing cache: {hits} hits of {len(network._model.graph.node)}")
            fp32_layers = sorted(la._name for la in getattr(network, "_layers", {}).values()
                                 if la._precision == DataType.FLOAT
                                 and all(t == DataType.FLOAT for t in la._output_types.values()))
            if fp32_layers and "OBEY_PRECISION_CONSTRAINTS" not in flags:
                emit(self._logger, "WARNING", "layer precision set without kOBEY_PRECISION_CONSTRAINTS: a hint only")
            header = {"version": version, "device": mod._device, "strongly_typed": network._strongly_typed,
                      "flags": flags, "profiles": profiles, "int8_scales": scales, "fp32_layers": fp32_layers,
                      "io": [{**t, "mode": "INPUT"} for t in network._inputs]
                      + [{**t, "mode": "OUTPUT"} for t in network._outputs]}
            head = json.dumps(header).encode()
            data = _PLAN_MAGIC + struct.pack("<I", len(head)) + head + network._model.SerializeToString()
            return _make(IHostMemory, _data=data)

        def _calibrate(self, network, config, profiles):
            """TRT 10 implicit quantization: the cache if the calibrator has one, else batches from device memory."""
            cal = config._calibrator
            if cal is None:
                emit(self._logger, "ERROR", "Calibration failure occurred with no scaling factors detected. "
                                            "INT8 requires a calibrator or dynamic ranges")
                return None
            dynamic = any(d < 0 for t in network._inputs for d in t["shape"])
            prof = config._calib_profile
            if dynamic and prof is None:
                emit(self._logger, "ERROR", "Calibration profile must be set for a network with dynamic shapes")
                return None
            header = f"TRT-{version.replace('.', '')}-EntropyCalibration2"
            blob = cal.read_calibration_cache()
            if blob:
                lines = bytes(blob).decode("latin-1").splitlines()
                if lines and lines[0] == header:
                    return {k: struct.unpack(">f", bytes.fromhex(v.strip()))[0]
                            for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                emit(self._logger, "WARNING", "calibration cache does not match this calibrator or version; "
                                              "recalibrating")
            cal.get_batch_size()   # explicit batch: asked for, the batch dim comes from the profile
            names = [t["name"] for t in network._inputs]
            shapes = {t["name"]: (prof._shapes[t["name"]][1] if prof is not None and t["name"] in prof._shapes
                                  else tuple(t["shape"])) for t in network._inputs}
            session = _ort_session(network._model.SerializeToString())
            amax: dict[str, float] = {}
            batches = 0
            while True:
                ptrs = cal.get_batch(names)
                if not ptrs:
                    break
                if len(ptrs) != len(names):
                    emit(self._logger, "ERROR", f"get_batch returned {len(ptrs)} pointers for {len(names)} inputs")
                    return None
                feed = {t["name"]: _read(int(p), shapes[t["name"]], _NP[t["dtype"]])
                        for t, p in zip(network._inputs, ptrs)}
                outs = session.run(None, feed)
                for name, arr in list(feed.items()) + list(zip([t["name"] for t in network._outputs], outs)):
                    amax[name] = max(amax.get(name, 0.0), float(np.abs(arr).max()) if arr.size else 0.0)
                batches += 1
            if not batches:
                emit(self._logger, "ERROR", "Calibration failure: the calibrator gave no batches")
                return None
            # float32, as TensorRT keeps them (the cache holds their bits)
            scales = {k: float(np.float32(v / 127.0 if v > 0 else 1.0)) for k, v in amax.items()}
            text = header + "\n" + "".join(f"{k}: {struct.pack('>f', s).hex()}\n" for k, s in scales.items())
            cal.write_calibration_cache(memoryview(text.encode("latin-1")))
            return scales

    # -- runtime, engine, context ---------------------------------------------------------------------
    class Runtime:
        def __init__(self, logger):
            need_logger(logger, "Runtime.__init__")
            self._logger = logger

        def deserialize_cuda_engine(self, serialized_engine):
            blob = bytes(serialized_engine)
            if not blob.startswith(_PLAN_MAGIC):
                emit(self._logger, "ERROR", "IRuntime::deserializeCudaEngine: Error Code 1: Serialization "
                                            "(Serialization assertion magicTagRead == kMAGIC_TAG failed.)")
                return None
            off = len(_PLAN_MAGIC)
            (n,) = struct.unpack_from("<I", blob, off)
            header = json.loads(blob[off + 4: off + 4 + n])
            if header["version"] != version or header["device"] != mod._device:
                emit(self._logger, "ERROR", f"The engine plan file is not compatible with this version of "
                                            f"TensorRT ({header['version']} on {header['device']}, this is "
                                            f"{version} on {mod._device})")
                return None
            return _make(ICudaEngine, _h=header, _onnx=blob[off + 4 + n:], _session=None, _logger=self._logger)

    @_no_constructor
    class ICudaEngine:
        @property
        def num_io_tensors(self):
            return len(self._h["io"])

        @property
        def num_optimization_profiles(self):
            return max(1, len(self._h["profiles"]))

        def _io(self, name):
            for t in self._h["io"]:
                if t["name"] == name:
                    return t
            raise RuntimeError(f"no tensor named {name}")   # the real one logs and returns an invalid value

        def get_tensor_name(self, index):
            return self._h["io"][index]["name"]

        def get_tensor_mode(self, name):
            return TensorIOMode.__members__[self._io(name)["mode"]]

        def get_tensor_shape(self, name):
            return Dims(self._io(name)["shape"])

        def get_tensor_dtype(self, name):
            return DataType.__members__[self._io(name)["dtype"]]

        def get_tensor_profile_shape(self, name, profile_index):
            t = self._io(name)
            if t["mode"] != "INPUT":
                raise RuntimeError(f"{name} is not an input")
            shapes = self._h["profiles"][profile_index][name] if self._h["profiles"] else [t["shape"]] * 3
            return [Dims(s) for s in shapes]

        def create_execution_context(self, strategy=None):
            if self._session is None:
                self._session = _ort_session(self._onnx)
            return _make(IExecutionContext, _engine=self, _shapes={}, _addr={}, _out_shapes={})

    @_no_constructor
    class IExecutionContext:
        def set_input_shape(self, name, shape):
            eng = self._engine
            t = eng._io(name)
            shape = tuple(int(d) for d in shape)
            lo, _, hi = eng._h["profiles"][0][name] if eng._h["profiles"] else (t["shape"],) * 3
            if t["mode"] != "INPUT" or len(shape) != len(lo) or any(not a <= s <= b for a, s, b in zip(lo, shape, hi)):
                emit(eng._logger, "ERROR", f"IExecutionContext::setInputShape: {name} {list(shape)} is outside "
                                           f"the profile {lo} .. {hi}")
                return False
            self._shapes[name] = shape
            self._out_shapes = {}
            return True

        def set_tensor_address(self, name, memory):
            self._engine._io(name)
            self._addr[name] = int(memory)
            return True

        def get_tensor_shape(self, name):
            eng = self._engine
            t = eng._io(name)
            if t["mode"] == "INPUT":
                return Dims(self._shapes.get(name, t["shape"]))
            ins = [x for x in eng._h["io"] if x["mode"] == "INPUT"]
            if any(x["name"] not in self._shapes for x in ins):
                return Dims([-1] * len(t["shape"]))
            if not self._out_shapes:   # shape inference: run the network once on zeros of these shapes
                feed = {x["name"]: np.zeros(self._shapes[x["name"]], _NP[x["dtype"]]) for x in ins}
                outs = eng._session.run(None, feed)
                names = [x["name"] for x in eng._h["io"] if x["mode"] == "OUTPUT"]
                self._out_shapes = {n: o.shape for n, o in zip(names, outs)}
            return Dims(self._out_shapes[name])

        def execute_async_v3(self, stream_handle):
            eng = self._engine
            int(stream_handle)
            ins = [x for x in eng._h["io"] if x["mode"] == "INPUT"]
            outs = [x for x in eng._h["io"] if x["mode"] == "OUTPUT"]
            missing = [x["name"] for x in ins if x["name"] not in self._shapes] + \
                      [x["name"] for x in ins + outs if not self._addr.get(x["name"])]
            if missing:
                emit(eng._logger, "ERROR", f"IExecutionContext::enqueueV3: shape or address not set for {missing}")
                return False
            feed = {}
            for x in ins:
                arr = _read(self._addr[x["name"]], self._shapes[x["name"]], _NP[x["dtype"]])
                feed[x["name"]] = _emulate_precision(arr, x["name"], eng._h)
            try:
                results = eng._session.run(None, feed)
            except Exception as exc:  # noqa: BLE001 - the real one logs and returns False
                emit(eng._logger, "ERROR", f"IExecutionContext::enqueueV3: {exc}")
                return False
            for x, arr in zip(outs, results):
                want = tuple(self.get_tensor_shape(x["name"]))
                if tuple(arr.shape) != want:
                    emit(eng._logger, "ERROR", f"output {x['name']} is {arr.shape}, inferred {want}")
                    return False
                arr = _emulate_precision(arr.astype(_NP[x["dtype"]], copy=False), x["name"], eng._h)
                _write(self._addr[x["name"]], arr)
            return True

    def nptype(trt_type):
        for key, value in DataType.__members__.items():
            if value == trt_type:
                return _NP[key]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    names = dict(
        Logger=Logger, ILogger=ILogger, Builder=Builder, BuilderFlag=BuilderFlag, IBuilderConfig=IBuilderConfig,
        NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag, INetworkDefinition=INetworkDefinition,
        OnnxParser=OnnxParser, ParserError=ParserError, IOptimizationProfile=IOptimizationProfile,
        ITimingCache=ITimingCache, IHostMemory=IHostMemory, MemoryPoolType=MemoryPoolType, Runtime=Runtime,
        ICudaEngine=ICudaEngine, IExecutionContext=IExecutionContext, TensorIOMode=TensorIOMode, DataType=DataType,
        Dims=Dims, nptype=nptype,
        float32=DataType.FLOAT, float16=DataType.HALF, int8=DataType.INT8, int32=DataType.INT32,
        int64=DataType.INT64, bool=DataType.BOOL, uint8=DataType.UINT8,
    )
    if v10:
        names["IInt8EntropyCalibrator2"] = IInt8EntropyCalibrator2
    for key, value in names.items():
        if isinstance(value, type):
            value.__module__ = "tensorrt.tensorrt"
        setattr(mod, key, value)
    return mod


def _emulate_precision(arr: np.ndarray, name: str, header: dict) -> np.ndarray:
    """10.x weakly typed: FP16 rounds the engine's float I/O through float16; INT8 also quantizes the inputs
    with their calibrated scale. 11.x (strongly typed): the ONNX carries its precision, nothing to add."""
    if header["strongly_typed"] or arr.dtype != np.float32:
        return arr
    scales = header.get("int8_scales") or {}
    if "INT8" in header["flags"] and name in scales:
        s = np.float32(scales[name])
        arr = np.clip(np.round(arr / s), -127, 127).astype(np.float32) * s
    if "FP16" in header["flags"]:
        arr = arr.astype(np.float16).astype(np.float32)
    return arr


class HostCuda:
    """Stands in for ``runners.tensorrt.TorchCuda``: "device" buffers are host numpy arrays and their addresses
    are real addresses, which the fake TensorRT reads and writes as the real one does device pointers."""

    def __init__(self, device: int = 0, why: str = ""):
        self.device = device
        self.uploads = 0

    def gpu(self) -> tuple[str, str]:
        return GPU_NAME, COMPUTE_CAPABILITY

    def to_device(self, array: np.ndarray):
        self.uploads += 1
        return np.array(array, copy=True, order="C")

    def empty(self, shape: tuple[int, ...], dtype: str):
        buf = np.empty(tuple(shape), dtype=dtype)
        if buf.dtype.kind == "f":
            buf.fill(np.nan)   # an output TensorRT never wrote shows up as NaN, not as stale memory
        return buf

    @staticmethod
    def address(buffer) -> int:
        return int(buffer.ctypes.data)

    @staticmethod
    def to_host(buffer) -> np.ndarray:
        return np.array(buffer, copy=True)

    def stream(self) -> int:
        return 0

    def synchronize(self) -> None:
        pass


def install_fake_tensorrt(monkeypatch, major: int):
    """Put the fake TensorRT ``major`` where ``import tensorrt`` finds it and host memory where the TensorRT
    path takes its CUDA buffers; the trt-build route sees TensorRT as installed. Undone after the test."""
    from ocrconvert.pipeline import available_converters
    from ocrconvert.runners import tensorrt as trt_runtime

    mod = make(major)
    monkeypatch.setitem(sys.modules, "tensorrt", mod)
    monkeypatch.setattr(trt_runtime, "cuda", HostCuda)
    monkeypatch.setattr(trt_runtime, "_LOGGER", None)
    for spec in available_converters():
        if spec.requires:
            monkeypatch.setattr(spec, "_missing", None)   # looked up again: now with the fake installed
    return mod
