"""wsolevaluation's score maps: the evaluation grid, the threshold list, validity, and how a CAM becomes one.

Shared by MaxBoxAcc (``wsol.metrics.boxacc``) and PxAP (``wsol.metrics.pxap``). The conventions, stated once
here (``evaluation.py`` / ``inference.py`` / ``util.py`` of clovaai/wsolevaluation):
    * Every map and GT box is evaluated on a ``RESIZE_LENGTH x RESIZE_LENGTH`` (224x224) grid.
    * A CAM becomes a score map by a cast to float64 (their ``t2n``), a bicubic resize to 224x224
      (``cv2.INTER_CUBIC``; the overshoot is kept and then removed by the normalisation) and min-max
      normalisation, ``wsol.cam.normalize_cams(..., "minmax", constant="zeros", nan="zeros")``: a constant
      map or one holding a NaN becomes all zeros (``normalize_scoremap``).
    * A score map must be 2-D, floating point, NaN-free and within ``[0, 1]`` (``check_scoremap_validity``);
      it is evaluated in float64.
    * Thresholds are ``np.arange(0, 1, cam_curve_interval)`` (0.01 by default, 0.001 for final numbers).

Public API: ``RESIZE_LENGTH``, ``wsoleval_scoremap``, ``check_scoremap``, ``scoremap_thresholds``.
"""

from __future__ import annotations

import cv2
import numpy as np

from wsol.cam import normalize_cams

__all__ = ["RESIZE_LENGTH", "check_scoremap", "scoremap_thresholds", "wsoleval_scoremap"]

#: wsolevaluation evaluates every map and GT box at 224x224.
RESIZE_LENGTH = 224


def wsoleval_scoremap(cam: np.ndarray, size: tuple[int, int] = (RESIZE_LENGTH, RESIZE_LENGTH)) -> np.ndarray:
    """A CAM turned into a wsolevaluation score map: float64, bicubic resize, min-max normalisation.

    Args:
        cam: ``[h, w]`` real-valued CAM at feature-map resolution.
        size: ``(width, height)`` of the result (OpenCV order); wsolevaluation uses 224x224.

    Returns:
        float64 ``[height, width]`` in ``[0, 1]``; all zeros for a constant map or one holding a NaN.

    Raises:
        ValueError: if ``cam`` is not 2-D, or holds an infinity that the resize does not turn into a NaN
            (wsolevaluation would produce NaNs and then reject the map).
    """
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2:
        raise ValueError(f"cam must be 2-D [h, w]; got shape {cam.shape}")
    resized = cv2.resize(cam, tuple(int(s) for s in size), interpolation=cv2.INTER_CUBIC)
    return normalize_cams(resized, "minmax", constant="zeros", nan="zeros")


def scoremap_thresholds(cam_curve_interval: float) -> np.ndarray:
    """The threshold list ``np.arange(0, 1, cam_curve_interval)`` (float64), exactly as wsolevaluation."""
    if not 0.0 < cam_curve_interval < 1.0:
        raise ValueError(f"cam_curve_interval must lie in (0, 1); got {cam_curve_interval!r}")
    return np.arange(0, 1, cam_curve_interval)


def check_scoremap(scoremap: np.ndarray, index: int | None = None) -> np.ndarray:
    """wsolevaluation's ``check_scoremap_validity``, raising ``ValueError`` that names the map.

    Args:
        scoremap: the map to check.
        index: its position in a batch, for the message.

    Returns:
        The map as float64 (wsolevaluation's loaders hand float64 to the evaluators; the ``* 255``
        quantisation of MaxBoxAcc depends on it).
    """
    where = "score map" if index is None else f"score map {index}"
    scoremap = np.asarray(scoremap)
    if scoremap.ndim != 2:
        raise ValueError(f"{where} must be 2-D; got shape {scoremap.shape}")
    if not np.issubdtype(scoremap.dtype, np.floating):
        raise ValueError(f"{where} must be floating point; got dtype {scoremap.dtype}")
    scoremap = scoremap.astype(np.float64, copy=False)
    if scoremap.size:
        lo, hi = scoremap.min(), scoremap.max()  # a NaN anywhere makes both NaN
        if np.isnan(lo):
            raise ValueError(f"{where} contains NaN")
        if lo < 0 or hi > 1:
            raise ValueError(f"{where} must lie in [0, 1]; min={lo}, max={hi}")
    return scoremap
