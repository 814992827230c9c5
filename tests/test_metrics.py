"""wsol.metrics: MaxBoxAcc / PxAP and the threshold policy (devkit top-k errors: tests/test_topk.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from wsol.data.records import ImageRecord


# ------------------------------------------------------------------------------ MaxBoxAcc (wsolevaluation)
from wsol.metrics import BoxAccEvaluator, PxAPEvaluator, apply_threshold_policy  # noqa: E402
from wsol.metrics.boxacc import (  # noqa: E402
    _numba_available,
    level_ious,
    resize_boxes_wsoleval,
    scoremap_boxes_at_thresholds,
    wsoleval_scoremap,
)

UNIMODAL = np.array(
    [
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.2, 0.2, 0.2, 0.0],
        [0.0, 0.2, 1.0, 0.6, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0],
    ]
)
TAUS = np.arange(0, 1, 0.25)  # levels int(tau * 255): 0, 63, 127, 191


def _boxes(scoremap: np.ndarray, multi: bool) -> list[list[list[int]]]:
    return [b.tolist() for b in scoremap_boxes_at_thresholds(scoremap, TAUS, multi_contour=multi)]


def test_boxes_unimodal_per_threshold() -> None:
    # u8: 0.2 -> 51, 0.6 -> 153, 1 -> 255. Strict '>' level; box x1 = x + w (one past the last column).
    expected = [[[1, 1, 4, 3]], [[2, 2, 4, 3]], [[2, 2, 4, 3]], [[2, 2, 3, 3]]]
    assert _boxes(UNIMODAL, False) == expected
    assert _boxes(UNIMODAL, True) == expected


def test_boxes_multimodal_largest_contour_is_by_polygon_area() -> None:
    m = np.zeros((6, 10))
    m[1:4, 1:4] = 0.5  # 9 px, contour area 4
    m[5, 3:10] = 0.9  # 7 px in a line, contour area 0: more pixels, smaller polygon
    # level at tau 0.5: int(0.5 * 229) = 114 < 127 (0.5 -> 127): both kept; tau 0.75: 171, only the line.
    line = [3, 5, 9, 5]  # x + w = 10 clipped to W - 1 = 9
    assert _boxes(m, False) == [[[1, 1, 4, 4]], [[1, 1, 4, 4]], [[1, 1, 4, 4]], [line]]
    v2 = _boxes(m, True)
    assert [sorted(b) for b in v2] == [sorted([[1, 1, 4, 4], line])] * 3 + [[line]]


def test_boxes_hole_contours_count_for_v2() -> None:
    m = np.ones((9, 9))
    m[3:5, 3:6] = 0.0  # a hole: x 3..5, y 3..4 -> contour through its border pixels, box grown by one
    assert _boxes(m, False)[0] == [[0, 0, 8, 8]]
    assert sorted(_boxes(m, True)[0]) == [[0, 0, 8, 8], [2, 2, 7, 6]]


def test_boxes_all_zero_and_invalid_maps() -> None:
    assert _boxes(np.zeros((3, 4)), True) == [[[0, 0, 0, 0]]] * 4
    with pytest.raises(ValueError, match="NaN"):
        scoremap_boxes_at_thresholds(np.full((3, 3), np.nan), TAUS)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        scoremap_boxes_at_thresholds(np.full((3, 3), 1.5), TAUS)


def test_boxacc_evaluator_hand_counted() -> None:
    for method in ("exact", "fast") if _numba_available() else ("exact",):
        ev = BoxAccEvaluator(cam_curve_interval=0.25, method=method)
        # map 1, GT [2,2,4,3] (6 px): IoU per tau 6/12, 1, 1, 4/6
        # map 2, all zero -> box [0,0,0,0]; GT [0,0,1,1]: IoU 1/4 at every tau
        ev.update([UNIMODAL, np.zeros((4, 5))], [np.array([[2, 2, 4, 3]]), np.array([[0, 0, 1, 1]])])
        curve = ev.curve()
        np.testing.assert_array_equal(curve["boxacc_v1_iou50"], [50, 50, 50, 50])
        np.testing.assert_array_equal(curve["boxacc_v2_iou30"], [50, 50, 50, 50])
        np.testing.assert_array_equal(curve["boxacc_v2_iou70"], [0, 50, 50, 0])
        out = ev.compute()
        assert out["maxboxacc"] == 50.0 and out["maxboxacc_tau"] == 0.0
        assert out["maxboxacc_v2_iou70"] == 50.0 and out["maxboxacc_v2_iou70_tau"] == 0.25
        assert out["maxboxacc_v2"] == 50.0 and out["n_images"] == 2


def _identity_maps() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:48, 0:48]
    maps = []
    for i in range(12):
        if i % 4 == 0:  # smooth blob
            m = np.exp(-((xx - rng.uniform(0, 48)) ** 2 + (yy - rng.uniform(0, 48)) ** 2) / rng.uniform(20, 400))
        elif i % 4 == 1:  # multimodal
            m = sum(np.exp(-((xx - rng.uniform(0, 48)) ** 2 + (yy - rng.uniform(0, 48)) ** 2) / rng.uniform(5, 80)) for _ in range(4))
        elif i % 4 == 2:  # noisy: many small contours, holes, ties of contour area
            m = rng.random((48, 48)) * (rng.random((48, 48)) < 0.7)
        else:  # tiny and thin maps
            m = rng.random(tuple(rng.integers(1, 6, 2)))
        maps.append(m / m.max() if m.max() > 0 else m)
    maps.append(np.zeros((5, 5)))
    maps.append(np.ones((4, 4)))
    ring = np.ones((9, 9))
    ring[3:5, 3:6] = 0.0
    maps.append(ring)
    return maps


@pytest.mark.skipif(not _numba_available(), reason="the fast path needs numba")
def test_fast_path_identical_to_exact_at_every_level() -> None:
    rng = np.random.default_rng(3)
    for m in _identity_maps():
        h, w = m.shape
        gt = [[0, 0, w - 1, h - 1]]
        for _ in range(2):
            (x0, x1), (y0, y1) = sorted(rng.integers(0, w, 2)), sorted(rng.integers(0, h, 2))
            gt.append([x0, y0, x1, y1])
        gt = np.array(gt)
        exact = level_ious(m, gt, method="exact")
        fast = level_ious(m, gt, method="fast")
        np.testing.assert_array_equal(fast[0], exact[0])
        np.testing.assert_array_equal(fast[1], exact[1])


def test_resize_boxes_and_scoremap_preprocessing() -> None:
    # x * 224 / 200 and y * 224 / 300, truncated
    np.testing.assert_array_equal(resize_boxes_wsoleval(np.array([[10, 20, 99, 149]]), (200, 300)), [[11, 14, 110, 111]])
    cam = np.arange(12, dtype=np.float32).reshape(3, 4)
    s = wsoleval_scoremap(cam)
    assert s.shape == (224, 224) and s.dtype == np.float64 and s.min() == 0.0 and s.max() == 1.0
    resized = cv2.resize(cam.astype(np.float64), (224, 224), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(s, (resized - resized.min()) / (resized - resized.min()).max())
    assert not wsoleval_scoremap(np.full((3, 3), 2.0)).any()
    nan = cam.copy()
    nan[0, 0] = np.nan
    assert not wsoleval_scoremap(nan).any()


# -------------------------------------------------------------------------------------------------- PxAP
def test_pxap_hand_counted() -> None:
    scores = np.array([[0.9, 0.2, 0.6, 0.1, 1.0]])
    mask = np.array([[1, 1, 0, 0, 255]], dtype=np.uint8)  # the 1.0 pixel is ignored
    ev = PxAPEvaluator(cam_curve_interval=0.5)
    ev.update([scores], [mask])
    # bins [0,.5) [.5,1) [1,2) [2,3]: fg 1 1 0 0, bg 1 1 0 0 -> precision .5 at recall .5 and 1 -> 50
    assert ev.compute()["pxap"] == pytest.approx(50.0)
    perfect = PxAPEvaluator(cam_curve_interval=0.5)
    perfect.update([np.array([[0.9, 0.1]])], [np.array([[1, 0]], dtype=np.uint8)])
    assert perfect.compute()["pxap"] == pytest.approx(100.0)


# -------------------------------------------------------------------------------------- threshold policy
def test_threshold_policy_bookkeeping() -> None:
    test = {"tau": np.array([0.0, 0.5]), "boxacc_v1_iou50": np.array([40.0, 60.0])}
    heldout = {"tau": np.array([0.0, 0.5]), "boxacc_v1_iou50": np.array([70.0, 30.0])}
    out = apply_threshold_policy(test, heldout_curve=heldout)
    assert out == {"oracle_upper_bound": 60.0, "oracle_tau": 0.5, "boxacc_at_tau": 40.0, "tau": 0.0, "tau_source": "heldout"}
    assert apply_threshold_policy(test, tau=0.5)["boxacc_at_tau"] == 60.0
    assert apply_threshold_policy(test)["tau_source"] == "oracle (upper bound)"
    with pytest.raises(ValueError, match="grid"):
        apply_threshold_policy(test, tau=0.2)
