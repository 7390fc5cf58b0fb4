#!/usr/bin/env bash
# GPU (issue 14): `aot-build --fp16 --plan auto` against the recorded ORIGINAL (Paddle) reference, next to the
# shipped hand split, then both packages benched side by side at det 1x960x960 and 8x960x960.
# usage (on the lent GPU, from the repo root): scripts/gpu_aot_plan.sh BUNDLE_DIR OUTDIR
#   BUNDLE_DIR holds nat/ (the native model: ocrconvert paddle2torch MODEL -o nat) and ref.npz
#   (ocrconvert reference MODEL -o ref.npz), both made where Paddle runs.
set -uo pipefail
export LD_PRELOAD=${LD_PRELOAD:-/usr/lib/x86_64-linux-gnu/libstdc++.so.6} PYTHONUNBUFFERED=1
export PYTHONPATH=${PYTHONPATH:-src}
b=$1; o=$2; w=$(mktemp -d)
ocr() { python3 -m ocrconvert "$@"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$o/h200-14-env.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)" >> "$o/h200-14-env.txt"
for v in auto shipped; do
  plan=(); [ "$v" = auto ] && plan=(--plan auto --plan-max-evals 12)
  t0=$SECONDS
  ocr aot-build "$b/nat" -o "$w/$v.pt2" --fp16 --device cuda "${plan[@]}" \
      --reference "$b/ref.npz" --json > "$o/h200-14-aot-plan-$v.json" 2> "$o/h200-14-aot-plan-$v.err"
  echo "$v: exit $? in $((SECONDS - t0)) s"
done
for shape in 1x3x960x960; do
  ocr bench "$w/auto.pt2" "$w/shipped.pt2" --device cuda --shape "$shape" --runs 50 --json \
      > "$o/h200-14-aot-plan-bench-${shape%%x*}.json" 2> "$o/h200-14-aot-plan-bench-${shape%%x*}.err"
  echo "bench $shape: exit $?"
done
