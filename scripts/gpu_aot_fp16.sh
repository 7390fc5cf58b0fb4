#!/usr/bin/env bash
# GPU: build the fp16 AOTInductor package from the native model, verify it against the recorded Paddle
# reference, and bench it beside the graph route and the native model (eager), all in one run.
# The lent H100's torch 2.11 image needs its system libstdc++ preloaded, or loading any AOTInductor
# package segfaults in the generated wrapper's std::regex (see docs/benchmarks.md).
# usage: scripts/gpu_aot_fp16.sh BUNDLE.tgz SHAPE OUTDIR TAG
set -uo pipefail
bundle=$1; shape=$2; out=$3; tag=$4
export LD_PRELOAD=${LD_PRELOAD:-/usr/lib/x86_64-linux-gnu/libstdc++.so.6}
work=$(mktemp -d)
tar xzf "$bundle" -C "$work"
ocr() { python3 -m ocrconvert "$@"; }
ocr aot-build "$work/nat" -o "$work/fp16.pt2" --fp16 --device cuda --reference "$work/ref.npz" --json > "$out/$tag-aot.json" 2>/dev/null
echo "$tag aot exit $?"
ocr bench "$work/graph" "$work/nat" "$work/fp16.pt2" --device cuda --shape "$shape" --runs 100 --warmup 20 --half --no-compile --json > "$out/$tag-aotbench.json" 2>/dev/null
echo "$tag bench exit $?"
