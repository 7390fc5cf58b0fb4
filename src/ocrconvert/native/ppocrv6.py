"""PP-OCRv6 (PP-LCNetV4 backbone) from ONNX -> transformers ``PPOCRV6SmallDetForObjectDetection``,
``PPOCRV6SmallRecForTextRecognition`` and ``PPOCRV6TinyRecForTextRecognition``.

Recognised from the layer sequence and weight shapes of the ONNX graph (``onnx_layers``): the backbone's stem
(large: conv, two 2x2 convs beside a max pool, concat, two convs; small: two 3x3 convs with GELU between) and
blocks (depthwise token conv, optional SE, 1x1 - GELU - 1x1 channel mixer, residual when shape-preserving),
then the head each class has. Every width, kernel, stride, SE placement and epsilon is read from the graph.

The exporter folded each BatchNorm into its conv (a conv with bias): the trainable form gets that conv's
weight and a BatchNorm that adds the bias exactly (mean 0, var 1, scale sqrt(1 + eps)), so it computes the
ONNX function in eval mode and stays trainable. transformers has no PP-OCRv6 *tiny det* class: the tiny
detector is the small detector's architecture at other widths, so it is the same record.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .architectures import NativeArchitecture, register
from .errors import NativeMappingError
from .fused import FusedTransformers
from .layers import LayerSequence, Rec
from .mapping import WeightWriter


def _nice(x: float) -> float:
    return float(f"{float(x):.7g}")


def _w(rec: Rec) -> list[int]:
    return list(rec.op.in_shapes[1])


def _is_depthwise(rec: Rec) -> bool:
    w = _w(rec)
    return rec.kind == "conv" and rec.attrs["type"] == "Conv" and w[1] == 1 and rec.attrs["groups"] == w[0] > 1


def _stride(rec: Rec):
    s = [int(v) for v in rec.attrs["strides"]]
    return s[0] if s[0] == s[1] else s


def _same_padding(rec: Rec) -> bool:
    """'same' output size, as the transformers layers pad: k // 2 each side (odd k), or the right/bottom pad the
    large stem adds before its 2x2 convs (SAME_UPPER)."""
    k = rec.attrs["kernel"]
    if rec.attrs["auto_pad"] == "SAME_UPPER":
        return all(v == 2 for v in k)
    pads = [int(v) for v in rec.attrs["pads"]]
    if all(v == 2 for v in k):
        return pads == [0, 0, 1, 1]
    return pads == [k[0] // 2, k[1] // 2, k[0] // 2, k[1] // 2]


def _take_act(seq: LayerSequence, what: str, *acts: str) -> Rec:
    r = seq.take("act", None, what)
    if acts and r.attrs["act"] not in acts:
        raise NativeMappingError(f"{what}: activation {r.attrs['act']} is not {'/'.join(acts)}")
    return r


# ---------------------------------------------------------------------------------------------------------
# PP-LCNetV4 backbone
# ---------------------------------------------------------------------------------------------------------
@dataclass
class V4Block:
    token: Rec
    se: tuple[Rec, Rec] | None
    mix1: Rec
    mix2: Rec
    residual: bool
    out: str = ""  # the block's output value

    @property
    def entry(self) -> list:
        """transformers' block config: (kernel, in, out, stride, SE)."""
        return [int(_w(self.token)[2]), int(_w(self.token)[0]), int(_w(self.mix2)[0]), _stride(self.token),
                self.se is not None]


@dataclass
class V4Backbone:
    stem_type: str
    stem: list[Rec]
    hidden_act: str
    blocks: list[V4Block]
    reduction: int


def _take_se(seq: LayerSequence, what: str, gate: tuple[float, float]) -> tuple[Rec, Rec, Rec]:
    """global pool -> conv -> relu -> conv -> hardsigmoid(slope, offset) -> multiply with the SE's input."""
    pool = seq.take("pool", None, what + " pool")
    if not pool.attrs.get("global") or pool.attrs["pooling_type"] != "avg":
        raise NativeMappingError(f"{what}: not a global average pool")
    c1 = seq.take("conv", None, what + " conv1")
    _take_act(seq, what + " relu", "relu")
    c2 = seq.take("conv", None, what + " conv2")
    hs = _take_act(seq, what + " gate", "hardsigmoid")
    if not (math.isclose(hs.attrs["slope"], gate[0], rel_tol=1e-5) and math.isclose(hs.attrs["offset"], gate[1])):
        raise NativeMappingError(f"{what}: SE gate slope/offset {hs.attrs['slope']}/{hs.attrs['offset']} differ "
                                 f"from the class's {gate}")
    mul = seq.take("multiply", None, what + " scale")
    if {mul.inp, *mul.extra_inputs} != {pool.inp, hs.out} or c1.inp != pool.out or "bias" not in c1.params \
            or "bias" not in c2.params:
        raise NativeMappingError(f"{what}: SE data flow differs from the class")
    return c1, c2, mul


def parse_v4_backbone(seq: LayerSequence) -> V4Backbone:
    first = seq.take("conv", "Conv", "stem conv 1")
    if _w(first)[1] != 3 or first.attrs["kernel"] != [3, 3] or _stride(first) != 2 or not _same_padding(first):
        raise NativeMappingError("stem conv 1 is not a 3x3 stride-2 conv on RGB")
    a1 = seq.take("act", None, "stem act 1")
    if seq.at("conv") and seq.peek().attrs["kernel"] == [2, 2]:  # large stem
        c2a = seq.take("conv", "Conv", "stem2a")
        a2a = _take_act(seq, "stem2a act", a1.attrs["act"])
        c2b = seq.take("conv", "Conv", "stem2b")
        a2b = _take_act(seq, "stem2b act", a1.attrs["act"])
        pool = seq.take("pool", None, "stem pool")
        cat = seq.take("concat", None, "stem concat")
        c3 = seq.take("conv", "Conv", "stem3")
        a3 = _take_act(seq, "stem3 act", a1.attrs["act"])
        c4 = seq.take("conv", "Conv", "stem4")
        a4 = _take_act(seq, "stem4 act", a1.attrs["act"])
        ok = (c2a.inp == a1.out and pool.inp == a1.out and c2b.inp == a2a.out
              and pool.attrs["pooling_type"] == "max" and pool.attrs["kernel"] == [2, 2]
              and pool.attrs["strides"] == [1, 1] and (pool.attrs["auto_pad"] == "SAME_UPPER"
                                                       or pool.attrs["pads"] == [0, 0, 1, 1])
              and cat.extra_inputs == [pool.out, a2b.out] and c3.inp == cat.out and c4.inp == a3.out
              and all(_same_padding(c) for c in (c2a, c2b, c3)) and c4.attrs["kernel"] == [1, 1]
              and _stride(c2a) == _stride(c2b) == _stride(c4) == 1 and _stride(c3) == 2
              and c3.attrs["kernel"] == [3, 3])
        if not ok:
            raise NativeMappingError("large stem: data flow or geometry differs from PPLCNetV4LargeStem")
        stem, stem_type, act, last = [first, c2a, c2b, c3, c4], "large", a1.attrs["act"], a4.out
    else:  # small stem: conv (no act in the class) -> GELU -> conv
        if a1.attrs["act"] != "gelu":
            raise NativeMappingError("small stem activation is not GELU")
        c2 = seq.take("conv", "Conv", "stem conv 2")
        if c2.inp != a1.out or _stride(c2) != 2 or c2.attrs["kernel"] != [3, 3] or seq.at("act"):
            raise NativeMappingError("small stem differs from PPLCNetV4SmallStem")
        stem, stem_type, act, last = [first, c2], "small", "gelu", c2.out
    blocks: list[V4Block] = []
    reductions = set()
    prev = last
    while seq.at("conv") and _is_depthwise(seq.peek()):
        i = len(blocks)
        tok = seq.take("conv", "Conv", f"block {i} token conv")
        if tok.inp != prev or not _same_padding(tok) or "bias" not in tok.params and "bn_mean" not in tok.params:
            raise NativeMappingError(f"block {i}: token conv differs from the class")
        se, x = None, tok.out
        if seq.at("pool"):
            c1, c2, mul = _take_se(seq, f"block {i} SE", (1 / 6, 0.5))
            reductions.add(_w(c1)[1] // _w(c1)[0])
            se, x = (c1, c2), mul.out
        m1 = seq.take("conv", "Conv", f"block {i} channel conv 1")
        _take_act(seq, f"block {i} channel act", "gelu")
        m2 = seq.take("conv", "Conv", f"block {i} channel conv 2")
        cin = _w(tok)[0]
        if m1.inp != x or _w(m1)[:2] != [2 * cin, cin] or _w(m2)[1] != 2 * cin or m1.attrs["kernel"] != [1, 1] \
                or m2.attrs["kernel"] != [1, 1]:
            raise NativeMappingError(f"block {i}: channel mixer differs from the class (1x1, 2x wide)")
        residual = seq.at("add") and {seq.peek().inp, *seq.peek().extra_inputs} == {x, m2.out}
        blk = V4Block(tok, se, m1, m2, residual)
        if residual:
            blk.out = seq.take("add", None, f"block {i} residual").out
        else:
            blk.out = m2.out
        if residual != (_stride(tok) == 1 and cin == _w(m2)[0]):
            raise NativeMappingError(f"block {i}: residual placement differs from the class")
        blocks.append(blk)
        prev = blk.out
    if not blocks:
        raise NativeMappingError("no PP-LCNetV4 blocks")
    if len(reductions) > 1:
        raise NativeMappingError(f"mixed SE reductions {reductions}")
    return V4Backbone(stem_type, stem, act, blocks, reductions.pop() if reductions else 4)


def v4_config(bb: V4Backbone, stage_ends: list[int], out_features: list[str]) -> dict:
    """stage_ends: number of blocks up to the end of each of the 4 stages."""
    if len(stage_ends) != 4 or stage_ends[-1] != len(bb.blocks) or sorted(set(stage_ends)) != stage_ends \
            or stage_ends[0] < 1:
        raise NativeMappingError(f"cannot split {len(bb.blocks)} blocks into 4 stages ending at {stage_ends}")
    starts = [0, *stage_ends[:-1]]
    stages = [[bb.blocks[k].entry for k in range(a, b)] for a, b in zip(starts, stage_ends)]
    for a, b in zip(bb.blocks, bb.blocks[1:]):
        if b.entry[1] != a.entry[2]:
            raise NativeMappingError("block channels do not chain")
    s = bb.stem
    if bb.stem_type == "large":
        c1, c2 = _w(s[0])[0], _w(s[4])[0]
        if _w(s[1])[:2] != [c1 // 2, c1] or _w(s[2])[:2] != [c1, c1 // 2] or _w(s[3])[:2] != [c1, 2 * c1] \
                or _w(s[4])[1] != c1:
            raise NativeMappingError("large stem widths differ from PPLCNetV4LargeStem")
        strides = [2, 1, 1, 2, 1]
    else:
        c1, c2 = _w(s[0])[0], _w(s[1])[0]
        strides = [2, 2, 1, 1, 1]
    if bb.blocks[0].entry[1] != c2:
        raise NativeMappingError("the first block does not read the stem")
    return {"model_type": "pp_lcnet_v4", "block_configs": stages, "stem_channels": [3, c1, c2],
            "stem_strides": strides, "stem_type": bb.stem_type, "reduction": bb.reduction,
            "hidden_act": bb.hidden_act, "out_features": out_features}


def conv_bn(w: WeightWriter, conv, bn, rec: Rec, *, weight_shape=None) -> None:
    """A conv (+ BatchNorm) of the class from one ONNX conv record: a real BatchNorm maps onto ``bn``; a
    folded one (the conv's bias) makes ``bn`` an exact '+ bias'; the class conv's own bias, if any, is 0."""
    src = rec.params["weight"]
    value = w.src(src)
    if weight_shape is not None:
        value = value.reshape(weight_shape)
    w.put(conv, "weight", value, src, "copy" if weight_shape is None else "reshape")
    if bn is None:
        if "bias" in rec.params:
            w.put(conv, "bias", w.src(rec.params["bias"]), rec.params["bias"])
        elif conv.bias is not None:
            w.neutral(conv, "bias", 0.0)
        return
    if "bn_mean" in rec.params:
        if "bias" in rec.params:
            raise NativeMappingError(f"{w.names[conv]}: conv bias before a BatchNorm is not supported")
        if conv.bias is not None:
            w.neutral(conv, "bias", 0.0)
        w.bn(bn, rec)
        return
    if conv.bias is not None:
        w.neutral(conv, "bias", 0.0)
    w.bn_bias_only(bn, rec.params.get("bias"))
    if "bias" in rec.params:
        w.folded_bn = getattr(w, "folded_bn", 0) + 1


def note_folded(w: WeightWriter) -> None:
    """One note for every BatchNorm the exporter had folded (set to an exact '+ bias' in the trainable form)."""
    n = getattr(w, "folded_bn", 0)
    if n:
        w.report.notes.append(f"{n} BatchNorm layers were folded into their ONNX convs: each set to an exact "
                              f"'+ bias' (mean 0, var 1, scale sqrt(1+eps)), trainable from there")


def fill_v4(w: WeightWriter, backbone, bb: V4Backbone) -> None:
    enc = backbone.encoder
    if bb.stem_type == "large":
        st = enc.convolution
        for layer, rec in zip((st.stem1, st.stem2a, st.stem2b, st.stem3, st.stem4), bb.stem):
            conv_bn(w, layer.convolution, layer.normalization, rec)
    else:
        st = enc.convolution
        for layer, rec in zip((st.conv1, st.conv2), bb.stem):
            conv_bn(w, layer.convolution, layer.normalization, rec)
    layers = [b for stage in enc.blocks for b in stage.blocks]
    if len(layers) != len(bb.blocks):
        raise NativeMappingError(f"the class has {len(layers)} blocks, the graph {len(bb.blocks)}")
    for layer, b in zip(layers, bb.blocks):
        if layer.use_rep_dw:
            conv_bn(w, layer.token_conv, None, b.token)
        else:
            conv_bn(w, layer.token_conv.convolution, layer.token_conv.normalization, b.token)
        if b.se is not None:
            convs = [m for m in layer.token_squeeze_excitation.convolutions if hasattr(m, "weight")]
            w.conv(convs[0], b.se[0])
            w.conv(convs[1], b.se[1])
        conv_bn(w, layer.channel_conv1.convolution, layer.channel_conv1.normalization, b.mix1)
        conv_bn(w, layer.channel_conv2.convolution, layer.channel_conv2.normalization, b.mix2)


def _rec_stage_ends(bb: V4Backbone) -> list[int]:
    """A recogniser uses only the last stage's output: stages 3 and 4 start at the last two down-sampling
    blocks (PP-OCRv6's layout), stage 1 is the first block."""
    down = [k for k, b in enumerate(bb.blocks) if b.entry[3] != 1]
    if len(down) < 2 or down[-2] < 2:
        raise NativeMappingError("fewer than two down-sampling blocks after the first two")
    return [1, down[-2], down[-1], len(bb.blocks)]


# ---------------------------------------------------------------------------------------------------------
# detection: backbone (4 stage taps) -> RSE / depthwise-separable neck -> DB head
# ---------------------------------------------------------------------------------------------------------
@dataclass
class DetParse:
    backbone: V4Backbone
    stage_ends: list[int]
    insert: list[tuple[Rec, Rec, Rec]]  # p2..p5: in_conv, se1, se2
    inputs: list[tuple[Rec, Rec, Rec, Rec]]  # p2..p5: depthwise, pointwise, se1, se2
    head: list[Rec]


def _take_rse(seq: LayerSequence, what: str, first: Rec) -> tuple[Rec, Rec, str]:
    c1, c2, mul = _take_se(seq, what + " SE", (0.2, 0.5))
    add = seq.take("add", None, what + " shortcut")
    if {add.inp, *add.extra_inputs} != {first.out, mul.out} or first.out not in (mul.inp, *mul.extra_inputs):
        raise NativeMappingError(f"{what}: residual SE differs from the class")
    return c1, c2, add.out


def parse_det(seq: LayerSequence) -> tuple[dict, DetParse]:
    bb = parse_v4_backbone(seq)
    out_of = {b.out: k for k, b in enumerate(bb.blocks)}
    inserts: dict[int, tuple] = {}
    ins_out: dict[int, str] = {}
    for _ in range(4):
        c = seq.take("conv", "Conv", "neck insert conv")
        if c.inp not in out_of or c.attrs["kernel"] != [1, 1] or "bias" in c.params or "bn_mean" in c.params:
            raise NativeMappingError("neck insert conv does not read a backbone block (1x1, no bias)")
        s1, s2, out = _take_rse(seq, "neck insert", c)
        inserts[out_of[c.inp]] = (c, s1, s2)
        ins_out[out_of[c.inp]] = out
    taps = sorted(inserts)
    if len(taps) != 4 or taps[-1] != len(bb.blocks) - 1:
        raise NativeMappingError(f"the neck reads blocks {taps}, not 4 stage ends ending at the last block")
    level = {ins_out[t]: k for k, t in enumerate(taps)}
    fused = {ins_out[taps[3]]: 3}
    modes = set()
    for _ in range(3):
        it = seq.take("interp", None, "neck top-down upsample")
        ad = seq.take("add", None, "neck top-down add")
        modes.add(it.attrs["mode"])
        if it.inp not in fused or it.attrs["scale"] != [2.0, 2.0]:
            raise NativeMappingError("neck top-down path differs from the class")
        src = fused[it.inp]
        other = ad.extra_inputs[0] if ad.inp == it.out else ad.inp
        if level.get(other) != src - 1:
            raise NativeMappingError("neck top-down add combines unexpected levels")
        fused[ad.out] = src - 1
    inputs: dict[int, tuple] = {}
    outs: dict[str, int] = {}
    for _ in range(4):
        dw = seq.take("conv", "Conv", "neck input depthwise")
        if dw.inp not in fused or not _is_depthwise(dw) or not _same_padding(dw) or "bias" not in dw.params:
            raise NativeMappingError("neck input layer is not a depthwise conv (with bias) on a fused level")
        pw = seq.take("conv", "Conv", "neck input pointwise")
        if pw.inp != dw.out or pw.attrs["kernel"] != [1, 1] or "bias" in pw.params or "bn_mean" in pw.params:
            raise NativeMappingError("neck input pointwise conv differs from the class")
        s1, s2, out = _take_rse(seq, "neck input", pw)
        inputs[fused[dw.inp]] = (dw, pw, s1, s2)
        outs[out] = fused[dw.inp]
    ups = {}
    while seq.at("interp"):
        it = seq.take("interp", None, "neck output upsample")
        modes.add(it.attrs["mode"])
        ups[it.out] = (it.inp, it.attrs["scale"])
    cat = seq.take("concat", None, "neck concat")
    got = []
    for v in cat.extra_inputs:
        src, sc = ups.get(v, (v, [1.0, 1.0]))
        lvl = outs.get(src)
        if lvl is None or [float(x) for x in sc] != [float(2 ** lvl)] * 2:
            raise NativeMappingError("neck concat inputs differ from the class")
        got.append(lvl)
    if got != [3, 2, 1, 0] or modes != {"nearest"}:
        raise NativeMappingError(f"neck concat order {got} / interpolation {modes} differ from the class")
    down = seq.take("conv", "Conv", "head conv_down")
    _take_act(seq, "head conv_down act", "relu")
    up = seq.take("conv", "ConvTranspose", "head conv_up")
    _take_act(seq, "head conv_up act", "relu")
    final = seq.take("conv", "ConvTranspose", "head conv_final")
    _take_act(seq, "head sigmoid", "sigmoid")
    kl = [down.attrs["kernel"][0], up.attrs["kernel"][0], final.attrs["kernel"][0]]
    if not _same_padding(down) or _stride(up) != 2 or _stride(final) != 2 or any(p != 0 for p in up.attrs["pads"]) \
            or any(p != 0 for p in final.attrs["pads"]) or "bias" not in final.params:
        raise NativeMappingError("DB head geometry differs from the class")
    neck = _w(inserts[taps[0]][0])[0]
    dk = inputs[0][0].attrs["kernel"][0]
    red = {_w(r[1])[1] // _w(r[1])[0] for r in inserts.values()} | {_w(r[2])[1] // _w(r[2])[0] for r in inputs.values()}
    if len(red) != 1 or any(_w(r[1])[0] != neck // 4 for r in inputs.values()):
        raise NativeMappingError(f"neck SE reductions {red} / widths differ from the class")
    stage_ends = [t + 1 for t in taps]
    cfg = {"model_type": "pp_ocrv6_small_det",
           "backbone_config": v4_config(bb, stage_ends, ["stage1", "stage2", "stage3", "stage4"]),
           "reduction": red.pop(), "neck_out_channels": neck, "interpolate_mode": "nearest", "kernel_list": kl,
           "layer_list_out_channels": [_w(inserts[t][0])[1] for t in taps], "dilated_kernel_size": dk}
    return cfg, DetParse(bb, stage_ends, [inserts[t] for t in taps], [inputs[k] for k in range(4)],
                         [down, up, final])


def fill_det(w: WeightWriter, model, p: DetParse) -> None:
    fill_v4(w, model.model.backbone, p.backbone)
    neck = model.model.neck
    for m, (c, s1, s2) in zip(neck.insert_conv, p.insert):
        w.conv(m.in_conv, c)
        w.conv(m.squeeze_excitation_block.conv1, s1)
        w.conv(m.squeeze_excitation_block.conv2, s2)
    for m, (dw, pw, s1, s2) in zip(neck.input_conv, p.inputs):
        w.conv(m.depthwise_convolution, dw)
        w.conv(m.pointwise_convolution, pw)
        w.conv(m.squeeze_excitation_module.conv1, s1)
        w.conv(m.squeeze_excitation_module.conv2, s2)
    h = model.head
    conv_bn(w, h.conv_down.convolution, h.conv_down.norm, p.head[0])
    conv_bn(w, h.conv_up.convolution, h.conv_up.norm, p.head[1])
    conv_bn(w, h.conv_final, None, p.head[2])
    note_folded(w)


# ---------------------------------------------------------------------------------------------------------
# recognition (small): backbone -> avg pool (3, 2) -> SVTR encoder with a residual skip conv -> CTC head
# ---------------------------------------------------------------------------------------------------------
@dataclass
class SmallRecParse:
    backbone: V4Backbone
    convs: list[Rec]  # skip, reduce, local
    blocks: list[tuple[Rec, ...]]  # ln1, qkv, proj, ln2, fc1, fc2
    norm: Rec
    head: Rec


def _take_rec_pool(seq: LayerSequence) -> Rec:
    pool = seq.take("pool", None, "neck pooling")
    if pool.attrs["pooling_type"] != "avg" or pool.attrs.get("global") or pool.attrs["kernel"] != [3, 2] \
            or pool.attrs["strides"] != [3, 2] or any(pool.attrs["pads"]) or pool.attrs.get("ceil_mode"):
        raise NativeMappingError(f"rec pooling is not avg_pool2d((3, 2)) as in the class: {pool.attrs}")
    return pool


def parse_small_rec(seq: LayerSequence) -> tuple[dict, SmallRecParse]:
    bb = parse_v4_backbone(seq)
    pool = _take_rec_pool(seq)
    got = []
    for i in range(3):
        c = seq.take("conv", "Conv", f"encoder conv {i}")
        a = _take_act(seq, f"encoder conv {i} act")
        got.append((c, a))
    acts = {a.attrs["act"] for _, a in got}
    (ca, aa), (cb, ab), (local, al) = got
    reduce_, skip = ((ca, cb) if local.inp == aa.out else (cb, ca))
    add = seq.take("add", None, "encoder local residual")
    r_act = aa if reduce_ is ca else ab
    if {add.inp, *add.extra_inputs} != {r_act.out, al.out} or ca.inp != pool.out or cb.inp != pool.out \
            or not _is_depthwise(local) or len(acts) != 1 or not all("bn_mean" in c.params for c, _ in got):
        raise NativeMappingError("SVTR encoder convs differ from the class (skip, reduce, depthwise local)")
    blocks, scales, eps = [], set(), set()
    while True:
        ln1 = seq.take("layer_norm", None, "svtr layer norm")
        if not (seq.at("linear") and seq.peek(1) is not None and seq.peek(1).kind == "scale"):
            norm = ln1
            break
        qkv = seq.take("linear", None, "svtr qkv")
        sc = seq.take("scale", None, "svtr q scale")
        seq.take("matmul", None, "svtr q@k")
        _take_act(seq, "svtr softmax", "softmax")
        seq.take("matmul", None, "svtr attn@v")
        proj = seq.take("linear", None, "svtr proj")
        seq.take("add", None, "svtr residual 1")
        ln2 = seq.take("layer_norm", None, "svtr ln2")
        fc1 = seq.take("linear", None, "svtr fc1")
        act = _take_act(seq, "svtr mlp act")
        fc2 = seq.take("linear", None, "svtr fc2")
        seq.take("add", None, "svtr residual 2")
        acts.add(act.attrs["act"])
        scales.add(round(sc.attrs["scale"] ** -2))
        eps.update((ln1.attrs["eps"], ln2.attrs["eps"]))
        blocks.append((ln1, qkv, proj, ln2, fc1, fc2))
    res = seq.take("add", None, "encoder skip residual")
    skip_act = ab if skip is cb else aa
    if skip_act.out not in (res.inp, *res.extra_inputs):
        raise NativeMappingError("the skip conv does not feed the encoder's residual")
    head = seq.take("linear", None, "CTC head")
    sm = _take_act(seq, "CTC softmax", "softmax")
    if sm.attrs.get("axis") not in (2, -1) or not blocks or len(acts) != 1 or len(scales) != 1 or len(eps) != 1:
        raise NativeMappingError("SVTR blocks mix activations / heads / eps, or softmax not over classes")
    hidden = _w(reduce_)[0]
    head_dim = scales.pop()
    if hidden % head_dim or _w(blocks[0][1])[1] != 3 * hidden or not all("bias" in b[1].params for b in blocks):
        raise NativeMappingError("attention widths differ from the class (qkv with bias, hidden % head_dim)")
    if _w(skip)[0] != hidden or _w(local)[0] != hidden:
        raise NativeMappingError("encoder conv widths differ")
    cfg = {"model_type": "pp_ocrv6_small_rec",
           "backbone_config": v4_config(bb, _rec_stage_ends(bb), ["stage4"]),
           "hidden_act": acts.pop(), "hidden_size": hidden, "mlp_ratio": _w(blocks[0][4])[1] / hidden,
           "depth": len(blocks), "head_out_channels": _w(head)[1], "conv_kernel_size": local.attrs["kernel"],
           "qkv_bias": True, "num_attention_heads": hidden // head_dim, "layer_norm_eps": _nice(eps.pop()),
           "ocrconvert_final_norm_eps": _nice(norm.attrs["eps"])}
    return cfg, SmallRecParse(bb, [skip, reduce_, local], blocks, norm, head)


def fill_small_rec(w: WeightWriter, model, p: SmallRecParse) -> None:
    fill_v4(w, model.model.backbone, p.backbone)
    enc = model.head.encoder
    for layer, c in zip(enc.conv_block, p.convs):
        conv_bn(w, layer.convolution, layer.normalization, c)
    for blk, (ln1, qkv, proj, ln2, fc1, fc2) in zip(enc.svtr_block, p.blocks):
        w.layer_norm(blk.layer_norm1, ln1)
        w.linear(blk.self_attn.qkv, qkv)
        w.linear(blk.self_attn.projection, proj)
        w.layer_norm(blk.layer_norm2, ln2)
        w.linear(blk.mlp.fc1, fc1)
        w.linear(blk.mlp.fc2, fc2)
    w.layer_norm(enc.norm, p.norm)
    w.linear(model.head.head, p.head)
    note_folded(w)


def _final_norm_eps(model) -> None:
    eps = getattr(model.config, "ocrconvert_final_norm_eps", None)
    if eps is not None:
        model.head.encoder.norm.eps = float(eps)


# ---------------------------------------------------------------------------------------------------------
# recognition (tiny): backbone -> avg pool (3, 2) -> 1-D depthwise + pointwise convs -> two linears
# ---------------------------------------------------------------------------------------------------------
def parse_tiny_rec(seq: LayerSequence) -> tuple[dict, tuple]:
    bb = parse_v4_backbone(seq)
    _take_rec_pool(seq)
    c1 = seq.take("conv", "Conv", "head conv1")
    _take_act(seq, "head act 1", "hardswish")
    c2 = seq.take("conv", "Conv", "head conv2")
    _take_act(seq, "head act 2", "hardswish")
    fc1 = seq.take("linear", None, "head fc1")
    fc2 = seq.take("linear", None, "head fc2")
    sm = _take_act(seq, "CTC softmax", "softmax")
    ch = bb.blocks[-1].entry[2]
    if _w(c1) != [ch, 1, 1, 5] or c1.attrs["pads"] != [0, 2, 0, 2] or c1.attrs["groups"] != ch \
            or _w(c2) != [ch, ch, 1, 1] or not all("bn_mean" in c.params and "bias" not in c.params for c in (c1, c2)) \
            or _w(fc1)[0] != ch or _w(fc2)[0] != _w(fc1)[1] or sm.attrs.get("axis") not in (2, -1):
        raise NativeMappingError("tiny rec head differs from the class (depthwise 1x5 + BN, 1x1 + BN, two linears)")
    cfg = {"model_type": "pp_ocrv6_tiny_rec", "backbone_config": v4_config(bb, _rec_stage_ends(bb), ["stage4"]),
           "hidden_size": _w(fc1)[1], "head_out_channels": _w(fc2)[1]}
    return cfg, (bb, c1, c2, fc1, fc2)


def fill_tiny_rec(w: WeightWriter, model, p) -> None:
    bb, c1, c2, fc1, fc2 = p
    fill_v4(w, model.model.backbone, bb)
    h = model.head
    conv_bn(w, h.conv1, h.norm1, c1, weight_shape=tuple(h.conv1.weight.shape))
    conv_bn(w, h.conv2, h.norm2, c2, weight_shape=tuple(h.conv2.weight.shape))
    w.linear(h.fc1, fc1)
    w.linear(h.fc2, fc2)
    note_folded(w)


# ---------------------------------------------------------------------------------------------------------
# the records
# ---------------------------------------------------------------------------------------------------------
def _class(name: str):
    def get():
        import transformers  # noqa: PLC0415

        return getattr(transformers, name)

    return get


def _fused(model):
    return FusedTransformers(model, _identity)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


DET = register(NativeArchitecture(
    name="pp_ocrv6_small_det", task="det", model_type="pp_ocrv6_small_det",
    output="[N, 1, H, W] probability map (sigmoid)", model_class=_class("PPOCRV6SmallDetForObjectDetection"),
    parse=None, parse_onnx=parse_det, write=fill_det, fuse=_fused,
))
REC = register(NativeArchitecture(
    name="pp_ocrv6_small_rec", task="rec", model_type="pp_ocrv6_small_rec",
    output="[N, T, C] softmax probabilities (CTC, blank = 0)", model_class=_class("PPOCRV6SmallRecForTextRecognition"),
    parse=None, parse_onnx=parse_small_rec, write=fill_small_rec, fuse=_fused, configure=_final_norm_eps,
))
TINY_REC = register(NativeArchitecture(
    name="pp_ocrv6_tiny_rec", task="rec", model_type="pp_ocrv6_tiny_rec",
    output="[N, T, C] softmax probabilities (CTC, blank = 0)", model_class=_class("PPOCRV6TinyRecForTextRecognition"),
    parse=None, parse_onnx=parse_tiny_rec, write=fill_tiny_rec, fuse=_fused,
))
