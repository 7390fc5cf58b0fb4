"""The TensorRT engine path through the spine, run against the fake TensorRT 10.x and 11.x APIs
(fake_tensorrt.py; their names are checked against the real bindings in test_trt_bindings.py).

What a pass here says: ocrconvert makes the right TensorRT calls in the right order with the right data
(ONNX parse, profiles, flags, calibration through device pointers, caches, name-based I/O, execution through
tensor addresses), and the spine judges the engine's outputs against the ORIGINAL source, failing a damaged
one. It does not say a real engine's numbers pass: that needs a GPU (test_tensorrt.py).
"""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from ocrconvert.cli.app import main
from ocrconvert.errors import ConversionError, CorruptModelError, ParityError, UsageError

CLS = "ppocrv4-cls-onnx"
CLS_SHAPES = ["x:1x3x48x192:8x3x48x192:16x3x48x192"]
_SLIMMED: dict = {}


@pytest.fixture(autouse=True)
def slim_once(monkeypatch):
    """onnxslim takes most of a build's time on 2 cores and gives the same model every time: slim each model
    once per session (a copy each call; the prepared ONNX is unchanged)."""
    import copy
    import hashlib

    from ocrconvert.converters import onnx_torch

    real = onnx_torch.slim

    def slim(model, *args, **kwargs):
        key = (hashlib.sha256(model.SerializeToString()).hexdigest(), repr(args), repr(sorted(kwargs.items())))
        if key not in _SLIMMED:
            _SLIMMED[key] = real(model, *args, **kwargs)
        return copy.deepcopy(_SLIMMED[key])

    monkeypatch.setattr(onnx_torch, "slim", slim)


def build(onnx_model, out, **options):
    from ocrconvert.pipeline import convert

    verify = options.pop("verify", True)
    return convert(onnx_model(CLS), out, target="tensorrt", route="trt-build", verify=verify,
                   options={"shapes": CLS_SHAPES, **options})


def engine_contents(path):
    """(build facts, ONNX) the fake serialised into an engine file."""
    import struct

    import onnx

    import fake_tensorrt

    blob = path.read_bytes()
    off = len(fake_tensorrt._PLAN_MAGIC)
    (n,) = struct.unpack_from("<I", blob, off)
    return json.loads(blob[off + 4:off + 4 + n]), onnx.load_from_string(blob[off + 4 + n:])


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as ei:
        main(argv)
    cap = capsys.readouterr()
    return ei.value.code, cap.out, cap.err


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_builds_verifies_loads_and_runs(fake_trt, onnx_model, tmp_path, precision):
    import ocrconvert
    from ocrconvert.runners import runner_for
    from ocrconvert.formats import detect

    major = fake_trt._major
    engine, cache = tmp_path / f"cls.{precision}.engine", tmp_path / "timing.cache"
    result = build(onnx_model, engine, precision=precision, timing_cache=cache)
    assert result.report.passed, result.report.summary_line()
    assert engine.is_file() and cache.is_file()

    man = json.loads((tmp_path / f"{engine.name}.ocrconvert.json").read_text())
    eng = man["engine"]
    assert man["status"] == "verified" and man["precision"] == precision
    assert eng["tensorrt_version"] == fake_trt.__version__ and eng["tensorrt_major"] == major
    assert eng["gpu"] == {"name": "host memory (fake CUDA)", "compute_capability": "0.0"}
    assert eng["profiles"][0]["opt"] == [8, 3, 48, 192] and eng["profiles"][0]["origin"] == "--shapes"
    assert eng["timing_cache"]["loaded_bytes"] == 0 and eng["timing_cache"]["saved_bytes"] == cache.stat().st_size
    facts, model = engine_contents(engine)
    assert facts["profiles"] == [{"x": [[1, 3, 48, 192], [8, 3, 48, 192], [16, 3, 48, 192]]}]
    if precision == "fp32":
        assert "TF32" not in facts["flags"]   # fp32 clears TF32
    if major == 10:   # weakly typed FP32 network, precision by builder flag
        assert eng["network"].startswith("weakly-typed") and facts["strongly_typed"] is False
        assert eng["builder_flags"] == (["FP16"] if precision == "fp16" else [])
        assert eng["prepared_onnx"]["precision"] == "fp32"
        assert not any(i.data_type == 10 for i in model.graph.initializer)   # parsed the FP32 ONNX
    else:             # strongly typed: the FP16-cast ONNX is what TensorRT parsed
        assert eng["network"] == "strongly-typed" and facts["strongly_typed"] is True and eng["builder_flags"] == []
        assert eng["prepared_onnx"]["precision"] == precision
        assert any(i.data_type == 10 for i in model.graph.initializer) == (precision == "fp16")
    assert man["hops"][0]["produced"]["tensorrt_version"] == fake_trt.__version__

    runner = ocrconvert.load(engine)   # the engine loads and runs by tensor name, via host "device" memory
    assert runner.backend == "tensorrt" and runner.input_names == ["x"] and runner.inputs[0].shape == (None, 3, None, None)
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 48, 192)).astype(np.float32)
    got = runner.infer({"x": x})
    want = runner_for(detect(onnx_model(CLS))).infer({"x": x})
    assert list(got) == list(want)
    for name in want:
        assert got[name].shape == want[name].shape and not np.isnan(got[name]).any()
        np.testing.assert_allclose(got[name], want[name], atol=1e-2 if precision == "fp16" else 1e-5)

    if precision == "fp32":   # a second build reads the timing cache back (and times nothing new)
        again = build(onnx_model, tmp_path / "again.engine", timing_cache=cache, verify=False)
        reused = again.manifest["engine"]["timing_cache"]
        assert reused["loaded_bytes"] == eng["timing_cache"]["saved_bytes"] == reused["saved_bytes"]


def test_int8_trt10_calibrates_from_images_then_reads_the_cache(fake_trt10, onnx_model, calib_cls, tmp_path):
    """The calibration flow only: the fake's INT8 arithmetic (inputs quantized) is not TensorRT's, so no verdict
    on the engine's numbers is drawn here."""
    cache = tmp_path / "calib.cache"
    first = build(onnx_model, tmp_path / "a.engine", precision="int8", calib_images=calib_cls, calib_cache=cache,
                  verify=False)
    eng = first.manifest["engine"]
    assert sorted(eng["builder_flags"]) == ["FP16", "INT8"] and eng["prepared_onnx"]["precision"] == "fp32"
    cal = eng["calibration"]
    assert cal["images"] == 16 and cal["batches"] == 2 and cal["batches_read_by_tensorrt"] == 2
    assert cal["cache"]["scales_from"] == "images" and cal["cache"]["written_bytes"] == cache.stat().st_size > 0
    assert cache.read_text().startswith("TRT-") and "x:" in cache.read_text()

    second = build(onnx_model, tmp_path / "b.engine", precision="int8", calib_images=calib_cls, calib_cache=cache,
                   verify=False)
    cal2 = second.manifest["engine"]["calibration"]
    assert cal2["cache"]["scales_from"] == "cache" and cal2["cache"]["read_bytes"] == cache.stat().st_size
    assert cal2["batches_read_by_tensorrt"] == 0 and cal2["cache"]["written_bytes"] == 0
    assert engine_contents(tmp_path / "b.engine")[0]["int8_scales"] == engine_contents(tmp_path / "a.engine")[0][
        "int8_scales"]


def test_int8_trt11_builds_strongly_typed_from_the_qdq_onnx(fake_trt11, onnx_model, calib_cls, tmp_path):
    """The fake 11 runs the Q/DQ ONNX as it is, so its verdict is ONNX Runtime's on that model: the seeded hard
    lines fail (as for --export-only, test_trt_cli.py); the engine lands under its FAILED name, random noise is
    judged by the family's loose INT8 gates (as under `ocrconvert verify --precision int8`)."""
    result = build(onnx_model, tmp_path / "q.engine", precision="int8", calib_images=calib_cls)
    assert not result.report.passed and result.artifact.path == tmp_path / "q.FAILED.engine"
    randoms = [c for c in result.report.cases if c.kind == "random"]
    assert randoms and all(c.gate for c in randoms)
    assert result.report.weights.skipped   # an engine's weights are not read back
    hard = next(c for c in result.report.cases if c.label.startswith("synthetic: hard lines"))
    assert not hard.passed and not hard.uninformative
    eng = result.manifest["engine"]
    assert eng["network"] == "strongly-typed" and eng["builder_flags"] == []
    assert eng["prepared_onnx"]["precision"] == "int8" and "batches_read_by_tensorrt" not in eng["calibration"]
    _, model = engine_contents(tmp_path / "q.FAILED.engine")
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_calibration_cache_refused_where_it_cannot_be_used(fake_trt11, onnx_model, calib_cls, tmp_path):
    src = str(onnx_model(CLS))
    with pytest.raises(UsageError, match="TensorRT 11 has none"):   # TRT 11 has no calibrator to read it
        build(onnx_model, tmp_path / "c.engine", precision="int8", calib_images=calib_cls,
              calib_cache=tmp_path / "c.cache")
    with pytest.raises(UsageError, match="only apply to an engine build"):
        from ocrconvert.pipeline import convert

        convert(src, tmp_path / "plan", target="tensorrt-plan", route="trt-export",
                options={"precision": "int8", "calib_images": calib_cls, "calib_cache": tmp_path / "c.cache"})
    assert not (tmp_path / "c.engine").exists() and not (tmp_path / "plan").exists()


@pytest.mark.parametrize("major", [10, 11])
def test_damaged_engine_fails_verification_and_lands_failed(monkeypatch, onnx_model, tmp_path, capsys, major):
    """Negative control: what TensorRT parsed is damaged, so the engine computes wrongly and the verdict fails."""
    import ocrconvert
    from onnx import numpy_helper
    import onnx

    from fake_tensorrt import install_fake_tensorrt
    from ocrconvert.converters import onnx_trt

    install_fake_tensorrt(monkeypatch, major)
    real = onnx_trt.prepare_source

    def damaged(*args, **kwargs):
        prepared = real(*args, **kwargs)
        model = onnx.load(str(prepared.onnx_path))
        conv = next(n for n in model.graph.node if n.op_type == "Conv")
        w = next(i for i in model.graph.initializer if i.name == conv.input[1])
        w.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(w) * 3, w.name))
        onnx.save(model, str(prepared.onnx_path))
        return prepared

    monkeypatch.setattr(onnx_trt, "prepare_source", damaged)
    out = tmp_path / "cls.engine"
    code, stdout, _ = run_cli(["trt-build", str(onnx_model(CLS)), "-o", str(out), *sum([["--shapes", s] for s in
                                                                                        CLS_SHAPES], []), "--json"],
                              capsys)
    res = json.loads(stdout)
    assert code == 6 and res["passed"] is False
    failed = tmp_path / "cls.FAILED.engine"
    assert not out.exists() and failed.is_file()
    assert json.loads((tmp_path / "cls.FAILED.engine.ocrconvert.json").read_text())["status"] == "failed-verification"
    with pytest.raises(ParityError):
        ocrconvert.load(failed)


def test_cli_json_stdout_is_one_document(fake_trt10, onnx_model, tmp_path, capsys):
    out = tmp_path / "m.engine"
    code, stdout, stderr = run_cli(["trt-build", str(onnx_model(CLS)), "-o", str(out), "--fp16", "--json"], capsys)
    assert code == 0, stderr
    res = json.loads(stdout)
    assert res["passed"] and res["route"] == ["trt-build"] and out.is_file()


def test_engine_of_another_version_or_gpu_is_refused(monkeypatch, onnx_model, tmp_path):
    import ocrconvert

    from fake_tensorrt import install_fake_tensorrt

    trt10 = install_fake_tensorrt(monkeypatch, 10)
    engine = tmp_path / "m.engine"
    build(onnx_model, engine, verify=False)
    trt10._device = "another-gpu"
    with pytest.raises(CorruptModelError, match="could not deserialize") as ei:
        ocrconvert.load(engine).inputs
    assert "host memory (fake CUDA)" in ei.value.hint and "Rebuild it here" in ei.value.hint
    install_fake_tensorrt(monkeypatch, 11)
    with pytest.raises(CorruptModelError, match="TensorRT 11"):
        ocrconvert.load(engine).inputs


def test_runner_refuses_shapes_outside_the_profile(fake_trt11, onnx_model, tmp_path):
    import ocrconvert

    engine = tmp_path / "m.engine"
    build(onnx_model, engine, verify=False)
    runner = ocrconvert.load(engine)
    assert runner.profile_ranges() == {"x": ((1, 3, 48, 192), (8, 3, 48, 192), (16, 3, 48, 192))}
    with pytest.raises(UsageError, match="outside the engine's profile"):
        runner.infer({"x": np.zeros((17, 3, 48, 192), np.float32)})


def test_parser_rejection_and_bad_timing_cache(fake_trt, tmp_path, onnx_model):
    from ocrconvert.converters.onnx_trt import build_engine_bytes
    from ocrconvert.options import Precision
    from ocrconvert.tensorrt.profiles import ShapeProfile

    prof = [ShapeProfile("x", (1, 3, 48, 192), (8, 3, 48, 192), (16, 3, 48, 192), "--shapes")]
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(onnx_model(CLS).read_bytes()[:5000])
    with pytest.raises(ConversionError, match="parser rejected broken.onnx: .*Failed to parse"):
        build_engine_bytes(onnx_path=broken, profiles=prof, precision=Precision.FP32)

    cache = tmp_path / "t.cache"
    build_engine_bytes(onnx_path=onnx_model(CLS), profiles=prof, precision=Precision.FP32, timing_cache=cache)
    fake_trt._device = "another-gpu"   # the cache was timed on another GPU: refused, not silently dropped
    with pytest.raises(UsageError, match="not a timing cache of this TensorRT version and GPU"):
        build_engine_bytes(onnx_path=onnx_model(CLS), profiles=prof, precision=Precision.FP32, timing_cache=cache)
    cache.write_bytes(b"not a cache")
    fake_trt._device = "fake-device"
    with pytest.raises(UsageError, match="--timing-cache"):
        build_engine_bytes(onnx_path=onnx_model(CLS), profiles=prof, precision=Precision.FP32, timing_cache=cache)


def test_profile_tensorrt_rejects_is_an_error(fake_trt, onnx_model):
    from ocrconvert.converters.onnx_trt import build_engine_bytes
    from ocrconvert.options import Precision
    from ocrconvert.tensorrt.profiles import ShapeProfile

    bad = [ShapeProfile("x", (8, 3, 48, 192), (1, 3, 48, 192), (16, 3, 48, 192), "--shapes")]  # min > opt
    with pytest.raises(ConversionError, match="rejected the optimization profile"):
        build_engine_bytes(onnx_path=onnx_model(CLS), profiles=bad, precision=Precision.FP32)


def test_tensorrt_messages_go_to_the_log_not_stdout(fake_trt, capsys, caplog):
    from ocrconvert.runners.tensorrt import trt_logger

    fake_trt.Logger(fake_trt.Logger.WARNING).log(fake_trt.Logger.WARNING, "stock logger")
    assert "stock logger" in capsys.readouterr().out   # what trt.Logger does, per its docstring
    logger = trt_logger(fake_trt)
    assert trt_logger(fake_trt) is logger and isinstance(logger, fake_trt.ILogger)
    with caplog.at_level(logging.INFO, logger="ocrconvert.runners.tensorrt"):
        logger.log(fake_trt.ILogger.Severity.WARNING, "routed")
        logger.log(fake_trt.ILogger.Severity.VERBOSE, "chatter")
    assert capsys.readouterr().out == ""
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.WARNING, "TensorRT: routed")]


def test_fakes_refuse_what_the_bindings_refuse(fake_trt):
    trt = fake_trt
    with pytest.raises(TypeError, match="No constructor"):
        trt.ICudaEngine()

    class NoBaseInit(trt.ILogger):
        def __init__(self):
            pass

        def log(self, severity, msg):
            pass

    with pytest.raises(TypeError, match="must be called"):
        trt.Builder(NoBaseInit())
    with pytest.raises(TypeError, match="incompatible"):
        trt.Builder(trt.Logger()).create_builder_config().set_flag(1)
    if trt._major == 11:
        assert not hasattr(trt, "IInt8EntropyCalibrator2") and not hasattr(trt.BuilderFlag, "FP16")
        assert trt.Builder(trt.Logger()).create_network(0).get_flag(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    else:
        assert not trt.Builder(trt.Logger()).create_network(0).get_flag(
            trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def test_host_cuda_has_the_torch_cuda_interface():
    """The stand-in can only stand in if it offers what the TensorRT path calls on TorchCuda, no more."""
    import inspect

    from fake_tensorrt import HostCuda
    from ocrconvert.runners.tensorrt import TorchCuda

    def api(cls):
        return {n: [p for p in inspect.signature(getattr(cls, n)).parameters if p != "self"]
                for n in dir(cls) if not n.startswith("_") or n == "__init__"}

    assert api(HostCuda) == api(TorchCuda)


def test_torch_cuda_without_a_gpu_is_a_conversion_error():
    torch = pytest.importorskip("torch", reason="TorchCuda is torch's CUDA")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: the no-GPU refusal cannot be shown here")
    from ocrconvert.runners.tensorrt import cuda

    with pytest.raises(ConversionError, match="no CUDA device is visible"):
        cuda()
