"""wsol.metrics: devkit top-k errors (hand-counted), MaxBoxAcc / PxAP and the threshold policy."""

from __future__ import annotations

import numpy as np
import pytest

from wsol.data.records import ImageRecord
from wsol.metrics import TopkLocalizationEvaluator


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


def test_topk_devkit_rules_hand_counted() -> None:
    records, labels, boxes, gt_known = _devkit_case()
    ev = TopkLocalizationEvaluator(topk=(1, 5), blacklist={"r4"})
    ev.update(records, labels, boxes, gt_known)
    out = ev.compute()
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
    ev = TopkLocalizationEvaluator(topk=(2, 1, 3), blacklist={"r4"})
    ev.update(records[:2], labels[:2, :3], boxes[:2, :3])
    ev.update(records[2:], labels[2:, :3], boxes[2:, :3])
    out = ev.compute()
    assert list(out)[:6] == [f"top{k}_{m}_err" for m in ("cls", "loc") for k in (1, 2, 3)]
    assert "gt_known_loc_err" not in out
    # top-2 cls wrong: r4 (1, 2), r5 -> 2/6; top-2 loc wrong: r1, r5 (r2's second guess hits) -> 2/4
    assert out["top2_cls_err"] == pytest.approx(100 * 2 / 6)
    assert out["top2_loc_err"] == pytest.approx(50.0)


def test_topk_errors() -> None:
    records, labels, boxes, gt_known = _devkit_case()
    ev = TopkLocalizationEvaluator()
    with pytest.raises(ValueError, match="before any image"):
        ev.compute()
    with pytest.raises(ValueError, match="fewer than max"):
        ev.update(records, labels[:, :3], boxes[:, :3])
    with pytest.raises(ValueError, match="integers"):
        ev.update(records, labels.astype(float), boxes)
    ev.update(records[:1], labels[:1], boxes[:1], gt_known[:1])
    with pytest.raises(ValueError, match="every update"):
        ev.update(records[1:2], labels[1:2], boxes[1:2])
    only_blacklisted = TopkLocalizationEvaluator(blacklist={"r0"})
    only_blacklisted.update(records[:1], labels[:1], boxes[:1])
    with pytest.raises(ValueError, match="eligible"):
        only_blacklisted.compute()
    with pytest.raises(ValueError, match="topk"):
        TopkLocalizationEvaluator(topk=(0, 5))
