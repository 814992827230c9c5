"""Box conventions of the annotation readers, stated once: inclusive ``xyxy``, ``x y w h`` flavours, validity checks.

Conventions (the same as ``wsol.data.records``):
    * Boxes are float64 ``[N, 4]`` ``xyxy`` with INCLUSIVE pixel coordinates of the image they refer to:
      a box covering the single pixel at column 3 has ``x0 = x1 = 3``; its width is ``x1 - x0 + 1``.
      This is the ILSVRC devkit's and wsolevaluation's convention (their IoU adds 1 to every side).
    * ``size`` is always ``(width, height)``.
    * ``x y w h`` boxes come in two flavours, and the caller must say which:
        - ``count_pixels=True``: ``w`` is the number of pixel columns (OpenCV ``boundingRect``, COCO-style
          integer boxes, the CAM authors' ``dt_box`` output), so ``x1 = x + w - 1``.
        - ``count_pixels=False``: ``w`` is the extent ``x1 - x0`` (CUB-200-2011's ``bounding_boxes.txt``),
          so ``x1 = x + w``. Evidence for CUB: wsolevaluation's CUB ``localization.txt`` equals
          ``x, y, x + w, y + h`` of ``bounding_boxes.txt`` (e.g. image 1: ``60 27 325 304`` ->
          ``60,27,385,331``), and over the 11,788 CUB-200-2011 boxes of wsolevaluation's train + test
          metadata ``x1`` reaches ``W - 1`` 156 times but ``W`` never (likewise ``y1``: ``H - 1`` 328
          times, ``H`` never), which only the extent reading explains: with pixel counts, a box
          touching the right edge would give ``x + w = W``.

Which resolution is evaluated (the pixel space the GT boxes are scored in):
    * Default (the CAM paper, "original resolution"): the network sees the whole image resized to
      ``224 x 224`` without crop; the CAM is resized back to the image's own ``(W, H)``, where the GT
      boxes live, so GT boxes are never moved.
    * wsolevaluation protocol: the CAM stays at ``224 x 224`` and GT boxes are moved to it with
      ``wsol.boxes.resize_boxes(boxes, (W, H), (224, 224), truncate=True)`` (their ``resize_bbox`` scales
      ``x * 224 / W`` and truncates with ``int()``). Box resizing has its one home there, not here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def as_boxes(boxes: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Return ``boxes`` as a float64 ``[N, 4]`` array (a copy); raises ``ValueError`` on another shape.

    Args:
        boxes: anything ``np.asarray`` turns into ``[N, 4]`` (``[4]`` is taken as one box).

    Returns:
        float64 ``[N, 4]``.
    """
    array = np.array(boxes, dtype=np.float64)
    if array.ndim == 1 and array.shape[0] == 4:
        array = array[None, :]
    if array.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {array.shape}")
    return array


def xywh_to_xyxy(boxes: np.ndarray | Sequence[Sequence[float]], *, count_pixels: bool) -> np.ndarray:
    """Convert ``x y w h`` boxes to inclusive ``xyxy``.

    Args:
        boxes: ``[N, 4]`` ``(x, y, w, h)``; ``(x, y)`` is the top-left pixel.
        count_pixels: True if ``w``/``h`` count pixels (``x1 = x + w - 1``; OpenCV, ``dt_box``);
            False if they are extents (``x1 = x + w``; CUB-200-2011). No default: guessing is how
            off-by-one errors creep in.

    Returns:
        float64 ``[N, 4]`` ``(x0, y0, x1, y1)`` inclusive.
    """
    xywh = as_boxes(boxes)
    offset = 1.0 if count_pixels else 0.0
    out = xywh.copy()
    out[:, 2] = xywh[:, 0] + xywh[:, 2] - offset
    out[:, 3] = xywh[:, 1] + xywh[:, 3] - offset
    return out


def boxes_outside(
    boxes: np.ndarray | Sequence[Sequence[float]], size: tuple[int, int], tolerance: float
) -> np.ndarray:
    """bool ``[N]``: which boxes leave the image ``[0, W-1] x [0, H-1]`` by more than ``tolerance`` pixels.

    The tolerance absorbs rounding in rescaled float boxes: a box ending on the last pixel of a
    500-pixel image (``x1 = 499``) rescaled to 227 pixels ends at ``499 * 227 / 500 = 226.55 > 226``.

    Args:
        boxes: ``[N, 4]`` inclusive ``xyxy``.
        size: ``(width, height)``.
        tolerance: allowed overshoot in pixels (``data.box_tolerance``).

    Returns:
        bool ``[N]``.
    """
    xyxy = as_boxes(boxes)
    width, height = size
    low = (xyxy[:, 0] < -tolerance) | (xyxy[:, 1] < -tolerance)
    high = (xyxy[:, 2] > width - 1 + tolerance) | (xyxy[:, 3] > height - 1 + tolerance)
    return low | high


def boxes_inverted(boxes: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """bool ``[N]``: boxes with ``x1 < x0`` or ``y1 < y0`` (a one-pixel box, ``x0 == x1``, is valid)."""
    xyxy = as_boxes(boxes)
    return (xyxy[:, 2] < xyxy[:, 0]) | (xyxy[:, 3] < xyxy[:, 1])
