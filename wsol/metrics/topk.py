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

``DevkitErrors`` accumulates these over a dataset (sums only; blacklist and images without boxes counted); the
per-protocol evaluators in ``wsol.evaluation`` and ``wsol-score devkit`` use it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from wsol.boxes import box_iou
from wsol.data.records import ImageRecord

__all__ = ["DevkitErrors", "cls_errors", "loc_errors", "gt_known_correct", "best_iou"]


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


class DevkitErrors:
    """Accumulates devkit top-k errors over images (NumPy only; bounded state: one vector of sums).

    ``add_cls`` scores an image's classification, ``add_loc`` its localization (blacklisted images and images
    without a box are counted and skipped). ``state`` is a flat float64 vector of sums, so several accumulators
    (e.g. one per ``torch.distributed`` rank) combine by adding their states; ``compute(state)`` turns it into
    percentages.

    Args:
        ks: the k values.
        blacklist: image ids excluded from localization.
        iou_threshold: a box is correct iff IoU >= this (0.5).
    """

    def __init__(self, ks: Sequence[int], blacklist: Collection[str] = (), iou_threshold: float = 0.5) -> None:
        self.ks = tuple(sorted({int(k) for k in ks}))
        if not self.ks or self.ks[0] < 1:
            raise ValueError(f"top-k values must be >= 1, got {list(ks)}")
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must lie in (0, 1]; got {iou_threshold!r}")
        self.blacklist = frozenset(blacklist)
        self.iou_threshold = float(iou_threshold)
        self.reset()

    def reset(self) -> None:
        k = len(self.ks)
        # [cls errors (k), n cls images, loc errors (k), gt-known wrong, n gt-known, n loc, n blacklisted, n no box]
        self.state = np.zeros(2 * k + 6)

    def add_cls(self, record: ImageRecord, guesses: np.ndarray) -> np.ndarray:
        """Score one image's classification; returns its per-k errors."""
        errors = cls_errors(guesses, record, self.ks)
        k = len(self.ks)
        self.state[:k] += errors
        self.state[k] += 1
        return errors

    def loc_eligible(self, record: ImageRecord) -> bool:
        """Whether the image is scored for localization (not blacklisted, has a box); counts it either way."""
        k = len(self.ks)
        if record.image_id in self.blacklist:
            self.state[2 * k + 4] += 1
            return False
        if len(record.boxes) == 0:
            self.state[2 * k + 5] += 1
            return False
        self.state[2 * k + 3] += 1
        return True

    def add_loc(self, record: ImageRecord, guesses: np.ndarray, boxes: np.ndarray,
                gt_known_box: np.ndarray | None = None) -> np.ndarray | None:
        """Score one image's localization (and GT-known box); None when it is not eligible (``loc_eligible``)."""
        if not self.loc_eligible(record):
            return None
        k = len(self.ks)
        errors = loc_errors(guesses, boxes, record, self.ks, self.iou_threshold)
        self.state[k + 1:2 * k + 1] += errors
        if gt_known_box is not None:
            self.state[2 * k + 1] += 0.0 if gt_known_correct(gt_known_box, record, self.iou_threshold) else 1.0
            self.state[2 * k + 2] += 1
        return errors

    def compute(self, state: np.ndarray | None = None) -> dict[str, float | int]:
        """Percentages from ``state`` (default: this accumulator's): ``top{k}_cls_err`` when classification was
        scored, ``top{k}_loc_err`` / ``gt_known_loc_err`` and the counts when localization was.

        Raises:
            ValueError: localization was attempted but no image was eligible.
        """
        s = self.state if state is None else np.asarray(state, dtype=np.float64)
        k = len(self.ks)
        out: dict[str, float | int] = {}
        n_cls = int(round(s[k]))
        if n_cls:
            out.update({f"top{kk}_cls_err": 100.0 * e / n_cls for kk, e in zip(self.ks, s[:k])})
            out["n_images"] = n_cls
        scored, blacklisted, without = (int(round(x)) for x in s[2 * k + 3:2 * k + 6])
        if scored + blacklisted + without:
            if scored == 0:
                raise ValueError(f"no image is eligible for localization scoring ({blacklisted} blacklisted, "
                                 f"{without} without boxes)")
            out.update({f"top{kk}_loc_err": 100.0 * e / scored for kk, e in zip(self.ks, s[k + 1:2 * k + 1])})
            if s[2 * k + 2]:
                out["gt_known_loc_err"] = 100.0 * s[2 * k + 1] / s[2 * k + 2]
            out.update(n_loc_images=scored, n_blacklisted=blacklisted, n_without_boxes=without)
        return out
