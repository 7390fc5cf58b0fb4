"""FLOPs and the bytes a model must move, for a roofline floor (issue 16, item 3).

usage: python scripts/gpu_floor.py NATIVE_DIR SHAPE [SHAPE ...] [--device cuda] [--fp16] [--json OUT]

Runs the native fused model once per shape under a TorchDispatchMode that sees every aten op:
* FLOPs: torch.utils.flop_counter's own per-op formulas (what FlopCounterMode counts), split by the dtype the
  op computes in (the det model keeps its early backbone in fp32 under --fp16);
* bytes, two floors: ``io`` = weights + input + output (nothing can move less), and ``gemm`` = every
  conv / matmul reads its input and weights and writes its output once (each such output has to reach
  memory once in any schedule that does not fuse two convs; elementwise ops are taken as fused into them);
* the time each implies on the H200 (4.8 TB/s HBM; 990 TFLOP/s dense fp16 tensor, 67 TFLOP/s fp32 without
  TF32, which ocrconvert keeps off): floor = max(bytes / bandwidth, sum of FLOPs / rate per dtype).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

HBM_BPS = 4.8e12
RATE = {torch.float16: 990e12, torch.bfloat16: 990e12, torch.float32: 67e12}
GEMM = {"convolution", "mm", "addmm", "bmm", "baddbmm", "matmul", "_convolution", "cudnn_convolution",
        "conv2d", "linear"}


def _nbytes(x) -> int:
    return x.numel() * x.element_size() if isinstance(x, torch.Tensor) else 0


class Count(TorchDispatchMode):
    def __init__(self, params: set[int]):
        super().__init__()
        self.flops: dict[str, int] = {}
        self.gemm_bytes = 0
        self.gemm_ops = 0
        self.params = params

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        if packet in flop_registry:
            f = flop_registry[packet](*args, **kwargs, out_val=out)
            dt = next((a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()), torch.float32)
            self.flops[str(dt)] = self.flops.get(str(dt), 0) + int(f)
        if packet.__name__ in GEMM:
            ins = [a for a in args if isinstance(a, torch.Tensor)]
            outs = out if isinstance(out, (tuple, list)) else [out]
            self.gemm_bytes += sum(_nbytes(a) for a in ins) + sum(_nbytes(o) for o in outs)
            self.gemm_ops += 1
        return out


def floor(module, shape, device: str, in_dtype) -> dict:
    x = torch.rand(*shape, device=device, dtype=in_dtype)
    weights = sum(_nbytes(p) for p in module.parameters()) + sum(_nbytes(b) for b in module.buffers())
    mode = Count({id(p) for p in module.parameters()})
    with torch.no_grad(), mode:
        y = module(x)
    y = y[0] if isinstance(y, (tuple, list)) else y
    io = weights + _nbytes(x) + _nbytes(y)
    rate = {"torch.float16": RATE[torch.float16], "torch.bfloat16": RATE[torch.bfloat16], "torch.float32": RATE[torch.float32]}
    flop_s = sum(f / rate.get(k, RATE[torch.float32]) for k, f in mode.flops.items())
    return {"shape": list(shape), "flops": sum(mode.flops.values()), "flops_by_dtype": mode.flops,
            "weights_bytes": weights, "io_bytes": io, "gemm_bytes": mode.gemm_bytes, "gemm_ops": mode.gemm_ops,
            "floor_ms": {"flops": round(flop_s * 1e3, 4), "io_bytes": round(io / HBM_BPS * 1e3, 4),
                         "gemm_bytes": round(mode.gemm_bytes / HBM_BPS * 1e3, 4),
                         "roofline": round(max(flop_s, mode.gemm_bytes / HBM_BPS) * 1e3, 4)},
            "assumed": {"hbm_TBps": HBM_BPS / 1e12, "fp16_TFLOPs": 990, "fp32_TFLOPs": 67}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("native")
    ap.add_argument("shapes", nargs="+")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fp16", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from ocrconvert.native import load_native
    from ocrconvert.native.fused import half_precision, input_dtype

    m = load_native(Path(a.native), fused=True).eval().to(a.device)
    if a.fp16:
        m = half_precision(m)
    res = {"model": a.native, "fp16": a.fp16, "device": a.device,
           "shapes": [floor(m, tuple(int(s) for s in sh.split("x")), a.device, input_dtype(m)) for sh in a.shapes]}
    text = json.dumps(res, indent=1)
    if a.json:
        Path(a.json).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
