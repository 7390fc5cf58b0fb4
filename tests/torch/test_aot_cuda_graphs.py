"""AotRunner's CUDA-graph mode: every shape captured once and replayed, the same answers as the plain package,
refused (exit 2, one message) where it cannot apply. The GPU test builds a tiny package itself (seconds)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ocrconvert.errors import UsageError
from ocrconvert.formats import Artifact, Format


def _fake_package(tmp_path, device: str):
    """A .pt2 file with a manifest saying where it runs: enough for the runner's refusals (it is never loaded)."""
    pkg = tmp_path / "m.pt2"
    pkg.write_bytes(b"not a package")
    (tmp_path / "m.pt2.ocrconvert.json").write_text(json.dumps({"aot": {"device": device, "example_shape": [1, 3, 8, 8],
                                                                        "dynamic_axes": [0]}}))
    return Artifact(pkg, Format.TORCH_AOT, {"package": pkg})


def test_cuda_graphs_on_a_cpu_package_is_refused_before_it_loads(tmp_path):
    pytest.importorskip("torch")
    from ocrconvert.runners.aot import AotRunner

    runner = AotRunner(_fake_package(tmp_path, "cpu"), cuda_graphs=True, trust=True)
    with pytest.raises(UsageError, match="CUDA graphs need a CUDA package"):
        runner.infer({"x": np.zeros((1, 3, 8, 8), np.float32)})


def test_verify_cuda_graphs_takes_aot_packages_alone(zoo, cli):
    """`verify --cuda-graphs` on an ONNX target: exit 2 with one message naming the format, no traceback."""
    onnx = zoo("ppocrv4-cls-onnx")
    r = cli("verify", str(onnx), str(onnx), "--cuda-graphs")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--cuda-graphs applies to AOT packages" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.gpu  # torch alone (the `torch` marker asks for onnx2torch too, absent on the GPU image)
def test_cuda_graph_replay_matches_the_plain_package_per_shape(tmp_path):
    import torch

    from ocrconvert.runners.aot import AotRunner

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return torch.sigmoid(self.conv(x)).mean(dim=1, keepdim=True) * 2 + x[:, :1]

    torch.manual_seed(0)
    m = Tiny().cuda().eval()
    x = torch.rand(2, 3, 16, 24, device="cuda")
    batch = torch.export.Dim("batch", min=1, max=8)
    ep = torch.export.export(m, (x,), dynamic_shapes=({0: batch},))
    pkg = tmp_path / "tiny.pt2"
    torch._inductor.aoti_compile_and_package(ep, package_path=str(pkg))
    (tmp_path / "tiny.pt2.ocrconvert.json").write_text(json.dumps({"aot": {"device": "cuda", "example_shape": [2, 3, 16, 24],
                                                                           "dynamic_axes": [0]}}))
    art = Artifact(pkg, Format.TORCH_AOT, {"package": pkg})
    plain, graphs = AotRunner(art, trust=True), AotRunner(art, trust=True, cuda_graphs=True)
    rng = np.random.default_rng(0)
    for n in (2, 3, 2, 3):  # each shape captured once, then replayed with new data
        feed = {"x": rng.uniform(-1, 1, (n, 3, 16, 24)).astype(np.float32)}
        want = list(plain.infer(feed).values())[0]
        got = list(graphs.infer(feed).values())[0]
        with torch.no_grad():
            ref = m(torch.from_numpy(feed["x"]).cuda()).cpu().numpy()
        assert got.shape == (n, 1, 16, 24)
        np.testing.assert_allclose(got, want, atol=1e-6)
        np.testing.assert_allclose(got, ref, atol=1e-5)
    assert sorted(k[0][0][0] for k in graphs._graphs) == [2, 3]
    # negative control: a replay that kept its first input (no copy into the static buffer) answers stale data
    key = next(iter(graphs._graphs))
    graph, static_in, static_out = graphs._graphs[key]
    graph.replay()
    stale = static_out[0].cpu().numpy()
    fresh = rng.uniform(-1, 1, tuple(static_in[0].shape)).astype(np.float32)
    assert np.abs(stale - list(plain.infer({"x": fresh}).values())[0]).max() > 1e-2
    ids, top, classes = graphs.infer_best({"x": fresh})
    assert classes == 24 and ids.shape == (key[0][0][0], 1, 16)
