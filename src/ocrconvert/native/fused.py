"""Fused inference forms: one conv per rep-layer, BatchNorm folded into convs, learnable affine blocks folded
into the neighbouring conv where that is exact.  Plain tensor code, no data-dependent control flow, so it
compiles with ``torch.compile(fullgraph=True)`` and exports with ``torch.export`` / ``torch.onnx`` (dynamo)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

_ACT = {"hardswish": F.hardswish, "silu": F.silu, "swish": F.silu, "relu": F.relu, "gelu": F.gelu}


def fold_bn(w: torch.Tensor, b: torch.Tensor | None, bn: nn.BatchNorm2d, transpose: bool = False):
    std = torch.sqrt(bn.running_var.double() + bn.eps)
    s = bn.weight.double() / std
    w2 = w.double() * (s.view(1, -1, 1, 1) if transpose else s.view(-1, 1, 1, 1))
    b0 = b.double() if b is not None else torch.zeros_like(bn.running_mean, dtype=torch.float64)
    b2 = (b0 - bn.running_mean.double()) * s + bn.bias.double()
    return w2, b2


def conv_from(conv: nn.Conv2d, w: torch.Tensor, b: torch.Tensor) -> nn.Conv2d:
    new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=True)
    with torch.no_grad():
        new.weight.copy_(w.float())
        new.bias.copy_(b.float())
    return new


def _fold_conv_layer(layer) -> nn.Conv2d:
    """transformers ConvLayer (convolution + normalization) -> one conv."""
    w, b = fold_bn(layer.convolution.weight, layer.convolution.bias, layer.normalization)
    return conv_from(layer.convolution, w, b)


class FusedRep(nn.Module):
    def __init__(self, conv: nn.Conv2d, act: str | None, post_scale: float, post_bias: float):
        super().__init__()
        self.conv = conv
        self.act = act
        self.post_scale = float(post_scale)
        self.post_bias = float(post_bias)

    def forward(self, x):
        x = self.conv(x)
        if self.act is not None:
            x = _ACT[self.act](x)
            if self.post_scale != 1.0 or self.post_bias != 0.0:
                x = x * self.post_scale + self.post_bias
        return x


def _rep_to_fused(rep, act_name: str) -> FusedRep:
    """PPLCNetV3LearnableRepLayer (all branches, any trained state) -> FusedRep (RepVGG-style fusion)."""
    k = rep.kernel_size
    ref = rep.conv_symmetric[0].convolution
    w_sum = torch.zeros(ref.weight.shape, dtype=torch.float64)
    b_sum = torch.zeros(ref.out_channels, dtype=torch.float64)
    for branch in rep.conv_symmetric:
        w, b = fold_bn(branch.convolution.weight, None, branch.normalization)
        w_sum += w
        b_sum += b
    if rep.conv_small_symmetric is not None:
        w, b = fold_bn(rep.conv_small_symmetric.convolution.weight, None, rep.conv_small_symmetric.normalization)
        p = k // 2
        w_sum += F.pad(w, [p, p, p, p])
        b_sum += b
    if rep.identity is not None:
        in_per_group = rep.in_channels // rep.groups
        ident = torch.zeros(ref.weight.shape, dtype=torch.float64)
        for c in range(rep.in_channels):
            ident[c, c % in_per_group, k // 2, k // 2] = 1.0
        w, b = fold_bn(ident, None, rep.identity)
        w_sum += w
        b_sum += b
    s, lb = float(rep.lab.scale.item()), float(rep.lab.bias.item())
    conv = conv_from(ref, w_sum * s, b_sum * s + lb)
    has_act = rep.stride != 2
    a_s, a_b = float(rep.act.lab.scale.item()), float(rep.act.lab.bias.item())
    return FusedRep(conv, act_name if has_act else None, a_s, a_b)


def _absorb_input_affine(rep: FusedRep, scale: float, bias: float):
    """y = conv(scale*x + bias) folded into conv weights; exact for unpadded convs (1x1 pointwise)."""
    conv = rep.conv
    assert conv.padding in ((0, 0), 0) and conv.groups == 1
    with torch.no_grad():
        w = conv.weight.double()
        conv.bias.copy_((conv.bias.double() + bias * w.sum(dim=(1, 2, 3))).float())
        conv.weight.copy_((w * scale).float())


class FusedSE(nn.Module):
    def __init__(self, conv1: nn.Conv2d, conv2: nn.Conv2d):
        super().__init__()
        self.conv1, self.conv2 = conv1, conv2

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.conv2(F.relu(self.conv1(s))))


class FusedBlock(nn.Module):
    def __init__(self, dw: FusedRep, se: nn.Module | None, pw: FusedRep):
        super().__init__()
        self.dw, self.se, self.pw = dw, se, pw

    def forward(self, x):
        x = self.dw(x)
        if self.se is not None:
            x = self.se(x)
        return self.pw(x)


class FusedLCNetV3(nn.Module):
    def __init__(self, encoder, act_name: str, out_stages: list[int]):
        super().__init__()
        self.stem = _fold_conv_layer(encoder.convolution)
        blocks, ends = [], []
        for stage in encoder.blocks:
            for layer in stage.layers:
                dw = _rep_to_fused(layer.depthwise_convolution, act_name)
                pw = _rep_to_fused(layer.pointwise_convolution, act_name)
                se = None
                if hasattr(layer.squeeze_excitation_module, "convolutions"):
                    convs = [m for m in layer.squeeze_excitation_module.convolutions if isinstance(m, nn.Conv2d)]
                    se = FusedSE(copy.deepcopy(convs[0]), copy.deepcopy(convs[1]))
                elif dw.act is not None:
                    _absorb_input_affine(pw, dw.post_scale, dw.post_bias)
                    dw.post_scale, dw.post_bias = 1.0, 0.0
                blocks.append(FusedBlock(dw, se, pw))
            ends.append(len(blocks))
        self.blocks = nn.ModuleList(blocks)
        self.stage_ends = ends  # number of blocks up to the end of each stage
        self.taps = [ends[s - 1] - 1 for s in out_stages]  # block index after which a stage output is taken

    def forward(self, x):
        # each part runs in its own weights' dtype (half_precision may keep early parts in fp32); the casts
        # are no-ops when the dtypes already agree
        x = self.stem(x.to(self.stem.weight.dtype))
        feats = []
        for i, b in enumerate(self.blocks):
            x = b(x.to(b.dw.conv.weight.dtype))
            if i in self.taps:
                feats.append(x)
        return feats


class FusedSVTRBlock(nn.Module):
    def __init__(self, blk, heads: int, act: str):
        super().__init__()
        self.ln1, self.ln2 = copy.deepcopy(blk.layer_norm1), copy.deepcopy(blk.layer_norm2)
        self.qkv, self.proj = copy.deepcopy(blk.self_attn.qkv), copy.deepcopy(blk.self_attn.projection)
        self.fc1, self.fc2 = copy.deepcopy(blk.mlp.fc1), copy.deepcopy(blk.mlp.fc2)
        self.heads = heads
        self.head_dim = self.qkv.in_features // heads
        self.scale = float(blk.self_attn.scale)
        self.act = act

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(self.ln1(x)).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = torch.softmax((q * self.scale) @ k.transpose(-1, -2), dim=-1) @ v
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, c))
        return x + self.fc2(_ACT[self.act](self.fc1(self.ln2(x))))


class FusedRec(nn.Module):
    def __init__(self, model):
        super().__init__()
        cfg = model.config
        bcfg = cfg.backbone_config
        self.backbone = FusedLCNetV3(model.model.backbone.encoder, bcfg.hidden_act, [5])
        enc = model.head.encoder
        self.convs = nn.ModuleList(_fold_conv_layer(c) for c in enc.conv_block)
        self.act = cfg.hidden_act
        self.blocks = nn.ModuleList(FusedSVTRBlock(b, cfg.num_attention_heads, cfg.hidden_act) for b in enc.svtr_block)
        self.norm = copy.deepcopy(enc.norm)
        self.head = copy.deepcopy(model.head.head)

    def forward(self, pixel_values):
        x = self.backbone(pixel_values)[-1]
        x = F.avg_pool2d(x, (3, 2))
        act = _ACT[self.act]
        z = x
        h = act(self.convs[1](act(self.convs[0](x))))
        b, c, hh, ww = h.shape
        t = h.flatten(2).transpose(1, 2)
        for blk in self.blocks:
            t = blk(t)
        t = self.norm(t)
        h = t.reshape(b, hh, ww, c).permute(0, 3, 1, 2)
        h = act(self.convs[2](h))
        h = act(self.convs[3](torch.cat((z, h), dim=1)))
        h = act(self.convs[4](h))
        h = h.squeeze(2).transpose(1, 2)
        return torch.softmax(self.head(h), dim=2)


class ShuffleUp(nn.Module):
    """A 2x2 stride-2 transposed conv as a 1x1 conv to ``4 * out`` channels + ``pixel_shuffle(2)``: exact (the
    2x2 windows of a stride-2 transposed conv do not overlap, so each output pixel is one input pixel's dot
    product with one kernel tap). cuDNN runs the transposed form as a dgrad GEMM, slowly in fp32 (0.32 ms of a
    1.75 ms PP-OCRv4 det call on the H100); the 1x1 form is a plain GEMM and the shuffle a copy Inductor fuses."""

    def __init__(self, up: nn.ConvTranspose2d):
        super().__init__()
        cin, cout = up.in_channels, up.out_channels
        self.conv = nn.Conv2d(cin, cout * 4, 1, bias=True)
        with torch.no_grad():
            # W'[o*4 + a*2 + b, c] = W[c, o, a, b]: pixel_shuffle's channel order (o, a, b)
            self.conv.weight.copy_(up.weight.detach().permute(1, 2, 3, 0).reshape(cout * 4, cin, 1, 1))
            bias = up.bias.detach() if up.bias is not None else torch.zeros(cout)
            self.conv.bias.copy_(bias.repeat_interleave(4))

    @staticmethod
    def fits(up) -> bool:
        return (isinstance(up, nn.ConvTranspose2d) and tuple(up.kernel_size) == (2, 2) and tuple(up.stride) == (2, 2)
                and tuple(up.padding) == (0, 0) and tuple(up.output_padding) == (0, 0) and up.groups == 1
                and tuple(up.dilation) == (1, 1))

    @property
    def weight(self) -> torch.Tensor:
        return self.conv.weight

    def forward(self, x):
        return F.pixel_shuffle(self.conv(x), 2)


def _shuffle_up(up: nn.Module) -> nn.Module:
    return ShuffleUp(up) if ShuffleUp.fits(up) else up


class FusedDet(nn.Module):
    # Parts that half_precision() keeps in fp32 (set per instance in __init__): the stem and the first
    # three backbone stages (down to 1/8 resolution), and the last transposed conv + sigmoid.
    # Why the early backbone: its fused rep-layer convs have large gains (3x3 depthwise weights up to ~60,
    # pre-activations over 200), so fp16 rounding there (of weights and activations) is injected at full
    # resolution and amplified by everything after it; on rendered pages it alone moves det-map IoU@0.3 to
    # 0.98-0.99. The neck, the `layer` 1x1 convs and the head's first two convs are insensitive (fp32 there
    # changes IoU by < 1e-3); with stages 4-5 they are ~87 % of the FLOPs, and stay fp16. The last conv +
    # sigmoid give the fp32 map directly (few FLOPs; as a transposed conv cuDNN ran it slowly on the H100, 0.32 ms
    # of a 1.75 ms call, docs/benchmarks.md: the head's transposed convs are now ShuffleUp).
    FP32_PARTS: tuple[str, ...] = ("conv_final",)
    FP32_STAGES = 3

    def __init__(self, model):
        super().__init__()
        cfg = model.config
        bcfg = cfg.backbone_config
        out_stages = [int(s.replace("stage", "")) for s in bcfg.out_features]
        self.backbone = FusedLCNetV3(model.model.backbone.encoder, bcfg.hidden_act, out_stages)
        self.set_fp32_stages(self.FP32_STAGES)
        self.layer = copy.deepcopy(model.model.layer)
        self.neck = copy.deepcopy(model.model.neck)
        h = model.head
        self.conv_down = conv_from(h.conv_down.convolution, *fold_bn(h.conv_down.convolution.weight, None, h.conv_down.norm))
        up = h.conv_up.convolution
        w, b = fold_bn(up.weight, up.bias, h.conv_up.norm, transpose=True)
        conv_up = copy.deepcopy(up)
        with torch.no_grad():
            conv_up.weight.copy_(w.float())
            conv_up.bias.copy_(b.float())
        # the two k2 s2 transposed convs of the head as 1x1 conv + pixel_shuffle (exact, see ShuffleUp)
        self.conv_up = _shuffle_up(conv_up)
        self.conv_final = _shuffle_up(copy.deepcopy(h.conv_final))

    def set_fp32_stages(self, n: int) -> None:
        """Keep the stem and the first ``n`` backbone stages in fp32 under half_precision (0: none of the
        backbone); call before half_precision()."""
        n = max(0, min(int(n), len(self.backbone.stage_ends)))
        early = self.backbone.stage_ends[n - 1] if n else 0
        stem = ("backbone.stem",) if n else ()
        self.FP32_PARTS = (*stem, *(f"backbone.blocks.{i}" for i in range(early)), "conv_final")

    def forward(self, pixel_values):
        feats = self.backbone(pixel_values)
        feats = [layer(f.to(layer.weight.dtype)) for layer, f in zip(self.layer, feats)]
        x = self.neck(feats)
        x = F.relu(self.conv_down(x.to(self.conv_down.weight.dtype)))
        x = F.relu(self.conv_up(x.to(self.conv_up.weight.dtype)))
        return torch.sigmoid(self.conv_final(x.to(self.conv_final.weight.dtype)))


def half_precision(module: nn.Module) -> nn.Module:
    """fp16 weights, except the parts a model lists in ``FP32_PARTS`` (dotted submodule names), which keep
    their fp32 weights untouched (not rounded through fp16). In place; returns ``module``."""
    keep = tuple(getattr(module, "FP32_PARTS", ()))
    for name in keep:
        module.get_submodule(name)  # an unknown name is an error, not a silent no-op

    def kept(name: str) -> bool:
        return any(name == k or name.startswith(k + ".") for k in keep)

    for name, sub in module.named_modules():
        if kept(name):
            continue
        for p in sub.parameters(recurse=False):
            if p.is_floating_point():
                p.data = p.data.half()
        for bname, buf in list(sub.named_buffers(recurse=False)):
            if buf is not None and buf.is_floating_point():
                setattr(sub, bname, buf.half())
    return module


def match_input_dtypes(module: nn.Module) -> nn.Module:
    """Every layer with weights casts its floating inputs to its weights' dtype (a forward pre-hook), so any
    set of layers can stay fp32 under half_precision (a precision plan names single convs, not only the
    blocks whose forward casts by itself). In place; returns ``module``."""
    def cast(mod, args):
        dt = next((p.dtype for p in mod.parameters(recurse=False) if p.is_floating_point()), None)
        return tuple(a.to(dt) if dt is not None and torch.is_tensor(a) and a.is_floating_point() else a for a in args)

    for sub in module.modules():
        if any(p.is_floating_point() for p in sub.parameters(recurse=False)):
            sub.register_forward_pre_hook(cast)
    return module


def input_dtype(module: nn.Module) -> torch.dtype:
    """The dtype a module's first layer computes in (what to feed it after half_precision)."""
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


# -- transformers classes run as they are, BatchNorm folded (PP-OCRv6, PP-LCNet) ----------------------------
_CONV_NORM_PAIRS = (("convolution", "normalization"), ("convolution", "norm"), ("conv1", "norm1"), ("conv2", "norm2"))


@torch.no_grad()
def fold_batchnorms(model: nn.Module) -> nn.Module:
    """Every (conv, BatchNorm) pair of a module (the attribute pairs of ``_CONV_NORM_PAIRS``) as one conv with
    bias, the BatchNorm replaced by ``nn.Identity``: exact in eval mode. In place; returns ``model``."""
    for mod in list(model.modules()):
        for conv_name, norm_name in _CONV_NORM_PAIRS:
            conv, norm = getattr(mod, conv_name, None), getattr(mod, norm_name, None)
            if not isinstance(conv, nn.modules.conv._ConvNd) or not isinstance(norm, nn.modules.batchnorm._BatchNorm):
                continue
            transpose = isinstance(conv, nn.modules.conv._ConvTransposeNd)
            std = torch.sqrt(norm.running_var.double() + norm.eps)
            s = norm.weight.double() / std
            shape = [1] * conv.weight.dim()
            shape[1 if transpose else 0] = -1
            w = conv.weight.double() * s.view(shape)
            b0 = conv.bias.double() if conv.bias is not None else torch.zeros_like(s)
            b = (b0 - norm.running_mean.double()) * s + norm.bias.double()
            conv.weight.copy_(w.float())
            conv.bias = nn.Parameter(b.float())
            setattr(mod, norm_name, nn.Identity())
    return model


class FusedTransformers(nn.Module):
    """Inference form of a transformers class: its own forward with BatchNorm folded into the convs, returning
    the source model's output tensor (``finish``: e.g. the softmax a classifier's ONNX ends in)."""

    def __init__(self, model: nn.Module, finish):
        super().__init__()
        self.model = fold_batchnorms(copy.deepcopy(model).eval())
        self.finish = finish

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.finish(self.model(pixel_values).last_hidden_state)
