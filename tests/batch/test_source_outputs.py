"""The ORIGINAL's answers recorded once and shared (``pipeline.convert(batch_cache=...)``, what a batch's jobs
of one model share): a second conversion of the same source does not run it again, the verdict is judged on the
recording (a recording that is not the source's answer FAILS it), and a changed source gets its own recording.
The v4 cls ONNX twin to torch: ONNX Runtime is the source runtime, so every ORT call is a source run."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from _cli_helpers import needs_paddle, needs_torch

pytestmark = [pytest.mark.torch, pytest.mark.zoo, needs_torch]


def test_source_outputs_recorded_once_judged_on_and_keyed_by_the_source_digest(tmp_path, zoo_model, monkeypatch):
    import onnx

    from ocrconvert.pipeline import convert
    from ocrconvert.runners.onnxruntime import OnnxRuntimeRunner

    src = tmp_path / "src" / "model.onnx"
    src.parent.mkdir()
    shutil.copy(zoo_model("ppocrv4-cls-onnx") / "model.onnx", src)
    shared = tmp_path / "recorded"
    runs = []
    infer = OnnxRuntimeRunner._infer
    monkeypatch.setattr(OnnxRuntimeRunner, "_infer", lambda self, feed: runs.append(1) or infer(self, feed))

    def conv(name):
        return convert(src, tmp_path / name, target="torch", route="onnx2torch", batch_cache=shared)

    first = conv("a")
    assert first.passed and runs
    recorded = sorted(shared.rglob("*.npz"))
    assert len(recorded) == len(runs) == len(first.report.cases)
    assert [p.parent.parent.name for p in recorded] == [first.manifest["source"]["sha256"]] * len(recorded)

    runs.clear()
    second = conv("b")
    assert second.passed and runs == []  # judged on the recording: the source did not run again
    assert [c.outputs[0].max_abs for c in second.report.cases] == [c.outputs[0].max_abs for c in first.report.cases]

    # the recording IS what the target is judged against: one that is not the source's answer fails the verdict
    for p in recorded:
        with np.load(p) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["o0"] = arrays["o0"][..., ::-1].copy()  # the two classes swapped
        np.savez(p, **arrays)
    assert not conv("c").passed and runs == []

    # a changed source (same path, one more metadata entry) is another digest: run and recorded again, never the
    # stale (here: poisoned) recording
    model = onnx.load(str(src))
    model.metadata_props.add(key="changed", value="yes")
    onnx.save(model, str(src))
    fourth = conv("d")
    assert fourth.passed and len(runs) == len(fourth.report.cases)
    assert fourth.manifest["source"]["sha256"] != first.manifest["source"]["sha256"]
    assert len({p.parent.parent.name for p in shared.rglob("*.npz")}) == 2


@needs_paddle
@pytest.mark.paddle
def test_a_reusable_hop_runs_once_per_batch_cache_and_a_damaged_kept_output_is_not_reused(tmp_path, zoo_model):
    """paddle2onnx (``reusable``): the ONNX job's hop serves the torch job's first hop (same source bytes, options,
    versions); a kept output that no longer matches its recorded sha256 is not used."""
    from ocrconvert.pipeline import convert

    src, cache = zoo_model("ppocrv4-cls"), tmp_path / "cache"
    first = convert(src, tmp_path / "a.onnx", target="onnx", verify=False, batch_cache=cache)
    assert "reused" not in first.manifest["hops"][0]
    kept = sorted((cache / "hops").glob("*/output"))
    assert len(kept) == 1

    second = convert(src, tmp_path / "b", target="torch", route="onnx2torch", verify=False, batch_cache=cache)
    hop = second.manifest["hops"][0]
    assert hop["converter"] == "paddle2onnx" and "reused" in hop and hop["produced"] == first.manifest["hops"][0]["produced"]

    kept[0].write_bytes(kept[0].read_bytes()[:-16])  # damaged: truncated
    third = convert(src, tmp_path / "c.onnx", target="onnx", batch_cache=cache)
    assert "reused" not in third.manifest["hops"][0] and third.passed  # ran again, and verified against Paddle
