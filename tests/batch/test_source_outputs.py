"""The ORIGINAL's answers recorded once and shared (``pipeline.convert(source_outputs=...)``, what a batch's jobs
of one model share): a second conversion of the same source does not run it again, the verdict is judged on the
recording (a recording that is not the source's answer FAILS it), and a changed source gets its own recording.
The v4 cls ONNX twin to torch: ONNX Runtime is the source runtime, so every ORT call is a source run."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from _cli_helpers import needs_torch

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
        return convert(src, tmp_path / name, target="torch", route="onnx2torch", source_outputs=shared)

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
