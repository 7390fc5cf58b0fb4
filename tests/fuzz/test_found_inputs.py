"""Inputs scripts/fuzz_readers.py found, each reduced to its smallest form: every reader must end in an
OcrConvertError (a clean exit code) or succeed, never raise anything else.

A new input is added marked ``@bug(raises=<what escapes today>, reason=...)`` (a strict xfail) while its bug is
open: it cannot pass silently (a fix makes it XPASS, which fails: then drop the mark and the test guards the fix),
and a different exception than the pinned one is a plain failure. Every input below is fixed and guarded.
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from ocrconvert.errors import OcrConvertError


def reads_cleanly(fn, *args, **kwargs):
    """Call a reader: a return or an OcrConvertError is the contract; anything else propagates (the bug)."""
    try:
        return fn(*args, **kwargs)
    except OcrConvertError:
        return None


def bug(raises, reason: str):
    return pytest.mark.xfail(strict=True, raises=raises, reason=reason)


def _tiny_onnx(path: Path, *, initializer=None, metadata: dict | None = None) -> Path:
    import onnx
    from onnx import TensorProto, helper

    inits = [initializer] if initializer is not None else []
    nodes = [helper.make_node("Add", ["x", "w"], ["y"])] if inits else [helper.make_node("Relu", ["x"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                                                initializer=inits), opset_imports=[helper.make_opsetid("", 17)])
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _external(path: Path, location: str, offset: str = "0", length: str = "16") -> Path:
    from onnx import TensorProto

    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1, 4])
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", offset), ("length", length)):
        e = w.external_data.add()
        e.key, e.value = k, v
    return _tiny_onnx(path, initializer=w)


# ------------------------------------------------------------------------------------------ formats.detect
def test_detect_home_of_an_unknown_user():
    from ocrconvert.formats import detect

    reads_cleanly(detect, "~ocx-no-such-user/model.onnx")


def test_detect_a_name_too_long(tmp_path):
    from ocrconvert.formats import detect

    reads_cleanly(detect, tmp_path / ("n" * 300))


@pytest.mark.parametrize("target", ["gone", "inference.pdiparams"], ids=["dangling", "a-loop"])
def test_detect_weights_link_to_nowhere(tmp_path, target):
    from ocrconvert.formats import detect

    (tmp_path / "inference.pdmodel").write_bytes(b"program")
    (tmp_path / "inference.pdiparams").symlink_to(tmp_path / target)
    reads_cleanly(detect, tmp_path)


# ------------------------------------------------------------------------------------------ onnx_io
def test_onnx_external_location_with_nul(tmp_path):
    from ocrconvert.onnx_io import load_onnx

    reads_cleanly(load_onnx, _external(tmp_path / "m.onnx", "w\x00.bin"))


def test_onnx_external_location_too_long(tmp_path):
    from ocrconvert.onnx_io import load_onnx

    reads_cleanly(load_onnx, _external(tmp_path / "m.onnx", "x" * 300))


@pytest.mark.parametrize("offset, length", [("0", "64"), ("abc", "16"), ("-4", "16")],
                         ids=["past-the-end", "not-a-number", "negative"])
def test_onnx_external_offset_or_length_out_of_the_file(tmp_path, offset, length):
    from ocrconvert.onnx_io import load_onnx

    (tmp_path / "w.bin").write_bytes(bytes(16))
    reads_cleanly(load_onnx, _external(tmp_path / "m.onnx", "w.bin", offset, length))


def _patched(path: Path, placeholder: bytes, raw: bytes) -> Path:
    """``path`` with every ``placeholder`` replaced by ``raw`` in its bytes (protobuf strings that are not UTF-8)."""
    data = path.read_bytes()
    assert placeholder in data
    path.write_bytes(data.replace(placeholder, raw))
    return path


def test_onnx_external_location_not_utf8(tmp_path):
    from ocrconvert.onnx_io import load_onnx

    reads_cleanly(load_onnx, _patched(_external(tmp_path / "m.onnx", "wQQQ.bin"), b"wQQQ", b"w\xff\xfe\xfd"))


def test_inspect_node_domain_not_utf8(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from ocrconvert.describe import describe

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], domain="acmeQQ")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    reads_cleanly(describe, _patched(tmp_path / "m.onnx", b"acmeQQ", b"acme\xff\xfe"))


def test_onnx_metadata_config_not_json(tmp_path):
    from ocrconvert.runners import load

    runner = reads_cleanly(load, _tiny_onnx(tmp_path / "m.onnx", metadata={"ocrconvert.config": "{"}))
    if runner is not None:
        reads_cleanly(runner.info)


# ------------------------------------------------------------------------------------------ Paddle programs
def _pir_folder(tmp_path: Path, doc, params: bytes = bytes(64)) -> Path:
    (tmp_path / "inference.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    (tmp_path / "inference.pdiparams").write_bytes(params)
    return tmp_path


def _pir_tensor(shape):
    return {"TT": {"D": [{"#": "0.t_f32"}, shape]}}


def test_pir_nested_too_deep(tmp_path):
    from ocrconvert.formats import detect
    from ocrconvert.paddle_program import read_program

    art = detect(_pir_folder(tmp_path, "[" * 100_000 + "]" * 100_000))
    reads_cleanly(read_program, art)


@pytest.mark.paddle
def test_pir_parameter_name_not_a_string(tmp_path):
    from ocrconvert.formats import detect
    from ocrconvert.paddle_program import read_program

    ops = [{"#": "p", "A": [0, 0, 0, "w"], "O": _pir_tensor([1])}, {"#": "p", "A": [0, 0, 0, 7], "O": _pir_tensor([1])},
           {"#": "1.pd_op.data", "A": [{"N": "name", "AT": {"D": "x"}}], "O": [_pir_tensor([-1, 4])]},
           {"#": "1.pd_op.fetch", "A": [{"N": "name", "AT": {"D": "y"}}], "O": [_pir_tensor([-1, 4])]}]
    doc = {"base_code": {"magic": "pir", "version": 1}, "program": {"regions": [{"blocks": [{"ops": ops}]}]}}
    program = reads_cleanly(read_program, detect(_pir_folder(tmp_path, doc)))
    if program is not None:
        reads_cleanly(program.weights)


def _legacy_cls(zoo, tmp_path: Path, edit) -> Path:
    from paddle.base.proto import framework_pb2

    src = zoo("ppocrv4-cls")
    desc = framework_pb2.ProgramDesc()
    desc.ParseFromString((src / "inference.pdmodel").read_bytes())
    edit(desc)
    (tmp_path / "inference.pdmodel").write_bytes(desc.SerializeToString())
    (tmp_path / "inference.pdiparams").symlink_to(src / "inference.pdiparams")
    return tmp_path


@pytest.mark.paddle
@pytest.mark.zoo
def test_legacy_parameter_name_not_utf8(zoo, tmp_path):
    from ocrconvert.formats import detect
    from ocrconvert.paddle_program import read_program

    src = zoo("ppocrv4-cls")
    (tmp_path / "inference.pdmodel").write_bytes((src / "inference.pdmodel").read_bytes())
    (tmp_path / "inference.pdiparams").symlink_to(src / "inference.pdiparams")
    _patched(tmp_path / "inference.pdmodel", b"batch_norm_0.b_0", b"\xffatch_norm_0.b_0")
    program = reads_cleanly(read_program, detect(tmp_path))
    if program is not None:
        reads_cleanly(program.weights)


@pytest.mark.paddle
@pytest.mark.zoo
def test_pir_unknown_version(zoo, tmp_path):
    from ocrconvert.formats import detect
    from ocrconvert.paddle_program import read_program

    src = zoo("ppocrv5-mobile-det")
    doc = json.loads((src / "inference.json").read_bytes())
    doc["base_code"]["version"] = 10**30
    (tmp_path / "inference.json").write_text(json.dumps(doc))
    (tmp_path / "inference.pdiparams").symlink_to(src / "inference.pdiparams")
    program = reads_cleanly(read_program, detect(tmp_path))
    if program is not None:
        reads_cleanly(program.graph)


@pytest.mark.paddle
@pytest.mark.zoo
def test_legacy_op_without_a_type(zoo, tmp_path):
    from ocrconvert.formats import detect
    from ocrconvert.paddle_program import read_program

    def edit(desc):
        next(op for op in desc.blocks[0].ops if op.type not in ("feed", "fetch")).type = ""

    program = reads_cleanly(read_program, detect(_legacy_cls(zoo, tmp_path, edit)))
    if program is not None:
        reads_cleanly(program.graph)


def _missing_parent(desc):
    block = desc.blocks.add()
    block.idx, block.parent_idx = 5, 7


def _tensor_of_a_var_kind(desc):  # seed 1089603437, paddle-graph #820: data type 31 (SPARSE_CSR)
    next(v for v in desc.blocks[0].vars if v.name == "batch_norm_21.b_0").type.dense_tensor.tensor.data_type = 31


@pytest.mark.paddle
@pytest.mark.zoo
@pytest.mark.parametrize("edit", [_missing_parent, _tensor_of_a_var_kind], ids=["missing-parent", "var-kind-dtype"])
def test_legacy_program_paddle_would_crash_on_does_not_kill_the_process(zoo, tmp_path, edit):
    """Paddle's deserialiser dies with SIGSEGV on these (BlockDesc::FindVarRecursive, the dtype translation):
    paddle_program.read_legacy refuses them before Paddle sees them."""
    folder = _legacy_cls(zoo, tmp_path, edit)
    code = ("import sys\nfrom ocrconvert.errors import OcrConvertError\nfrom ocrconvert.formats import detect\n"
            "from ocrconvert.paddle_program import read_program\n"
            f"try:\n    read_program(detect({str(folder)!r})).graph()\nexcept OcrConvertError:\n    pass\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-500:]}"


# ------------------------------------------------------------------------------------------ manifests
def _with_manifest(tmp_path: Path, manifest) -> Path:
    art = _tiny_onnx(tmp_path / "m.onnx")
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    art.with_name("m.onnx.ocrconvert.json").write_text(text)
    return art


def test_manifest_nested_too_deep(tmp_path):
    from ocrconvert.manifest import read_manifest

    reads_cleanly(read_manifest, _with_manifest(tmp_path, "[" * 100_000 + "]" * 100_000))


def test_manifest_verification_not_a_mapping(tmp_path):
    from ocrconvert.runners import load

    reads_cleanly(load, _with_manifest(tmp_path, {"verification": [1]}))


@pytest.mark.parametrize("source", ["a string", {"path": 5}, {"path": None}],
                         ids=["source-a-string", "path-a-number", "path-null"])
def test_manifest_source_of_the_wrong_type(tmp_path, source):
    from ocrconvert.formats import detect
    from ocrconvert.pipeline import original_source

    reads_cleanly(original_source, detect(_with_manifest(tmp_path, {"source": source})))


@pytest.mark.parametrize("hops", [5, [1]], ids=["hops-a-number", "hop-a-number"])
def test_manifest_hops_of_the_wrong_type(tmp_path, hops):
    from ocrconvert.describe import describe

    reads_cleanly(describe, _with_manifest(tmp_path, {"hops": hops}))


def test_batch_resume_manifest_verification_not_a_mapping(tmp_path):
    import onnx

    from ocrconvert.torch_graph import split_weights
    from ocrconvert.zoo.batch.config import JobSpec
    from ocrconvert.zoo.batch.fingerprint import verified_on_disk

    art = tmp_path / "out" / "torch"
    art.mkdir(parents=True)
    desc, _ = split_weights(onnx.load(str(_tiny_onnx(tmp_path / "m.onnx"))))
    onnx.save(desc, str(art / "graph.onnx"))
    (art / "model.safetensors").write_bytes(b"x")
    (art / "ocrconvert.json").write_text('{"verification": 5}')
    reads_cleanly(verified_on_disk, JobSpec(id="m.torch", model=str(tmp_path / "m.onnx"), target="torch", output=art))


def test_native_folder_manifest_io_not_a_mapping(tmp_path):
    from ocrconvert.formats import detect
    from ocrconvert.runners import runner_for

    (tmp_path / "config.json").write_text('{"model_type": "pp_ocrv5_mobile_rec"}')
    (tmp_path / "model.safetensors").write_bytes(b"x")
    (tmp_path / "ocrconvert.json").write_text('{"io": [1], "model_metadata": 2}')
    runner = runner_for(detect(tmp_path))
    reads_cleanly(lambda: runner.inputs)


# ------------------------------------------------------------------------------------------ references
def _npz(arrays: dict) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _reference(tmp_path: Path, header: dict | None = None, data: bytes | None = None) -> Path:
    p = tmp_path / "ref.npz"
    if data is None:
        data = _npz({"__ocrconvert_reference__": np.frombuffer(json.dumps(header).encode(), np.uint8)})
    p.write_bytes(data)
    return p


def test_reference_truncated_zip(tmp_path):
    from ocrconvert.runners import load

    data = _npz({"__ocrconvert_reference__": np.zeros(100, np.uint8), "c0/in/x": np.ones((64, 64), np.float32)})
    reads_cleanly(lambda: load(_reference(tmp_path, data=data[: len(data) - 30])).header)


@pytest.mark.parametrize("header, attribute", [
    ({"inputs": 5, "outputs": [], "cases": []}, "inputs"),
    ({"inputs": [{"shape": [1]}], "outputs": [], "cases": []}, "inputs"),
    ({"inputs": [], "outputs": [], "source": "paddle", "cases": []}, "backend_label"),
    ({"inputs": [], "outputs": [], "cases": [{"kind": "random", "label": "r", "inputs": ["x"], "outputs": []}]},
     "recorded_cases"),
    ({"inputs": [], "outputs": [], "cases": 3}, "recorded_cases"),
], ids=["inputs-a-number", "input-without-name", "source-a-string", "case-input-missing", "cases-a-number"])
def test_reference_header_of_the_wrong_shape(tmp_path, header, attribute):
    from ocrconvert.runners import load

    runner = load(_reference(tmp_path, header))
    reads_cleanly(lambda: getattr(runner, attribute))


def test_reference_family_not_a_name(tmp_path):
    import ocrconvert

    spec = [{"name": "x", "shape": [1, 4], "dtype": "float32"}]
    ref = _reference(tmp_path, {"family": ["cls"], "inputs": spec, "outputs": [{**spec[0], "name": "y"}],
                                "source": {"backend": "x"}, "cases": []})
    reads_cleanly(ocrconvert.verify, ref, _tiny_onnx(tmp_path / "m.onnx"))


# ------------------------------------------------------------------------------------------ inference.yml
def _onnx_with_yml(tmp_path: Path, yml: str) -> Path:
    _tiny_onnx(tmp_path / "model.onnx")
    (tmp_path / "inference.yml").write_text(yml)
    return tmp_path


def test_yml_nested_too_deep(tmp_path):
    from ocrconvert.manifest import read_yaml_config

    (tmp_path / "inference.yml").write_text("a: " + "[" * 5000 + "]" * 5000)
    reads_cleanly(read_yaml_config, tmp_path / "inference.yml")


@pytest.mark.parametrize("yml, call", [
    ("PostProcess: [1]\n", "info"),  # families/rec.py load_dictionary
    ("PostProcess: {name: [1]}\n", "family"),  # families/resolve.py
    ("PostProcess: {name: DBPostProcess, thresh: high}\n", "thresh"),  # families/det.py thresh
    ("PostProcess: {name: DBPostProcess}\nPreProcess: [1]\n", "trt_profile"),  # imaging.transform_op
    ("PostProcess: {name: DBPostProcess}\nPreProcess: {transform_ops: [{DetResizeForTest: [1]}]}\n",
     "trt_profile"),  # families/det.py side_limit side_limit
    ("PostProcess: {name: DBPostProcess}\nPreProcess: {transform_ops: [{NormalizeImage: {mean: [1, 2]}}]}\n",
     "image_feeds"),  # imaging.normalize_chw
    ("PostProcess: {name: DBPostProcess}\nPreProcess: {transform_ops: [{NormalizeImage: 0.5}]}\n",
     "image_feeds"),  # families/det.py
    ("PostProcess: {name: DBPostProcess}\nPreProcess: {transform_ops: [{DetResizeForTest: {resize_long: null}}]}\n",
     "image_feeds"),  # families/det.py int()
    ("PostProcess: {name: CTCLabelDecode}\nPreProcess: {transform_ops: [{RecResizeImg: {image_shape: [3, null]}}]}\n",
     "height"),  # families/rec.py height
    ("PostProcess: {name: CTCLabelDecode, character_dict: " + "k" * 300 + "}\n", "info"),  # rec.py is_file()
], ids=["postprocess-a-list", "name-a-list", "thresh-a-word", "preprocess-a-list", "resize-a-list", "mean-of-two",
        "normalize-a-number", "resize-null", "rec-height-null", "dict-path-too-long"])
def test_yml_of_the_wrong_shape(tmp_path, yml, call):
    """What verification asks of the family built from a model's inference.yml."""
    from ocrconvert.families import resolve_family
    from ocrconvert.families.imaging import render_page
    from ocrconvert.runners import load

    runner = load(_onnx_with_yml(tmp_path, yml))
    info = reads_cleanly(runner.info)
    fam = info and reads_cleanly(resolve_family, info)
    if fam is not None:
        reads_cleanly({"info": lambda: None, "family": lambda: None, "thresh": lambda: fam.thresh,
                       "height": lambda: fam.height,
                       "trt_profile": lambda: fam.trt_profile(info.inputs[0]),
                       "image_feeds": lambda: fam.image_feeds([("p", render_page(size=(64, 64)), None)])}[call])


def test_rec_family_of_a_model_with_a_scalar_output(tmp_path):
    """inspect of an ONNX named rec-ctc by its inference.yml whose output is declared rank 0 (seed 1089603437,
    inspect #6372): the family read the class count as shape[-1]."""
    import onnx
    from onnx import TensorProto, helper

    from ocrconvert.describe import describe

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 48, 320])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "model.onnx"))
    (tmp_path / "inference.yml").write_text("PostProcess: {name: CTCLabelDecode, character_dict: [a, b]}\n")
    reads_cleanly(describe, tmp_path)


# ------------------------------------------------------------------------------------------ images
def _png_header_only(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_images_decompression_bomb(tmp_path):
    from ocrconvert.families.imaging import load_images

    (tmp_path / "bomb.png").write_bytes(_png_header_only(40_000, 40_000))
    reads_cleanly(load_images, tmp_path)


def _png(chunks: list[tuple[bytes, bytes]], tail: bytes = b"") -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunk(k, d) for k, d in chunks) + tail


def test_images_broken_png_chunk(tmp_path):
    from ocrconvert.families.imaging import load_images

    pixels = zlib.compress(b"".join(b"\0" + bytes(range(48)) for _ in range(16)))
    ihdr = (b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
    bad_chunk = struct.pack(">I", len(pixels) - 20) + b"\x01\x02\x03\x04" + pixels[20:] + bytes(4)
    (tmp_path / "a.png").write_bytes(_png([ihdr, (b"IDAT", pixels[:20])], bad_chunk))
    reads_cleanly(load_images, tmp_path)


def test_images_truncated_png_header(tmp_path):
    from ocrconvert.families.imaging import load_images

    (tmp_path / "a.png").write_bytes(_png([(b"IHDR", bytes(8))]))
    reads_cleanly(load_images, tmp_path)


@pytest.mark.native
def test_vlm_image_of_a_thin_strip(tmp_path):
    from PIL import Image

    from ocrconvert.vlm.hunyuan import preprocess

    Image.new("RGB", (400, 1), "black").save(tmp_path / "strip.png")
    reads_cleanly(preprocess, tmp_path / "strip.png")


# ------------------------------------------------------------------------------------------ batch config
def test_batch_output_with_a_nul(tmp_path):
    from ocrconvert.zoo.batch import load_config

    (tmp_path / "b.yaml").write_text('output: "o\\0ut"\nmodels: [ppocrv4-cls]\ndefaults: {targets: [onnx]}\n')
    reads_cleanly(load_config, tmp_path / "b.yaml")


def test_batch_target_name_a_mapping(tmp_path):
    from ocrconvert.zoo.batch import load_config

    (tmp_path / "b.yaml").write_text("output: o\nmodels: [{model: ppocrv4-cls, targets: [{target: {a: 1}}]}]\n")
    reads_cleanly(load_config, tmp_path / "b.yaml")


# ------------------------------------------------------------------------------------------ safetensors
def test_describe_graph_folder_with_damaged_weights(tmp_path):
    import onnx

    from ocrconvert.describe import describe
    from ocrconvert.torch_graph import split_weights

    model = onnx.load(str(_tiny_onnx(tmp_path / "src.onnx", initializer=onnx.numpy_helper.from_array(
        np.ones((1, 4), np.float32), "w"))))
    desc, _ = split_weights(model)
    art = tmp_path / "art"
    art.mkdir()
    onnx.save(desc, str(art / "graph.onnx"))
    (art / "model.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}")
    reads_cleanly(describe, art)
