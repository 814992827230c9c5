"""Boxes: IoU under the inclusive-pixel convention, box resizing, and the CAM paper's box rule.

Conventions, stated once here (they match ``wsol.data.records``):
    * Boxes are ``xyxy`` with INCLUSIVE pixel coordinates, as in the ILSVRC devkit and wsolevaluation:
      a box covering the single pixel at column 3, row 5 is ``[3, 5, 3, 5]``; its width is
      ``x1 - x0 + 1``.
    * A score map is indexed ``[y, x]`` (row, column); ``H`` rows, ``W`` columns; sizes are ``(W, H)``.
    * Resizing a box scales each coordinate as ``c * new / old`` in float64, in that order (x with the
      widths, y with the heights; no half-pixel shift), as wsolevaluation's ``resize_bbox`` does; with
      ``truncate=True`` the result is truncated toward zero like its ``int()``.

Public API:
    * ``box_iou(a[N,4], b[M,4]) -> [N,M]`` float64, the devkit's "+1" IoU.
    * ``resize_boxes(boxes[N,4], from_size, to_size, *, truncate) -> [N,4]``.
    * ``cam_to_box(cam[H,W], threshold) -> [4]`` int64, the CAM paper's rule (min-max normalise with
      ``wsol.cam.normalize_cams``, keep ``>= threshold``, bounding box of the largest 8-connected component);
      the paper's 0.2 is ``eval.cam_threshold`` (``configs/eval/default.yaml``).
    * ``cams_to_boxes(cams[N,H,W], threshold) -> [N,4]`` int64, the same for a batch.
    * ``classify_failure(pred_box[4], gt_boxes[N,4]) -> str``: why a right-class box misses (``FAILURE_CATEGORIES``).

The wsolevaluation box rule (strict ``>`` on an 8-bit map, contours, ``x + w``) and the authors' released
``dt_box`` rule are different and live in ``wsol.metrics.boxacc`` and ``wsol.dtbox``. This module needs no torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wsol.cam import normalize_cams

__all__ = ["FAILURE_CATEGORIES", "box_iou", "cam_to_box", "cams_to_boxes", "classify_failure", "resize_boxes"]

#: Top-1 localization failure categories, in the order they are tested: ``wrong_class`` from the classes, the others
#: by ``classify_failure`` from the boxes.
FAILURE_CATEGORIES = ("wrong_class", "several_instances", "too_large", "too_small", "misplaced")

# 8-connectivity: diagonal neighbours join a component (the paper does not say; 8-connectivity is what
# OpenCV contour tracing, used by every released WSOL evaluation, treats as connected).
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
# scipy.ndimage (for the paper's rule only) is imported where it is used: it adds ~26 MB to every process that
# imports this module for box_iou / resize_boxes (the score-map path).


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of two sets of boxes, inclusive-pixel convention.

    Area is ``(x1 - x0 + 1) * (y1 - y0 + 1)`` and the intersection width is
    ``max(0, min(x1) - max(x0) + 1)`` (ILSVRC devkit ``compute_overlap.m``, wsolevaluation
    ``calculate_multiple_iou``), so two boxes that share one pixel column overlap. A pair whose union is
    not positive (only possible for malformed boxes with ``x1 < x0 - 1``) gets IoU 0, as in wsolevaluation.

    Args:
        a: ``[N, 4]`` (or ``[4]``) boxes ``xyxy``, any real dtype.
        b: ``[M, 4]`` (or ``[4]``) boxes ``xyxy``, any real dtype.

    Returns:
        float64 ``[N, M]`` IoU values in ``[0, 1]``.

    Raises:
        ValueError: if either input is not ``[..., 4]``-shaped.
    """
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    for name, boxes in (("a", a), ("b", b)):
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"box_iou: {name} must have shape [N, 4]; got {boxes.shape}")
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.maximum(0.0, ix1 - ix0 + 1.0) * np.maximum(0.0, iy1 - iy0 + 1.0)
    area_a = (a[:, 2] - a[:, 0] + 1.0) * (a[:, 3] - a[:, 1] + 1.0)
    area_b = (b[:, 2] - b[:, 0] + 1.0) * (b[:, 3] - b[:, 1] + 1.0)
    union = area_a[:, None] + area_b[None, :] - inter
    positive = union > 0
    return np.where(positive, inter / np.where(positive, union, 1.0), 0.0)


def resize_boxes(
    boxes: np.ndarray | Sequence[Sequence[float]],
    from_size: tuple[float, float],
    to_size: tuple[float, float],
    *,
    truncate: bool,
) -> np.ndarray:
    """Boxes of an image of ``from_size`` moved to the same image resized (aspect not kept) to ``to_size``.

    Each coordinate becomes ``c * new / old`` in float64, multiplied first and divided second, exactly as
    wsolevaluation's ``resize_bbox`` (``x * 224 / W``); ``x * (new / old)`` differs from it in the last bit,
    which truncation can turn into a whole pixel (``W = 110, x = 55``: 111 vs 112).

    Args:
        boxes: ``[N, 4]`` (or ``[4]``) boxes ``xyxy`` in ``from_size`` pixels, any real dtype.
        from_size: ``(width, height)`` the boxes refer to.
        to_size: ``(width, height)`` of the resized image.
        truncate: ``True`` truncates every coordinate toward zero like ``int()`` and returns int64 (the
            wsolevaluation protocol); ``False`` keeps float64. No default: the two are different protocols.

    Returns:
        ``[N, 4]`` int64 (``truncate=True``) or float64 boxes in ``to_size`` pixels.

    Raises:
        ValueError: if ``boxes`` is not ``[N, 4]``-shaped or not finite, or a size is not positive.
    """
    xyxy = np.asarray(boxes, dtype=np.float64)
    if xyxy.ndim == 1:
        xyxy = xyxy.reshape(1, -1)
    if xyxy.ndim != 2 or xyxy.shape[1] != 4:
        raise ValueError(f"resize_boxes: boxes must have shape [N, 4]; got {np.shape(boxes)}")
    if not np.isfinite(xyxy).all():
        raise ValueError("resize_boxes: boxes hold NaN or infinite coordinates")
    (from_w, from_h), (to_w, to_h) = (tuple(map(float, from_size)), tuple(map(float, to_size)))
    if min(from_w, from_h, to_w, to_h) <= 0:
        raise ValueError(f"resize_boxes: sizes must be positive; got from {from_size} to {to_size}")
    new = np.array([to_w, to_h, to_w, to_h])
    old = np.array([from_w, from_h, from_w, from_h])
    out = xyxy * new / old  # (c * new) / old, left to right
    return out.astype(np.int64) if truncate else out


def _check_threshold(threshold: float) -> None:
    if not (0.0 < float(threshold) < 1.0):
        raise ValueError(f"threshold must lie in the open interval (0, 1); got {threshold!r}")


def _one_cam_to_box(cam: np.ndarray, threshold: float, index: int | None) -> np.ndarray:
    where = "score map" if index is None else f"score map {index}"
    if cam.ndim != 2:
        raise ValueError(f"{where} must be 2-D [H, W]; got shape {cam.shape}")
    try:
        # A constant map has every pixel at its max: all are kept ("ones"), the box is the whole image.
        normalized = normalize_cams(cam.astype(np.float64), "minmax", constant="ones", nan="raise")
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    from scipy import ndimage  # noqa: PLC0415  (see _EIGHT_CONNECTED)

    # Keep >= threshold of the normalised map: the paper's "20% of the max value of the CAM".
    keep = normalized >= threshold
    labels, count = ndimage.label(keep, structure=_EIGHT_CONNECTED)
    if count == 0:  # unreachable: the max is kept (normalised to 1, or "ones" for a constant map)
        raise ValueError(f"{where}: no pixel reaches {threshold} of the normalised map")
    # ndimage.label numbers components 1.. in raster order of their first pixel, and argmax returns the first
    # maximum, so equal-sized components resolve to the one that starts first in raster order.
    largest = 1 + int(np.argmax(np.bincount(labels.ravel(), minlength=count + 1)[1:]))
    ys, xs = np.nonzero(labels == largest)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.int64)


def cam_to_box(cam: np.ndarray, threshold: float) -> np.ndarray:
    """The CAM paper's box: bounding box of the largest connected region above a fraction of the max.

    The map is min-max normalised (``normalize_cams(cam, "minmax")``); pixels with normalised value
    ``>= threshold`` are kept; the kept pixels are split into 8-connected components; the box is the
    inclusive bounding box of the component with the most pixels. Ties between equally large components go
    to the one whose first pixel comes first in raster order (row by row, top to bottom).

    Args:
        cam: ``[H, W]`` real-valued score map (any sign; the normalisation removes the offset).
        threshold: fraction of the normalised range, in the open interval ``(0, 1)`` (``eval.cam_threshold``; the
            paper uses 0.2).

    Returns:
        int64 ``[4]`` box ``xyxy``, inclusive pixels, in the map's pixel grid. A constant map (max == min)
        gives the whole image ``[0, 0, W - 1, H - 1]``: every pixel equals the max and so is kept.

    Raises:
        ValueError: if the map is not 2-D, holds NaN or infinity, or ``threshold`` is outside ``(0, 1)``.
    """
    _check_threshold(threshold)
    return _one_cam_to_box(np.asarray(cam), threshold, None)


def cams_to_boxes(cams: np.ndarray, threshold: float) -> np.ndarray:
    """``cam_to_box`` for a batch of maps.

    Args:
        cams: ``[N, H, W]`` real-valued score maps (a torch tensor must be converted with ``.numpy()``).
        threshold: as in ``cam_to_box``.

    Returns:
        int64 ``[N, 4]`` boxes ``xyxy``, inclusive pixels.

    Raises:
        ValueError: if ``cams`` is not 3-D, ``threshold`` is outside ``(0, 1)``, or a map holds NaN or
            infinity (the message names the index of the first such map).
    """
    _check_threshold(threshold)
    cams = np.asarray(cams)
    if cams.ndim != 3:
        raise ValueError(f"cams must have shape [N, H, W]; got {cams.shape}")
    out = np.empty((len(cams), 4), dtype=np.int64)
    for i, cam in enumerate(cams):
        out[i] = _one_cam_to_box(cam, threshold, i)
    return out


# ------------------------------------------------------------------------------------------- failures
def _areas(boxes: np.ndarray) -> np.ndarray:
    """Areas of ``[N, 4]`` boxes under the inclusive-pixel convention of ``box_iou``."""
    return (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0)


def _intersections(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection areas of one box with ``[N, 4]`` boxes, inclusive pixels (as ``box_iou``)."""
    w = np.maximum(0.0, np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + 1.0)
    h = np.maximum(0.0, np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + 1.0)
    return w * h


def classify_failure(pred_box: np.ndarray, gt_boxes: np.ndarray) -> str:
    """Why a right-class top-1 guess failed to localize (its box has IoU < 0.5 with every GT box).

    With ``P`` the predicted box, ``G_1..G_n`` the GT boxes of the class (xyxy, inclusive pixels, areas
    ``(x1 - x0 + 1) * (y1 - y0 + 1)``), ``cover_i = |P ∩ G_i| / |G_i|`` and ``G*`` the GT box of highest
    IoU with ``P`` (the first on ties), the first rule that holds names the failure:

    1. ``several_instances``: ``n >= 2`` and ``cover_i >= 0.5`` for at least two GT boxes — the box
       holds at least half of each of two instances (it merged them);
    2. ``too_large``: ``|P ∩ G*| / |G*| >= 0.5`` and ``|P| > |G*|`` — it holds most of the object but is
       bigger;
    3. ``too_small``: ``|P ∩ G*| / |P| >= 0.5`` and ``|P| < |G*|`` — it lies mostly inside the object but
       is smaller (the typical CAM failure: only the discriminative part);
    4. ``misplaced``: anything else (mostly outside every GT box, or overlapping one partly without
       holding most of it or lying mostly inside it).

    ``wrong_class`` (the top-1 class is not a class of the image) is decided before, from the classes, by the caller
    (``wsol.report.failure_categories``). All ``>=`` are inclusive: exactly half counts.

    Args:
        pred_box: ``[4]`` the top-1 box.
        gt_boxes: ``[N, 4]`` with ``N >= 1``.

    Returns:
        One of ``FAILURE_CATEGORIES[1:]``.

    Raises:
        ValueError: no GT box, or shapes other than ``[4]`` / ``[N, 4]``.
    """
    pred = np.asarray(pred_box, dtype=np.float64).reshape(-1)
    gts = np.asarray(gt_boxes, dtype=np.float64)
    if pred.shape != (4,) or gts.ndim != 2 or gts.shape[1] != 4:
        raise ValueError(f"classify_failure: expected pred_box [4] and gt_boxes [N, 4], got "
                         f"{np.shape(pred_box)} and {np.shape(gt_boxes)}")
    if len(gts) == 0:
        raise ValueError("classify_failure: no GT box to compare with")
    inter = _intersections(pred, gts)
    gt_area = _areas(gts)
    pred_area = float(_areas(pred[None])[0])
    if len(gts) >= 2 and int((inter >= 0.5 * gt_area).sum()) >= 2:
        return "several_instances"
    best = int(np.argmax(box_iou(pred, gts)[0]))
    if inter[best] >= 0.5 * gt_area[best] and pred_area > gt_area[best]:
        return "too_large"
    if inter[best] >= 0.5 * pred_area and pred_area < gt_area[best]:
        return "too_small"
    return "misplaced"
