"""The CAM paper's protocol: top-k and GT-known localization error (ILSVRC devkit rules).

Per image: each of the top-k classes' CAM is bilinearly upsampled to the image's own size (where its GT boxes
live, ``wsol.cam.upsample_cams``), min-max normalised, kept ``>= cam_threshold`` and boxed around its largest
8-connected component (``wsol.boxes.cams_to_boxes``); the guesses ``(class_j, box_j)`` are scored with
``wsol.metrics.topk``. The GT class's CAM gives the GT-known box. Blacklisted images (the ILSVRC devkit's
1,762-image list) and images without a box count for classification only, as the devkit does.

``DevkitLocalizationCounter`` is the accumulation shared with the ten-crop heuristics (``wsol.evaluation.cam16``).
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
from wsol.metrics.topk import best_iou, loc_errors

__all__ = ["DevkitLocalizationCounter", "PaperLocalizationEvaluator"]


class DevkitLocalizationCounter:
    """Accumulates ``top{k}_loc_err`` and ``gt_known_loc_err`` from guesses with boxes.

    Args:
        ks: the k values.
        blacklist: image ids excluded from localization (still scored for classification elsewhere).
        iou_threshold: 0.5 in every protocol of the field.
    """

    def __init__(self, ks: Sequence[int], blacklist: Collection[str] = (), iou_threshold: float = 0.5) -> None:
        self.ks = tuple(sorted({int(k) for k in ks}))
        self.blacklist = frozenset(blacklist)
        self.iou_threshold = float(iou_threshold)
        self.reset()

    def reset(self) -> None:
        self._loc = np.zeros(len(self.ks))
        self._gt_known_wrong = 0
        self._counts = np.zeros(3, dtype=np.int64)  # scored, blacklisted, without boxes

    def eligible(self, record: ImageRecord) -> bool:
        """Counts the image and says whether it is scored for localization."""
        if record.image_id in self.blacklist:
            self._counts[1] += 1
            return False
        if len(record.boxes) == 0:
            self._counts[2] += 1
            return False
        self._counts[0] += 1
        return True

    def add(self, record: ImageRecord, guesses: np.ndarray, boxes: np.ndarray, gt_known_iou: float) -> np.ndarray:
        """Score one eligible image; returns its per-k localization errors."""
        errors = loc_errors(guesses, boxes, record, self.ks, self.iou_threshold)
        self._loc += errors
        self._gt_known_wrong += int(gt_known_iou < self.iou_threshold)
        return errors

    def evaluate(self) -> dict[str, Any]:
        loc = all_reduce_sum(np.concatenate([self._loc, [self._gt_known_wrong]]))
        scored, blacklisted, without = (int(c) for c in all_reduce_sum(self._counts))
        if scored == 0:
            raise ValueError(f"no image is eligible for localization scoring ({blacklisted} blacklisted, "
                             f"{without} without boxes)")
        out: dict[str, Any] = {f"top{k}_loc_err": 100.0 * e / scored for k, e in zip(self.ks, loc[:-1])}
        out.update(gt_known_loc_err=100.0 * loc[-1] / scored, n_loc_images=scored, n_blacklisted=blacklisted,
                   n_without_boxes=without)
        return out


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
        self.counter = DevkitLocalizationCounter(ks, blacklist)
        self.keep_rows = keep_rows
        self.reset()

    def reset(self) -> None:
        self.counter.reset()
        self._rows: list[dict[str, Any]] = []

    def process(self, batch: CAMBatch) -> None:
        k = self.counter.ks[-1]
        if batch.topk < k:
            raise ValueError(f"top-{k} localization needs CAMs of {k} predicted classes; the batch has {batch.topk}")
        for b, (record, (w, h)) in enumerate(zip(batch.records, batch.sizes)):
            # the top-k classes' maps and the GT class's, upsampled to the image's own size
            cams = upsample_cams(batch.cams[b:b + 1, list(range(k)) + [batch.topk]], (h, w))[0]
            boxes = cams_to_boxes(cams.numpy(), self.cam_threshold)
            guesses = batch.predicted[b, :k]
            top1_iou, known_iou = best_iou(boxes[0], record), best_iou(boxes[-1], record)
            errors = self.counter.add(record, guesses, boxes[:k], known_iou) if self.counter.eligible(record) \
                else None
            if self.keep_rows:
                self._rows.append(_prediction_row(record, batch, b, boxes, top1_iou, known_iou, errors,
                                                  self.counter))

    def evaluate(self) -> dict[str, Any]:
        return self.counter.evaluate()

    def rows(self) -> list[dict[str, Any]] | None:
        if not self.keep_rows:
            return None
        rows = [r for part in all_gather_objects(self._rows) for r in part]
        return sorted(rows, key=lambda r: r["index"])


def _prediction_row(record: ImageRecord, batch: CAMBatch, b: int, boxes: np.ndarray, top1_iou: float,
                    known_iou: float, errors: np.ndarray | None, counter: DevkitLocalizationCounter) -> dict[str, Any]:
    """One ``predictions.csv`` row (columns documented in the README)."""
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
    row["top1_cls_correct"] = int(record.label == int(batch.predicted[b, 0]))
    row["top1_loc_correct"] = "" if errors is None else int(errors[0] == 0)
    row["gt_known_correct"] = "" if errors is None else int(known_iou >= counter.iou_threshold)
    return row
