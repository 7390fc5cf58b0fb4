"""Families own their deployment knowledge: TensorRT profile defaults, calibration fitting, bench shape and
torch.export dims are asked of the family, not kept in tables beside the callers."""
from __future__ import annotations

import numpy as np
import pytest

from ocrconvert.families import ClsFamily, DetDbFamily, GenericFamily, RecCtcFamily
from ocrconvert.families.base import ModelInfo, TensorSpec


def _info(shape, config=None, out=(None, 1, None, None)):
    return ModelInfo([TensorSpec("x", shape)], [TensorSpec("y", out)], config or {})


def _resize(**args):
    return {"PreProcess": {"transform_ops": [{"DetResizeForTest": args}]}}


@pytest.mark.parametrize("config, opt_side", [({}, 960), (_resize(limit_side_len=736), 736),
                                              (_resize(resize_long=1000), 992), (_resize(resize_long=4000), 1920)])
def test_det_profile_follows_the_models_resize_limit(config, opt_side):
    lo, opt, hi = DetDbFamily(_info((None, 3, None, None), config)).trt_profile(TensorSpec("x", (None, 3, None, None)))
    assert lo == (1, 3, 32, 32) and opt == (1, 3, opt_side, opt_side) and hi == (1, 3, 1920, 1920)


def test_fixed_dims_win_over_family_ranges():
    rec = RecCtcFamily(_info((None, 3, 32, None), out=(None, None, 97)))
    assert rec.trt_profile(rec.info.inputs[0]) == ((1, 3, 32, 16), (8, 3, 32, 320), (64, 3, 32, 3200))
    cls = ClsFamily(_info((4, 3, 80, 160), out=(4, 2)))
    assert cls.trt_profile(cls.info.inputs[0]) == ((4, 3, 80, 160),) * 3
    assert rec.trt_profile(TensorSpec("tokens", (None, 128))) is None   # not an image input: --shapes needed


def test_neutral_defaults_of_the_base_family():
    fam = GenericFamily(_info((None, 3, None, None)))
    assert fam.trt_profile(fam.info.inputs[0]) is None
    assert fam.bench_shape is None and fam.calibrates_on_images is False
    assert [c.calibrates_on_images for c in (DetDbFamily, RecCtcFamily, ClsFamily)] == [True, True, True]
    assert (DetDbFamily.bench_shape, RecCtcFamily.bench_shape, ClsFamily.bench_shape) == (
        (1, 3, 640, 640), (8, 3, 48, 320), (8, 3, 48, 192))


def test_calibration_input_fits_inside_opt():
    from ocrconvert.families.imaging import render_line, render_page

    det = DetDbFamily(_info((None, 3, None, None)))
    x = det.calibration_input(render_page(size=(640, 480)), (1, 3, 128, 160))
    assert x.shape == (3, 128, 160) and x.dtype == np.float32
    filled = np.nonzero(x.any(axis=0))  # shrunk keeping the aspect, to multiples of 32: 160 x 96
    assert (filled[0].max() + 1, filled[1].max() + 1) == (96, 160)
    rec = RecCtcFamily(_info((None, 3, 48, None), out=(None, None, 97)))
    line = render_line("a long line that is wider than the opt width")
    y = rec.calibration_input(line, (8, 3, 48, 160))
    assert y.shape == (3, 48, 160) and y[:, :, -1].any()   # squeezed to the full width, not cropped


def test_export_dims_come_from_the_family():
    pytest.importorskip("torch", reason="torch.export dims need torch")
    from ocrconvert.converters.torch_aot import export_dims

    assert sorted(export_dims("det-db", 4)) == [0, 2, 3]
    assert sorted(export_dims("rec-ctc", 4)) == [0, 3]
    assert sorted(export_dims("cls", 4)) == [0] and sorted(export_dims("det-db", 3)) == [0]
