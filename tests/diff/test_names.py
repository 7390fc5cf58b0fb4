"""Name maps (verification/names.py) on tiny arrays: composition through hops, names, matching by value."""
from __future__ import annotations

import numpy as np

from ocrconvert.verification.names import check_pairs, compose, match_by_value, name_candidates, name_map, scaled_error


def test_compose_through_hops_and_identity():
    a = name_map("paddle", "onnx", [("v1", "t1"), ("v2", "t2"), ("v3", "t3")], how="names", source_keys="",
                 target_keys="")
    b = name_map("onnx", "torch", [("t1", "n1"), ("t3", "n3")], how="names", source_keys="", target_keys="")
    ident = name_map("torch-native", "torch-aot", [], how="identity", source_keys="", target_keys="")
    assert compose([a, b]) == [("v1", "n1"), ("v3", "n3")]
    assert compose([a, ident]) == [("v1", "t1"), ("v2", "t2"), ("v3", "t3")]


def test_name_candidates_prefix_and_alias():
    pairs = name_candidates(["x.tmp_0", "pd_op.conv2d.0.0", "y.tmp_0"], ["x.tmp_0", "p2o.pd_op.conv2d.0.0",
                                                                          "p2o.pd_op.relu.3.0"],
                            aliases={"y.tmp_0": "pd_op.relu.3.0"})
    assert pairs == [("x.tmp_0", "x.tmp_0"), ("pd_op.conv2d.0.0", "p2o.pd_op.conv2d.0.0"),
                     ("y.tmp_0", "p2o.pd_op.relu.3.0")]


def test_check_pairs_rejects_a_name_on_another_value():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    kept, rejected = check_pairs([("a", "a"), ("b", "b")], {"a": x, "b": y}, {"a": x + 1e-9, "b": x})
    assert kept == [("a", "a")] and rejected == 1


def test_match_by_value_prefers_the_exact_value_over_a_near_identity():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 8))
    src = {"act": x, "affine": x * 1.0002 + 1e-5, "other": rng.normal(size=(4, 8))}
    tgt = {"m.affine": x * 1.0002 + 1e-5, "m.act": x.copy()}
    assert dict(match_by_value(src, tgt)) == {"affine": "m.affine", "act": "m.act"}


def test_scaled_error_is_relative_to_the_source_scale():
    a = np.array([100.0, -50.0])
    assert scaled_error(a, a + np.array([1.0, 0.0])) == 0.01
    assert scaled_error(np.zeros(3), np.zeros(3)) == 0.0
    assert scaled_error(np.zeros(3), np.ones(3)) == float("inf")
