"""Unit tests of the OCR stages on synthetic maps, crops and fake runners (no model, no Paddle)."""
from __future__ import annotations

import numpy as np
import pytest

from ocrconvert.errors import UsageError
from ocrconvert.ocr import ClsParams, DetParams, OcrParams, RecParams, TextClassifier, TextRecognizer, ctc_decode, quad_iou
from ocrconvert.ocr.crop import crop_lines, rotate_crop
from ocrconvert.ocr.detect import db_postprocess, resize_for_det, sort_boxes


class FakeRunner:
    """``infer(feed) -> {"y": fn(x)}``, recording every input it sees."""

    def __init__(self, fn):
        self.fn, self.seen, self.input_names = fn, [], ["x"]

    def infer(self, feed):
        x = feed["x"]
        self.seen.append(x)
        return {"y": self.fn(x)}


# ---- params --------------------------------------------------------------------------------------------
V5_DET_YML = {"PreProcess": {"transform_ops": [{"DetResizeForTest": {"resize_long": 960}},
                                               {"NormalizeImage": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
                                                                   "scale": "1./255.", "order": "hwc"}}]},
              "PostProcess": {"name": "DBPostProcess", "thresh": 0.2, "box_thresh": 0.5, "max_candidates": 7,
                              "unclip_ratio": 2.0, "score_mode": "slow", "use_dilation": True}}


def test_det_params_model_values_from_yml_pipeline_values_paddleocr_defaults():
    p = DetParams.from_config(V5_DET_YML)
    assert (p.mean, p.std, p.scale) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), pytest.approx(1 / 255))
    assert (p.max_candidates, p.score_mode, p.use_dilation) == (7, "slow", True)
    # PaddleOCR 3.7's pipeline passes its own thresholds and resize limits over the yml's
    assert (p.limit_side_len, p.limit_type, p.max_side_limit) == (64, "min", 4000)
    assert (p.thresh, p.box_thresh, p.unclip_ratio) == (0.3, 0.6, 1.5)
    assert DetParams.from_config(V5_DET_YML, thresh=0.2).thresh == 0.2


def test_rec_and_cls_params_from_yml_and_input_shape():
    assert RecParams.from_config({"PreProcess": {"transform_ops": [{"RecResizeImg": {"image_shape": [3, 32, 100]}}]}}).image_shape == (3, 32, 100)
    assert RecParams.from_config({}, input_shape=[-1, 3, 48, -1]).image_shape == (3, 48, 320)
    assert ClsParams.from_config(None, input_shape=[-1, 3, 48, 192]).image_shape == (3, 48, 192)
    assert (RecParams().score_thresh, RecParams().batch_size, ClsParams().thresh) == (0.0, 6, 0.9)


def test_a_paddlex_image_classifier_is_refused_as_cls():
    from ocrconvert.errors import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match="TextClassifier"):
        ClsParams.from_config({"PreProcess": {"transform_ops": [{"ResizeImage": {"size": [160, 80]}}]}})


@pytest.mark.parametrize("bad", [{"limit_type": "long"}, {"score_mode": "mean"}, {"thresh": 1.5}, {"unclip_ratio": 0}])
def test_det_params_refuse_values_they_cannot_honour(bad):
    with pytest.raises(UsageError):
        DetParams(**bad)


def test_override_checks_every_key():
    p = OcrParams().override(det_box_thresh=0.7, rec_score_thresh=0.5)
    assert (p.det.box_thresh, p.rec.score_thresh) == (0.7, 0.5)
    with pytest.raises(UsageError, match="det_boxthresh"):
        OcrParams().override(det_boxthresh=0.7)
    with pytest.raises(UsageError):
        DetParams.from_config({}, nonsense=1)
    assert OcrParams.paddleocr2().det.limit_side_len == 960


# ---- det -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hw, params, expect", [
    ((720, 960), DetParams(), (704, 960)),                  # min 64: own size, 22.5 x 32 rounds half to even
    ((20, 30), DetParams(), (64, 64)),                                       # tiny: padded to 32, then min side 64
    ((1000, 3000), DetParams(limit_side_len=960, limit_type="max"), (320, 960)),
    ((500, 700), DetParams(limit_side_len=960, limit_type="resize_long"), (672, 960)),
    ((100, 9000), DetParams(), (32, 4000)),                 # max_side_limit: 44 px high rounds to 32
])
def test_det_resize_sides(hw, params, expect):
    img = np.zeros((*hw, 3), np.uint8)
    out, (src_h, src_w, rh, rw) = resize_for_det(img, params)
    assert out.shape[:2] == expect and (src_h, src_w) == hw


def _map_with(*rects, shape=(96, 160)):
    m = np.zeros(shape, np.float32)
    for x0, y0, x1, y1, v in rects:
        m[y0:y1, x0:x1] = v
    return m


def test_db_postprocess_finds_each_kernel_and_unclips_it():
    pred = _map_with((20, 10, 80, 20, 0.9), (30, 50, 140, 64, 0.8))
    boxes, scores = db_postprocess(pred, (192, 320, 0.5, 0.5), DetParams())  # page twice the map's size
    assert len(boxes) == 2 and all(s > 0.6 for s in scores)
    (a, b) = sort_boxes(boxes, scores)[0]
    # the kernel (x 20..79, y 10..19 on the map) grows by area*1.5/perimeter ~ 6.4 px each way, then x2
    assert a[0, 0] < 40 and a[2, 0] > 158 and a[0, 1] < 20 and a[2, 1] > 38
    assert b[0, 1] > a[2, 1]


def test_db_postprocess_thresholds_can_reject():
    pred = _map_with((20, 10, 80, 20, 0.5))
    assert len(db_postprocess(pred, (96, 160, 1, 1), DetParams())[0]) == 0           # mean 0.5 < box_thresh 0.6
    assert len(db_postprocess(pred, (96, 160, 1, 1), DetParams(box_thresh=0.4))[0]) == 1
    assert len(db_postprocess(pred, (96, 160, 1, 1), DetParams(thresh=0.6))[0]) == 0  # nothing binarised
    wide = db_postprocess(pred, (96, 160, 1, 1), DetParams(box_thresh=0.4, unclip_ratio=3.0))[0][0]
    narrow = db_postprocess(pred, (96, 160, 1, 1), DetParams(box_thresh=0.4))[0][0]
    assert np.ptp(wide[:, 1]) > np.ptp(narrow[:, 1])


def test_max_candidates_caps_the_contours():
    pred = _map_with(*[(10 + 30 * i, 10, 30 + 30 * i, 30, 0.9) for i in range(5)])
    assert len(db_postprocess(pred, (96, 160, 1, 1), DetParams(max_candidates=2))[0]) == 2


def test_sort_boxes_reads_rows_top_down_left_to_right():
    def q(x, y):
        return np.array([[x, y], [x + 10, y], [x + 10, y + 5], [x, y + 5]])

    boxes, scores = sort_boxes([q(50, 12), q(5, 40), q(10, 10), q(60, 41)], [1, 2, 3, 4])
    assert scores == [3, 1, 2, 4]  # (10,10) and (50,12) share a row (dy < 10)


def test_quad_iou():
    a = np.array([[0, 0], [10, 0], [10, 10], [0, 10]])
    assert quad_iou(a, a) == 1.0 and quad_iou(a, a + [5, 0]) == pytest.approx(1 / 3)


# ---- crop ----------------------------------------------------------------------------------------------
def test_vertical_rule_turns_tall_crops():
    img = np.zeros((200, 200, 3), np.uint8)
    img[:, :, 0] = np.arange(200, dtype=np.uint8)[:, None]  # blue grows downwards
    tall = rotate_crop(img, np.array([[10, 10], [40, 10], [40, 100], [10, 100]], np.float32))
    assert tall.shape[:2] == (30, 90)
    assert tall[:, -1, 0].mean() > tall[:, 0, 0].mean()  # counter-clockwise: the bottom lands on the right
    almost = rotate_crop(img, np.array([[10, 10], [40, 10], [40, 54], [10, 54]], np.float32))  # 44/30 < 1.5
    assert almost.shape[:2] == (44, 30)


def test_crop_lines_warps_a_rotated_quad_upright():
    import cv2

    img = np.full((120, 200, 3), 255, np.uint8)
    quad = np.array([[30, 40], [150, 20], [155, 50], [35, 70]])
    cv2.fillPoly(img, [quad.astype(np.int32)], (0, 0, 0))
    (crop,) = crop_lines(img, [quad])
    assert crop.shape[1] > 2 * crop.shape[0] and crop[3:-3, 3:-3].mean() < 40


# ---- cls -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p180, turned", [(0.95, True), (0.85, False), (0.2, False)])
def test_cls_turns_only_above_its_threshold(p180, turned):
    runner = FakeRunner(lambda x: np.tile([1 - p180, p180], (x.shape[0], 1)).astype(np.float32))
    crop = np.arange(24 * 60 * 3, dtype=np.uint8).reshape(24, 60, 3)
    out, angles, scores = TextClassifier(runner, ClsParams())([crop])
    assert np.array_equal(out[0], crop[::-1, ::-1]) is turned
    assert angles == [180 if turned else 0]
    assert runner.seen[0].shape == (1, 3, 48, 192)


def test_cls_batches_by_aspect_ratio():
    runner = FakeRunner(lambda x: np.tile([1.0, 0.0], (x.shape[0], 1)).astype(np.float32))
    crops = [np.zeros((10, w, 3), np.uint8) for w in (50, 10, 30, 20, 40, 60, 70)]
    TextClassifier(runner, ClsParams(batch_size=3))(crops)
    assert [x.shape[0] for x in runner.seen] == [3, 3, 1]


# ---- rec -----------------------------------------------------------------------------------------------
def test_ctc_decode_merges_repeats_drops_blanks_and_scores_kept_steps():
    labels = ["<blank>", "a", "b", " "]
    probs = np.zeros((1, 6, 4), np.float32)
    for t, (c, p) in enumerate([(1, 0.9), (1, 0.7), (0, 0.99), (1, 0.8), (3, 0.6), (2, 0.5)]):
        probs[0, t, c] = p
    ((text, score),) = ctc_decode(probs, labels)
    assert text == "aa b" and score == pytest.approx(np.mean([0.9, 0.8, 0.6, 0.5]))
    assert ctc_decode(np.eye(4, dtype=np.float32)[[0, 0]][None], labels) == [("", 0.0)]


def test_rec_batches_by_ratio_and_pads_to_the_widest():
    runner = FakeRunner(lambda x: np.tile(np.eye(4, dtype=np.float32)[[1]], (x.shape[0], 5, 1)))
    crops = [np.full((24, w, 3), 255, np.uint8) for w in (300, 24, 500, 100)]
    rec = TextRecognizer(runner, ["a", "b"], RecParams(batch_size=2))
    out = rec(crops)
    assert out == [("a", 1.0)] * 4
    first, second = runner.seen
    assert first.shape == (2, 3, 48, 320)                        # 24 and 100 px wide: the 320 minimum
    assert second.shape == (2, 3, 48, 1000)                      # 300 -> 600, 500 -> 1000
    assert (second[0, :, :, 600:] == 0).all() and (second[0, :, :, :600] == 1).all()


def test_rec_refuses_a_dictionary_of_the_wrong_size():
    runner = FakeRunner(lambda x: np.zeros((x.shape[0], 5, 10), np.float32))
    with pytest.raises(UsageError, match="dictionary"):
        TextRecognizer(runner, ["a", "b"], RecParams())([np.zeros((10, 40, 3), np.uint8)])


class BestRunner(FakeRunner):
    """A runner that reduces its own output (``infer_best``), as every ocrconvert runner does."""

    def __init__(self, fn):
        super().__init__(fn)
        self.best_calls = 0

    def infer_best(self, feed):
        from ocrconvert.runners.base import best_class

        self.best_calls += 1
        return best_class(self.fn(feed["x"]))

    def infer(self, feed):  # the recognizer must not ask for the whole output when the runner reduces it
        raise AssertionError("infer() called on a runner with infer_best()")


def test_rec_reads_the_runners_own_reduction_with_the_same_answers():
    rng = np.random.default_rng(0)

    def probs(x):  # a deterministic function of the batch: peaked rows, with exact ties at a few steps
        n, w = x.shape[0], x.shape[3] // 8
        p = np.random.default_rng(int(x.sum() * 1000) % 2**32).dirichlet(np.ones(8) * 0.3, size=(n, w)).astype(np.float32)
        p[:, ::5, 2] = p[:, ::5, 4] = p[:, ::5].max(axis=-1)  # ties: the first maximum (class 2) wins
        return p

    crops = [rng.integers(0, 255, (24, w, 3), dtype=np.uint8) for w in (300, 60, 500, 100, 220)]
    labels = ["a", "b", "c", "d", "e", "f"]
    plain = TextRecognizer(FakeRunner(probs), labels, RecParams(batch_size=2))(crops)
    runner = BestRunner(probs)
    reduced = TextRecognizer(runner, labels, RecParams(batch_size=2))(crops)
    assert reduced == plain and runner.best_calls == 3
    assert any("b" in text for text, _ in plain)  # class 2 = "b" at the tied steps
    # negative control: a reduction that takes the last maximum on ties reads other texts
    last = BestRunner(probs)
    last.infer_best = lambda feed: (lambda p: (p.shape[-1] - 1 - p[..., ::-1].argmax(-1), p.max(-1), p.shape[-1]))(probs(feed["x"]))
    assert TextRecognizer(last, labels, RecParams(batch_size=2))(crops) != plain


def test_best_class_on_torch_matches_numpy_first_maximum():
    torch = pytest.importorskip("torch")
    from ocrconvert.runners.base import best_class, best_class_torch

    p = np.random.default_rng(1).random((3, 9, 11)).astype(np.float32)
    p[0, 0, [3, 7]] = 2.0  # a tie: both take class 3
    want = best_class(p)
    for got in (best_class_torch(torch.from_numpy(p)), best_class_torch(torch.from_numpy(p).half())):
        assert np.array_equal(got[0], want[0]) and got[2] == 11 and got[1].dtype == np.float32
    assert np.array_equal(best_class_torch(torch.from_numpy(p))[1], want[1]) and want[0][0, 0] == 3
