"""Top-k classification and localization error of one image under the ILSVRC devkit's rules (pure functions).

The devkit (``eval_clsloc.m`` / ``compute_overlap.m`` of the ILSVRC2014 devkit, shipped in the CAM authors'
repository) scores up to five guesses ``(label, box)`` per image, best first:
    * a guess localizes correctly iff its label is a class of the image AND its box has IoU >= 0.5 with ANY
      ground-truth box of that class (IoU with the "+1" inclusive-pixel convention, ``wsol.boxes.box_iou``);
    * for each ground-truth class C of the image, the error is the minimum over its first k guesses
      (0 if one of them has label C — and, for localization, a box matching a GT box of class C);
      an image's error is the MEAN over its ground-truth classes (``eval_clsloc.m``: ``e(i) += min_j d`` over the
      image's labels, then ``e ./ n``); ILSVRC CLS-LOC images have one class, where this is simply "one of the k
      guesses is right";
    * the dataset error is the mean over images; blacklisted images do not count for localization (the devkit
      sets their error to 0 and subtracts the blacklist size from the denominator).
The image's classes are ``ImageRecord.image_labels()`` (its label and the classes of its boxes).

GT-known localization (used since Choe et al.): the box computed from the ground-truth class's CAM is correct iff
it has IoU >= 0.5 with any box of the image's class ``ImageRecord.label``.

Accumulation over a dataset (counts, blacklist, images without boxes) lives in ``wsol.evaluation``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wsol.boxes import box_iou
from wsol.data.records import ImageRecord

__all__ = ["cls_errors", "loc_errors", "gt_known_correct", "best_iou"]


def _check_guesses(guesses: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    guesses = np.asarray(guesses)
    if guesses.ndim != 1 or not np.issubdtype(guesses.dtype, np.integer):
        raise ValueError(f"guesses must be a 1-D integer array, got {guesses.dtype} {guesses.shape}")
    if not ks or min(ks) < 1 or max(ks) > len(guesses):
        raise ValueError(f"each k must lie in [1, {len(guesses)}] (the number of guesses); got {list(ks)}")
    return guesses


def cls_errors(guesses: np.ndarray, record: ImageRecord, ks: Sequence[int]) -> np.ndarray:
    """Classification error of one image for each k: mean over its GT classes of "none of the first k guesses
    names it".

    Args:
        guesses: int ``[G]`` guessed labels, best first.
        record: the image's ground truth.
        ks: the k values, each in ``[1, G]``.

    Returns:
        float64 ``[len(ks)]`` in ``[0, 1]``.
    """
    guesses = _check_guesses(guesses, ks)
    names = guesses[None, :] == record.image_labels()[:, None]  # [L, G]: guess j names GT class l
    return np.array([np.mean(~names[:, :k].any(axis=1)) for k in ks])


def loc_errors(guesses: np.ndarray, boxes: np.ndarray, record: ImageRecord, ks: Sequence[int],
               iou_threshold: float = 0.5) -> np.ndarray:
    """Localization error of one image (with at least one GT box) for each k, devkit rules (module docstring).

    Args:
        guesses: int ``[G]`` guessed labels, best first.
        boxes: ``[G, 4]`` one box per guess, ``xyxy`` inclusive, in the pixel space of ``record.boxes``.
        record: the image's ground truth; must hold at least one box.
        ks: the k values, each in ``[1, G]``.
        iou_threshold: a box matches a GT box iff IoU >= this.

    Returns:
        float64 ``[len(ks)]`` in ``[0, 1]``.
    """
    guesses = _check_guesses(guesses, ks)
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.shape != (len(guesses), 4):
        raise ValueError(f"boxes must have shape {(len(guesses), 4)}, got {boxes.shape}")
    gt_boxes = np.asarray(record.boxes, dtype=np.float64).reshape(-1, 4)
    if len(gt_boxes) == 0:
        raise ValueError(f"{record.image_id}: no ground-truth box to localize against")
    box_classes = record.labels_of_boxes()
    # [G, N]: guess j matches GT box b iff same class and IoU >= threshold
    match = (guesses[:, None] == box_classes[None, :]) & (box_iou(boxes, gt_boxes) >= iou_threshold)
    names = guesses[None, :] == record.image_labels()[:, None]  # [L, G]
    hit = names & match.any(axis=1)[None, :]  # guess j names class l and its box matches a box of class l
    return np.array([np.mean(~hit[:, :k].any(axis=1)) for k in ks])


def best_iou(box: np.ndarray, record: ImageRecord) -> float:
    """Largest IoU of ``box`` with the GT boxes of the image's class ``record.label`` (0 when it has none)."""
    own = np.asarray(record.boxes, dtype=np.float64).reshape(-1, 4)[record.labels_of_boxes() == record.label]
    return float(box_iou(np.asarray(box, dtype=np.float64), own).max()) if len(own) else 0.0


def gt_known_correct(box: np.ndarray, record: ImageRecord, iou_threshold: float = 0.5) -> bool:
    """GT-known localization: the GT class's box has IoU >= ``iou_threshold`` with a GT box of that class."""
    return best_iou(box, record) >= iou_threshold
