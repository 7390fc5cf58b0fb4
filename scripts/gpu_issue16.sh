#!/usr/bin/env bash
# Issue 16 item 3 on a lent GPU, one call: PP-OCRv4 det + rec as deployed (native fp16 + torch.compile, AOT fp16
# package plain and replayed from CUDA graphs), each verified against the recorded Paddle reference; bench at
# det 1x960², det 8x960², rec 64x48x320; FLOPs / byte floors; the OCR pipeline's rec stage per batch.
# The GPU image has no Paddle and no network: references are recorded beforehand (ocrconvert reference SRC -o ...).
#
# usage: scripts/gpu_issue16.sh CARRY OUT
#   CARRY: nat.tar.xz (v4det-nat, v4rec-nat, v4cls-nat native folders), v4det-ref.npz, v4rec-ref.npz,
#          transformers-slim.tar.xz (transformers 5.23 without the model folders ocrconvert does not use),
#          *.whl: wheels the image lacks, installed --no-deps (pyclipper: the pipeline's det post-processing; its
#          absence stopped step D on 2026-11-30)
#   I16_DEVICE=cpu: a dry run on a machine without a GPU (fp32, small shapes, no compile)
set -uo pipefail
c=$(realpath "$1"); out=$(realpath "$2"); w=${I16_WORK:-/tmp/i16}; dev=${I16_DEVICE:-cuda}
mkdir -p "$w/site" "$w/raw"; r=$w/raw
export LD_PRELOAD=${LD_PRELOAD:-/usr/lib/x86_64-linux-gnu/libstdc++.so.6} PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD/src:$w/site${PYTHONPATH:+:$PYTHONPATH}
t0=$SECONDS; say() { echo "[$((SECONDS - t0))s] $*"; }
budget=${I16_BUDGET:-560}   # seconds for the whole script: later steps shrink or are skipped to leave time to collect
tl() { local l=$((budget - (SECONDS - t0) - 25)); [ "$l" -gt "$1" ] && l=$1; [ "$l" -lt 5 ] && l=5; echo $l; }
ocr() { python3 -m ocrconvert "$@"; }
tar xJf "$c/transformers-slim.tar.xz" -C "$w/site" && tar xJf "$c/nat.tar.xz" -C "$w" || exit 3
if ls "$c"/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$w/site" "$c"/*.whl || exit 3
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version(), 'transformers', transformers.__version__)"
  nproc; date -u; } > "$r/env.txt" 2>&1
cat "$r/env.txt"
if [ "$dev" = cuda ]; then
  fp16=(--fp16); half=(--half); comp=(--compile reduce-overhead); bcomp=(--half --compile-mode reduce-overhead)
  det1=1x3x960x960; det8=8x3x960x960; rec=64x3x48x320; runs=100; warm=20; pfp16=--fp16; prec=fp16
else
  fp16=(); half=(); comp=(); bcomp=(--no-compile); det1=1x3x320x320; det8=2x3x320x320; rec=4x3x48x320; runs=3; warm=1
  pfp16=; prec=fp32
fi
mkdir -p "$w/det" "$w/rec"
cat > "$w/nat-set.yaml" <<Y
det: $w/v4det-nat
rec: $w/v4rec-nat
cls: $w/v4cls-nat
Y

say "A: AOT builds (verified against the Paddle references), compiled-module parity, floors, GPU tests — in parallel"
for m in det rec; do
  timeout 330 python3 -m ocrconvert aot-build "$w/v4$m-nat" -o "$w/$m/$m.pt2" "${fp16[@]}" --device "$dev" \
    --reference "$c/v4$m-ref.npz" --force --json > "$r/$m-aot-build.json" 2> "$r/$m-aot-build.err" &
  timeout 330 python3 -m ocrconvert verify "$c/v4$m-ref.npz" "$w/v4$m-nat" --device "$dev" "${half[@]}" "${comp[@]}" \
    --precision $prec --json > "$r/$m-verify-compiled.json" 2> "$r/$m-verify-compiled.err" &
done
{ timeout 200 python3 scripts/gpu_floor.py "$w/v4det-nat" $det1 $det8 --device "$dev" $pfp16 --json "$r/floor-det.json" > /dev/null
  timeout 100 python3 scripts/gpu_floor.py "$w/v4rec-nat" $rec --device "$dev" $pfp16 --json "$r/floor-rec.json" > /dev/null
  timeout 150 python3 -m pytest -q -p no:cacheprovider tests/torch/test_aot_cuda_graphs.py -k "replay or refused" > "$r/pytest.txt" 2>&1; } &
wait
for m in det rec; do say "$m aot-build: $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d.get('verdict') or d.get('passed'), d.get('error',''))" "$r/$m-aot-build.json" 2>&1 | tail -1)"
  say "$m compiled verify: $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d.get('verdict'), d.get('error',''))" "$r/$m-verify-compiled.json" 2>&1 | tail -1)"; done
tail -3 "$r/pytest.txt"

say "B: the AOT packages replayed from CUDA graphs, verified against the Paddle references"
if [ "$dev" = cuda ]; then
  for m in det rec; do
    timeout $(tl 90) python3 -m ocrconvert verify "$c/v4$m-ref.npz" "$w/$m/$m.pt2" --cuda-graphs --precision $prec --json \
      > "$r/$m-verify-cuda-graphs.json" 2> "$r/$m-verify-cuda-graphs.err"
    say "$m cuda-graphs verify exit $?"
  done
fi

say "C: bench (one isolated bench run per shape: native fp16 eager / compiled, AOT plain / CUDA graphs)"
ocrbench() { timeout $(tl 120) python3 -m ocrconvert bench "$@" --device "$dev" --runs $runs --warmup $warm --json; }
ocrbench "$w/v4det-nat" "$w/det/det.pt2" --shape $det1 "${bcomp[@]}" > "$r/bench-det-b1.json" 2> "$r/bench-det-b1.err"; say "det b1 exit $?"
ocrbench "$w/v4rec-nat" "$w/rec/rec.pt2" --shape $rec "${bcomp[@]}" > "$r/bench-rec.json" 2> "$r/bench-rec.err"; say "rec exit $?"
ocrbench "$w/v4det-nat" "$w/det/det.pt2" --shape $det8 "${bcomp[@]}" > "$r/bench-det-b8.json" 2> "$r/bench-det-b8.err"; say "det b8 exit $?"

say "D: OCR pipeline rec stage per batch (before/after infer_best), then the product's pipeline bench"
timeout $(tl 90) python3 scripts/gpu_rec_probe.py "$w/nat-set.yaml" "$dev" "$r/rec-probe.json" --passes 5 > "$r/rec-probe.txt" 2>&1; cat "$r/rec-probe.txt" | tail -3
timeout $(tl 90) python3 -m ocrconvert bench --pipeline "$w/nat-set.yaml" --device "$dev" --runs 6 --rounds 3 --json \
  > "$r/bench-pipeline.json" 2> "$r/bench-pipeline.err"; say "pipeline bench exit $?"

say "E: kernel profile of the det package (plain call)"
[ "$dev" = cuda ] && AOT_WORK=$w timeout $(tl 60) bash scripts/gpu_aot_fp16.sh profile det $det1 "$r" > /dev/null 2>&1

say "collect"
python3 - "$r" "$out" <<'PY'
import json, sys
from pathlib import Path
r, out = Path(sys.argv[1]), Path(sys.argv[2])
def load(name):
    p = r / name
    if not p.is_file():
        return {"missing": name}
    try:
        return json.loads(p.read_text())
    except ValueError:
        err = r / name.replace(".json", ".err")
        return {"unreadable": name, "stdout_tail": p.read_text()[-2000:],
                "stderr_tail": err.read_text()[-3000:] if err.is_file() else ""}
env = (r / "env.txt").read_text() if (r / "env.txt").is_file() else ""
for m in ("det", "rec"):
    doc = {"env": env, "aot_build": load(f"{m}-aot-build.json"), "verify_compiled": load(f"{m}-verify-compiled.json"),
           "verify_aot_cuda_graphs": load(f"{m}-verify-cuda-graphs.json"), "floor": load(f"floor-{m}.json")}
    if m == "det":
        doc["bench_b1"], doc["bench_b8"] = load("bench-det-b1.json"), load("bench-det-b8.json")
    else:
        doc["bench"] = load("bench-rec.json")
    (out / f"h200-16-v4{m}.json").write_text(json.dumps(doc, indent=1))
(out / "h200-16-pipeline.json").write_text(json.dumps({"env": env, "rec_probe": load("rec-probe.json"),
                                                       "bench_pipeline": load("bench-pipeline.json")}, indent=1))
PY
cp "$r/pytest.txt" "$out/h200-16-pytest.txt" 2>/dev/null
cp "$r/det-profile.txt" "$out/h200-16-v4det-profile.txt" 2>/dev/null
tar czf "$out/h200-16-raw.tgz" -C "$w" raw 2>/dev/null
say "done"
