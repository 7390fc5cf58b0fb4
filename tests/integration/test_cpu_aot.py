"""The CPU deployment form (issue 16): ``aot-build --device cpu`` (Inductor freezing, dynamic batch and width),
verified against the ORIGINAL Paddle model, and ``ocrconvert.load()`` on a native folder serving that package only
when it is verified, built from that very folder and measured faster, with the reason.

One CPU Inductor compile costs minutes on a 2-core machine: ONE package (PP-OCRv4 rec) serves every test here
(module fixture); the load() decision itself is also covered without a compile (``test_choice_*``)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import ocrconvert

pytestmark = [pytest.mark.torch, pytest.mark.native]


@pytest.fixture(scope="module")
def built(zoo, tmp_path_factory):
    """(native folder, the verified CPU package beside it, its ConversionResult)."""
    root = tmp_path_factory.mktemp("cpu_aot")
    native = ocrconvert.convert(zoo("ppocrv4-rec"), root / "rec-native", target="torch", route="native",
                                verify=False).artifact.path
    res = ocrconvert.convert(native, root / "rec.cpu.pt2", target="torch-aot", options={"device": "cpu"})
    return Path(native), Path(res.artifact.path), res


def _manifest(path: Path) -> dict:
    return json.loads(Path(f"{path}.ocrconvert.json").read_text())


@pytest.mark.paddle
@pytest.mark.zoo
@pytest.mark.slow
def test_cpu_package_is_dynamic_frozen_verified_and_timed(built, zoo):
    native, pkg, res = built
    assert res.passed and res.route == ["aot-build"]
    man = _manifest(pkg)
    assert man["verification"]["source_backend"] == "paddle"  # the ORIGINAL, found through the native manifest
    aot = man["aot"]
    assert aot["device"] == "cpu" and aot["fp16"] is False and aot["inductor"]["freezing"] is True
    assert aot["dynamic_axes"] == [0, 3]
    speed = aot["speed"]
    assert speed["package_ms"] > 0 and speed["eager_fused_ms"] > 0
    assert speed["faster"] is (speed["package_ms"] < speed["eager_fused_ms"])
    # two batch sizes and two widths, each against Paddle itself
    runner, paddle = ocrconvert.load(pkg), ocrconvert.load(zoo("ppocrv4-rec"))
    rng = np.random.default_rng(1)
    for shape in [(1, 3, 48, 160), (3, 3, 48, 416)]:
        x = rng.uniform(-1, 1, size=shape).astype(np.float32)
        got = next(iter(runner.infer({"x": x}).values()))
        want = next(iter(paddle.infer({paddle.input_names[0]: x}).values()))
        assert got.shape == want.shape and got.shape[0] == shape[0]
        assert np.abs(got - want).max() < 1e-4
        assert (got.argmax(-1) == want.argmax(-1)).mean() > 0.99
    # a static dim it was not built for is refused (AOTInductor would return garbage)
    with pytest.raises(ocrconvert.OcrConvertError, match="does not fit"):
        runner.infer({"x": np.zeros((1, 3, 32, 320), np.float32)})


@pytest.mark.paddle
@pytest.mark.zoo
@pytest.mark.slow
def test_damaged_cpu_package_fails_verification(built, zoo, damage, tmp_path):
    from ocrconvert.formats import detect
    from ocrconvert.runners.aot import AotRunner

    native, pkg, _ = built
    bad = tmp_path / "bad.pt2"
    what = damage.damaged_aot(pkg, native, bad, "conv x1.02")
    assert what, "nothing in the frozen package to damage"
    shutil.copy(f"{pkg}.ocrconvert.json", f"{bad}.ocrconvert.json")
    with pytest.raises(ocrconvert.OcrConvertError, match="no matching ocrconvert manifest"):
        ocrconvert.load(bad).infer({"x": np.zeros((1, 3, 48, 320), np.float32)})  # provenance: not the bytes built
    report = ocrconvert.verify(zoo("ppocrv4-rec"), bad, target_runner=AotRunner(detect(bad), trust=True))
    assert report.verdict == "FAILED" and not report.passed, report.summary_line()


@pytest.mark.paddle
@pytest.mark.zoo
@pytest.mark.slow
def test_load_serves_the_package_beside_its_native_folder_and_says_why(built, tmp_path, caplog):
    import logging

    from ocrconvert.runners.aot import AotRunner
    from ocrconvert.runners.torch import TorchNativeRunner

    native, pkg, _ = built
    faster = _manifest(pkg)["aot"]["speed"]["faster"]
    with caplog.at_level(logging.INFO, logger="ocrconvert.runners.deploy"):
        r = ocrconvert.load(native)
    assert isinstance(r, AotRunner if faster else TorchNativeRunner), r.choice
    assert r.choice.form == ("aot" if faster else "native")
    assert ("measured faster" if faster else "measured slower") in r.choice.reason
    assert r.choice.reason in caplog.text
    # forced forms, and the eager form wherever no package of this folder lies beside it
    assert isinstance(ocrconvert.load(native, form="native"), TorchNativeRunner)
    assert isinstance(ocrconvert.load(native, form="aot"), AotRunner)
    assert isinstance(ocrconvert.load(native, fused=False), TorchNativeRunner)
    alone = shutil.copytree(native, tmp_path / "alone" / native.name)
    r = ocrconvert.load(alone)
    assert isinstance(r, TorchNativeRunner) and "no verified cpu AOT package" in r.choice.reason
    with pytest.raises(ocrconvert.OcrConvertError, match="no verified cpu AOT package"):
        ocrconvert.load(alone, form="aot")
    # the package copied beside a copy of the folder names another source path: not served
    shutil.copy(pkg, alone.parent / pkg.name)
    shutil.copy(f"{pkg}.ocrconvert.json", alone.parent / f"{pkg.name}.ocrconvert.json")
    assert isinstance(ocrconvert.load(alone), TorchNativeRunner)
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 3, 48, 320)).astype(np.float32)
    a = next(iter(ocrconvert.load(native, form="aot").infer({"x": x}).values()))
    b = next(iter(ocrconvert.load(native, form="native").infer({"x": x}).values()))
    assert np.abs(a - b).max() < 1e-4


# ---- the decision alone, without a compile: manifests beside a placeholder package ------------------------------
def _fake_pair(root: Path, *, speed: dict | None, passed: bool = True, fp16: bool = False, tamper: bool = False):
    from ocrconvert.formats import Artifact, Format
    from ocrconvert.manifest import sha256_artifact, sha256_file

    native = root / "m-native"
    native.mkdir(parents=True)
    (native / "config.json").write_text('{"model_type": "x"}')
    (native / "model.safetensors").write_bytes(b"weights")
    pkg = root / "m.cpu.pt2"
    pkg.write_bytes(b"package")
    man = {"source": {"path": str(native.resolve()), "sha256": sha256_artifact(native)},
           "artifact": {"sha256": sha256_file(pkg)}, "status": "verified" if passed else "failed-verification",
           "verification": {"passed": passed}, "aot": {"device": "cpu", "fp16": fp16, **({"speed": speed} if speed else {})}}
    Path(f"{pkg}.ocrconvert.json").write_text(json.dumps(man))
    if tamper:
        pkg.write_bytes(b"packagf")
    return Artifact(native, Format.TORCH_NATIVE, {})


FAST = {"package_ms": 10.0, "eager_fused_ms": 30.0, "shape": [8, 3, 48, 320], "threads": 1, "faster": True}
SLOW = {"package_ms": 40.0, "eager_fused_ms": 30.0, "shape": [8, 3, 48, 320], "threads": 1, "faster": False}


@pytest.mark.parametrize("kw, form, why", [
    ({"speed": FAST}, "aot", "measured faster"),
    ({"speed": SLOW}, "native", "measured slower"),
    ({"speed": None}, "native", "no build-time timing"),
    ({"speed": FAST, "passed": False}, "native", "no verified cpu AOT package"),
    ({"speed": FAST, "fp16": True}, "native", "no verified cpu AOT package"),
    ({"speed": FAST, "tamper": True}, "native", "no verified cpu AOT package"),
])
def test_choice_follows_verification_provenance_and_the_recorded_timing(tmp_path, kw, form, why):
    from ocrconvert.runners.deploy import choose

    native = _fake_pair(tmp_path, **kw)
    c = choose(native, "cpu")
    assert c.form == form and why in c.reason, c
    if form == "aot":
        assert c.path.endswith("m.cpu.pt2") and "10.0 vs 30.0 ms" in c.reason
    assert choose(native, "cpu", "native").form == "native"
    with pytest.raises(ocrconvert.OcrConvertError, match="not one of"):
        choose(native, "cpu", "fastest")
