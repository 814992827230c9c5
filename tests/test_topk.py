"""Devkit top-k classification / localization errors (wsol.metrics.topk), hand-counted."""

from __future__ import annotations

import numpy as np
import pytest

from wsol.data.records import ImageRecord
from wsol.metrics.topk import DevkitErrors, best_iou, cls_errors, gt_known_correct, loc_errors


# ------------------------------------------------------------------------------------------ top-k (devkit)
def _devkit_case() -> tuple[list[ImageRecord], np.ndarray, np.ndarray, np.ndarray]:
    """Six images; the expected errors are counted by hand in the test below."""
    box_a = [0, 0, 9, 9]
    records = [
        ImageRecord("r0", 3, np.array([box_a], dtype=float)),
        # two classes in one image: class 1 at the top left, class 2 further down
        ImageRecord("r1", 1, np.array([box_a, [20, 20, 29, 29]], dtype=float), box_labels=np.array([1, 2])),
        ImageRecord("r2", 0, np.array([[10, 10, 19, 19], [40, 40, 49, 49]], dtype=float)),
        ImageRecord("r3", 5),  # no box: classification only
        ImageRecord("r4", 7, np.array([box_a], dtype=float)),  # blacklisted below
        ImageRecord("r5", 9, np.array([box_a], dtype=float)),
    ]
    far = [60, 60, 61, 61]
    labels = np.array(
        [
            [3, 1, 2, 4, 5],
            [4, 1, 2, 0, 6],
            [0, 0, 3, 3, 3],
            [5, 1, 2, 3, 4],
            [1, 2, 3, 4, 7],
            [0, 1, 2, 3, 4],
        ]
    )
    boxes = np.array(
        [
            # IoU exactly 0.5 (50 of 100 px) counts: >= 0.5
            [[0, 0, 9, 4], far, far, far, far],
            # label 1 with class 2's box, label 2 with class 1's box: both wrong
            [far, [20, 20, 29, 29], box_a, far, far],
            # the second guess hits the SECOND box of class 0
            [[0, 0, 5, 5], [40, 40, 49, 49], far, far, far],
            [far] * 5,
            [box_a] * 5,
            [box_a] * 5,
        ],
        dtype=float,
    )
    gt_known = np.array(
        [
            [0, 0, 9, 3],  # IoU 0.4: wrong
            [0, 0, 9, 9],  # the class-1 box: right
            [10, 10, 19, 19],  # right
            far,  # no box: not scored
            far,  # blacklisted: not scored
            box_a,  # right
        ],
        dtype=float,
    )
    return records, labels, boxes, gt_known


def _score(records: list[ImageRecord], labels: np.ndarray, boxes: np.ndarray, gt_known: np.ndarray | None,
           ks: tuple[int, ...], blacklist: set[str] = set()) -> dict:
    errors = DevkitErrors(ks, blacklist)
    for i, record in enumerate(records):
        errors.add_cls(record, labels[i])
        errors.add_loc(record, labels[i], boxes[i], None if gt_known is None else gt_known[i])
    return errors.compute()


def test_topk_devkit_rules_hand_counted() -> None:
    records, labels, boxes, gt_known = _devkit_case()
    out = _score(records, labels, boxes, gt_known, (1, 5), {"r4"})
    # cls top-1 wrong: r1 (4), r4 (1), r5 (0) -> 3/6; top-5 wrong: r5 only -> 1/6
    assert out["top1_cls_err"] == pytest.approx(100 * 3 / 6)
    assert out["top5_cls_err"] == pytest.approx(100 * 1 / 6)
    # loc images: r0, r1, r2, r5 (r3 has no box, r4 blacklisted)
    # top-1 wrong: r1, r2, r5 -> 3/4; top-5 wrong: r1, r5 -> 2/4
    assert out["top1_loc_err"] == pytest.approx(75.0)
    assert out["top5_loc_err"] == pytest.approx(50.0)
    assert out["gt_known_loc_err"] == pytest.approx(25.0)
    assert (out["n_images"], out["n_loc_images"], out["n_blacklisted"], out["n_without_boxes"]) == (6, 4, 1, 1)


def test_topk_batches_and_other_k() -> None:
    records, labels, boxes, _ = _devkit_case()
    first = DevkitErrors((2, 1, 3), {"r4"})
    second = DevkitErrors((2, 1, 3), {"r4"})
    for ev, part in ((first, range(2)), (second, range(2, 6))):  # e.g. two ranks: states add up
        for i in part:
            ev.add_cls(records[i], labels[i, :3])
            ev.add_loc(records[i], labels[i, :3], boxes[i, :3])
    out = first.compute(first.state + second.state)
    assert [k for k in out if k.startswith("top")] == [f"top{k}_{m}_err" for m in ("cls", "loc") for k in (1, 2, 3)]
    assert "gt_known_loc_err" not in out
    # top-2 cls: r4 (1, 2) and r5 wrong; r1 has two classes {1, 2} and names only class 1 in its first
    # two guesses: the devkit averages over the image's classes -> 0.5. Total (0.5 + 1 + 1) / 6.
    # top-2 loc wrong: r1, r5 (r2's second guess hits) -> 2/4
    assert out["top2_cls_err"] == pytest.approx(100 * 2.5 / 6)
    assert out["top2_loc_err"] == pytest.approx(50.0)


def test_topk_several_classes_average_like_the_devkit() -> None:
    # One image with classes {1, 2}: guess 1 localizes class 1's box, guess 2 has class 2 with a far box.
    rec = ImageRecord("m", 1, np.array([[0, 0, 9, 9], [20, 20, 29, 29]], dtype=float), box_labels=np.array([1, 2]))
    out = _score([rec], np.array([[1, 2]]), np.array([[[0, 0, 9, 9], [60, 60, 69, 69]]], dtype=float), None, (1, 2))
    # top-1: class 1 named and localized, class 2 not named -> (0 + 1) / 2 for both errors
    assert out["top1_cls_err"] == pytest.approx(50.0) and out["top1_loc_err"] == pytest.approx(50.0)
    # top-2: both classes named (cls 0); class 2's box is far (loc 0.5)
    assert out["top2_cls_err"] == pytest.approx(0.0) and out["top2_loc_err"] == pytest.approx(50.0)


def test_topk_errors() -> None:
    records, labels, boxes, gt_known = _devkit_case()
    ev = DevkitErrors((1, 5))
    assert ev.compute() == {}  # nothing scored yet
    with pytest.raises(ValueError, match=r"each k must lie in \[1, 3\]"):
        ev.add_cls(records[0], labels[0, :3])
    with pytest.raises(ValueError, match="integer array"):
        ev.add_cls(records[0], labels[0].astype(float))
    with pytest.raises(ValueError, match="no ground-truth box"):
        loc_errors(labels[3], boxes[3], records[3], (1, 5))
    only_blacklisted = DevkitErrors((1, 5), blacklist={"r0"})
    only_blacklisted.add_loc(records[0], labels[0], boxes[0])
    with pytest.raises(ValueError, match="eligible"):
        only_blacklisted.compute()
    with pytest.raises(ValueError, match="top-k values must be >= 1"):
        DevkitErrors((0, 5))


def test_single_guess_functions() -> None:
    rec = ImageRecord("a", 2, np.array([[0, 0, 9, 9]], dtype=float))
    np.testing.assert_array_equal(cls_errors(np.array([1, 2, 3]), rec, (1, 2)), [1.0, 0.0])
    # IoU of [0,0,9,4] with [0,0,9,9] is 50/100 = 0.5: counts (>=); [0,0,9,3] is 0.4: does not
    assert gt_known_correct(np.array([0, 0, 9, 4]), rec) and not gt_known_correct(np.array([0, 0, 9, 3]), rec)
    assert best_iou(np.array([0, 0, 4, 9]), rec) == pytest.approx(0.5)
