#!/usr/bin/env python
"""Fuzz format detection and the model readers with hypothesis.

Contract under test: no input makes a reader raise anything but an ``OcrConvertError`` subclass
(a user error with a message and an exit code). Anything else is a bug.

Targets: ``formats.detect``, ``paddle_program.read_legacy`` / ``read_pir``, ``onnx_io.load_onnx``,
the batch-config loader (``zoo.batch.load_config``) and the safetensors reader
(``torch_graph.read_graph_artifact``). ``tests/fuzz`` runs each briefly; the long run is::

    python scripts/fuzz_readers.py --examples 20000 [--target onnx] [--seed N]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocrconvert.errors import OcrConvertError

SUFFIXES = [".onnx", ".pdmodel", ".pdiparams", ".json", ".pt", ".pt2", ".engine", ".txt", ".yml", ".safetensors",
            ".bin", "", ".ONNX", ".plan"]
NAMES = ["inference", "model", "graph", "config", "ppocr_keys_v1", "dict", "x"]


def _tiny_onnx_bytes() -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np

    w = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4), "w")
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=[w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _tiny_legacy_program_bytes() -> bytes:
    try:
        from paddle.base.proto import framework_pb2
    except ImportError:
        return b"\x0a\x00"
    desc = framework_pb2.ProgramDesc()
    blk = desc.blocks.add()
    blk.idx, blk.parent_idx = 0, -1
    op = blk.ops.add()
    op.type = "relu"
    return desc.SerializeToString()


ONNX_SEED = _tiny_onnx_bytes()

# bytes: random, or a valid file with a few bytes flipped/truncated
def mutated(seed: bytes):
    @st.composite
    def build(draw):
        data = bytearray(seed)
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "random"]))
        if kind == "random":
            return draw(st.binary(max_size=2048))
        if kind == "truncate":
            return bytes(data[: draw(st.integers(0, len(data)))])
        if kind == "insert":
            at = draw(st.integers(0, len(data)))
            return bytes(data[:at]) + draw(st.binary(min_size=1, max_size=64)) + bytes(data[at:])
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data)
    return build()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.sampled_from(["program", "regions", "blocks", "ops", "#", "A", "O", "TT", "D", "N", "AT", "name", "x"]),
        children, max_size=6),
    max_leaves=40,
)


@st.composite
def pir_documents(draw):
    """JSON shaped like a PIR program, with random holes and wrong types."""
    op = st.fixed_dictionaries({"#": st.sampled_from(["p", "1.pd_op.data", "1.pd_op.fetch", "1.pd_op.conv2d", "x"])},
                               optional={"A": json_values, "O": json_values, "regions": json_values})
    blocks = st.lists(st.fixed_dictionaries({}, optional={"ops": st.lists(op, max_size=4) | json_values}), max_size=3)
    doc = {"program": {"regions": [{"blocks": draw(blocks)}]}}
    if draw(st.booleans()):
        doc = draw(json_values)
    return json.dumps(doc).encode() if draw(st.booleans()) else draw(st.binary(max_size=256))


yaml_scalars = st.none() | st.booleans() | st.integers(-5, 100) | st.floats(allow_nan=False) | st.text(max_size=8)
yaml_docs = st.recursive(
    yaml_scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(
        st.sampled_from(["version", "output", "report_dir", "defaults", "models", "model", "targets", "target",
                         "timeout", "opset", "atol", "rtol", "expect", "exit_code", "unsupported_ops", "name",
                         "precision", "family", "dict", "bogus"]), c, max_size=5),
    max_leaves=30,
)


def _yaml_texts():
    import yaml

    structured = yaml_docs.map(lambda d: yaml.safe_dump(d, allow_unicode=True))
    tags = st.sampled_from(["!!python/object/apply:os.system ['true']", "&a [*a]", "{a: !!binary 'xx'}",
                            "!!set {a}", "? [a]\n: b", "output: x\nmodels: [ppocrv4-cls]\ndefaults: {targets: [onnx]}"])
    return structured | st.text(max_size=300) | tags


# ------------------------------------------------------------------------------------------ targets
def _only_our_errors(fn, *args):
    try:
        fn(*args)
    except OcrConvertError:
        pass


def target_detect(tmp: Path, layout: list[tuple[str, str, bytes]]) -> None:
    from ocrconvert.formats import detect

    root = tmp / "m"
    root.mkdir()
    for name, suffix, data in layout:
        (root / f"{name}{suffix}").write_bytes(data)
    _only_our_errors(detect, root)
    for p in sorted(root.iterdir()):
        _only_our_errors(detect, p)


def _file_target(filename: str, reader: str):
    """Write the fuzzed bytes as ``filename`` and hand it to ``reader`` ("module:function")."""
    def target(tmp: Path, data: bytes) -> None:
        import importlib

        module, func = reader.split(":")
        p = tmp / filename
        p.write_bytes(data)
        _only_our_errors(getattr(importlib.import_module(module), func), p)
    return target


target_legacy = _file_target("inference.pdmodel", "ocrconvert.paddle_program:read_legacy")
target_pir = _file_target("inference.json", "ocrconvert.paddle_program:read_pir")
target_onnx = _file_target("model.onnx", "ocrconvert.onnx_io:load_onnx")


def target_config(tmp: Path, text: str) -> None:
    from ocrconvert.zoo.batch import load_config

    p = tmp / "batch.yaml"
    p.write_bytes(text.encode("utf-8", errors="replace"))  # lone surrogates from st.text()
    _only_our_errors(load_config, p)


def target_safetensors(tmp: Path, data: bytes) -> None:
    from ocrconvert.torch_graph import read_graph_artifact, split_weights
    import onnx

    folder = tmp / "art"
    folder.mkdir()
    desc, _ = split_weights(onnx.load_from_string(ONNX_SEED))
    onnx.save(desc, str(folder / "graph.onnx"))
    (folder / "model.safetensors").write_bytes(data)
    _only_our_errors(read_graph_artifact, folder)


def _safetensors_seed() -> bytes:
    import numpy as np
    from safetensors.numpy import save

    return save({"w": np.arange(4, dtype=np.float32).reshape(1, 4)})


layouts = st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(SUFFIXES),
                             st.binary(max_size=64) | mutated(ONNX_SEED)), max_size=4, unique_by=lambda t: t[0] + t[1])

STRATEGIES = {
    "detect": (target_detect, layouts),
    "legacy": (target_legacy, mutated(_tiny_legacy_program_bytes()) | st.binary(max_size=512)),
    "pir": (target_pir, pir_documents()),
    "onnx": (target_onnx, mutated(ONNX_SEED)),
    "config": (target_config, _yaml_texts()),
    "safetensors": (target_safetensors, mutated(_safetensors_seed())),
}


def make_test(name: str, max_examples: int, seed: int | None = None):
    """A hypothesis test for one target; each example gets a fresh temporary folder."""
    fn, strategy = STRATEGIES[name]

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=seed is None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def test(value):
        with tempfile.TemporaryDirectory() as d:
            fn(Path(d), value)

    if seed is not None:
        from hypothesis import seed as hseed

        test = hseed(seed)(test)
    return test


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=5000, help="examples per target")
    ap.add_argument("--target", choices=sorted(STRATEGIES), action="append", help="default: all")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore")
    failed = 0
    for name in args.target or sorted(STRATEGIES):
        t0 = time.perf_counter()
        try:
            make_test(name, args.examples, args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little"))()
            print(f"PASSED | {name} | {args.examples} examples | {time.perf_counter() - t0:.1f} s", flush=True)
        except Exception as exc:  # noqa: BLE001 - report every target, then fail
            failed += 1
            print(f"FAILED | {name} | {type(exc).__name__}: {exc}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
