"""Top-k classification and localization error under the ILSVRC devkit's rules.

The devkit (``eval_clsloc.m`` / ``compute_overlap.m`` of the ILSVRC2014 devkit, shipped in the CAM
authors' repository) scores up to five guesses ``(label, box)`` per image, best first:
    * a guess localizes correctly iff its label is a class of the image AND its box has IoU >= 0.5 with ANY
      ground-truth box of that class (IoU with the "+1" inclusive-pixel convention, ``wsol.boxes.box_iou``);
    * for each ground-truth class C of the image, the error is the minimum over its first k guesses
      (0 if one of them has label C — and, for localization, a box matching a GT box of class C);
      an image's error is the MEAN over its ground-truth classes (``eval_clsloc.m``: ``e(i) += min_j d``
      over the image's labels, then ``e ./ n``); ILSVRC CLS-LOC images have one class, where this is
      simply "one of the k guesses is right";
    * the error is the mean over images, in percent here; blacklisted images do not count for localization
      (the devkit sets their error to 0 and subtracts the blacklist size from the denominator, i.e. it
      averages over the remaining images, which is what is done here).
The image's classes are ``ImageRecord.image_labels()`` (its label and the classes of its boxes). Images
without a ground-truth box cannot be scored for localization and are excluded like blacklisted ones (the
devkit would fail on them); both counts are reported.

GT-known localization (used since Choe et al.): the box computed from the ground-truth class's CAM is
correct iff it has IoU >= 0.5 with any box of the image's class ``ImageRecord.label``.

Public API: ``TopkLocalizationEvaluator`` with ``update()`` / ``compute()``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from wsol.boxes import box_iou
from wsol.data.records import ImageRecord

__all__ = ["TopkLocalizationEvaluator"]


class TopkLocalizationEvaluator:
    """Accumulates top-k classification/localization errors over a dataset (ILSVRC devkit rules).

    Memory is bounded: only per-k error counts are kept, never predictions.

    Args:
        topk: the k values to report, each >= 1 (default ``(1, 5)``).
        iou_threshold: a box is correct iff IoU >= this (devkit: 0.5).
        blacklist: image ids excluded from the localization errors (still scored for classification).

    Raises:
        ValueError: on an empty ``topk``, a k < 1, or an IoU threshold outside ``(0, 1]``.
    """

    def __init__(
        self,
        topk: Sequence[int] = (1, 5),
        iou_threshold: float = 0.5,
        blacklist: Collection[str] = (),
    ) -> None:
        ks = [int(k) for k in topk]
        if not ks or min(ks) < 1:
            raise ValueError(f"topk must be a non-empty list of integers >= 1; got {list(topk)!r}")
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must lie in (0, 1]; got {iou_threshold!r}")
        self.topk: tuple[int, ...] = tuple(sorted(set(ks)))
        self.iou_threshold = float(iou_threshold)
        self.blacklist = frozenset(blacklist)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._cls_errors = dict.fromkeys(self.topk, 0)
        self._loc_errors = dict.fromkeys(self.topk, 0)
        self._gt_known_errors = 0
        self._gt_known_seen: bool | None = None  # None until the first update says whether it is given
        self.n_images = 0
        self.n_loc_images = 0
        self.n_blacklisted = 0
        self.n_without_boxes = 0

    def update(
        self,
        records: Sequence[ImageRecord],
        pred_labels: np.ndarray,
        pred_boxes: np.ndarray,
        gt_known_boxes: np.ndarray | None = None,
    ) -> None:
        """Score one batch of images.

        Args:
            records: the batch's ground truth, ``B`` records.
            pred_labels: integer ``[B, G]`` guessed class labels, best first (``G >= max(topk)``).
                Labels that match no class (e.g. -1 for "no guess") are simply never correct.
            pred_boxes: ``[B, G, 4]`` boxes ``xyxy`` inclusive, one per guess, in the same pixel space as
                the records' boxes.
            gt_known_boxes: optional ``[B, 4]`` box from the ground-truth class's CAM. Either every
                ``update`` passes it or none does.

        Raises:
            ValueError: on inconsistent shapes, non-integer labels, ``G < max(topk)``, or when
                ``gt_known_boxes`` is given in some updates and not in others.
        """
        pred_labels = np.asarray(pred_labels)
        pred_boxes = np.asarray(pred_boxes, dtype=np.float64)
        n = len(records)
        if pred_labels.ndim != 2 or pred_labels.shape[0] != n:
            raise ValueError(f"pred_labels must have shape [B={n}, G]; got {pred_labels.shape}")
        if not np.issubdtype(pred_labels.dtype, np.integer):
            raise ValueError(f"pred_labels must be integers; got dtype {pred_labels.dtype}")
        guesses = pred_labels.shape[1]
        if guesses < self.topk[-1]:
            raise ValueError(f"{guesses} guesses per image is fewer than max(topk) = {self.topk[-1]}")
        if pred_boxes.shape != (n, guesses, 4):
            raise ValueError(f"pred_boxes must have shape {(n, guesses, 4)}; got {pred_boxes.shape}")
        given = gt_known_boxes is not None
        if self._gt_known_seen is not None and self._gt_known_seen != given:
            raise ValueError("gt_known_boxes must be given in every update or in none")
        self._gt_known_seen = given
        if given:
            gt_known_boxes = np.asarray(gt_known_boxes, dtype=np.float64)
            if gt_known_boxes.shape != (n, 4):
                raise ValueError(f"gt_known_boxes must have shape {(n, 4)}; got {gt_known_boxes.shape}")

        for i, record in enumerate(records):
            labels = pred_labels[i]
            self.n_images += 1
            gt_classes = record.image_labels()
            # [L, G]: guess j names ground-truth class l
            names = labels[None, :] == gt_classes[:, None]
            for k in self.topk:
                self._cls_errors[k] += float(np.mean(~names[:, :k].any(axis=1)))

            if record.image_id in self.blacklist:
                self.n_blacklisted += 1
                continue
            gt_boxes = np.asarray(record.boxes, dtype=np.float64).reshape(-1, 4)
            if len(gt_boxes) == 0:
                self.n_without_boxes += 1
                continue
            self.n_loc_images += 1
            box_classes = record.labels_of_boxes()
            # [G, N]: guess j matches GT box b iff same class and IoU >= threshold.
            match = (labels[:, None] == box_classes[None, :]) & (
                box_iou(pred_boxes[i], gt_boxes) >= self.iou_threshold
            )
            # [L, G]: guess j names class l and its box matches a GT box of class l
            loc_hit = names & match.any(axis=1)[None, :]
            for k in self.topk:
                self._loc_errors[k] += float(np.mean(~loc_hit[:, :k].any(axis=1)))
            if given:
                own = gt_boxes[box_classes == record.label]
                ok = len(own) > 0 and bool((box_iou(gt_known_boxes[i], own) >= self.iou_threshold).any())
                self._gt_known_errors += int(not ok)

    def compute(self) -> dict[str, float | int]:
        """The accumulated errors.

        Returns:
            ``top{k}_cls_err`` and ``top{k}_loc_err`` for every k, and ``gt_known_loc_err`` when GT-known
            boxes were given, all in percent; ``n_images`` (scored for classification), ``n_loc_images``
            (scored for localization), ``n_blacklisted`` and ``n_without_boxes`` (excluded from localization).

        Raises:
            ValueError: if no image was seen, or no image is eligible for localization scoring.
        """
        if self.n_images == 0:
            raise ValueError("TopkLocalizationEvaluator.compute() called before any image was scored")
        if self.n_loc_images == 0:
            raise ValueError(
                f"no image is eligible for localization scoring ({self.n_blacklisted} blacklisted, "
                f"{self.n_without_boxes} without boxes, of {self.n_images})"
            )
        out: dict[str, float | int] = {}
        for k in self.topk:
            out[f"top{k}_cls_err"] = 100.0 * self._cls_errors[k] / self.n_images
        for k in self.topk:
            out[f"top{k}_loc_err"] = 100.0 * self._loc_errors[k] / self.n_loc_images
        if self._gt_known_seen:
            out["gt_known_loc_err"] = 100.0 * self._gt_known_errors / self.n_loc_images
        out.update(
            n_images=self.n_images,
            n_loc_images=self.n_loc_images,
            n_blacklisted=self.n_blacklisted,
            n_without_boxes=self.n_without_boxes,
        )
        return out
