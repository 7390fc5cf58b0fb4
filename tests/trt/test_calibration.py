"""Calibration batching: real images through the family's preprocessing, at the profile's opt shape."""
from __future__ import annotations

import numpy as np
import pytest

from ocrconvert.errors import UsageError
from ocrconvert.families import resolve_family
from ocrconvert.formats import detect
from ocrconvert.runners import runner_for
from ocrconvert.tensorrt.calibration import calibration_batches
from ocrconvert.tensorrt.profiles import derive_profiles


def _setup(path, shapes):
    info = runner_for(detect(path)).info()
    fam = resolve_family(info)
    return fam, derive_profiles(info, fam, shapes)


def test_rec_batches_at_opt_shape(onnx_model, calib_lines):
    fam, profs = _setup(onnx_model("ppocrv4-rec-onnx"), ["x:1x3x48x16:4x3x48x160:8x3x48x640"])
    cal = calibration_batches(calib_lines, fam, profs)
    assert cal.input_name == "x" and cal.batch_shape == (4, 3, 48, 160)
    assert (len(cal.batches), cal.images, cal.dropped) == (4, 16, 0)
    b = cal.batches[0]
    assert b.dtype == np.float32 and -1.0 <= b.min() and b.max() <= 1.0  # rec normalisation: (x/255-0.5)/0.5
    # the same preprocessing as verification: an image that fits is the family's own feed, zero-padded
    from PIL import Image

    first = sorted(calib_lines.iterdir())[0]
    (_, feed), = fam.image_feeds([("a", Image.open(first).convert("RGB"), None)])
    own = feed["x"][0]
    np.testing.assert_array_equal(b[0][:, :, : own.shape[2]], own)
    assert not b[0][:, :, own.shape[2]:].any()


def test_partial_batch_dropped_and_limit(onnx_model, calib_lines):
    fam, profs = _setup(onnx_model("ppocrv4-rec-onnx"), ["x:1x3x48x16:5x3x48x160:8x3x48x640"])
    cal = calibration_batches(calib_lines, fam, profs)
    assert (len(cal.batches), cal.images, cal.dropped) == (3, 15, 1)
    cal = calibration_batches(calib_lines, fam, profs, limit=10)
    assert (cal.images, cal.dropped) == (10, 0)


def test_det_pages_fit_inside_opt(onnx_model, calib_pages):
    fam, profs = _setup(onnx_model("ppocrv4-det-onnx"), ["x:1x3x32x32:1x3x128x160:1x3x960x960"])
    cal = calibration_batches(calib_pages, fam, profs)  # 320x256 pages shrink to fit 160x128
    assert cal.batch_shape == (1, 3, 128, 160) and len(cal.batches) == 3
    assert all(np.isfinite(b).all() and b.std() > 0 for b in cal.batches)


def test_empty_missing_and_too_small_folders(onnx_model, calib_lines, tmp_path):
    fam, profs = _setup(onnx_model("ppocrv4-rec-onnx"), ["x:1x3x48x16:32x3x48x160:64x3x48x640"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(UsageError, match="holds no images"):
        calibration_batches(tmp_path / "empty", fam, profs)
    with pytest.raises(UsageError, match="does not exist"):
        calibration_batches(tmp_path / "nope", fam, profs)
    with pytest.raises(UsageError, match="opt batch is 32"):
        calibration_batches(calib_lines, fam, profs)


def test_unreadable_image(onnx_model, tmp_path):
    fam, profs = _setup(onnx_model("ppocrv4-rec-onnx"), ["x:1x3x48x16:1x3x48x160:1x3x48x640"])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UsageError, match="not a readable image"):
        calibration_batches(tmp_path, fam, profs)
