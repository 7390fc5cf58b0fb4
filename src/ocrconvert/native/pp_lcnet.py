"""PP-LCNet image classifiers from ONNX (the document-orientation model: PP-LCNet_x1_0_doc_ori) ->
transformers ``PPLCNetForImageClassification``.

Recognised from the ONNX layer sequence: stem conv + BN + act, depthwise-separable blocks (depthwise conv + BN
+ act, optional SE, pointwise conv + BN + act), global pool, a 1x1 expansion conv without bias, act, Paddle's
inference-time dropout scale, the linear classifier and a softmax. The transformers class returns logits: the
inference form ends in the softmax the ONNX model has (``finish``).
"""
from __future__ import annotations

import math

import torch

from .architectures import NativeArchitecture, register
from .errors import NativeMappingError
from .fused import FusedTransformers
from .layers import LayerSequence
from .ppocrv6 import _is_depthwise, _same_padding, _stride, _take_act, _take_se, _w, conv_bn, note_folded

_STAGES = [1, 2, 2, 6, 2]  # PP-LCNet's stage layout (blocks2..blocks6)


def parse_cls(seq: LayerSequence):
    stem = seq.take("conv", "Conv", "stem conv")
    act = _take_act(seq, "stem act").attrs["act"]
    if _w(stem)[1] != 3 or stem.attrs["kernel"] != [3, 3] or not _same_padding(stem) or "bn_mean" not in stem.params:
        raise NativeMappingError("stem is not a 3x3 conv + BN on RGB")
    blocks, recs, reductions, eps = [], [], set(), {stem.attrs["bn_eps"]}
    while seq.at("conv") and _is_depthwise(seq.peek()):
        i = len(blocks)
        dw = seq.take("conv", "Conv", f"block {i} depthwise")
        _take_act(seq, f"block {i} depthwise act", act)
        se = None
        if seq.at("pool"):
            c1, c2, _ = _take_se(seq, f"block {i} SE", (1 / 6, 0.5))
            reductions.add(_w(c1)[1] // _w(c1)[0])
            se = (c1, c2)
        pw = seq.take("conv", "Conv", f"block {i} pointwise")
        _take_act(seq, f"block {i} pointwise act", act)
        if pw.attrs["kernel"] != [1, 1] or not _same_padding(dw) or not all("bn_mean" in c.params for c in (dw, pw)):
            raise NativeMappingError(f"block {i}: not depthwise + BN, pointwise 1x1 + BN")
        eps.update((dw.attrs["bn_eps"], pw.attrs["bn_eps"]))
        blocks.append([dw.attrs["kernel"][0], _w(dw)[0], _w(pw)[0], _stride(dw), se is not None])
        recs.append((dw, se, pw))
    if len(blocks) != sum(_STAGES):
        raise NativeMappingError(f"{len(blocks)} blocks, PP-LCNet has {sum(_STAGES)}")
    pool = seq.take("pool", None, "global pool")
    last = seq.take("conv", "Conv", "expansion conv")
    _take_act(seq, "expansion act", act)
    drop = seq.take("scale", None, "dropout (inference scale)")
    fc = seq.take("linear", None, "classifier")
    sm = _take_act(seq, "softmax", "softmax")
    if not pool.attrs.get("global") or last.attrs["kernel"] != [1, 1] or last.params.keys() != {"weight"} \
            or sm.attrs.get("axis") not in (1, -1) or len(reductions) > 1 or len({round(e, 9) for e in eps}) != 1:
        raise NativeMappingError("classifier head differs from the class (global pool, 1x1 conv without bias, "
                                 "dropout scale, linear, softmax)")
    chans = [stem_c := _w(stem)[0]] + [c for b in blocks for c in b[1:3]]
    divisor = 8 if all(c % 8 == 0 for c in chans) else 1  # literal channels: make_divisible(c, divisor) == c
    stages, k = [], 0
    for n in _STAGES:
        stages.append(blocks[k:k + n])
        k += n
    n_labels = _w(fc)[1]
    cfg = {"model_type": "pp_lcnet", "scale": 1.0, "block_configs": stages, "stem_channels": stem_c,
           "stem_stride": _stride(stem), "reduction": reductions.pop() if reductions else 4,
           "class_expand": _w(last)[0], "divisor": divisor, "hidden_act": act,
           "hidden_dropout_prob": float(f"{1.0 - drop.attrs['scale']:.7g}"),
           "id2label": {i: str(i) for i in range(n_labels)}}
    if not math.isclose(1.0 - cfg["hidden_dropout_prob"], drop.attrs["scale"], rel_tol=1e-6):
        raise NativeMappingError("dropout scale not representable")
    return cfg, (stem, recs, last, fc)


def fill_cls(w, model, parsed) -> None:
    stem, recs, last, fc = parsed
    enc = model.encoder
    conv_bn(w, enc.convolution.convolution, enc.convolution.normalization, stem)
    layers = [layer for stage in enc.blocks for layer in stage.layers]
    for layer, (dw, se, pw) in zip(layers, recs):
        conv_bn(w, layer.depthwise_convolution.convolution, layer.depthwise_convolution.normalization, dw)
        if se is not None:
            convs = [m for m in layer.squeeze_excitation_module.convolutions if hasattr(m, "weight")]
            w.conv(convs[0], se[0])
            w.conv(convs[1], se[1])
        conv_bn(w, layer.pointwise_convolution.convolution, layer.pointwise_convolution.normalization, pw)
    conv_bn(w, model.last_convolution, None, last)
    w.linear(model.head, fc)
    note_folded(w)


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=-1)


def _cls_class():
    from transformers import PPLCNetForImageClassification  # noqa: PLC0415

    return PPLCNetForImageClassification


CLS = register(NativeArchitecture(
    name="pp_lcnet_cls", task="cls", model_type="pp_lcnet", output="[N, C] softmax probabilities",
    model_class=_cls_class, parse=None, parse_onnx=parse_cls, write=fill_cls,
    fuse=lambda model: FusedTransformers(model, _softmax), finish=_softmax,
))
