#!/usr/bin/env bash
# GPU run for one model on the lent H100 (no Paddle there): verify the native model as deployed
# (fp32 TF32-off, fp16, fp16 + torch.compile) against the recorded Paddle reference, then bench the
# onnx2torch graph route, the native model (eager/fused/compiled, fp32/fp16) side by side.
# usage: scripts/gpu_native_bench.sh BUNDLE.tgz SHAPE OUTDIR TAG
set -uo pipefail
bundle=$1; shape=$2; out=$3; tag=$4
work=$(mktemp -d)
tar xzf "$bundle" -C "$work"
ocr() { python3 -m ocrconvert "$@"; }
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch; print('torch', torch.__version__)"; date -u; } > "$out/$tag-env.txt"
ocr verify "$work/ref.npz" "$work/nat" --device cuda --json > "$out/$tag-v-fp32.json" 2>/dev/null
ocr verify "$work/ref.npz" "$work/nat" --device cuda --half --precision fp16 --json > "$out/$tag-v-fp16.json" 2>/dev/null
ocr verify "$work/ref.npz" "$work/nat" --device cuda --half --compile reduce-overhead --precision fp16 --json > "$out/$tag-v-fp16c.json" 2>/dev/null
arts=()
[ -d "$work/graph" ] && arts+=("$work/graph")
arts+=("$work/nat")
ocr bench "${arts[@]}" --device cuda --shape "$shape" --runs 100 --warmup 20 --half --compile-mode reduce-overhead --json > "$out/$tag-bench.json" 2> "$out/$tag-bench.err"
