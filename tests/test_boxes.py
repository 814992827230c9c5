"""wsol.boxes: devkit IoU and the CAM paper's box rule, on hand-made boxes and maps."""

from __future__ import annotations

import numpy as np
import pytest

from wsol.boxes import box_iou, cam_to_box, cams_to_boxes, resize_boxes


# ----------------------------------------------------------------------------------------------- box_iou
def test_box_iou_closed_form_fraction() -> None:
    # a: 5x5 = 25 px; b: 2x5 = 10 px; overlap columns 3..4 (2) x rows 2..5 (4) = 8; union 25 + 10 - 8 = 27.
    iou = box_iou(np.array([[1, 2, 5, 6]]), np.array([[3, 1, 4, 5]]))
    assert iou.shape == (1, 1) and iou.dtype == np.float64
    assert iou[0, 0] == pytest.approx(8 / 27, abs=1e-15)


def test_box_iou_identical_disjoint_touching() -> None:
    a = np.array([[0, 0, 2, 2], [7, 7, 7, 7]], dtype=np.float64)
    b = np.array(
        [
            [0, 0, 2, 2],  # identical to a[0]
            [3, 0, 5, 2],  # right next to a[0], no shared column
            [2, 0, 4, 2],  # shares column x=2 with a[0]: 3 px of 9 + 9 - 3 = 15
            [7, 7, 7, 7],  # a single pixel, identical to a[1]
        ]
    )
    iou = box_iou(a, b)
    assert iou.shape == (2, 4)
    np.testing.assert_array_equal(iou[0, :2], [1.0, 0.0])
    assert iou[0, 2] == pytest.approx(3 / 15, abs=1e-15)
    assert iou[1, 3] == 1.0
    assert iou[1, 0] == 0.0


def test_box_iou_one_box_each_and_empty() -> None:
    assert box_iou(np.array([0, 0, 9, 9]), np.array([0, 0, 4, 9])).item() == pytest.approx(0.5)
    assert box_iou(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)
    with pytest.raises(ValueError, match="shape"):
        box_iou(np.zeros((2, 3)), np.zeros((1, 4)))


def test_box_iou_degenerate_union_is_zero() -> None:
    # x1 = x0 - 2: width -1, area -1 * 1; with a 1-pixel box the union is 1 + (-1) - 0 = 0 -> IoU 0, as in
    # wsolevaluation (a division by a non-positive union would give a silent number)
    assert box_iou(np.array([[5, 0, 3, 0]]), np.array([[0, 0, 0, 0]]))[0, 0] == 0.0


# ------------------------------------------------------------------------------------------- resize_boxes
# Real (size, coordinate) pairs where x * (224 / W) and (x * 224) / W truncate to different integers, found by
# scanning W, H in 2..1000 (144 pairs): wsolevaluation's resize_bbox multiplies first. W = 640 is a common
# ILSVRC width. Expected values: (x * 224) / W in float64, truncated.
RESIZE_PAIRS = [
    # (old size, coordinate, wsolevaluation's value, the value of x * (224 / old))
    (640, 180, 63, 62),
    (640, 340, 119, 118),
    (640, 360, 126, 125),
    (110, 55, 112, 111),
    (80, 45, 126, 125),
    (160, 45, 63, 62),
    (160, 90, 126, 125),
    (220, 55, 56, 55),
]


@pytest.mark.parametrize(("old", "coord", "expected", "other"), RESIZE_PAIRS)
def test_resize_boxes_multiplies_first_like_wsolevaluation(old: int, coord: int, expected: int, other: int) -> None:
    assert int(coord * (224 / old)) == other  # the pair really separates the two orders
    # the coordinate as x (width old) and as y (height old); the other axis is left at 224 -> 224
    assert resize_boxes([[coord, 0, coord, 0]], (old, 224), (224, 224), truncate=True).tolist() == [[expected, 0, expected, 0]]
    assert resize_boxes([[0, coord, 0, coord]], (224, old), (224, 224), truncate=True).tolist() == [[0, expected, 0, expected]]


def test_resize_boxes_axes_dtype_and_truncation() -> None:
    # x with the widths, y with the heights: 640 x 160 -> 224 x 224 (a swap would scale x by 224 / 160)
    box = [[180, 45, 340, 90]]
    out = resize_boxes(box, (640, 160), (224, 224), truncate=True)
    assert out.dtype == np.int64 and out.tolist() == [[63, 63, 119, 126]]
    floats = resize_boxes(box, (640, 160), (224, 224), truncate=False)
    assert floats.dtype == np.float64
    np.testing.assert_array_equal(floats, [[180 * 224 / 640, 45 * 224 / 160, 340 * 224 / 640, 90 * 224 / 160]])
    # to a non-square size: 500 x 375 -> 300 x 200
    assert resize_boxes([[111, 108, 441, 193]], (500, 375), (300, 200), truncate=True).tolist() == [[66, 57, 264, 102]]
    # toward zero like int(), not floor: -1 * 224 / 500 = -0.448 -> 0
    assert resize_boxes([[-1, -1, 3, 3]], (500, 500), (224, 224), truncate=True).tolist() == [[0, 0, 1, 1]]
    assert resize_boxes(np.zeros((0, 4)), (5, 5), (2, 2), truncate=True).shape == (0, 4)
    with pytest.raises(ValueError, match="positive"):
        resize_boxes([[0, 0, 1, 1]], (0, 10), (5, 5), truncate=True)
    with pytest.raises(ValueError, match="shape"):
        resize_boxes([[0, 0, 1]], (10, 10), (5, 5), truncate=True)
    with pytest.raises(ValueError, match="NaN"):
        resize_boxes([[0, 0, np.nan, 1]], (10, 10), (5, 5), truncate=False)
    with pytest.raises(TypeError):
        resize_boxes([[0, 0, 1, 1]], (10, 10), (5, 5))  # type: ignore[call-arg]  # truncate has no default


# ---------------------------------------------------------------------------------------------- cam_to_box
def test_cam_to_box_single_blob_4x5() -> None:
    cam = np.array(
        [
            [0, 0, 0, 0, 0],
            [0, 5, 5, 0, 0],
            [0, 5, 9, 0, 1],
            [0, 0, 0, 0, 1],
        ],
        dtype=np.float64,
    )
    # 5/9 >= 0.2 is kept, 1/9 is not.
    np.testing.assert_array_equal(cam_to_box(cam, 0.2), [1, 1, 2, 2])
    # At 0.1 the two 1-valued pixels join in, as a separate 2-pixel component: the 4-pixel blob still wins.
    np.testing.assert_array_equal(cam_to_box(cam, threshold=0.1), [1, 1, 2, 2])
    assert cam_to_box(cam, 0.2).dtype == np.int64


def test_cam_to_box_larger_blob_wins_over_higher_peak_6x8() -> None:
    cam = np.zeros((6, 8))
    cam[0:2, 0] = 10.0  # 2 px, holds the peak
    cam[3:5, 5:7] = 3.0  # 4 px, lower but above 20% of the max
    np.testing.assert_array_equal(cam_to_box(cam, 0.2), [5, 3, 6, 4])


def test_cam_to_box_diagonal_pixels_are_connected() -> None:
    cam = np.zeros((6, 8))
    cam[0, 0] = cam[1, 1] = cam[2, 2] = 4.0  # 3 px joined only through corners (8-connectivity)
    cam[5, 6] = cam[5, 7] = 9.0  # 2 px, 4-connected
    np.testing.assert_array_equal(cam_to_box(cam, 0.2), [0, 0, 2, 2])


def test_cam_to_box_threshold_is_inclusive() -> None:
    cam = np.array(
        [
            [10, 0, 0, 0],
            [0, 0, 0, 2],
            [0, 0, 0, 2],
        ],
        dtype=np.float64,
    )
    # 2 / 10 == 0.2 exactly: kept, and the 2-pixel column beats the single peak pixel.
    np.testing.assert_array_equal(cam_to_box(cam, 0.2), [3, 1, 3, 2])
    np.testing.assert_array_equal(cam_to_box(cam, 0.21), [0, 0, 0, 0])


def test_cam_to_box_tie_goes_to_first_in_raster_order() -> None:
    cam = np.array(
        [
            [0, 0, 0, 5],
            [5, 0, 0, 5],
            [5, 0, 0, 0],
        ],
        dtype=np.float64,
    )
    # Two 2-pixel components; the right one's first pixel (row 0) comes first in raster order.
    np.testing.assert_array_equal(cam_to_box(cam, 0.2), [3, 0, 3, 1])


def test_cam_to_box_min_max_normalises_negative_maps() -> None:
    cam = np.full((3, 3), -5.0)
    cam[1, 1:] = -1.0  # 80% of the range above the min
    np.testing.assert_array_equal(cam_to_box(cam, 0.5), [1, 1, 2, 1])


def test_cam_to_box_constant_map_is_whole_image() -> None:
    np.testing.assert_array_equal(cam_to_box(np.full((4, 5), 0.3), 0.2), [0, 0, 4, 3])
    np.testing.assert_array_equal(cam_to_box(np.zeros((2, 7)), 0.2), [0, 0, 6, 1])


def test_cams_to_boxes_batch_and_errors() -> None:
    cams = np.zeros((3, 4, 5))
    cams[0, 1, 1] = 1.0
    cams[1, 2:4, 3:5] = 1.0
    cams[2] = 1.0
    np.testing.assert_array_equal(cams_to_boxes(cams, 0.2), [[1, 1, 1, 1], [3, 2, 4, 3], [0, 0, 4, 3]])
    bad = cams.copy()
    bad[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="score map 1.*NaN"):
        cams_to_boxes(bad, 0.2)
    bad[1, 0, 0] = np.inf
    with pytest.raises(ValueError, match="score map 1.*infinite"):
        cams_to_boxes(bad, 0.2)
    for threshold in (0.0, 1.0, 1.5, -0.2):
        with pytest.raises(ValueError, match=repr(threshold)):
            cams_to_boxes(cams, threshold)
    with pytest.raises(ValueError, match="shape"):
        cams_to_boxes(cams[0], 0.2)
