"""wsol.dtbox: the authors' dt_box port (golden file, hand-made cases) and the ten-crop helpers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from wsol.dtbox import (
    DEFAULT_THRESHOLDS,
    _dt_binary_mask,
    _std_sort,
    dt_box,
    dt_rects_to_xyxy,
    format_dt_rects,
    heuristic_guesses,
    paste_ten_crop_cams,
    ten_crop_boxes,
)


def test_dt_box_reproduces_released_output(shared_data: Path) -> None:
    gray = cv2.imread(str(shared_data / "cam_repo" / "heatmap_6.jpg"), cv2.IMREAD_GRAYSCALE)
    expected = (shared_data / "cam_repo" / "heatmap_6_dt_box_20_100_110.txt").read_text()
    assert format_dt_rects(dt_box(gray, (20, 100, 110))) == expected
    assert format_dt_rects(dt_box(gray)) == expected  # the paper's thresholds are the default
    # the fallback thresholds, or the paper's in the wrong order (which falls back), give another output
    assert format_dt_rects(dt_box(gray, (30, 90, 150))) != expected
    assert format_dt_rects(dt_box(gray, (110, 100, 20))) != expected


def _plateaus() -> np.ndarray:
    """64x64 heatmap of concentric square plateaus (value: side) 25: 44, 60: 30, 95: 21, 105: 14, 130: 9,
    200: 6, centred at (32, 32): each threshold of (20, 100, 110) and of (30, 90, 150) selects another square."""
    gray = np.zeros((64, 64), dtype=np.uint8)
    for value, side in ((25, 44), (60, 30), (95, 21), (105, 14), (130, 9), (200, 6)):
        a = 32 - side // 2
        gray[a : a + side, a : a + side] = value
    return gray


def test_dt_box_thresholds_golden_on_generated_plateaus() -> None:
    gray = _plateaus()
    # Each mask is a solid square whose largest distance is <= 22, so the "> 10 of 255" erosion keeps all of
    # it ((int)(1 * 255 / 22 + .5) = 12): the rects are the squares, (x, y, side, side). Each is less than
    # half the area of the one before (1936, 196, 81 and 900, 441, 36), so the merge loop erases none.
    paper = "10 10 44 44 25 25 14 14 28 28 9 9 "  # > 20: side 44; > 100: side 14; > 110: side 9
    fallback = "17 17 30 30 22 22 21 21 29 29 6 6 "  # > 30: side 30; > 90: side 21; > 150: side 6
    assert format_dt_rects(dt_box(gray, (20, 100, 110))) == paper
    assert format_dt_rects(dt_box(gray)) == paper
    assert DEFAULT_THRESHOLDS == (30, 90, 150)
    assert format_dt_rects(dt_box(gray, DEFAULT_THRESHOLDS)) == fallback
    # thresholds not strictly increasing in (0, 255) are replaced by the fallback, as in dt_box.cpp's main()
    for bad in ((110, 100, 20), (100, 20, 110), (20, 100, 100), (0, 100, 110), (20, 100, 255)):
        assert format_dt_rects(dt_box(gray, bad)) == fallback, bad


def _felzenszwalb_dt_binary(binary: np.ndarray) -> np.ndarray:
    """dt.c's dt_binary written out loop by loop (the reference), on a bool image with 0 and 1 pixels."""
    inf = 1e20
    rows, cols = binary.shape
    m = np.where(binary, inf, 0.0)

    def dt_row(f: list[float]) -> list[float]:
        n = len(f)
        v, z = [0] * n, [0.0] * (n + 1)
        z[0], z[1], k = -inf, inf, 0
        for q in range(1, n):
            s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / (2 * q - 2 * v[k])
            while s <= z[k]:
                k -= 1
                s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / (2 * q - 2 * v[k])
            k += 1
            v[k], z[k], z[k + 1] = q, s, inf
        d, k = [0.0] * n, 0
        for q in range(n):
            while z[k + 1] < q:
                k += 1
            d[q] = (q - v[k]) ** 2 + f[v[k]]
        return d

    for x in range(cols):
        m[:, x] = dt_row(list(m[:, x]))
    for y in range(rows):
        m[y, :] = dt_row(list(m[y, :]))
    m = np.sqrt(m)
    scale = 255.0 / (m.max() - m.min())
    out = np.array([[min(255, int(s * scale + 0.5)) for s in row] for row in m])
    return out > 10


def test_distance_transform_matches_dt_c_loop() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        h, w = rng.integers(3, 16, 2)
        gray = (rng.random((h, w)) * 255).astype(np.uint8)
        gray = cv2.GaussianBlur(gray, (3, 3), 0)
        for t in (20, 100, 110):
            binary = gray > t
            if binary.all() or not binary.any():
                continue
            np.testing.assert_array_equal(_dt_binary_mask(gray, t), _felzenszwalb_dt_binary(binary))


def test_dt_box_hand_made_square() -> None:
    gray = np.zeros((40, 50), dtype=np.uint8)
    gray[10:30, 5:45] = 200  # a 40x20 block
    # Distance max is 10; (int)(d * 25.5 + .5) > 10 keeps every block pixel (d >= 1), so all three
    # thresholds give the rect (5, 10, 40, 20). Merging erases the second copy, then ++j skips the third,
    # which slid into its slot: the released code outputs the same rect twice.
    assert dt_box(gray) == [(5, 10, 40, 20), (5, 10, 40, 20)]
    # Thresholds not strictly increasing in (0, 255): the defaults (30, 90, 150) are used instead.
    assert dt_box(gray, (100, 50, 10)) == dt_box(gray, (30, 90, 150))


def test_dt_box_boxes_hole_contours_too() -> None:
    # Slip caught: findContours with outer contours only (RETR_EXTERNAL) instead of dt_box.cpp's CV_RETR_CCOMP, which
    # also returns the border of every hole. A square ring: rows/cols 10..49 at 200 with a 20x20 hole at 20..39.
    # The band is 10 px thick, so its distances are 1..5 and (int)(d * 51 + .5) > 10 keeps all of it: each of the
    # three thresholds gives the ring itself. Its outer contour's rect is (10, 10, 40, 40) (area 1600); the hole's
    # contour runs on the ring pixels around it, rows/cols 19..40: rect (19, 19, 22, 22) (area 484).
    # Sorted by area: O O O H H H. Merge: O erases the next O (1600 > 800) and ++j skips the third O; H overlaps O by
    # 484 <= 800 and stays; the first H erases the next H (484 > 242) and nothing follows the last one.
    gray = np.zeros((64, 64), dtype=np.uint8)
    gray[10:50, 10:50] = 200
    gray[20:40, 20:40] = 0
    outer, hole = (10, 10, 40, 40), (19, 19, 22, 22)
    assert dt_box(gray, (20, 100, 110)) == [outer, outer, hole, hole]  # outer contours only: [outer, outer]


def test_dt_box_clamps_like_released_code() -> None:
    gray = np.zeros((30, 30), dtype=np.uint8)
    gray[2:30, 27:30] = 255  # touches the right edge: x = 27 > W - 5 = 25
    rects = dt_box(gray)
    # x -> 25; w = LIMIT(3, 0, 30 - 27 - 5 = -2) = -2 (the C macro returns the negative bound)
    assert rects[0][0] == 25 and rects[0][2] == -2
    np.testing.assert_array_equal(dt_rects_to_xyxy([(25, 2, -2, 23)]), [[23, 2, 25, 25]])


def test_std_sort_is_libstdcxx_introsort() -> None:
    # Up to 16 elements libstdc++ ends in a plain insertion sort: stable.
    items = [(0, i, 1, a) for i, a in enumerate([3, 5, 3, 9, 5, 1, 3])]
    _std_sort(items, lambda a, b: a[3] > b[3])
    assert [x[1] for x in items] == [3, 1, 4, 0, 2, 6, 5]
    # Beyond 16 the quicksort partition reorders equal keys, but the keys end up sorted all the same.
    rng = np.random.default_rng(1)
    keys = [int(k) for k in rng.integers(0, 4, 40)]
    items = [(0, i, 1, k) for i, k in enumerate(keys)]
    _std_sort(items, lambda a, b: a[3] > b[3])
    assert [x[3] for x in items] == sorted(keys, reverse=True)
    assert sorted(x[1] for x in items) == list(range(40))


def test_merge_loop_skips_after_erase() -> None:
    # One rect per threshold: 40x40 (t=20), 36x36 (t=100), 30x30 (t=110), all nested.
    gray = np.zeros((60, 60), dtype=np.uint8)
    gray[5:45, 5:45] = 50  # only above t0 = 20
    gray[8:44, 8:44] = 105  # above t1 = 100, not t2
    gray[10:40, 10:40] = 200  # above all three
    rects = dt_box(gray, (20, 100, 110))
    # The 36x36 overlaps the 40x40 by 1296 > 800 and is erased; ++j then skips the 30x30 (overlap
    # 900 > 800, which a correct loop would also erase), and nothing follows it.
    assert rects == [(5, 5, 40, 40), (10, 10, 30, 30)]


def test_ten_crop_boxes_and_paste() -> None:
    boxes, flipped = ten_crop_boxes(256, 224)
    np.testing.assert_array_equal(boxes[:5, :2], [[0, 0], [0, 32], [32, 0], [32, 32], [16, 16]])
    np.testing.assert_array_equal(boxes[5:], boxes[:5])
    assert (boxes[:, 2] - boxes[:, 0] == 223).all() and flipped.tolist() == [False] * 5 + [True] * 5
    # One hot pixel at crop column 0 of every crop; flipped crops put it at column crop-1 in crop space.
    crop, size = 4, 6
    cams = torch.zeros(1, 10, 1, crop, crop)
    cams[0, :5, 0, 0, 0] = -1.0  # |CAM| is summed
    cams[0, 5:, 0, 0, crop - 1] = 2.0  # un-flipped back to crop column 0
    out = paste_ten_crop_cams(cams, size)
    expected = torch.zeros(size, size)
    for (x0, y0), value in zip([(0, 0), (0, 2), (2, 0), (2, 2), (1, 1)], [3.0] * 5):
        expected[y0, x0] += value
    torch.testing.assert_close(out[0, 0], expected)


def test_heuristic_guesses() -> None:
    b = [np.array([[0, 0, 5, 5], [1, 1, 2, 2]]), np.array([[3, 3, 9, 9]]), np.array([[4, 4, 8, 8], [0, 0, 1, 1]])]
    labels, boxes = heuristic_guesses([7, 2, 5], b)
    assert labels.tolist() == [7, 7, 2, 2, 5]
    assert boxes.tolist() == [[0, 0, 5, 5], [1, 1, 2, 2], [3, 3, 9, 9], [3, 3, 9, 9], [4, 4, 8, 8]]
    with pytest.raises(ValueError, match="no box"):
        heuristic_guesses([7, 2, 5], [b[0], np.zeros((0, 4)), b[2]])
