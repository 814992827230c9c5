"""The CAM paper's protocol: top-k and GT-known localization error (ILSVRC devkit rules).

Per image: each of the top-k classes' CAM is bilinearly upsampled to the image's own size (where its GT boxes
live, ``wsol.cam.upsample_cams``), min-max normalised, kept ``>= cam_threshold`` and boxed around its largest
8-connected component (``wsol.boxes.cams_to_boxes``); the guesses ``(class_j, box_j)`` are scored with
``wsol.metrics.topk``. The GT class's CAM gives the GT-known box. Blacklisted images (the ILSVRC devkit's
1,762-image list) and images without a box count for classification only, as the devkit does.

The accumulation (``wsol.metrics.topk.DevkitErrors``) is the one the ten-crop heuristics and ``wsol-score devkit``
use; under ``torch.distributed`` its sums are added over the ranks before the percentages are taken.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Sequence

import numpy as np

from wsol.boxes import cams_to_boxes
from wsol.cam import upsample_cams
from wsol.data.records import ImageRecord
from wsol.engine.distributed import all_gather_objects, all_reduce_sum
from wsol.evaluation.base import CAMBatch, DatasetEvaluator
from wsol.metrics.topk import DevkitErrors, best_iou, cls_errors

__all__ = ["PaperLocalizationEvaluator", "evaluate_loc"]


def evaluate_loc(errors: DevkitErrors) -> dict[str, Any]:
    """Localization percentages of ``errors`` summed over every rank."""
    return errors.compute(all_reduce_sum(errors.state))


class PaperLocalizationEvaluator(DatasetEvaluator):
    """The paper protocol's localization errors, and one ``predictions.csv`` row per image.

    Args:
        ks: the k values of ``top{k}_loc_err`` (each <= the batch's k).
        cam_threshold: fraction of the min-max normalised CAM kept, in (0, 1) (the paper: 0.2).
        blacklist: image ids excluded from localization.
        keep_rows: keep the per-image rows (image id, top-k classes, top-1 and GT-known boxes and IoUs).
    """

    def __init__(self, ks: Sequence[int], cam_threshold: float, blacklist: Collection[str] = (),
                 keep_rows: bool = True) -> None:
        if not 0.0 < cam_threshold < 1.0:
            raise ValueError(f"eval.cam_threshold must be in (0, 1), got {cam_threshold}")
        self.cam_threshold = float(cam_threshold)
        self.errors = DevkitErrors(ks, blacklist)
        self.keep_rows = keep_rows
        self.reset()

    def reset(self) -> None:
        self.errors.reset()
        self._rows: list[dict[str, Any]] = []

    def process(self, batch: CAMBatch) -> None:
        k = self.errors.ks[-1]
        if batch.topk < k:
            raise ValueError(f"top-{k} localization needs CAMs of {k} predicted classes; the batch has {batch.topk}")
        for b, (record, (w, h)) in enumerate(zip(batch.records, batch.sizes)):
            # the top-k classes' maps and the GT class's, upsampled to the image's own size
            cams = upsample_cams(batch.cams[b:b + 1, list(range(k)) + [batch.topk]], (h, w))[0]
            boxes = cams_to_boxes(cams.numpy(), self.cam_threshold)
            guesses = batch.predicted[b, :k]
            errors = self.errors.add_loc(record, guesses, boxes[:k], gt_known_box=boxes[-1])
            if self.keep_rows:
                self._rows.append(_prediction_row(record, batch, b, boxes, errors, self.errors.iou_threshold))

    def evaluate(self) -> dict[str, Any]:
        return evaluate_loc(self.errors)

    def rows(self) -> list[dict[str, Any]] | None:
        if not self.keep_rows:
            return None
        rows = [r for part in all_gather_objects(self._rows) for r in part]
        return sorted(rows, key=lambda r: r["index"])


def _share(value: float) -> int | float:
    """An image's correct share: an int when whole (0 or 1, the single-class case), else the float fraction."""
    return int(value) if float(value).is_integer() else float(value)


def _prediction_row(record: ImageRecord, batch: CAMBatch, b: int, boxes: np.ndarray, errors: np.ndarray | None,
                    iou_threshold: float) -> dict[str, Any]:
    """One ``predictions.csv`` row (columns documented in the README); ``errors[0]`` is the top-1 error."""
    top1_iou, known_iou = best_iou(boxes[0], record), best_iou(boxes[-1], record)
    w, h = batch.sizes[b]
    row: dict[str, Any] = {"index": int(batch.indices[b]), "image_id": record.image_id, "label": record.label,
                           "width": w, "height": h}
    for j, c in enumerate(batch.predicted[b], 1):
        row[f"pred{j}"] = int(c)
    row["prob1"] = float(batch.scores[b, 0])
    row.update(zip(("box_x0", "box_y0", "box_x1", "box_y1"), (int(v) for v in boxes[0])))
    row["box_iou"] = round(top1_iou, 6)
    row.update(zip(("gt_known_x0", "gt_known_y0", "gt_known_x1", "gt_known_y1"), (int(v) for v in boxes[-1])))
    row["gt_known_iou"] = round(known_iou, 6)
    own = np.asarray(record.boxes).reshape(-1, 4)[record.labels_of_boxes() == record.label]
    row["gt_boxes"] = ";".join(" ".join(f"{v:g}" for v in box) for box in own)
    # the image's share of top-1 accuracy under the devkit's rule (wsol.metrics.topk: the mean over its GT classes),
    # the very numbers the metrics average: 1 or 0 for a single-class image, a fraction on a multi-class one
    row["top1_cls_correct"] = _share(1.0 - cls_errors(batch.predicted[b, :1], record, [1])[0])
    row["top1_loc_correct"] = "" if errors is None else _share(1.0 - errors[0])
    row["gt_known_correct"] = "" if errors is None else int(known_iou >= iou_threshold)
    return row
