"""Name maps: which value of one runtime is which value of another, recorded by each hop at conversion time.

A hop's map is one block of its manifest facts (``produced.name_map``)::

    {"source": "paddle", "target": "onnx", "how": "names, checked on one input",
     "source_keys": "paddle variable", "target_keys": "onnx tensor",
     "pairs": [["conv2d_450.tmp_0", "conv2d_450.tmp_0"], ...],   # source depth order
     "unmatched": 12, "rejected": 0}

Keys per runtime (what ``layer_outputs`` of its runner returns): a legacy Paddle program's variable names, a PIR
program's ``pd_op.<type>.<k>.<i>``; ONNX tensor names; torch.fx node names of the onnx2torch GraphModule; module
paths of the native fused model. An AOT package has no intermediates: its map says it runs through its native
model (``"via": "native"``) with the package's precision plan, and pairs are the identity. Only layer outputs are
listed (one per value a runtime computes from the input), so a map stays near the op count of the model.
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

# two values are the same layer output when they agree this closely (relative to the value's scale): fp32
# reordering moves a layer output by ~1e-6 of its scale; a different layer differs by O(1)
SAME_VALUE = 1e-3
EXACT = 1e-5  # closer than this, no other candidate is looked at


def scaled_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over max |a|: how far ``b`` is from ``a`` on the scale of ``a``."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a64.shape != b64.shape:
        if a64.size != b64.size:
            return float("inf")
        b64 = b64.reshape(a64.shape)
    scale = float(np.abs(a64).max()) if a64.size else 0.0
    err = float(np.abs(a64 - b64).max()) if a64.size else 0.0
    if not np.isfinite(err):
        return float("inf")
    return err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))


def name_candidates(source_keys: list[str], target_keys: list[str], aliases: dict | None = None) -> list[tuple[str, str]]:
    """Pairs by name: equal names, or paddle2onnx's ``p2o.`` prefix on a PIR value's key (``aliases``: a legacy
    Paddle variable's key in the PIR translation paddle2onnx 2.x converts)."""
    have = set(target_keys)
    aliases = aliases or {}
    pairs = []
    for k in source_keys:
        alias = aliases.get(k)
        for t in (k, f"p2o.{k}", *((alias, f"p2o.{alias}") if alias else ())):
            if t in have:
                pairs.append((k, t))
                break
    return pairs


def check_pairs(pairs: list[tuple[str, str]], src: dict, tgt: dict) -> tuple[list[tuple[str, str]], int]:
    """The pairs whose values agree on a real run, and how many did not (a name reused for another value)."""
    kept, rejected = [], 0
    for s, t in pairs:
        if s in src and t in tgt and scaled_error(src[s], tgt[t]) <= SAME_VALUE:
            kept.append((s, t))
        elif s in src and t in tgt:
            rejected += 1
    return kept, rejected


_PROBE = 512  # elements compared first: most candidates differ there already


def _may_equal(ref: np.ndarray, probe: np.ndarray) -> bool:
    """Cheap pre-test on the first elements, on the scale of the whole reference value."""
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    head = ref.ravel()[:probe.size]
    err = float(np.abs(head.astype(np.float32) - probe.astype(np.float32)).max()) if head.size else 0.0
    return err <= SAME_VALUE * scale if scale > 0 else err == 0


def match_by_value(src: dict, tgt: dict) -> list[tuple[str, str]]:
    """Pairs found by value where names say nothing (Paddle -> native fused modules): each target output, in
    the order it was computed, is paired with the source value of its shape that is closest to it (within
    SAME_VALUE), searched from the last match on, then from the start (parallel branches may be ordered
    differently); the search stops at the first that is equal to EXACT."""
    order = list(src)
    by_shape: dict[tuple, list[int]] = {}
    for i, k in enumerate(order):
        by_shape.setdefault(tuple(src[k].shape), []).append(i)
    pairs, last = [], 0
    for t, value in tgt.items():
        cands = by_shape.get(tuple(value.shape), [])
        ranked = [i for i in cands if i >= last] + [i for i in cands if i < last]
        hit, best = None, SAME_VALUE
        probe = value.ravel()[:_PROBE]
        for i in ranked:  # the closest within SAME_VALUE: an affine near identity must not take its input's place
            ref = src[order[i]]
            if not _may_equal(ref, probe):
                continue
            e = scaled_error(ref, value)
            if e <= best:
                hit, best = i, e
                if e <= EXACT:
                    break
        if hit is not None:
            pairs.append((order[hit], t))
            last = hit
    return pairs


def name_map(source: str, target: str, pairs, *, how: str, source_keys: str, target_keys: str,
             unmatched: int = 0, rejected: int = 0, **extra) -> dict:
    return {"source": source, "target": target, "how": how, "source_keys": source_keys, "target_keys": target_keys,
            "pairs": [[s, t] for s, t in pairs], "unmatched": int(unmatched), "rejected": int(rejected), **extra}


PROBE_SIZE = (64, 128)  # (height, width) of the probe where the model leaves them free: maps cost seconds, not tens


def probe_feed(runner) -> dict:
    """One small seeded input of the family's kind: its first random case, shrunk to PROBE_SIZE where the
    model leaves height and width free (fixed dims keep their size)."""
    from ..families import resolve_family

    fam = resolve_family(runner.info())
    rng = np.random.default_rng(0)
    feed = {}
    for spec, (name, value) in zip(fam.info.inputs, fam.random_feeds(0)[0][1].items()):
        shape = fam.concrete_shape(spec, 1, *PROBE_SIZE)
        feed[name] = rng.uniform(-1.0, 1.0, size=shape).astype(value.dtype) if value.dtype.kind == "f" else value
    return feed


def record_map(source_runner, target_runner, source: str, target: str, *, source_keys: str, target_keys: str,
               by_name: bool = True) -> dict:
    """The map between two runners' layer outputs, checked on one input: by name (``by_name``) where the
    converter keeps names, else by value. Recorded by the converter, never assumed."""
    feed = probe_feed(source_runner)
    src = source_runner.layer_outputs(feed)
    tgt = target_runner.layer_outputs({target_runner.input_names[0]: next(iter(feed.values()))}
                                      if len(feed) == 1 else feed)
    if by_name:
        candidates = name_candidates(list(src), list(tgt), getattr(source_runner, "aliases", None))
        pairs, rejected = check_pairs(candidates, src, tgt)
        named = len(pairs)
        done_s, done_t = {p[0] for p in pairs}, {p[1] for p in pairs}
        pairs += match_by_value({k: v for k, v in src.items() if k not in done_s},
                                {k: v for k, v in tgt.items() if k not in done_t})
        order = {k: i for i, k in enumerate(src)}
        pairs.sort(key=lambda p: order[p[0]])
        how = f"names, checked on one input ({named}); the rest by value ({len(pairs) - named})"
    else:
        pairs, rejected = match_by_value(src, tgt), 0
        how = "values on one input (same shape, agreeing to 1e-3 of scale)"
    unmatched = len(set(src) - {s for s, _ in pairs})
    log.debug("name map %s -> %s: %d pairs, %d source values unmatched, %d rejected", source, target, len(pairs),
              unmatched, rejected)
    return name_map(source, target, pairs, how=how, source_keys=source_keys, target_keys=target_keys,
                    unmatched=unmatched, rejected=rejected)


def compose(maps: list[dict]) -> list[tuple[str, str]]:
    """Pairs from the first map's source keys to the last map's target keys, through each hop (identity maps
    pass keys through)."""
    pairs: list[tuple[str, str]] | None = None
    for m in maps:
        if m.get("how") == "identity":
            continue
        step = [(s, t) for s, t in m.get("pairs", [])]
        if pairs is None:
            pairs = step
            continue
        forward: dict[str, str] = {}
        for s, t in step:
            forward.setdefault(s, t)
        pairs = [(s, forward[m_]) for s, m_ in pairs if m_ in forward]
    return pairs or []
