"""Peak resident memory of one encoder run in ONNX Runtime, measured in a child process.

``python -m ocrconvert.vlm.memory MODEL.onnx H W`` runs the model once on an H×W input and prints JSON;
:func:`peak_rss` starts that child, which reports its own high-water mark (``VmHWM``), so the figure covers
the session's weights, arena and every intermediate, and nothing of the caller.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .._compat import peak_rss_mb
from ..errors import ConversionError


def peak_rss(model: str | Path, height: int, width: int, *, threads: int = 0, timeout: float = 3600) -> dict:
    cmd = [sys.executable, "-m", "ocrconvert.vlm.memory", str(model), str(height), str(width), str(threads)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            raise ConversionError(f"the memory probe ran past {timeout:.0f} s")
        time.sleep(0.2)
    out, err = proc.stdout.read(), proc.stderr.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = (err.strip().splitlines() or ["(no output)"])[-1][:300]
        raise ConversionError(f"the memory probe failed (exit {code}): {tail}",
                              hint="A negative exit is a signal: -9 usually means the kernel's OOM killer.")
    info = json.loads(out.strip().splitlines()[-1])
    # The child's own VmHWM; wait4's ru_maxrss would include this (possibly large) parent: see peak_rss_mb.
    peak_mb = info.pop("peak_rss_mb", None) or usage.ru_maxrss / 1024
    info["peak_rss_bytes"] = int(peak_mb * 1024 * 1024)
    info["peak_rss_gib"] = round(peak_mb / 1024, 3)
    info["wall_s"] = round(time.perf_counter() - started, 2)
    return info


def _child(model: str, height: int, width: int, threads: int) -> None:
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    t0 = time.perf_counter()
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - t0
    x = np.random.default_rng(0).standard_normal((1, 3, height, width), dtype=np.float32)
    t0 = time.perf_counter()
    outs = sess.run(None, {sess.get_inputs()[0].name: x})
    run_s = time.perf_counter() - t0
    print(json.dumps({"height": height, "width": width, "patches": (height // 16) * (width // 16),
                      "load_s": round(load_s, 2), "run_s": round(run_s, 2),
                      "output_shapes": [list(o.shape) for o in outs],
                      "finite": bool(all(np.isfinite(o).all() for o in outs)), "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 0)
