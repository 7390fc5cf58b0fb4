"""A real Triton Inference Server (the nvidia-pytriton wheel's tritonserver, Python backend) serving the python
repository of a real converted v5 set: over HTTP and gRPC it answers what `ocrconvert ocr` answers on the same
images, under concurrent clients; bad requests get errors and it keeps serving; killed, a restarted one serves again.

One server for the module, bound to 127.0.0.1 on free ports, in its own process group; the fixture stops it."""
from __future__ import annotations

import io
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytestmark = [pytest.mark.zoo, pytest.mark.paddle]

TIMEOUT = 600.0  # seconds per request: a loaded 2-core machine runs one page in seconds to tens of seconds


@pytest.fixture(scope="module")
def server(served_set, tmp_path_factory):
    from ocrconvert.serving import TritonServer, write_repository

    root = tmp_path_factory.mktemp("triton")
    write_repository(served_set, root / "repo", backend="python")
    _add_damaged_ocr(root / "repo")
    t0 = time.perf_counter()
    srv = TritonServer(root / "repo", log_path=root / "tritonserver.log", ready_timeout=300).start()
    print(f"tritonserver ready in {time.perf_counter() - t0:.1f} s")
    try:
        yield srv
    finally:
        srv.stop()
        assert srv.proc.poll() is not None


def _add_damaged_ocr(repo):
    """``ocr_damaged``: the ocr model with its dictionary shifted by one entry (a negative control: the parity
    assertion must catch a server that reads the wrong characters)."""
    import shutil

    shutil.copytree(repo / "ocr", repo / "ocr_damaged")
    cfg = repo / "ocr_damaged" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace('name: "ocr"', 'name: "ocr_damaged"').replace("count: 2", "count: 1"))
    spec_path = repo / "ocr_damaged" / "1" / "pipeline.json"
    spec = json.loads(spec_path.read_text())
    spec["dictionary"] = spec["dictionary"][1:] + spec["dictionary"][:1]
    spec_path.write_text(json.dumps(spec))


@pytest.fixture(scope="module")
def expected(served_set, pages):
    """`ocrconvert ocr FOLDER --set SET --json` (the CLI in this process): the in-process answer per page name."""
    import contextlib

    from ocrconvert.cli.app import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as exit_:
        main(["ocr", str(pages[0].parent), "--set", str(served_set), "--json"])
    assert exit_.value.code == 0, buf.getvalue()[-2000:]
    return {os.path.basename(img["source"]): img["lines"] for img in json.loads(buf.getvalue())["images"]}


def _clients(server):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    return {"http": (httpclient, httpclient.InferenceServerClient(server.http_url, connection_timeout=TIMEOUT,
                                                                   network_timeout=TIMEOUT)),
            "grpc": (grpcclient, grpcclient.InferenceServerClient(server.grpc_url))}


def _infer(server, protocol: str, data: np.ndarray, *, model="ocr", name="image", datatype="UINT8"):
    module, client = _clients(server)[protocol]
    inp = module.InferInput(name, list(data.shape), datatype)
    inp.set_data_from_numpy(data)
    kwargs = {"client_timeout": TIMEOUT} if protocol == "grpc" else {}
    return client.infer(model, [inp], **kwargs)


def _ocr(server, protocol: str, path, model: str = "ocr") -> dict:
    r = _infer(server, protocol, np.frombuffer(path.read_bytes(), np.uint8), model=model)
    return {"boxes": r.as_numpy("boxes"), "texts": [t.decode("utf-8") for t in r.as_numpy("texts")],
            "scores": r.as_numpy("scores")}


def _assert_same(got: dict, lines: list[dict]) -> None:
    assert got["texts"] == [ln["text"] for ln in lines]
    assert got["boxes"].shape == (len(lines), 4, 2)
    np.testing.assert_allclose(got["boxes"], np.asarray([ln["box"] for ln in lines], np.float32).reshape(-1, 4, 2),
                               atol=1e-3)
    np.testing.assert_allclose(got["scores"], [ln["score"] for ln in lines], atol=1e-5)


def test_http_and_grpc_answer_what_ocr_answers(server, expected, pages):
    assert all(len(expected[p.name]) >= 2 for p in pages), expected  # pages with text: the comparison has signal
    for page in pages:
        for protocol in ("http", "grpc"):
            _assert_same(_ocr(server, protocol, page), expected[page.name])


def test_a_damaged_ocr_model_fails_the_comparison(server, expected, pages):
    got = _ocr(server, "http", pages[0], model="ocr_damaged")
    with pytest.raises(AssertionError):
        _assert_same(got, expected[pages[0].name])


def test_concurrent_clients(server, expected, pages):
    jobs = [(("http", "grpc")[i % 2], pages[i % len(pages)]) for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: _ocr(server, *job), jobs))
    for (_, page), got in zip(jobs, results):
        _assert_same(got, expected[page.name])


def _png(width: int, height: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (width, height), 255).save(buf, format="PNG")
    return np.frombuffer(buf.getvalue(), np.uint8)


def test_bad_requests_get_errors_and_the_server_keeps_serving(server, expected, pages):
    from tritonclient.utils import InferenceServerException

    blob = np.frombuffer(pages[0].read_bytes(), np.uint8)
    bad = {
        "wrong dtype": dict(data=blob.astype(np.float32), datatype="FP32"),
        "wrong shape": dict(data=blob.reshape(1, -1)),
        "empty bytes": dict(data=np.zeros(0, np.uint8)),
        "20,000-pixel image": dict(data=_png(20000, 16)),
        "not an image": dict(data=np.frombuffer(os.urandom(4096), np.uint8)),
        "rec line of the wrong height": dict(data=np.zeros((1, 3, 32, 100), np.float32), model="rec", name="x",
                                             datatype="FP32"),
    }
    messages = {}
    for case, kwargs in bad.items():
        for protocol in ("http", "grpc"):
            with pytest.raises(InferenceServerException) as exc:
                _infer(server, protocol, **kwargs)
            messages[case] = str(exc.value)
    assert "20000x16" in messages["20,000-pixel image"] and "8192" in messages["20,000-pixel image"]
    assert "not a readable image" in messages["not an image"]
    assert "UINT8" in messages["wrong dtype"] or "datatype" in messages["wrong dtype"].lower()
    assert server.ready()
    _assert_same(_ocr(server, "grpc", pages[0]), expected[pages[0].name])


def test_killed_server_restarts_and_serves(server, expected, pages):
    """Last in the module: SIGKILL to the server's process group (as a crash), then a fresh start serves again."""
    old = server.proc.pid
    server.kill()
    assert not server.ready()
    with pytest.raises(Exception):
        _ocr(server, "http", pages[1])
    server.start()
    assert server.proc.pid != old and server.ready()
    _assert_same(_ocr(server, "http", pages[1]), expected[pages[1].name])
