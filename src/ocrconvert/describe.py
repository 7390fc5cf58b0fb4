"""``inspect``: what a model is, without running it."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np

from .formats import Artifact, Format, detect
from .manifest import read_manifest
from .torch_graph import weights_count


def _onnx_ops(graph, counter: Counter) -> None:
    for node in graph.node:
        counter[(node.domain + "::" if node.domain else "") + node.op_type] += 1
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                _onnx_ops(attr.g, counter)
            for g in attr.graphs:
                _onnx_ops(g, counter)


def describe(path) -> dict:
    art = path if isinstance(path, Artifact) else detect(path)
    out: dict = {"path": str(art.path), "format": art.format.value, "files": {k: str(v) for k, v in art.files.items()}}
    ops: Counter = Counter()
    runner = None
    if art.format in (Format.PADDLE_LEGACY, Format.PADDLE_PIR):
        from .runners.paddle import PaddleRunner

        runner = PaddleRunner(art)
        ops = runner.program.ops  # the one Paddle program reader, read once for ops and I/O
        out["parameters"] = runner.program.parameter_count
    elif art.format in (Format.ONNX, Format.TORCH_GRAPH):
        from .onnx_io import load_onnx, opset

        model = load_onnx(art.files["model"] if art.format is Format.ONNX else art.files["graph"], load_weights=False)
        _onnx_ops(model.graph, ops)
        out["opset"] = opset(model)
        out["producer"] = f"{model.producer_name} {model.producer_version}".strip()
        if art.format is Format.ONNX:
            # Paddle-exported ONNX keeps weights in Constant nodes rather than initializers: count both
            consts = [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
            out["parameters"] = int(sum(int(np.prod(t.dims)) for t in [*model.graph.initializer, *consts]
                                        if len(t.dims) > 0 and np.prod(t.dims) > 1))
        else:
            out["parameters"] = weights_count(art.files["weights"])
        from .runners import runner_for

        runner = runner_for(art)
    elif art.format is Format.TORCH_NATIVE:
        cfg = json.loads(art.files["config_json"].read_text())
        out["model_type"] = cfg.get("model_type")
        out["architectures"] = cfg.get("architectures")
        out["parameters"] = weights_count(art.files["weights"])
        from .runners import runner_for

        runner = runner_for(art)
    if runner is not None:
        from .families import resolve_family

        info = runner.info()
        out["inputs"] = [s.to_dict() for s in info.inputs]
        out["outputs"] = [s.to_dict() for s in info.outputs]
        out["family"] = resolve_family(info).name
        out["dictionary_size"] = len(info.dictionary) if info.dictionary else None
        out["metadata"] = {k: (v if len(v) <= 80 else f"<{len(v)} chars>") for k, v in info.metadata.items()}
        out["config"] = {k: v for k, v in (info.config or {}).items() if k in ("Global", "PostProcess")}
        if "PostProcess" in out["config"]:
            out["config"]["PostProcess"] = {k: v for k, v in out["config"]["PostProcess"].items() if k != "character_dict"}
    out["ops"] = dict(ops.most_common())
    man = read_manifest(art.path)
    if man:
        out["manifest"] = {"source": man.get("source"), "hops": [h.get("converter") for h in man.get("hops", [])],
                           "verified": (man.get("verification") or {}).get("passed")}
    return out
