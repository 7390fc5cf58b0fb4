"""Where the OCR pipeline's rec stage spends its time, per batch: the old path (the full [N, T, classes] output
copied to the host and reduced there by numpy) against the new one (the runner reduces on its device:
Runner.infer_best), on the same pages, the same runners. Texts and scores must be identical.

usage: python scripts/gpu_rec_probe.py SET DEVICE OUT.json [--passes N] [--pages N]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from pathlib import Path


class HostReduce:
    """The rec runner as the pipeline saw it before infer_best: infer() only."""

    def __init__(self, runner):
        self.runner, self.input_names = runner, runner.input_names

    def infer(self, feed):
        return self.runner.infer(feed)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("set")
    ap.add_argument("device")
    ap.add_argument("out")
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--pages", type=int, default=4)
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import numpy as np

    from ocrconvert.ocr import read_image
    from ocrconvert.ocr import recognize as R
    from ocrconvert.ocr.modelset import read_set
    from ocrconvert.ocr.pages import render_pages

    sync = lambda: None  # noqa: E731
    if a.device.startswith("cuda"):
        import torch

        sync = torch.cuda.synchronize
    ocr = read_set(a.set).pipeline(a.device)
    pages = [read_image(p.image)[0] for p in render_pages(a.pages)]
    runner = ocr.rec_runner
    t = {"pre": 0.0, "model": 0.0, "decode": 0.0}
    shapes: list = []
    rz, dec = R.resize_norm_rec, R.ctc_decode_best
    best0 = R.TextRecognizer._best

    def timed(fn, key):
        def call(*args, **kw):
            s = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                t[key] += time.perf_counter() - s
        return call

    rz2, dec2 = timed(rz, "pre"), timed(dec, "decode")

    def best2(self, x):  # model + transfer + reduction (host or device), synchronised
        shapes.append(list(x.shape))
        sync()
        s = time.perf_counter()
        try:
            return best0(self, x)
        finally:
            sync()
            t["model"] += time.perf_counter() - s

    R.resize_norm_rec, R.ctc_decode_best, R.TextRecognizer._best = rz2, dec2, best2
    res: dict = {"set": a.set, "device": a.device, "pages": a.pages, "passes": a.passes, "modes": {}}
    answers = {}
    for mode, rec_runner in (("host-reduce (before)", HostReduce(runner)), ("device-reduce (infer_best)", runner)):
        ocr.recognizer.runner = rec_runner
        for p in pages:  # warm: every batch shape seen once
            ocr(p)
        per_pass, parts = [], []
        for _ in range(a.passes):
            for k in t:
                t[k] = 0.0
            shapes.clear()
            rec = 0.0
            texts = []
            for p in pages:
                r = ocr(p)
                rec += r.timings["rec"]
                texts += [(ln.text, round(ln.score, 6)) for ln in r.lines]
            per_pass.append(rec * 1e3)
            parts.append({k: v * 1e3 for k, v in t.items()})
        prof = cProfile.Profile()
        prof.enable()
        for p in pages:
            ocr(p)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(12)
        answers[mode] = texts
        res["modes"][mode] = {
            "rec_ms_per_pass_median": round(statistics.median(per_pass), 2), "rec_ms_per_pass": [round(v, 2) for v in per_pass],
            "batches_per_pass": len(shapes), "batch_shapes": shapes,
            "median_parts_ms": {k: round(statistics.median(pp[k] for pp in parts), 2) for k in t},
            "lines": len(texts), "profile_tottime_top12": buf.getvalue().splitlines()[:40]}
    a_, b_ = answers.values()
    res["identical_texts_and_scores"] = a_ == b_
    Path(a.out).write_text(json.dumps(res, indent=1))
    for mode, m in res["modes"].items():
        print(mode, m["rec_ms_per_pass_median"], "ms/pass", m["batches_per_pass"], "batches", m["median_parts_ms"])
    print("identical:", res["identical_texts_and_scores"])
    return 0 if res["identical_texts_and_scores"] else 1


if __name__ == "__main__":
    sys.exit(main())
