#!/usr/bin/env bash
# GPU: build fp16 AOTInductor packages from the native model (one or more variants, built in parallel),
# each verified against the recorded Paddle reference as part of the build, then bench them side by side
# (beside the onnx2torch graph route when the bundle has one) and profile their kernels.
# The lent H100's torch 2.11 image needs its system libstdc++ preloaded, or loading any AOTInductor
# package segfaults in the generated wrapper's std::regex (see docs/benchmarks.md).
#
# usage: scripts/gpu_aot_fp16.sh build BUNDLE.tgz TAG OUTDIR [VARIANT ...]   (waits for all its builds)
#        scripts/gpu_aot_fp16.sh bench TAG SHAPE OUTDIR
#        scripts/gpu_aot_fp16.sh profile TAG SHAPE OUTDIR
# VARIANT = NAME:CHANNELS_LAST:FP32_STAGES, an empty field keeps the code's default (`aot-build --fp16`
# as the CLI runs it = "default::"). BUNDLE.tgz holds nat/ (native model), ref.npz (recorded Paddle
# reference) and optionally graph/ (onnx2torch route).
set -uo pipefail
export LD_PRELOAD=${LD_PRELOAD:-/usr/lib/x86_64-linux-gnu/libstdc++.so.6}
work=${AOT_WORK:-/tmp/aot-work}
device=${AOT_DEVICE:-cuda}   # cpu: a dry run of the script on a machine without a GPU (fp32 packages)
cmd=$1; shift

case $cmd in
build)
  bundle=$1; tag=$2; out=$3; shift 3
  d=$work/$tag; mkdir -p "$d"; tar xzf "$bundle" -C "$d"
  [ $# -gt 0 ] || set -- default::
  pids=(); names=()
  for v in "$@"; do
    IFS=: read -r name cl st <<<"$v"
    # = `ocrconvert aot-build nat -o NAME.pt2 --fp16 --device cuda --reference ref.npz --json`, with the
    # variant's options (the CLI has no flags for them)
    python3 - "$d/nat" "$d/$name.pt2" "$d/ref.npz" "$cl" "$st" "$device" > "$out/$tag-$name-aot.json" 2> "$out/$tag-$name-aot.err" <<'PY' &
import json, sys, time
import ocrconvert
src, dest, ref, cl, st, device = sys.argv[1:7]
fp16 = device == "cuda"
opts = {"precision": "fp16" if fp16 else "fp32", "device": device}  # the aot-build route's options record
if cl:
    opts["channels_last"] = cl == "1"
if st:
    opts["fp32_stages"] = int(st)
t = time.perf_counter()
res = ocrconvert.convert(src, dest, target="torch-aot", options=opts, reference=ref, force=True)
d = res.to_dict()
d["build_and_verify_s"] = round(time.perf_counter() - t, 1)
d["aot"] = res.manifest.get("aot")
print(json.dumps(d, indent=1, default=str))
sys.exit(0 if res.passed else 6)
PY
    pids+=($!); names+=("$name")
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}"; echo "$tag ${names[$i]} aot-build exit $?"
  done
  ;;
bench)
  tag=$1; shape=$2; out=$3; d=$work/$tag
  arts=()
  [ -d "$d/graph" ] && arts+=("$d/graph")
  for p in "$d"/*.pt2; do [ -f "$p" ] && arts+=("$p"); done
  python3 -m ocrconvert bench "${arts[@]}" --device "$device" --shape "$shape" --runs 100 --warmup 20 --half --no-compile \
    --json > "$out/$tag-aotbench.json" 2> "$out/$tag-aotbench.err"
  echo "$tag bench exit $?"
  ;;
profile)
  # per package: plain-call median (as bench), the same package replayed from a CUDA graph, and the
  # kernels of one call (torch.profiler): how much of the latency is GPU work
  tag=$1; shape=$2; out=$3; d=$work/$tag
  python3 - "$shape" "$d"/*.pt2 > "$out/$tag-profile.txt" 2>&1 <<'PY'
import statistics, sys, time
import torch
from torch.profiler import ProfilerActivity, profile
torch.backends.cuda.matmul.allow_tf32 = False  # as the ocrconvert AOT runner runs it
torch.backends.cudnn.allow_tf32 = False
shape = [int(s) for s in sys.argv[1].split("x")]
x = torch.randn(*shape, device="cuda")
def med(fn, n=100, warm=20):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); torch.cuda.synchronize(); ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)
for path in sys.argv[2:]:
    f = torch._inductor.aoti_load_package(path)
    with torch.inference_mode():
        plain = med(lambda: f(x))
        s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                f(x)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(g):
                y = f(x)
            graph = med(g.replay)
        except Exception as exc:  # noqa: BLE001
            graph = f"capture failed: {type(exc).__name__}: {exc}"
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(10):
                f(x)
            torch.cuda.synchronize()
    ev = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy = sum(e.device_time for e in ev) / 10 / 1e3
    print(f"== {path}\nplain call median {plain:.3f} ms | CUDA-graph replay median {graph if isinstance(graph, str) else f'{graph:.3f} ms'}"
          f" | GPU kernel time per call {busy:.3f} ms in {len(ev) // 10} kernels")
    print(prof.key_averages().table(sort_by="device_time_total", row_limit=12, max_name_column_width=70))
PY
  echo "$tag profile exit $?"
  ;;
*)
  echo "unknown command $cmd" >&2; exit 2
  ;;
esac
