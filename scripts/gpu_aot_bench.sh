#!/usr/bin/env bash
# GPU run for one model (used on the lent H100, where Paddle is not installed):
#   build fp16 + fp32 AOTInductor packages from the native model, verify each against the recorded
#   Paddle reference, then bench graph-route eager vs native eager/fused vs AOT fp32/fp16 side by side.
# usage: scripts/gpu_aot_bench.sh BUNDLE.tgz SHAPE OUTDIR   (BUNDLE holds nat/, graph/ (optional), ref.npz)
set -uo pipefail
bundle=$1; shape=$2; out=$3
work=$(mktemp -d)
tar xzf "$bundle" -C "$work"
ocr() { python3 -m ocrconvert "$@"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >> "$out/gpu.txt"
ocr aot-build "$work/nat" -o "$work/fp16.pt2" --fp16 --device cuda --reference "$work/ref.npz" --json > "$out/aot_fp16.json" 2> "$out/aot_fp16.err"
echo "fp16 exit $?" >> "$out/gpu.txt"
ocr aot-build "$work/nat" -o "$work/fp32.pt2" --device cuda --reference "$work/ref.npz" --json > "$out/aot_fp32.json" 2> "$out/aot_fp32.err"
echo "fp32 exit $?" >> "$out/gpu.txt"
arts=()
[ -d "$work/graph" ] && arts+=("$work/graph")
arts+=("$work/nat" "$work/fp32.pt2" "$work/fp16.pt2")
ocr bench "${arts[@]}" --device cuda --shape "$shape" --runs 50 --warmup 10 --json > "$out/bench.json" 2> "$out/bench.err"
echo "bench exit $?" >> "$out/gpu.txt"
