"""The encoder as an AOTInductor package (.pt2) through the vlm-aot route: dynamic sides, verified against the
transformers tower, loadable afterwards through the project's AOT runner (its manifest vouches for it)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from _vlm_helpers import export

pytestmark = [pytest.mark.native, pytest.mark.slow]
torch = pytest.importorskip("torch")


def _export(tmp_path, **kw):
    return export(tmp_path / "enc.pt2", layers=1, export_size="256x256", sizes=("320x448", "256x256"), **kw)


def test_cpu_package_verifies_and_runs_other_sizes(tmp_path):
    import ocrconvert
    from ocrconvert.vlm.hunyuan import build_tower, reference_forward

    res = _export(tmp_path)
    assert res.passed and res.route == ["vlm-aot"] and [c.label for c in res.report.cases] == ["320x448", "256x256"]
    assert all(o.max_abs <= 1e-4 for c in res.report.cases for o in c.outputs)
    manifest = json.loads((tmp_path / "enc.pt2.ocrconvert.json").read_text())
    (hop,) = manifest["hops"]
    assert hop["to"] == "torch-aot" and hop["tool"] == "torch.export + AOTInductor" and hop["produced"]["device"] == "cpu"
    assert manifest["aot"]["dynamic_axes"] == [2, 3] and manifest["model_metadata"]["ocrconvert.vlm"] == "hunyuan-ocr"
    runner = ocrconvert.load(tmp_path / "enc.pt2")   # provenance: the manifest's digest matches the package
    x = np.random.default_rng(3).standard_normal((1, 3, 160, 704), dtype=np.float32)
    out = runner.infer({"pixel_values": x})
    ref_emb, ref_hidden = reference_forward(build_tower(layers=1, seed=0), torch.from_numpy(x))
    assert out["image_embeds"].shape == tuple(ref_emb.shape)
    assert np.abs(out["image_embeds"] - ref_emb.numpy()).max() <= 1e-4
    assert np.abs(out["last_hidden_state"] - ref_hidden.numpy()).max() <= 1e-4


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
