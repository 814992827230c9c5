"""wsol.metrics: MaxBoxAcc / PxAP and the threshold policy (devkit top-k errors: tests/test_topk.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from wsol.data.records import ImageRecord


# ------------------------------------------------------------------------------ MaxBoxAcc (wsolevaluation)
import ast  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from scipy import ndimage  # noqa: E402

from wsol.boxes import box_iou, resize_boxes  # noqa: E402
from wsol.metrics import BoxAccEvaluator, PxAPEvaluator  # noqa: E402
from wsol.metrics.threshold import best_tau, check_tau_policy, crossfold_accuracy, policy_tau  # noqa: E402
from wsol.metrics.boxacc import (  # noqa: E402
    _numba_available,
    _workspace,
    level_boxes,
    level_ious,
    max_over_level_ranges,
    quantise,
    scoremap_boxes_at_thresholds,
    threshold_levels,
)
from wsol.metrics.scoremap import RESIZE_LENGTH, wsoleval_scoremap  # noqa: E402

METHODS = ("exact", "fast") if _numba_available() else ("exact",)
needs_numba = pytest.mark.skipif(not _numba_available(), reason="the fast path needs numba")

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
    with pytest.raises(ValueError, match="floating"):
        scoremap_boxes_at_thresholds(np.zeros((3, 3), dtype=np.uint8), TAUS)


def test_quantisation_and_levels_truncate() -> None:
    # (map * 255).astype(uint8) truncates: 0.999 -> 254.745 -> 254, 0.5 -> 127; never rounds.
    np.testing.assert_array_equal(quantise(np.array([[0.999, 0.5, 1.0, 0.0]])), [[254, 127, 255, 0]])
    # int(tau * max): 0.5 * 229 = 114.5 -> 114; 0.999 * 255 = 254.745 -> 254
    np.testing.assert_array_equal(threshold_levels(np.array([0.0, 0.5, 0.999]), 229), [0, 114, 228])
    np.testing.assert_array_equal(threshold_levels(np.array([0.999]), 255), [254])


@pytest.mark.parametrize("method", METHODS)
def test_boxacc_evaluator_hand_counted(method: str) -> None:
    ev = BoxAccEvaluator(cam_curve_interval=0.25, iou_thresholds=(30, 50, 70), method=method)
    # map 1, GT [2,2,4,3] (6 px): IoU per tau 6/12, 1, 1, 4/6 -- exactly 0.5 at tau 0 counts (>=)
    # map 2, all zero -> box [0,0,0,0]; GT [0,0,1,1]: IoU 1/4 at every tau
    ev.update([UNIMODAL, np.zeros((4, 5))], [np.array([[2, 2, 4, 3]]), np.array([[0, 0, 1, 1]])])
    curve = ev.curve()
    np.testing.assert_array_equal(curve["boxacc_v1_iou50"], [50, 50, 50, 50])
    np.testing.assert_array_equal(curve["boxacc_v2_iou30"], [50, 50, 50, 50])
    np.testing.assert_array_equal(curve["boxacc_v2_iou50"], [50, 50, 50, 50])  # 6/12 at tau 0 counts for V2 too
    np.testing.assert_array_equal(curve["boxacc_v2_iou70"], [0, 50, 50, 0])
    out = ev.compute()
    assert out["maxboxacc"] == 50.0 and out["maxboxacc_tau"] == 0.0
    assert out["maxboxacc_v2_iou70"] == 50.0 and out["maxboxacc_v2_iou70_tau"] == 0.25
    assert out["maxboxacc_v2"] == 50.0 and out["n_images"] == 2


@pytest.mark.parametrize("method", METHODS)
def test_iou_exactly_at_the_thresholds_counts(method: str) -> None:
    # A 1x24 map lit on x 0..18: one box [0, 0, 19, 0] (x + w = 19), 20 px, at both taus. GT boxes 6, 10 and
    # 14 px wide inside it: IoU 6/20, 10/20, 14/20 -- exactly 0.3, 0.5 and 0.7 in float64, as t / 100 is.
    m = np.zeros((1, 24))
    m[0, 0:19] = 1.0
    gts = [np.array([[0, 0, 5, 0]]), np.array([[0, 0, 9, 0]]), np.array([[0, 0, 13, 0]])]  # IoU .3, .5, .7
    ev = BoxAccEvaluator(cam_curve_interval=0.5, iou_thresholds=(30, 50, 70), method=method)
    ev.update([m] * 3, gts)
    curve = ev.curve()
    # >= at every threshold (wsolevaluation's np.where(iou >= t / 100)): 0.3 >= .3, 0.5 >= .5, 0.7 >= .7
    np.testing.assert_array_equal(curve["boxacc_v2_iou30"], [100, 100])
    np.testing.assert_array_equal(curve["boxacc_v2_iou50"], [200 / 3, 200 / 3])
    np.testing.assert_array_equal(curve["boxacc_v2_iou70"], [100 / 3, 100 / 3])
    np.testing.assert_array_equal(curve["boxacc_v1_iou50"], [200 / 3, 200 / 3])


def _nested_intervals() -> np.ndarray:
    """Row 1 of a 3x40 map holds nested intervals: x 10..29 at 0.1 (u8 25), 14..25 at 0.3 (76), 16..23 at 0.6
    (153), 18..21 at 1.0 (255). At the levels 0, 63, 127, 191 (taus 0, .25, .5, .75) the one box is
    [10,1,30,2], [14,1,26,2], [16,1,24,2], [18,1,22,2] (x + w; y from 1 to min(1 + 1, 2)): 21, 13, 9, 5 px wide."""
    m = np.zeros((3, 40))
    m[1, 10:30] = 0.1
    m[1, 14:26] = 0.3
    m[1, 16:24] = 0.6
    m[1, 18:22] = 1.0
    return m


@pytest.mark.parametrize("method", METHODS)
def test_maxboxacc_v2_is_the_mean_of_per_iou_maxima_each_at_its_own_tau(method: str) -> None:
    m = _nested_intervals()
    wide, narrow = np.array([[10, 1, 30, 2]]), np.array([[18, 1, 22, 2]])
    # IoU over the taus (same heights, so widths): wide GT 21/21, 13/21, 9/21, 5/21 = 1, .62, .43, .24;
    # narrow GT 5/21, 5/13, 5/9, 5/5 = .24, .38, .56, 1.
    ev = BoxAccEvaluator(cam_curve_interval=0.25, iou_thresholds=(30, 50, 70), method=method)
    ev.update([m, m], [wide, narrow])
    curve = ev.curve()
    np.testing.assert_array_equal(curve["boxacc_v2_iou30"], [50, 100, 100, 50])  # wide: taus 0-2; narrow: 1-3
    np.testing.assert_array_equal(curve["boxacc_v2_iou50"], [50, 50, 50, 50])  # wide: 0, 1; narrow: 2, 3
    np.testing.assert_array_equal(curve["boxacc_v2_iou70"], [50, 0, 0, 50])  # wide: 0; narrow: 3
    out = ev.compute()
    # Each IoU threshold takes its own best tau (the first maximum) ...
    assert (out["maxboxacc_v2_iou30"], out["maxboxacc_v2_iou30_tau"]) == (100.0, 0.25)
    assert (out["maxboxacc_v2_iou50"], out["maxboxacc_v2_iou50_tau"]) == (50.0, 0.0)
    assert (out["maxboxacc_v2_iou70"], out["maxboxacc_v2_iou70_tau"]) == (50.0, 0.0)
    # ... and MaxBoxAccV2 is their MEAN: (100 + 50 + 50) / 3. The max over IoU thresholds would be 100; one
    # tau shared by the three (the best mean curve) would give max(50, 50, 50, 50) = 50.
    assert out["maxboxacc_v2"] == pytest.approx(200 / 3, abs=1e-12)
    assert out["maxboxacc"] == 50.0 and out["maxboxacc_tau"] == 0.0


@pytest.mark.parametrize("method", METHODS)
def test_v1_keeps_the_largest_contour_v2_every_contour(method: str) -> None:
    m = np.zeros((10, 12))
    m[1:7, 1:7] = 0.8  # big blob, contour area 25
    m[8, 9:11] = 1.0  # small blob (2 px, area 0)
    small = np.array([[9, 8, 11, 9]])  # its box: x + w = 11, y + h = 9
    ev = BoxAccEvaluator(cam_curve_interval=0.5, iou_thresholds=(30, 50, 70), method=method)
    ev.update([m], [small])
    out = ev.compute()
    # tau 0 and 0.5 (levels 0, 127) keep both blobs: V1 takes the big one (IoU 0), V2 finds the small one.
    assert out["maxboxacc"] == 0.0
    assert out["maxboxacc_v2_iou30"] == out["maxboxacc_v2_iou50"] == out["maxboxacc_v2_iou70"] == 100.0


def _two_equal_squares() -> list[tuple[np.ndarray, list[int]]]:
    """Maps with two 2x2 squares of equal contour area (1) and the V1 box OpenCV picks: the square whose first
    raster pixel comes LAST (findContours lists top-level contours in descending raster order of their first
    pixel; max() keeps the first maximum)."""
    cases = []
    m = np.zeros((8, 10))
    m[1:3, 1:3] = m[1:3, 6:8] = 1.0  # same rows: the right square starts later
    cases.append((m, [6, 1, 8, 3]))
    cases.append((m[:, ::-1].copy(), [7, 1, 9, 3]))  # mirrored: the right square is still later
    m = np.zeros((8, 10))
    m[1:3, 6:8] = m[4:6, 1:3] = 1.0  # the lower-left square starts later, though it is further left
    cases.append((m, [1, 4, 3, 6]))
    cases.append((m[:, ::-1].copy(), [7, 4, 9, 6]))
    cases.append((m[::-1].copy(), [6, 5, 8, 7]))  # upside down: the right square is now the lower one
    return cases


@pytest.mark.parametrize("method", METHODS)
def test_v1_tie_goes_to_the_contour_whose_first_pixel_comes_last(method: str) -> None:
    for m, expected in _two_equal_squares():
        assert level_boxes(m, np.array([0]), method).v1.tolist() == [expected]
        assert scoremap_boxes_at_thresholds(m, [0.0])[0].tolist() == [expected]  # OpenCV agrees


def _identity_maps() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:48, 0:48]
    maps = []
    for i in range(12):
        if i % 4 == 0:  # smooth blob
            m = np.exp(-((xx - rng.uniform(0, 48)) ** 2 + (yy - rng.uniform(0, 48)) ** 2) / rng.uniform(20, 400))
        elif i % 4 == 1:  # multimodal
            m = sum(np.exp(-((xx - rng.uniform(0, 48)) ** 2 + (yy - rng.uniform(0, 48)) ** 2) / rng.uniform(5, 80)) for _ in range(4))
        elif i % 4 == 2:  # noisy: many small contours, holes, nested contours, ties of contour area
            m = rng.random((48, 48)) * (rng.random((48, 48)) < 0.7)
        else:  # tiny and thin maps
            m = rng.random(tuple(rng.integers(1, 6, 2)))
        maps.append(m / m.max() if m.max() > 0 else m)
    for grid in (14, 7):  # CAM-like: a coarse map with 1-3 blobs and noise, bicubic to 64x64, min-max
        g = np.mgrid[0:grid, 0:grid]
        cam = sum(np.exp(-((g[1] - rng.uniform(0, grid)) ** 2 + (g[0] - rng.uniform(0, grid)) ** 2) / rng.uniform(1, 8))
                  for _ in range(rng.integers(1, 4)))
        maps.append(wsoleval_scoremap(cam + 0.05 * rng.standard_normal((grid, grid)), (64, 64)))
    maps.append(np.zeros((5, 5)))
    maps.append(np.ones((4, 4)))
    maps.append(0.7 * np.ones((4, 6)))  # max below 1: u8 max 178, the levels are int(tau * 178)
    ring = np.ones((9, 9))
    ring[3:5, 3:6] = 0.0
    maps.append(ring)
    maps.append(_ring_with_peak())
    maps.append(_nested_intervals())
    maps.extend(m for m, _ in _two_equal_squares())
    return maps


def _ring_with_peak() -> np.ndarray:
    """A ring (0.6) around a moat (0.2) around a peak (0.9): between levels 51 and 152 the peak is an outer
    contour nested inside the ring's hole, which the fast path finds by its second sweep."""
    m = np.full((11, 11), 0.0)
    m[1:10, 1:10] = 0.6
    m[3:8, 3:8] = 0.2
    m[5, 5] = 0.9
    return m


def _random_gt(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    gt = [[0, 0, w - 1, h - 1]]
    for _ in range(2):
        (x0, x1), (y0, y1) = sorted(rng.integers(0, w, 2)), sorted(rng.integers(0, h, 2))
        gt.append([x0, y0, x1, y1])
    return np.array(gt)


@needs_numba
def test_fast_path_identical_to_exact_at_every_level() -> None:
    rng = np.random.default_rng(3)
    for m in _identity_maps():
        gt = _random_gt(rng, *m.shape)
        exact = level_ious(m, gt, method="exact")
        fast = level_ious(m, gt, method="fast")
        np.testing.assert_array_equal(fast[0], exact[0])
        np.testing.assert_array_equal(fast[1], exact[1])
        # the V1 boxes themselves, not only their IoUs
        np.testing.assert_array_equal(level_boxes(m, method="fast").v1, level_boxes(m, method="exact").v1)


@needs_numba
def test_fast_path_identical_on_a_sparse_set_of_levels() -> None:
    # step 0.01 on a map whose u8 max is 229: 100 taus -> the distinct levels int(tau * 229), with gaps
    rng = np.random.default_rng(5)
    for m in _identity_maps()[:12]:
        m = 0.9 * m
        gt = _random_gt(rng, *m.shape)
        for method in ("exact", "fast"):
            ev = BoxAccEvaluator(cam_curve_interval=0.01, iou_thresholds=(30, 50, 70), method=method)
            ev.update([m], [gt])
            if method == "exact":
                expected = ev.curve()
            else:
                for key, values in ev.curve().items():
                    np.testing.assert_array_equal(values, expected[key], err_msg=key)


@needs_numba
def test_nested_contours_take_the_second_sweep() -> None:
    from wsol.metrics import kernels

    u8 = quantise(_ring_with_peak())
    _, n_outer, n_holes, nested = kernels.level_structure(u8, _workspace(*u8.shape))
    # u8: ring 153, moat 51, peak 229. Levels 51..152: ring + peak (2 outer), one hole; psi fills the moat.
    assert nested[51:153].tolist() == [1] * 102 and not nested[:51].any() and not nested[153:].any()
    assert n_outer[:153].tolist() == [1] * 153 and n_holes[51:153].tolist() == [1] * 102
    peak = [5, 5, 6, 6]
    ring_box, hole_box = [1, 1, 10, 10], [2, 2, 9, 9]
    boxes = level_boxes(_ring_with_peak(), np.array([100]), "fast")
    assert sorted(boxes.v2.tolist()) == sorted([ring_box, hole_box, peak])


@needs_numba
def test_kernels_against_reference_computations() -> None:
    """psi against scipy's binary hole filling; top-level outer contours, nested outer contours and holes at
    every level against OpenCV's contours (RETR_EXTERNAL: the top-level ones; RETR_CCOMP: every outer one on
    the first level of its hierarchy, every hole on the second)."""
    from wsol.metrics import kernels

    rng = np.random.default_rng(11)
    four = ndimage.generate_binary_structure(2, 1)
    for trial in range(40):
        h, w = rng.integers(1, 16, 2)
        u8 = (rng.integers(0, 4, (h, w)) * 70).astype(np.uint8) if trial % 2 else rng.integers(0, 256, (h, w), dtype=np.uint8)
        psi, n_outer, n_holes, nested = kernels.level_structure(u8, _workspace(h, w))
        for level in range(255):
            mask = u8 > level
            np.testing.assert_array_equal(psi > level, ndimage.binary_fill_holes(mask, structure=four))
            contours, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
            n_out = 0 if hierarchy is None else int((hierarchy[0][:, 3] < 0).sum())
            top = len(cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0])
            got = (n_outer[level], nested[level], n_holes[level])
            assert got == (top, n_out - top, len(contours) - n_out), (trial, level)


# ------------------------------------------------------------- the fast path against the exact oracle
def _hostile_maps() -> list[tuple[str, np.ndarray]]:
    """Maps that stress the fast path: many components, holes and nested contours, ties, plateaus at the
    thresholds' levels, constant, thin and one-pixel maps, a max below 1, and a noisy 224x224 CAM."""
    rng = np.random.default_rng(19)
    maps = [("uniform noise", rng.random((40, 40))),
            ("sparse salt", rng.random((48, 48)) * (rng.random((48, 48)) < 0.05))]
    yy, xx = np.mgrid[0:24, 0:24]
    # one 8-connected component whose every background pixel is a hole (4-isolated), over a gradient
    maps.append(("checkerboard", ((xx + yy) % 2) * (0.3 + 0.7 * xx / 23)))
    r = np.hypot(xx - 11.5, yy - 11.5)
    maps.append(("concentric rings", (np.floor(r / 2) % 2) * (1 - r / 20).clip(0, 1)))  # contours nested many deep
    nested = np.zeros((21, 21))
    for k, v in enumerate((0.5, 0.1, 0.7, 0.2, 0.9, 0.3)):  # ring, moat, ring, moat, ring, peak: three nestings
        nested[k + 1 : 20 - k, k + 1 : 20 - k] = v
    maps.append(("ring in a ring in a ring", nested))
    # plateaus exactly at the levels of a 0.1 step (values k / 10: u8 25, 51, ...; the levels int(tau * 255))
    maps.append(("plateaus at tau levels", np.floor(rng.random((24, 24)) * 10) / 10))
    squares = np.zeros((40, 40))
    for y0, x0 in rng.integers(0, 38, (14, 2)):
        squares[y0 : y0 + 2, x0 : x0 + 2] = 0.8  # equal squares (some merge): ties of contour area for V1
    squares[39, ::3] = 0.8  # single pixels and lines: contour area 0, ties among them
    maps.append(("equal squares and dots", squares))
    u_shapes = np.ones((30, 30))
    u_shapes[5:25:4, 0:20] = 0.2  # dents open to the left edge: never holes
    u_shapes[5:25:4, 22:28] = 0.1  # closed slots: holes
    maps.append(("dents and slots", u_shapes))
    maps += [("zeros", np.zeros((16, 16))), ("ones", np.ones((16, 16))), ("constant 0.5", np.full((9, 13), 0.5)),
             ("one pixel", np.array([[0.3]])), ("one bright pixel", np.array([[1.0]])),
             ("row", rng.random((1, 50))), ("column", rng.random((50, 1))), ("2x2", rng.random((2, 2))),
             ("max below 1", 0.37 * rng.random((32, 32)))]
    whole = np.zeros((40, 40))
    whole[1:39, 1:39] = 1.0  # a box of the whole map; the single peak pixel below is a one-pixel box
    maps.append(("whole map", whole))
    peak = np.zeros((40, 40))
    peak[17, 23] = 1.0
    maps.append(("one-pixel peak", peak))
    maps.append(("noisy 224 CAM", wsoleval_scoremap(rng.standard_normal((28, 28)))))
    return maps


def _hostile_gt(rng: np.random.Generator, m: np.ndarray) -> np.ndarray:
    """Random GT boxes on the map: the whole map, a one-pixel box, a box around the brightest pixel, two random."""
    h, w = m.shape
    y, x = np.unravel_index(np.argmax(m), m.shape)
    gt = [[0, 0, w - 1, h - 1], [x, y, x, y], [max(x - 2, 0), max(y - 2, 0), min(x + 3, w - 1), min(y + 3, h - 1)]]
    for _ in range(2):
        (x0, x1), (y0, y1) = sorted(rng.integers(0, w, 2)), sorted(rng.integers(0, h, 2))
        gt.append([x0, y0, x1, y1])
    return np.array(gt)


def _boxes_by_level(boxes, levels: range) -> dict[int, set[tuple[int, ...]]]:  # noqa: ANN001  (LevelBoxes)
    """The distinct V2 boxes of each level, from ``LevelBoxes`` records (each valid over a range of levels)."""
    out: dict[int, set[tuple[int, ...]]] = {level: set() for level in levels}
    for box, lo, hi in zip(map(tuple, boxes.v2.tolist()), boxes.v2_lo.tolist(), boxes.v2_hi.tolist()):
        first = max(lo, levels.start)
        first += -(first - levels.start) % levels.step  # the first level of ``levels`` at or above lo
        for level in range(first, min(hi, levels.stop - 1) + 1, levels.step):
            out[level].add(box)
    return out


@needs_numba
@pytest.mark.parametrize("name", [name for name, _ in _hostile_maps()])
def test_fast_path_matches_exact_on_hostile_maps(name: str) -> None:
    """Count by count (V1 at IoU 50, V2 at 30/50/70, every threshold) and box by box (every level)."""
    names = [n for n, _ in _hostile_maps()]
    m = dict(_hostile_maps())[name]
    rng = np.random.default_rng(names.index(name))
    gt = _hostile_gt(rng, m)
    for step in (0.001, 0.01, 0.1):
        counts = {}
        for method in ("exact", "fast"):
            ev = BoxAccEvaluator(cam_curve_interval=step, iou_thresholds=(30, 50, 70), method=method)
            ev.update([m], [gt])
            counts[method] = ev.counts()
        np.testing.assert_array_equal(counts["fast"], counts["exact"], err_msg=f"step {step}")
    levels = range(0, 255, 3)
    exact, fast = level_boxes(m, np.array(levels), "exact"), level_boxes(m, np.array(levels), "fast")
    np.testing.assert_array_equal(fast.v1, exact.v1)
    assert _boxes_by_level(fast, levels) == _boxes_by_level(exact, levels)


@needs_numba
def test_fast_path_batches_match_exact_map_by_map() -> None:
    """A [B, H, W] batch (one kernel call; an all-zero map after others), float32 maps, and a list of maps of
    different shapes (the scratch buffer of one shape reused after another's) give the exact path's counts."""
    rng = np.random.default_rng(23)
    cams = [wsoleval_scoremap(rng.standard_normal((g, g)) + 3 * np.exp(-((np.mgrid[0:g, 0:g] - g / 2) ** 2).sum(0) / g))
            for g in (7, 14, 7, 14, 28)]
    cams.insert(3, np.zeros((224, 224)))  # an empty mask after non-empty ones: its box is [0, 0, 0, 0] at tau 0
    gts = [_hostile_gt(rng, m) for m in cams]
    gts[3] = np.array([[0, 0, 0, 0], [5, 5, 9, 9]])  # the empty mask's box [0, 0, 0, 0] is right, for V1 too
    for maps in (np.stack(cams), np.stack(cams).astype(np.float32)):
        exact = BoxAccEvaluator(cam_curve_interval=0.001, iou_thresholds=(30, 50, 70), method="exact")
        exact.update(list(maps), gts)
        fast = BoxAccEvaluator(cam_curve_interval=0.001, iou_thresholds=(30, 50, 70), method="fast")
        fast.update(maps, gts)
        np.testing.assert_array_equal(fast.counts(), exact.counts())
    mixed = [m for name, m in _hostile_maps() if name in ("uniform noise", "2x2", "checkerboard", "one pixel")]
    mixed.append(mixed[0])
    gts = [_hostile_gt(rng, m) for m in mixed]
    counts = []
    for method in ("exact", "fast"):
        ev = BoxAccEvaluator(cam_curve_interval=0.01, iou_thresholds=(30, 50, 70), method=method)
        ev.update(mixed, gts)
        counts.append(ev.counts())
    np.testing.assert_array_equal(counts[1], counts[0])


@pytest.mark.parametrize("method", METHODS)
def test_invalid_map_rejects_the_whole_batch_and_names_the_map(method: str) -> None:
    """As wsolevaluation's check_scoremap_validity: a NaN, an infinity or a value outside [0, 1] is an error, never
    a score; the batch counts as a whole or not at all, and the message names the map and the value."""
    gt = np.array([[2, 2, 4, 3]])
    for bad_value, match in ((np.nan, "score map 1 contains NaN"), (np.inf, r"score map 1 must lie in \[0, 1\]"),
                             (-0.25, r"min=-0.25"), (1.5, r"max=1.5")):
        bad = UNIMODAL.copy()
        bad[1, 3] = bad_value
        ev = BoxAccEvaluator(cam_curve_interval=0.25, iou_thresholds=(30, 50, 70), method=method)
        for maps in ([UNIMODAL, bad, UNIMODAL], np.stack([UNIMODAL, bad, UNIMODAL])):
            with pytest.raises(ValueError, match=match):
                ev.update(maps, [gt] * 3)
            assert ev.n_images == 0 and not ev.counts().any()
        ev.update([UNIMODAL], [gt])
        assert ev.n_images == 1 and ev.curve()["boxacc_v1_iou50"].tolist() == [100.0] * 4
    ev = BoxAccEvaluator(cam_curve_interval=0.25, iou_thresholds=(30, 50, 70), method=method)
    with pytest.raises(ValueError, match="score map 1 has no GT box"):
        ev.update([UNIMODAL, UNIMODAL], [gt, np.zeros((0, 4))])
    bad = UNIMODAL.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="score map 0 contains NaN"):  # the first problem in batch order
        ev.update([bad, UNIMODAL], [gt, np.zeros((0, 4))])
    with pytest.raises(ValueError, match="floating"):
        ev.update([UNIMODAL, (UNIMODAL * 255).astype(np.uint8)], [gt, gt])
    assert ev.n_images == 0


def test_max_over_level_ranges_hand_made() -> None:
    lo = np.array([0, 2, 5, 3, 7])
    hi = np.array([4, 2, 9, 3, 7])
    values = np.array([0.1, 0.9, 0.3, 0.2, 0.8])
    # level: 0..1 -> .1; 2 -> .9; 3 -> max(.1, .2); 4 -> .1; 5, 6 -> .3; 7 -> .8; 8, 9 -> .3; 10.. -> 0
    expected = [0.1, 0.1, 0.9, 0.2, 0.1, 0.3, 0.3, 0.8, 0.3, 0.3] + [0.0] * 6
    np.testing.assert_array_equal(max_over_level_ranges(lo, hi, values, 16), expected)
    np.testing.assert_array_equal(max_over_level_ranges(np.array([0]), np.array([255]), np.array([0.5])), [0.5] * 256)
    assert not max_over_level_ranges(np.zeros(0, int), np.zeros(0, int), np.zeros(0)).any()


def test_wsoleval_box_resize_and_scoremap_preprocessing() -> None:
    # wsolevaluation's resize_bbox: int(x * 224 / W), int(y * 224 / H)
    grid = (224, 224)
    np.testing.assert_array_equal(resize_boxes(np.array([[10, 20, 99, 149]]), (200, 300), grid, truncate=True),
                                  [[11, 14, 110, 111]])
    pair = np.array([[180, 45, 340, 90]])  # W = 640, H = 160: x * (224 / 640) would give 62, 62, 118, 125
    np.testing.assert_array_equal(resize_boxes(pair, (640, 160), grid, truncate=True), [[63, 63, 119, 126]])
    cam = np.arange(12, dtype=np.float32).reshape(3, 4)
    s = wsoleval_scoremap(cam)
    assert s.shape == (224, 224) and s.dtype == np.float64 and s.min() == 0.0 and s.max() == 1.0
    assert not wsoleval_scoremap(np.full((3, 3), 2.0)).any()
    nan = cam.copy()
    nan[0, 0] = np.nan
    assert not wsoleval_scoremap(nan).any()


def test_wsoleval_scoremap_is_bit_identical_to_the_suites_in_place_ops() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        cam = rng.standard_normal(tuple(rng.integers(2, 15, 2))) * rng.uniform(0.01, 100) + rng.uniform(-50, 50)
        # inference.py: cv2.resize of the float64 CAM, then normalize_scoremap: cam -= cam.min(); cam /= cam.max()
        theirs = cv2.resize(cam.astype(np.float64), (224, 224), interpolation=cv2.INTER_CUBIC)
        theirs -= theirs.min()
        theirs /= theirs.max()
        np.testing.assert_array_equal(wsoleval_scoremap(cam), theirs)


def test_score_paths_do_not_load_torch() -> None:
    code = ("import sys; import wsol.boxes, wsol.metrics, wsol.metrics.boxacc, wsol.metrics.pxap, wsol.score; "
            "from wsol.metrics import BoxAccEvaluator; assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_layering() -> None:
    """boxes/cam (pure math) < data < metrics < evaluation: the pure math imports no wsol module above it, wsol.data
    imports no metric, evaluator or engine; no metric imports another's private names."""
    root = Path(__file__).resolve().parents[1] / "wsol"
    for path in (root / "boxes.py", root / "cam.py"):
        above = [m for m in _imported_modules(path) if m.startswith(("wsol.data", "wsol.metrics", "wsol.evaluation"))]
        assert not above, (path, above)
    for path in (root / "data").glob("*.py"):
        above = ("wsol.metrics", "wsol.evaluation", "wsol.engine", "wsol.models")
        assert not any(m.startswith(above) for m in _imported_modules(path)), path
    for path in (root / "metrics").glob("*.py"):
        private = [m for m in _imported_modules(path) if m.startswith("wsol.") and m.rsplit(".", 1)[-1].startswith("_")]
        assert not private, (path, private)


def test_mask_grid_is_the_score_map_grid() -> None:
    from wsol.data.masks import MASK_SIZE

    assert MASK_SIZE == RESIZE_LENGTH == 224


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
    with pytest.raises(ValueError, match="values"):
        perfect.update([np.array([[0.9, 0.1]])], [np.array([[1, 2]], dtype=np.uint8)])


# -------------------------------------------------------------------------------------- threshold policy
def test_threshold_policies_on_hand_made_curves() -> None:
    # Grid 0, .25, .5, .75. Test split: 40 60 60 10 (first best tau .25); held-out split: 70 30 80 80 (first best .5).
    grid = np.array([0.0, 0.25, 0.5, 0.75])
    test = {"tau": grid, "boxacc_v1_iou50": np.array([40.0, 60.0, 60.0, 10.0])}
    heldout = {"tau": grid, "boxacc_v1_iou50": np.array([70.0, 30.0, 80.0, 80.0])}
    key = "boxacc_v1_iou50"
    assert best_tau(test, key) == (0.25, 60.0)  # the first of the tied maxima
    assert policy_tau("oracle", test, key, tau=None, heldout_curve=None) == 0.25
    assert policy_tau("fixed", test, key, tau=0.75, heldout_curve=None) == 0.75
    assert policy_tau("heldout", test, key, tau=None, heldout_curve=heldout) == 0.5
    check_tau_policy("fixed", tau=0.75, heldout_curve=None, folds=2, grid=grid)
    for policy, kw, match in (("fixed", {"tau": 0.2}, "not on the curve's threshold grid"),
                              ("fixed", {}, "needs eval.tau"),
                              ("heldout", {}, "needs the held-out split's curve"),
                              ("heldout", {"heldout_curve": {"tau": grid[:3], key: grid[:3]}}, "different threshold grids"),
                              ("crossfold", {"folds": 1}, "tau_folds must be >= 2"),
                              ("best", {}, "expected one of")):
        with pytest.raises(ValueError, match=match):
            check_tau_policy(policy, **{"tau": None, "heldout_curve": None, "folds": 2, **kw}, grid=grid)


def test_crossfold_reads_each_fold_at_the_other_folds_tau() -> None:
    # Three folds on the grid 0, .5: correct images per tau are fold 0 (2 images): 2 0; fold 1 (4 images): 1 3;
    # fold 2 (4 images): 0 4. Fold 0 reads the pooled counts of folds 1+2 (1 7): tau .5, 0 right. Fold 1: folds 0+2
    # (2 4): tau .5, 3 right. Fold 2: folds 0+1 (3 3): the first maximum, tau 0, 0 right. 3 of 10 images: 30 %.
    # (Each fold's own curve included, fold 2 would pool 3 7 and read tau .5, 4 right: 70 %.)
    grid = np.array([0.0, 0.5])
    counts, n = [[2, 0], [1, 3], [0, 4]], [2, 4, 4]
    curves = [{"tau": grid, "k": 100.0 * np.array(c) / m} for c, m in zip(counts, n)]
    accuracy, taus = crossfold_accuracy(curves, n, "k")
    assert accuracy == 30.0 and taus == [0.5, 0.5, 0.0]
    with pytest.raises(ValueError, match="use fewer folds"):
        crossfold_accuracy(curves[:1], n[:1], "k")
    with pytest.raises(ValueError, match="use fewer folds"):
        crossfold_accuracy(curves, [2, 0, 4], "k")
