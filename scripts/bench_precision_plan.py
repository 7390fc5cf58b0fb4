"""What a precision plan costs (issue 14, item 4): one model exported as all-fp16 (no plan) and with ``--plan auto``,
side by side with its fp32 ONNX, each variant in its own process (``ocrconvert.bench.run_bench``: interleaved rounds,
ratios against the first variant), plus the plan's fp32 FLOP share and the gate each build reaches against the
ORIGINAL.

    .venv/bin/python scripts/bench_precision_plan.py [--model ppocrv5-mobile-det] [--precision fp16]
        [--calib-images DIR] [--runs 30] [--threads 2] [--out DIR] [--json]

The source is converted from the zoo's Paddle program first, so its manifest names the ORIGINAL the gate judges
against. CPU: ONNX Runtime's CPU provider has few fp16 kernels (it inserts casts around the rest), so the CPU
ratio measures the plan's casts and fp32 layers on that provider, not a GPU's fp16 speed-up.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ppocrv5-mobile-det")
    ap.add_argument("--precision", default="fp16", choices=("fp16", "int8"))
    ap.add_argument("--calib-images", default=None)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shape", default=None, help="e.g. 1x3x640x640 (default: the family's bench shape)")
    ap.add_argument("--out", default="/tmp/ocrconvert-plan-bench")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import ocrconvert
    from ocrconvert.bench import run_bench
    from ocrconvert.zoo import pull

    say = lambda m: print(m, file=sys.stderr)  # noqa: E731
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / f"{args.model}.onnx"
    ocrconvert.convert(pull(args.model), fp32, target="onnx", force=True, progress=say)
    base = {"precision": args.precision}
    if args.precision == "int8":
        base["calib_images"] = args.calib_images
    builds = {}
    for name, extra in (("all", {}), ("plan", {"plan": "auto"})):
        r = ocrconvert.convert(fp32, out / f"{args.model}.{args.precision}.{name}", target="tensorrt-plan",
                               options={**base, **extra}, force=True, progress=say)
        values = [c.task.value for c in r.report.cases if c.kind != "random" and c.task is not None]
        builds[name] = {"onnx": str(r.artifact.files["model"]), "passed": r.passed,
                        "worst_task_metric": min(values) if values else None,
                        "plan": r.manifest.get("precision_plan")}
    shape = tuple(int(d) for d in args.shape.split("x")) if args.shape else None
    report = run_bench([fp32, builds["all"]["onnx"], builds["plan"]["onnx"]], shape=shape, runs=args.runs,
                       threads=args.threads, progress=say)
    rows = [{"variant": v, "median_ms": r.median_ms, "ratio_vs_fp32": r.ratio, "error": r.error}
            for v, r in zip(("fp32", f"all-{args.precision}", f"{args.precision} + plan"), report.results)]
    plan = builds["plan"]["plan"] or {}
    all_ms, plan_ms = report.results[1].median_ms, report.results[2].median_ms
    summary = {"model": args.model, "precision": args.precision, "shape": list(report.shape),
               "threads": args.threads, "runs": args.runs,
               "plan": {"kept_units": (plan.get("search") or {}).get("kept_units"),
                        "fp32_flop_share": plan.get("fp32_flop_share"), "passed": plan.get("passed"),
                        "evaluations": (plan.get("search") or {}).get("evaluations"),
                        "gate": (plan.get("search") or {}).get("gate", {}).get("threshold")},
               "worst_task_metric": {k: b["worst_task_metric"] for k, b in builds.items()},
               "verified": {k: b["passed"] for k, b in builds.items()},
               "latency": rows,
               "plan_over_all_reduced": (plan_ms / all_ms) if all_ms and plan_ms else None}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        p = summary["plan"]
        print(f"{args.model} {args.precision}: plan keeps {len(p['kept_units'] or [])} unit(s) fp32 "
              f"({p['fp32_flop_share']} of the FLOPs), {p['evaluations']} candidates, gate {p['gate']}")
        print(f"  worst task metric vs the ORIGINAL: all-{args.precision} {summary['worst_task_metric']['all']:.4f}, "
              f"with the plan {summary['worst_task_metric']['plan']:.4f}")
        for r in rows:
            print(f"  {r['variant']:<14} median {r['median_ms']} ms  ratio vs fp32 {r['ratio_vs_fp32']} {r['error']}")
        print(f"  plan / all-{args.precision} latency: {summary['plan_over_all_reduced']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
