"""PP-OCR text-direction classifier (``ch_ppocr_mobile_v2.0_cls``: MobileNetV3-small style, x0.35).

transformers ships no equivalent class (``pp_lcnet`` is a different network), so this module provides a
small ``PreTrainedModel`` + ``PretrainedConfig`` pair with the same artifact layout (config.json +
model.safetensors).  The whole layer list is read from the program.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from .architectures import NativeArchitecture, register
from .errors import NativeMappingError
from .fused import conv_from, fold_bn
from .layers import LayerSequence
from .mapping import WeightWriter

MODEL_TYPE = "ocrconvert_ppocr_mobilenetv3_cls"
_ACTS = {"hardswish": nn.Hardswish, "relu": nn.ReLU, None: nn.Identity}


class PPOCRMobileNetV3ClsConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(
        self,
        stem_channels: int = 8,
        stem_stride: int = 2,
        stem_act: str = "hardswish",
        blocks: list | None = None,  # [kernel, in, mid, out, [sh, sw], se, act, shortcut]
        last_channels: int = 200,
        last_act: str = "hardswish",
        pool_kernel: list | None = None,
        pool_stride: list | None = None,
        se_reduction: int = 4,
        num_labels_out: int = 2,
        bn_eps: float = 1e-5,
        **kwargs,
    ):
        self.stem_channels = stem_channels
        self.stem_stride = stem_stride
        self.stem_act = stem_act
        self.blocks = blocks or []
        self.last_channels = last_channels
        self.last_act = last_act
        self.pool_kernel = pool_kernel or [2, 2]
        self.pool_stride = pool_stride or [2, 2]
        self.se_reduction = se_reduction
        self.num_labels_out = num_labels_out
        self.bn_eps = bn_eps
        super().__init__(**kwargs)


class ConvBNAct(nn.Module):
    def __init__(self, cin, cout, k, stride, groups, act, eps):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=eps)
        self.act = _ACTS[act]()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class SE(nn.Module):
    def __init__(self, c, reduction):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c // reduction, 1)
        self.conv2 = nn.Conv2d(c // reduction, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        s = self.conv2(F.relu(self.conv1(s)))
        return x * torch.clamp(0.2 * s + 0.5, 0.0, 1.0)


class ResidualUnit(nn.Module):
    def __init__(self, k, cin, mid, cout, stride, se, act, shortcut, reduction, eps):
        super().__init__()
        self.expand = ConvBNAct(cin, mid, 1, 1, 1, act, eps)
        self.depthwise = ConvBNAct(mid, mid, k, tuple(stride), mid, act, eps)
        self.se = SE(mid, reduction) if se else nn.Identity()
        self.linear = ConvBNAct(mid, cout, 1, 1, 1, None, eps)
        self.shortcut = bool(shortcut)

    def forward(self, x):
        y = self.linear(self.se(self.depthwise(self.expand(x))))
        return x + y if self.shortcut else y


class PPOCRMobileNetV3ClsModel(PreTrainedModel):
    config_class = PPOCRMobileNetV3ClsConfig
    config: PPOCRMobileNetV3ClsConfig
    main_input_name = "pixel_values"
    base_model_prefix = "model"

    def __init__(self, config: PPOCRMobileNetV3ClsConfig):
        super().__init__(config)
        c = config
        self.stem = ConvBNAct(3, c.stem_channels, 3, c.stem_stride, 1, c.stem_act, c.bn_eps)
        self.blocks = nn.ModuleList(
            ResidualUnit(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], c.se_reduction, c.bn_eps) for b in c.blocks
        )
        cin = c.blocks[-1][3] if c.blocks else c.stem_channels
        self.last = ConvBNAct(cin, c.last_channels, 1, 1, 1, c.last_act, c.bn_eps)
        self.fc = nn.Linear(c.last_channels, c.num_labels_out)
        self.post_init()

    def _init_weights(self, module):  # plain torch defaults; real weights always come from the checkpoint
        return

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.stem(pixel_values)
        for b in self.blocks:
            x = b(x)
        x = self.last(x)
        x = F.max_pool2d(x, self.config.pool_kernel, self.config.pool_stride)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return torch.softmax(self.fc(x), dim=1)


def _act_of(seq: LayerSequence, what: str) -> str | None:
    if seq.at("act", {"hardswish", "relu"}):
        return seq.take("act", None, what).op.type
    return None


def parse_cls(seq: LayerSequence):
    stem = seq.take("conv", "conv2d", "stem conv")
    if "bn_mean" not in stem.params:
        raise NativeMappingError("stem conv without batch norm")
    stem_act = _act_of(seq, "stem act")
    blocks, recs = [], []
    eps = {stem.attrs["bn_eps"]}
    reductions = set()
    while True:
        exp = seq.take("conv", "conv2d", "expand/last conv")
        eps.add(exp.attrs.get("bn_eps"))
        act = _act_of(seq, "expand act")
        if seq.at("pool"):
            last, last_act = exp, act
            break
        if int(exp.op.in_shapes[1][2]) != 1 or "bn_mean" not in exp.params:
            raise NativeMappingError("expand conv is not 1x1 conv + BN")
        dw = seq.take("conv", {"depthwise_conv2d", "conv2d"}, "depthwise conv")
        eps.add(dw.attrs.get("bn_eps"))
        if dw.attrs["groups"] != int(dw.op.in_shapes[1][0]) or dw.attrs["groups"] == 1 and int(dw.op.in_shapes[1][0]) > 1:
            raise NativeMappingError("depthwise conv is not depthwise")
        dw_act = _act_of(seq, "depthwise act")
        if dw_act != act:
            raise NativeMappingError("expand/depthwise activations differ")
        se = None
        if seq.at("pool"):
            seq.take("pool", None, "SE pool")
            s1 = seq.take("conv", "conv2d", "SE conv1")
            seq.take("act", "relu", "SE relu")
            s2 = seq.take("conv", "conv2d", "SE conv2")
            hs = seq.take("act", "hardsigmoid", "SE gate")
            if not (math.isclose(hs.attrs["slope"], 0.2, rel_tol=1e-5) and math.isclose(hs.attrs["offset"], 0.5)):
                raise NativeMappingError("SE gate is not clamp(0.2x+0.5)")
            seq.take("multiply", None, "SE scale")
            reductions.add(int(s1.op.in_shapes[1][1]) // int(s1.op.in_shapes[1][0]))
            se = (s1, s2)
        lin = seq.take("conv", "conv2d", "linear conv")
        eps.add(lin.attrs.get("bn_eps"))
        if seq.at("act"):
            raise NativeMappingError("linear conv with activation")
        shortcut = False
        if seq.at("add") and lin.out in (seq.peek().inp, *seq.peek().extra_inputs):
            seq.take("add", None, "shortcut")
            shortcut = True
        k = int(dw.op.in_shapes[1][2])
        cin, mid, cout = int(exp.op.in_shapes[1][1]), int(exp.op.in_shapes[1][0]), int(lin.op.in_shapes[1][0])
        stride = [int(s) for s in dw.attrs["strides"]]
        if dw.attrs["paddings"] != [(k - 1) // 2] * 2:
            raise NativeMappingError("depthwise padding is not (k-1)//2")
        if shortcut != (cin == cout and stride == [1, 1]):
            raise NativeMappingError("shortcut placement differs from the MobileNetV3 rule")
        blocks.append([k, cin, mid, cout, stride, se is not None, act, shortcut])
        recs.append((exp, dw, se, lin))
    mp = seq.take("pool", None, "max pool")
    if mp.attrs.get("pooling_type") != "max" or mp.attrs.get("adaptive"):
        raise NativeMappingError("expected a max pool after the last conv")
    ap = seq.take("pool", None, "global pool")
    if not ap.attrs.get("adaptive") or ap.attrs.get("kernel_size") != [1, 1] or ap.attrs.get("pooling_type") != "avg":
        raise NativeMappingError("expected a global average pool")
    fc = seq.take("linear", None, "fc")
    seq.take("act", "softmax", "softmax")
    if len({e for e in eps if e is not None}) != 1 or len(reductions) > 1:
        raise NativeMappingError("mixed BN eps or SE reductions")
    cfg = {
        "model_type": MODEL_TYPE,
        "stem_channels": int(stem.op.in_shapes[1][0]),
        "stem_stride": int(stem.attrs["strides"][0]),
        "stem_act": stem_act,
        "blocks": blocks,
        "last_channels": int(last.op.in_shapes[1][0]),
        "last_act": last_act,
        "pool_kernel": [int(v) for v in mp.attrs["kernel_size"]],
        "pool_stride": [int(v) for v in mp.attrs["strides"]],
        "se_reduction": reductions.pop() if reductions else 4,
        "num_labels_out": int(fc.op.in_shapes[1][1]),
        "bn_eps": float(f"{next(iter(e for e in eps if e is not None)):.7g}"),
    }
    return cfg, (stem, recs, last, fc)


def fill_cls(w: WeightWriter, model: PPOCRMobileNetV3ClsModel, parsed):
    stem, recs, last, fc = parsed

    def cba(m: ConvBNAct, r):
        w.conv(m.conv, r)
        w.bn(m.bn, r)

    cba(model.stem, stem)
    for blk, (exp, dw, se, lin) in zip(model.blocks, recs):
        cba(blk.expand, exp)
        cba(blk.depthwise, dw)
        if se is not None:
            w.conv(blk.se.conv1, se[0])
            w.conv(blk.se.conv2, se[1])
        cba(blk.linear, lin)
    cba(model.last, last)
    w.linear(model.fc, fc)


class FusedCls(nn.Module):
    """Inference form: BatchNorm folded into every conv."""

    def __init__(self, model: PPOCRMobileNetV3ClsModel):
        super().__init__()
        self.net = copy.deepcopy(model)
        for mod in self.net.modules():
            if isinstance(mod, ConvBNAct):
                mod.conv = conv_from(mod.conv, *fold_bn(mod.conv.weight, mod.conv.bias, mod.bn))
                mod.bn = nn.Identity()

    def forward(self, pixel_values):
        return self.net(pixel_values)


CLS = register(NativeArchitecture(
    name="ppocr_mobilenetv3_cls", task="cls", model_type=MODEL_TYPE, output="[N, C] softmax probabilities",
    model_class=lambda: PPOCRMobileNetV3ClsModel, parse=parse_cls, write=fill_cls, fuse=FusedCls,
))
