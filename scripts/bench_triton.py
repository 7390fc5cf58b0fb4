"""Throughput of the Triton-served OCR pipeline next to ``ocrconvert ocr`` in-process (pages/s).

    python scripts/bench_triton.py SET [--pages 8] [--clients 1 4] [--protocol http|grpc] [--ocr-instances 2]

SET is a model set (``convert-set`` folder, PaddleOCR set folder or stage YAML). The script renders seeded pages
(``ocr.pages``, 960x720), runs them through ``load_set(SET)`` in this process (one page after another, as
``ocrconvert ocr`` does), writes the set's ``--backend python`` repository, starts the real ``tritonserver``
(``ocrconvert.serving.TritonServer``, 127.0.0.1) and sends the same pages from 1 and N concurrent clients; every
answer is checked against the in-process one. One warm-up page each. Prints pages/s and CPU seconds per page
(this process; for Triton also the server's process group: a fairer figure on a loaded machine) and, with --json,
one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set")
    ap.add_argument("--pages", type=int, default=8)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--protocol", choices=("http", "grpc"), default="grpc")
    ap.add_argument("--ocr-instances", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-triton-"))
    try:
        return _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) of every live process in the process group ``pgid`` (server + its stubs)."""
    total = 0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _run(args, work: Path) -> int:
    import ocrconvert
    from ocrconvert.ocr.pages import STYLES, render_page
    from ocrconvert.serving import TritonServer, write_repository

    pages = [render_page(100 + i, STYLES[i % len(STYLES)]).save(work / "pages") for i in range(args.pages)]
    blobs = [p.read_bytes() for p in pages]

    ocr = ocrconvert.load_set(args.set)
    ocr(pages[0])  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    expected = [[ln.text for ln in ocr(p).lines] for p in pages]
    rows = {"in-process (ocrconvert ocr)": (len(pages) / (time.perf_counter() - t0),
                                            (time.process_time() - c0) / len(pages))}

    write_repository(args.set, work / "repo", backend="python", ocr_instances=args.ocr_instances)
    with TritonServer(work / "repo", log_path=work / "tritonserver.log", ready_timeout=600) as srv:
        if args.protocol == "grpc":
            import tritonclient.grpc as tc
            url = srv.grpc_url
        else:
            import tritonclient.http as tc
            url = srv.http_url

        def client():
            return tc.InferenceServerClient(url, **({} if args.protocol == "grpc" else
                                                   {"connection_timeout": 600.0, "network_timeout": 600.0}))

        def send(c, i):
            data = np.frombuffer(blobs[i], np.uint8)
            inp = tc.InferInput("image", [data.size], "UINT8")
            inp.set_data_from_numpy(data)
            texts = [t.decode() for t in c.infer("ocr", [inp]).as_numpy("texts")]
            if texts != expected[i]:
                raise SystemExit(f"page {i}: the server answered {texts}, in-process {expected[i]}")

        send(client(), 0)  # warm-up: every stub loaded
        for n in args.clients:
            def worker(k):
                c = client()
                for i in range(k, len(pages), n):
                    send(c, i)
            t0, c0, s0 = time.perf_counter(), time.process_time(), _group_cpu_s(srv.proc.pid)
            with ThreadPoolExecutor(max_workers=n) as pool:
                list(pool.map(worker, range(n)))
            cpu = time.process_time() - c0 + _group_cpu_s(srv.proc.pid) - s0
            rows[f"triton {args.protocol}, {n} client{'s' if n > 1 else ''}"] = (
                len(pages) / (time.perf_counter() - t0), cpu / len(pages))

    env = {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "python": platform.python_version(),
           "pages": len(pages), "page_size": "960x720", "ocr_instances": args.ocr_instances}
    for name, (rate, cpu) in rows.items():
        print(f"{name:34s} {rate:7.3f} pages/s  {cpu:6.2f} CPU s/page (this process; Triton: + the server group)")
    print(f"({env})")
    if args.json:
        print(json.dumps({"pages_per_s": {k: round(v[0], 4) for k, v in rows.items()},
                          "cpu_s_per_page": {k: round(v[1], 3) for k, v in rows.items()}, "env": env}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
