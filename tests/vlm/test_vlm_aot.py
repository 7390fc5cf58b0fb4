"""The encoder as an AOTInductor package (.pt2): dynamic sides, verified against the transformers tower."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = [pytest.mark.native, pytest.mark.slow]
torch = pytest.importorskip("torch")


def _export(tmp_path, **kw):
    from ocrconvert.vlm.export import VlmExportOptions, export_encoder

    opts = VlmExportOptions(layers=1, export_size=(256, 256), sizes=((320, 448), (256, 256)), **kw)
    return export_encoder(tmp_path / "enc.pt2", opts)


def test_cpu_package_verifies_and_runs_other_sizes(tmp_path):
    from ocrconvert.vlm.hunyuan import build_tower, reference_forward

    res = _export(tmp_path)
    assert res.passed and [c.label for c in res.report.cases] == ["320x448", "256x256"]
    assert all(o.max_abs <= 1e-4 for c in res.report.cases for o in c.outputs)
    manifest = json.loads((tmp_path / "enc.pt2.ocrconvert.json").read_text())
    assert manifest["hops"][0]["to"] == "aot" and "AOTInductor" in manifest["hops"][0]["tool"]
    pkg = torch._inductor.aoti_load_package(str(tmp_path / "enc.pt2"))
    tower = build_tower(layers=1, seed=0)
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((1, 3, 160, 704), dtype=np.float32))
    with torch.no_grad():
        emb, hidden = pkg(x)
    ref_emb, ref_hidden = reference_forward(tower, x)
    assert emb.shape == ref_emb.shape and (emb - ref_emb).abs().max().item() <= 1e-4


def test_reduced_precision_package_needs_cuda(tmp_path):
    from ocrconvert.errors import UsageError

    with pytest.raises(UsageError, match="built for CUDA"):
        _export(tmp_path, precision="fp16", device="cpu")
    assert not list(tmp_path.iterdir())


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_gpu_package_verifies_against_fp32_tower_on_the_gpu(tmp_path, precision):
    res = _export(tmp_path, precision=precision, device="cuda", reference_device="cuda")
    assert res.passed, res.report.summary_line()
    assert all(o.cosine >= 0.999 for c in res.report.cases for o in c.outputs)
