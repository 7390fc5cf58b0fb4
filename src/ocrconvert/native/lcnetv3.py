"""PP-LCNetV3 based PP-OCR models (PP-OCRv4/v5 *mobile* rec and det) -> transformers
``PPOCRV5MobileRecForTextRecognition`` / ``PPOCRV5MobileDetForObjectDetection``.

Everything in the config is read from the program: channels, kernels, strides, SE placement, SVTR widths,
heads, epsilons, activations.  Paddle's export already re-parameterised every LearnableRepLayer into one
conv (+bias); it is written into branch 0 of the transformers training form, the other branches are set to
exact no-ops (zero conv weights, BN with mean 0 / var 1, identity-BN scale 0), so the training form computes
the same function in eval mode and every branch stays trainable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .architectures import NativeArchitecture, register
from .errors import NativeMappingError
from .fused import FusedDet, FusedRec
from .layers import LayerSequence, Rec
from .mapping import WeightWriter

_BASE_BLOCKS = [  # PP-LCNetV3 reference layout (kernel, in, out), used only to express channels canonically
    [[3, 16, 32]],
    [[3, 32, 64], [3, 64, 64]],
    [[3, 64, 128], [3, 128, 128]],
    [[3, 128, 256], [5, 256, 256], [5, 256, 256], [5, 256, 256], [5, 256, 256]],
    [[5, 256, 512], [5, 512, 512], [5, 512, 512], [5, 512, 512]],
]


def _nice(x: float) -> float:
    """float32 attribute -> the decimal it was written as (1e-5 instead of 9.99999974e-06)."""
    return float(f"{float(x):.7g}")


def _make_divisible(value, divisor=8, min_value=None):
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return int(new_value)


@dataclass
class RepBlock:
    conv: Rec
    lab: Rec
    act: Rec | None
    act_lab: Rec | None


@dataclass
class LCNetBlock:
    dw: RepBlock
    se: tuple[Rec, Rec] | None
    pw: RepBlock

    @property
    def kernel(self) -> int:
        return int(self.dw.conv.op.in_shapes[1][2])

    @property
    def in_ch(self) -> int:
        return int(self.dw.conv.op.in_shapes[1][0])

    @property
    def out_ch(self) -> int:
        return int(self.pw.conv.op.in_shapes[1][0])

    @property
    def stride(self):
        s = self.dw.conv.attrs["strides"]
        return int(s[0]) if s[0] == s[1] else [int(s[0]), int(s[1])]


@dataclass
class LCNetParse:
    stem: Rec
    blocks: list[LCNetBlock]
    hidden_act: str
    se_reduction: int | None
    notes: list[str] = field(default_factory=list)


_ACT_NAME = {"hardswish": "hardswish", "swish": "silu", "silu": "silu", "relu": "relu", "gelu": "gelu"}


def _read_rep(seq: LayerSequence, what: str) -> RepBlock:
    conv = seq.take("conv", {"conv2d", "depthwise_conv2d"}, what)
    if "bias" not in conv.params or any(k.startswith("bn_") for k in conv.params):
        raise NativeMappingError(f"{what}: expected a re-parameterised conv with bias, got {conv!r}")
    lab = seq.take("affine", None, what + " learnable affine")
    act = act_lab = None
    if seq.at("act", {"hardswish", "swish", "relu", "gelu"}):
        act = seq.take("act", None, what + " activation")
        act_lab = seq.take("affine", None, what + " activation affine")
    stride = conv.attrs["strides"]
    expects_act = not (stride[0] == 2 and stride[1] == 2)  # transformers/Paddle: `if self.stride != 2`
    if expects_act != (act is not None):
        raise NativeMappingError(f"{what}: activation presence does not follow the LearnableRepLayer stride rule")
    return RepBlock(conv, lab, act, act_lab)


def parse_lcnetv3(seq: LayerSequence) -> LCNetParse:
    stem = seq.take("conv", "conv2d", "stem conv")
    if not all(k in stem.params for k in ("bn_mean", "bn_var", "bn_weight", "bn_bias")):
        raise NativeMappingError("stem conv without batch norm")
    if seq.at("act"):
        raise NativeMappingError("stem with activation is not the PP-LCNetV3 layout")
    blocks: list[LCNetBlock] = []
    acts = set()
    reductions = set()
    while seq.at("conv", "depthwise_conv2d"):
        i = len(blocks)
        dw = _read_rep(seq, f"block {i} depthwise")
        se = None
        if seq.at("pool"):
            pool = seq.take("pool", None, f"block {i} SE pool")
            if not pool.attrs.get("adaptive") or pool.attrs.get("kernel_size") != [1, 1]:
                raise NativeMappingError(f"block {i}: SE pool is not a global average pool")
            c1 = seq.take("conv", "conv2d", f"block {i} SE conv1")
            seq.take("act", "relu", f"block {i} SE relu")
            c2 = seq.take("conv", "conv2d", f"block {i} SE conv2")
            a2 = seq.take("act", "hardsigmoid", f"block {i} SE gate")
            if not math.isclose(a2.attrs.get("slope", 0), 1 / 6, rel_tol=1e-4) or not math.isclose(
                a2.attrs.get("offset", 0), 0.5, rel_tol=1e-6
            ):
                raise NativeMappingError(f"block {i}: SE hardsigmoid slope/offset differ from torch's Hardsigmoid")
            seq.take("multiply", None, f"block {i} SE scale")
            cin = int(c1.op.in_shapes[1][1])
            cmid = int(c1.op.in_shapes[1][0])
            if cin % cmid:
                raise NativeMappingError(f"block {i}: SE reduction {cin}/{cmid} is not an integer")
            reductions.add(cin // cmid)
            se = (c1, c2)
        pw = _read_rep(seq, f"block {i} pointwise")
        for r in (dw, pw):
            if r.act is not None:
                acts.add(r.act.op.type)
        blocks.append(LCNetBlock(dw, se, pw))
        if pw.conv.attrs["groups"] != 1 or int(pw.conv.op.in_shapes[1][2]) != 1:
            raise NativeMappingError(f"block {i}: pointwise conv is not 1x1")
        if dw.conv.attrs["groups"] != int(dw.conv.op.in_shapes[1][0]):
            raise NativeMappingError(f"block {i}: depthwise conv is not depthwise")
    if not blocks:
        raise NativeMappingError("no PP-LCNetV3 blocks found")
    if len(acts) != 1:
        raise NativeMappingError(f"mixed activations in the backbone: {acts}")
    if len(reductions) > 1:
        raise NativeMappingError(f"mixed SE reductions in the backbone: {reductions}")
    return LCNetParse(stem, blocks, _ACT_NAME[acts.pop()], reductions.pop() if reductions else None)


def lcnet_backbone_config(p: LCNetParse, stage_sizes: list[int], out_features: list[str], *, num_features_used: bool = True) -> dict:
    """Backbone config; channels expressed as (reference layout, scale, divisor) when that reproduces them
    exactly, else as the literal channels with scale 1 / divisor 1 (also exact)."""
    if sum(stage_sizes) != len(p.blocks) or len(stage_sizes) != 5:
        raise NativeMappingError(f"cannot split {len(p.blocks)} blocks into 5 stages as {stage_sizes}")
    stem_ch = int(p.stem.op.in_shapes[1][0])
    stem_stride = p.stem.attrs["strides"]
    if stem_stride[0] != stem_stride[1] or int(p.stem.op.in_shapes[1][2]) != 3:
        raise NativeMappingError("stem is not a square 3x3 conv")
    real = []
    k = 0
    for n in stage_sizes:
        stage = []
        for _ in range(n):
            b = p.blocks[k]
            k += 1
            stage.append([b.kernel, b.in_ch, b.out_ch, b.stride, b.se is not None])
        real.append(stage)
    # channels chain check
    flat = [b for s in real for b in s]
    if flat[0][1] != stem_ch or any(flat[i][1] != flat[i - 1][2] for i in range(1, len(flat))):
        raise NativeMappingError("block channels do not chain")
    scale, divisor, blocks, stem_base = 1.0, 1, real, stem_ch
    if [len(s) for s in _BASE_BLOCKS] == stage_sizes:
        for cand_scale in (0.35, 0.5, 0.75, 0.95, 1.0, 1.25, 1.5, 2.0):
            found = False
            for cand_div in (16, 8):
                ok = _make_divisible(16 * cand_scale, cand_div) == stem_ch and all(
                    _make_divisible(base[1] * cand_scale, cand_div) == r[1]
                    and _make_divisible(base[2] * cand_scale, cand_div) == r[2]
                    for bs, rs in zip(_BASE_BLOCKS, real)
                    for base, r in zip(bs, rs)
                )
                # transformers' Backbone.num_features (det taps) uses int(c * scale) of each stage's last block
                ok = ok and (not num_features_used or all(
                    int(bs[-1][2] * cand_scale) == rs[-1][2] for bs, rs in list(zip(_BASE_BLOCKS, real))[1:]
                ))
                if ok:
                    scale, divisor, stem_base = cand_scale, cand_div, 16
                    blocks = [
                        [[r[0], base[1], base[2], r[3], r[4]] for base, r in zip(bs, rs)]
                        for bs, rs in zip(_BASE_BLOCKS, real)
                    ]
                    found = True
                    break
            if found:
                break
    return {
        "model_type": "pp_lcnet_v3",
        "scale": scale,
        "divisor": divisor,
        "block_configs": blocks,
        "stem_channels": stem_base,
        "stem_stride": int(stem_stride[0]),
        "reduction": p.se_reduction or 4,
        "hidden_act": p.hidden_act,
        "out_features": out_features,
    }


def fill_lcnetv3(w: WeightWriter, encoder, p: LCNetParse):
    w.conv(encoder.convolution.convolution, p.stem)
    w.bn(encoder.convolution.normalization, p.stem)
    layers = [layer for stage in encoder.blocks for layer in stage.layers]
    if len(layers) != len(p.blocks):
        raise NativeMappingError(f"target has {len(layers)} blocks, program {len(p.blocks)}")
    for layer, b in zip(layers, p.blocks):
        _fill_rep(w, layer.depthwise_convolution, b.dw)
        if b.se is not None:
            convs = [m for m in layer.squeeze_excitation_module.convolutions if hasattr(m, "weight")]
            w.conv(convs[0], b.se[0])
            w.conv(convs[1], b.se[1])
        elif hasattr(layer.squeeze_excitation_module, "convolutions"):
            raise NativeMappingError("target block has SE, program block has none")
        _fill_rep(w, layer.pointwise_convolution, b.pw)


def _fill_rep(w: WeightWriter, rep, r: RepBlock):
    main = rep.conv_symmetric[0]
    w.put(main.convolution, "weight", w.src(r.conv.params["weight"]), r.conv.params["weight"], "fused rep conv")
    w.bn_bias_only(main.normalization, r.conv.params["bias"])
    for extra in list(rep.conv_symmetric)[1:] + ([rep.conv_small_symmetric] if rep.conv_small_symmetric else []):
        w.neutral(extra.convolution, "weight", 0.0)
        w.neutral(extra.normalization, "running_mean", 0.0)
        w.neutral(extra.normalization, "running_var", 1.0)
        w.neutral(extra.normalization, "weight", 1.0)
        w.neutral(extra.normalization, "bias", 0.0)
    if rep.identity is not None:
        w.neutral(rep.identity, "running_mean", 0.0)
        w.neutral(rep.identity, "running_var", 1.0)
        w.neutral(rep.identity, "weight", 0.0)
        w.neutral(rep.identity, "bias", 0.0)
    w.affine(rep.lab, r.lab)
    if r.act_lab is not None:
        w.affine(rep.act.lab, r.act_lab)
    else:  # stride-2 layers never apply their activation block
        w.neutral(rep.act.lab, "scale", 1.0)
        w.neutral(rep.act.lab, "bias", 0.0)


# ---------------------------------------------------------------------------------------------------------
# recognition: backbone -> avg pool (3,2) -> EncoderWithSVTR -> Linear -> softmax
# ---------------------------------------------------------------------------------------------------------
@dataclass
class SVTRBlockRecs:
    ln1: Rec
    qkv: Rec
    proj: Rec
    ln2: Rec
    fc1: Rec
    act: Rec
    fc2: Rec
    scale: float


@dataclass
class RecParse:
    backbone: LCNetParse
    convs: list[Rec]  # 5 conv+bn+act of the encoder
    conv_act: str
    blocks: list[SVTRBlockRecs]
    norm: Rec
    head: Rec


def _take_conv_bn_act(seq: LayerSequence, what: str) -> tuple[Rec, Rec]:
    c = seq.take("conv", "conv2d", what)
    if "bn_mean" not in c.params:
        raise NativeMappingError(f"{what}: expected conv + batch norm")
    a = seq.take("act", None, what + " activation")
    return c, a


def parse_rec(seq: LayerSequence) -> RecParse:
    bb = parse_lcnetv3(seq)
    pool = seq.take("pool", None, "neck pooling")
    if pool.attrs.get("pooling_type") != "avg" or pool.attrs.get("adaptive") or pool.attrs.get("kernel_size") != [3, 2] \
            or list(pool.attrs.get("strides", [])) != [3, 2] or list(pool.attrs.get("paddings", [0, 0])) != [0, 0]:
        raise NativeMappingError(f"rec pooling is not avg_pool2d((3,2)) as in the transformers class: {pool.attrs}")
    convs, acts = [], set()
    for i in range(2):
        c, a = _take_conv_bn_act(seq, f"encoder conv {i}")
        convs.append(c)
        acts.add(a.op.type)
    blocks = []
    while seq.at("layer_norm"):
        ln1 = seq.take("layer_norm", None, "svtr ln1")
        if not seq.at("linear"):
            norm = ln1
            break
        qkv = seq.take("linear", None, "svtr qkv")
        sc = seq.take("scale", None, "svtr q scale")
        seq.take("matmul", None, "svtr q@k")
        seq.take("act", "softmax", "svtr softmax")
        seq.take("matmul", None, "svtr attn@v")
        proj = seq.take("linear", None, "svtr proj")
        seq.take("add", None, "svtr residual 1")
        ln2 = seq.take("layer_norm", None, "svtr ln2")
        fc1 = seq.take("linear", None, "svtr fc1")
        act = seq.take("act", None, "svtr mlp act")
        fc2 = seq.take("linear", None, "svtr fc2")
        seq.take("add", None, "svtr residual 2")
        blocks.append(SVTRBlockRecs(ln1, qkv, proj, ln2, fc1, act, fc2, float(sc.attrs["scale"])))
    else:
        raise NativeMappingError("SVTR encoder: final layer norm not found")
    for i in range(2, 5):
        if i == 3:
            seq.take("concat", None, "encoder shortcut concat")
        c, a = _take_conv_bn_act(seq, f"encoder conv {i}")
        convs.append(c)
        acts.add(a.op.type)
    head = seq.take("linear", None, "CTC head")
    sm = seq.take("act", "softmax", "CTC softmax")
    if sm.attrs.get("axis") not in (2, -1):
        raise NativeMappingError("softmax not over classes")
    if len(acts) != 1:
        raise NativeMappingError(f"mixed encoder conv activations {acts}")
    return RecParse(bb, convs, _ACT_NAME[acts.pop()], blocks, norm, head)


def rec_config(p: RecParse) -> dict:
    hidden = int(p.convs[1].op.in_shapes[1][0])
    in_ch = int(p.convs[0].op.in_shapes[1][1])
    k = [int(x) for x in p.convs[0].op.in_shapes[1][2:]]
    if int(p.convs[0].op.in_shapes[1][0]) != in_ch // 8:
        raise NativeMappingError("encoder conv0 width is not in_channels // 8 (transformers layout)")
    if p.convs[0].attrs["paddings"] != [k[0] // 2, k[1] // 2]:
        raise NativeMappingError("encoder conv0 padding is not kernel//2")
    b0 = p.blocks[0]
    head_dim = round(b0.scale ** -2)
    if not math.isclose(b0.scale, head_dim ** -0.5, rel_tol=1e-5) or hidden % head_dim:
        raise NativeMappingError(f"attention scale {b0.scale} is not head_dim**-0.5")
    mlp_hidden = int(b0.fc1.op.in_shapes[1][1])
    eps_blocks = {r.attrs["eps"] for b in p.blocks for r in (b.ln1, b.ln2)}
    if len(eps_blocks) != 1:
        raise NativeMappingError(f"SVTR blocks use several LayerNorm eps {eps_blocks}")
    acts = {b.act.op.type for b in p.blocks}
    if len(acts) != 1:
        raise NativeMappingError(f"mixed MLP activations {acts}")
    if _ACT_NAME[acts.pop()] != p.conv_act:
        raise NativeMappingError("the transformers class uses one hidden_act for the MLP and encoder convs")
    if not all("bias" in b.qkv.params for b in p.blocks):
        raise NativeMappingError("qkv without bias is not supported")
    block_eps = float(eps_blocks.pop())
    return {
        "model_type": "pp_ocrv5_mobile_rec",
        "hidden_act": p.conv_act,
        "hidden_size": hidden,
        "mlp_ratio": mlp_hidden / hidden,
        "depth": len(p.blocks),
        "head_out_channels": int(p.head.op.in_shapes[1][0 if p.head.attrs.get("transpose_y") else 1]),
        "conv_kernel_size": k,
        "qkv_bias": True,
        "num_attention_heads": hidden // head_dim,
        "layer_norm_eps": _nice(block_eps),
        # the final encoder LayerNorm may use another eps than the blocks; applied by ocrconvert's loader
        "ocrconvert_final_norm_eps": _nice(p.norm.attrs["eps"]),
    }


def fill_rec(w: WeightWriter, model, p: RecParse):
    fill_lcnetv3(w, model.model.backbone.encoder, p.backbone)
    enc = model.head.encoder
    for layer, c in zip(enc.conv_block, p.convs):
        w.conv(layer.convolution, c)
        w.bn(layer.normalization, c)
    for blk, r in zip(enc.svtr_block, p.blocks):
        w.layer_norm(blk.layer_norm1, r.ln1)
        w.linear(blk.self_attn.qkv, r.qkv)
        w.linear(blk.self_attn.projection, r.proj)
        w.layer_norm(blk.layer_norm2, r.ln2)
        w.linear(blk.mlp.fc1, r.fc1)
        w.linear(blk.mlp.fc2, r.fc2)
    w.layer_norm(enc.norm, p.norm)
    w.linear(model.head.head, p.head)


# ---------------------------------------------------------------------------------------------------------
# detection: backbone (4 taps) -> 1x1 convs -> RSE-FPN neck -> DB head
# ---------------------------------------------------------------------------------------------------------
@dataclass
class RSERecs:
    in_conv: Rec
    se1: Rec
    se2: Rec
    out: str  # value id of the layer output


@dataclass
class DetParse:
    backbone: LCNetParse
    stage_sizes: list[int]
    taps: list[Rec]  # model.layer[k], ordered like the backbone features
    insert: list[RSERecs]  # ordered like transformers' insert_conv (p2..p5)
    inputs: list[RSERecs]  # ordered like transformers' input_conv (p2..p5)
    interp_mode: str
    head: list[Rec]  # conv_down, conv_up, conv_final


def _take_rse(seq: LayerSequence, what: str) -> RSERecs:
    c = seq.take("conv", "conv2d", what + " in_conv")
    seq.take("pool", None, what + " SE pool")
    s1 = seq.take("conv", "conv2d", what + " SE conv1")
    seq.take("act", "relu", what + " SE relu")
    s2 = seq.take("conv", "conv2d", what + " SE conv2")
    hs = seq.take("act", "hardsigmoid", what + " SE gate")
    if not (math.isclose(hs.attrs.get("slope", 0), 0.2, rel_tol=1e-5) and math.isclose(hs.attrs.get("offset", 0), 0.5)):
        raise NativeMappingError(f"{what}: SE gate is not clamp(0.2x+0.5)")
    seq.take("multiply", None, what + " SE scale")
    add = seq.take("add", None, what + " shortcut")
    return RSERecs(c, s1, s2, add.out)


def parse_det(seq: LayerSequence) -> DetParse:
    bb = parse_lcnetv3(seq)
    # tap convs: 1x1 conv + bias reading backbone block outputs
    block_out = {}
    for i, b in enumerate(bb.blocks):
        block_out[(b.pw.act_lab or b.pw.lab).out] = i
    taps = []
    while seq.at("conv") and seq.peek().inp in block_out:
        taps.append(seq.take("conv", "conv2d", "feature tap conv"))
    if len(taps) != 4:
        raise NativeMappingError(f"expected 4 backbone feature taps, found {len(taps)}")
    tap_blocks = [block_out[t.inp] for t in taps]
    order = sorted(range(4), key=lambda k: tap_blocks[k])
    taps = [taps[k] for k in order]
    tap_blocks = sorted(tap_blocks)
    if tap_blocks[-1] != len(bb.blocks) - 1:
        raise NativeMappingError("last tap is not the backbone output")
    ends = [t + 1 for t in tap_blocks]
    # stages 2..5 end at the taps; stage 1 = canonical single block when possible
    s1 = 1 if ends[0] >= 2 else None
    if s1 is None:
        raise NativeMappingError("cannot place stage 1 before the first feature tap")
    stage_sizes = [s1, ends[0] - s1, ends[1] - ends[0], ends[2] - ends[1], ends[3] - ends[2]]
    tap_out = {t.out: k for k, t in enumerate(taps)}
    # neck: 4 'insert' RSE layers (read the taps), 3 upsample-adds, 4 'input' RSE layers, upsample + concat
    insert: list[RSERecs | None] = [None] * 4
    for _ in range(4):
        r = _take_rse(seq, "neck insert")
        if r.in_conv.inp not in tap_out:
            raise NativeMappingError("neck insert layer does not read a tap output")
        insert[tap_out[r.in_conv.inp]] = r
    modes = set()
    fused = {insert[3].out: 3}
    # top-down: fused[i] = insert[i] + up(fused[i+1])
    for _ in range(3):
        it = seq.take("interp", None, "neck top-down upsample")
        ad = seq.take("add", None, "neck top-down add")
        modes.add(it.attrs.get("interp_method"))
        if list(it.attrs.get("scale", [])) != [2.0, 2.0] or it.inp not in fused:
            raise NativeMappingError("neck top-down path differs from the transformers class")
        src = fused[it.inp]
        other = ad.extra_inputs[0] if ad.inp == it.out else ad.inp
        if other != insert[src - 1].out:
            raise NativeMappingError("neck top-down add combines unexpected levels")
        fused[ad.out] = src - 1
    inputs: list[RSERecs | None] = [None] * 4
    for _ in range(4):
        r = _take_rse(seq, "neck input")
        if r.in_conv.inp not in fused:
            raise NativeMappingError("neck input layer does not read a fused level")
        inputs[fused[r.in_conv.inp]] = r
    ups = {}
    while seq.at("interp"):
        it = seq.take("interp", None, "neck output upsample")
        modes.add(it.attrs.get("interp_method"))
        ups[it.out] = (it.inp, it.attrs.get("scale"))
    cat = seq.take("concat", None, "neck concat")
    level_of_out = {r.out: k for k, r in enumerate(inputs)}
    got = []
    for v in cat.extra_inputs:
        src, sc = ups.get(v, (v, [1.0, 1.0]))
        lvl = level_of_out.get(src)
        if lvl is None or [float(x) for x in sc] != [float(2 ** lvl)] * 2:
            raise NativeMappingError("neck concat inputs differ from the transformers class")
        got.append(lvl)
    if got != [3, 2, 1, 0]:
        raise NativeMappingError(f"neck concat order {got} != [p5, p4, p3, p2]")
    if len(modes) != 1:
        raise NativeMappingError(f"mixed interpolation modes {modes}")
    mode = modes.pop()
    head = []
    c, a = _take_conv_bn_act(seq, "head conv_down")
    if a.op.type != "relu":
        raise NativeMappingError("head conv_down activation is not relu")
    head.append(c)
    c = seq.take("conv", "conv2d_transpose", "head conv_up")
    seq.take("act", "relu", "head conv_up relu")
    if "bn_mean" not in c.params:
        raise NativeMappingError("head conv_up without batch norm")
    head.append(c)
    c = seq.take("conv", "conv2d_transpose", "head conv_final")
    seq.take("act", "sigmoid", "head sigmoid")
    head.append(c)
    return DetParse(bb, stage_sizes, taps, insert, inputs, mode, head)


def det_config(p: DetParse) -> dict:
    neck_out = int(p.insert[0].in_conv.op.in_shapes[1][0])
    red = {int(r.se1.op.in_shapes[1][1]) // int(r.se1.op.in_shapes[1][0]) for r in p.insert + p.inputs}
    if len(red) != 1:
        raise NativeMappingError(f"mixed neck SE reductions {red}")
    for r in p.inputs:
        if int(r.in_conv.op.in_shapes[1][0]) != neck_out // 4 or int(r.in_conv.op.in_shapes[1][2]) != 3:
            raise NativeMappingError("neck input layers are not 3x3 with neck_out//4 channels")
    for r in p.insert:
        if int(r.in_conv.op.in_shapes[1][2]) != 1:
            raise NativeMappingError("neck insert layers are not 1x1")
    kl = [int(h.op.in_shapes[1][2]) for h in p.head]
    if p.head[0].attrs["paddings"] != [kl[0] // 2] * 2 or p.head[1].attrs["strides"] != [2, 2] or p.head[2].attrs["strides"] != [2, 2]:
        raise NativeMappingError("DB head geometry differs from the transformers class")
    return {
        "model_type": "pp_ocrv5_mobile_det",
        "reduction": red.pop(),
        "neck_out_channels": neck_out,
        "interpolate_mode": p.interp_mode,
        "kernel_list": kl,
        "layer_list_out_channels": [int(t.op.in_shapes[1][0]) for t in p.taps],
    }


def fill_det(w: WeightWriter, model, p: DetParse):
    fill_lcnetv3(w, model.model.backbone.encoder, p.backbone)
    for conv, t in zip(model.model.layer, p.taps):
        w.conv(conv, t)
    neck = model.model.neck
    for mods, recs in ((neck.insert_conv, p.insert), (neck.input_conv, p.inputs)):
        for m, r in zip(mods, recs):
            w.conv(m.in_conv, r.in_conv)
            w.conv(m.squeeze_excitation_block.conv1, r.se1)
            w.conv(m.squeeze_excitation_block.conv2, r.se2)
    h = model.head
    w.conv(h.conv_down.convolution, p.head[0])
    w.bn(h.conv_down.norm, p.head[0])
    w.conv(h.conv_up.convolution, p.head[1])
    w.bn(h.conv_up.norm, p.head[1])
    w.conv(h.conv_final, p.head[2])


# ---------------------------------------------------------------------------------------------------------
# the records
# ---------------------------------------------------------------------------------------------------------
_TAPS = ["stage2", "stage3", "stage4", "stage5"]


def recognise_rec(seq: LayerSequence) -> tuple[dict, RecParse]:
    p = parse_rec(seq)
    n = len(p.backbone.blocks)
    sizes = [1, 2, 2, 5, 4] if n == 14 else [1, 1, 1, 1, n - 4]
    cfg = rec_config(p)
    cfg["backbone_config"] = lcnet_backbone_config(p.backbone, sizes, _TAPS, num_features_used=False)
    return cfg, p


def recognise_det(seq: LayerSequence) -> tuple[dict, DetParse]:
    p = parse_det(seq)
    cfg = det_config(p)
    cfg["backbone_config"] = lcnet_backbone_config(p.backbone, p.stage_sizes, _TAPS)
    return cfg, p


def _rec_class():
    from transformers import PPOCRV5MobileRecForTextRecognition  # noqa: PLC0415

    return PPOCRV5MobileRecForTextRecognition


def _det_class():
    from transformers import PPOCRV5MobileDetForObjectDetection  # noqa: PLC0415

    return PPOCRV5MobileDetForObjectDetection


def _final_norm_eps(model) -> None:
    # the final encoder LayerNorm may use another eps than the blocks; the transformers class has one eps
    eps = getattr(model.config, "ocrconvert_final_norm_eps", None)
    if eps is not None:
        model.head.encoder.norm.eps = float(eps)


REC = register(NativeArchitecture(
    name="pp_ocrv5_mobile_rec", task="rec", model_type="pp_ocrv5_mobile_rec",
    output="[N, T, C] softmax probabilities (CTC, blank = 0)",
    model_class=_rec_class, parse=recognise_rec, write=fill_rec, fuse=FusedRec, configure=_final_norm_eps,
))
DET = register(NativeArchitecture(
    name="pp_ocrv5_mobile_det", task="det", model_type="pp_ocrv5_mobile_det",
    output="[N, 1, H, W] probability map (sigmoid)",
    model_class=_det_class, parse=recognise_det, write=fill_det, fuse=FusedDet,
))
