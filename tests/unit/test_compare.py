import numpy as np
import pytest

from ocrconvert.errors import UsageError
from ocrconvert.families.det import binarized_iou
from ocrconvert.families.rec import ctc_greedy_decode, ctc_labels
from ocrconvert.verification.compare import Tolerances, compare_arrays, pair_outputs


def test_exact_match_passes_with_zero_error():
    a = np.random.default_rng(0).normal(size=(2, 5, 7)).astype(np.float32)
    r = compare_arrays("y", a, a.copy(), Tolerances())
    assert r.passed and r.max_abs == 0.0 and r.cosine == pytest.approx(1.0)


def test_error_above_atol_fails_and_says_why():
    a = np.zeros((4, 4), np.float32) + 0.5
    b = a.copy()
    b[1, 2] += 3e-4
    r = compare_arrays("y", a, b, Tolerances())
    assert not r.passed and "exceeds atol" in r.problem
    assert r.max_abs == pytest.approx(3e-4, rel=1e-3)
    assert r.p999_abs <= r.max_abs and r.mean_abs == pytest.approx(3e-4 / 16, rel=1e-3)


def test_per_output_override_and_default_key():
    tol = Tolerances(atol={"": 1e-4, "logits": 1e-2})
    a = np.ones((3,), np.float32)
    assert compare_arrays("logits", a, a + 5e-3, tol).passed
    assert not compare_arrays("probs", a, a + 5e-3, tol).passed


def test_fp16_defaults_are_looser_and_unknown_precision_is_a_usage_error():
    a = np.ones((8,), np.float32)
    assert compare_arrays("y", a, a + 5e-3, Tolerances(precision="fp16")).passed
    with pytest.raises(UsageError):
        Tolerances(precision="fp8")


def test_image_cases_use_the_looser_factor():
    a = np.full((10,), 0.5, np.float32)
    assert not compare_arrays("y", a, a + 5e-4, Tolerances()).passed
    assert compare_arrays("y", a, a + 5e-4, Tolerances(), image=True).passed


def test_shape_mismatch_and_nan_fail():
    a = np.zeros((2, 3), np.float32)
    r = compare_arrays("y", a, np.zeros((3, 2), np.float32), Tolerances())  # same values, transposed layout
    assert not r.passed and "shape" in r.problem
    b = a.copy()
    b[0, 0] = np.nan
    assert not compare_arrays("y", a, b, Tolerances()).passed


def test_cosine_is_checked_on_real_signals_but_not_on_noise_floor_outputs():
    a = np.linspace(1, 2, 100, dtype=np.float32)
    flipped = a[::-1].copy()
    # same values, reversed: within a loose rtol but the direction is wrong
    r = compare_arrays("y", a, flipped, Tolerances(rtol=1.0, min_cosine=0.99))
    assert not r.passed and "cosine" in r.problem
    tiny = np.full((100,), 1e-7, np.float32)
    assert compare_arrays("y", tiny, tiny * 0.5, Tolerances()).passed


def test_pairing_by_name_or_position():
    assert pair_outputs(["a", "b"], ["b", "a"]) == [("a", "a"), ("b", "b")]
    assert pair_outputs(["softmax_11.tmp_0"], ["fetch_name_0"]) == [("softmax_11.tmp_0", "fetch_name_0")]
    with pytest.raises(UsageError):
        pair_outputs(["a"], ["b", "c"])


def test_ctc_decode_collapses_repeats_and_drops_blank():
    labels = ctc_labels(["a", "b", "c"], 5)  # blank + 3 + space
    seq = [1, 1, 0, 1, 2, 2, 0, 0, 4, 3]
    probs = np.eye(5, dtype=np.float32)[seq][None]
    assert ctc_greedy_decode(probs, labels) == ["aab c"]


def test_dictionary_size_must_fit_the_head():
    assert len(ctc_labels(["a", "b"], 3)) == 3
    with pytest.raises(UsageError, match="predicts 10 classes"):
        ctc_labels(["a", "b"], 10)


def test_binarized_iou():
    a = np.zeros((1, 1, 4, 4), np.float32)
    b = a.copy()
    assert binarized_iou(a, b, 0.3) == 1.0  # both empty
    a[..., :2, :] = 0.9
    b[..., :1, :] = 0.9
    assert binarized_iou(a, b, 0.3) == pytest.approx(0.5)


def test_reduced_precision_image_cases_are_judged_by_cosine_not_max_abs():
    ref = np.linspace(0, 1, 1000, dtype=np.float32)
    edge = ref.copy()
    edge[500] += 0.4  # one pixel on a steep edge flips: a real fp16 effect on det maps
    assert compare_arrays("map", ref, edge, Tolerances(precision="fp16"), image=True).passed
    assert not compare_arrays("map", ref, edge, Tolerances(precision="fp16"), image=False).passed
    noise = np.random.default_rng(0).uniform(0, 1, 1000).astype(np.float32)
    r = compare_arrays("map", ref, noise, Tolerances(precision="fp16"), image=True)
    assert not r.passed and "cosine" in r.problem
