"""MaxBoxAcc and MaxBoxAccV2 exactly as wsolevaluation (Choe et al., CVPR 2020) computes them.

The protocol, stated once here (``evaluation.py`` / ``inference.py`` of clovaai/wsolevaluation):
    * Score map: the GT-class CAM at feature-map resolution, cast to float64, resized to 224x224 with
      bicubic interpolation (``cv2.INTER_CUBIC``), then min-max normalised; a constant map or one holding a
      NaN becomes all zeros (``wsoleval_scoremap``). A score map must be 2-D, NaN-free and within [0, 1].
    * GT boxes: ``xyxy`` inclusive in original-image pixels, scaled to 224x224 with ``int()`` truncation
      of every coordinate (``resize_boxes_wsoleval``).
    * Thresholds: ``tau in np.arange(0, 1, cam_curve_interval)`` (0.01 by default, 0.001 for final numbers).
      The map is quantised as ``u8 = (map * 255).astype(uint8)`` and binarised STRICTLY above the integer
      level ``int(tau * u8.max())`` (``cv2.threshold(..., THRESH_BINARY)``).
    * Boxes: contours of the binary mask (``cv2.findContours``, ``RETR_TREE`` so hole contours count too,
      ``CHAIN_APPROX_SIMPLE``); each contour's ``cv2.boundingRect`` ``(x, y, w, h)`` becomes
      ``[x, y, min(x + w, W - 1), min(y + h, H - 1)]`` (note ``x + w``: one pixel wider than the contour).
      V1 keeps only ``max(contours, key=cv2.contourArea)`` (polygon area; the first in OpenCV's list on a
      tie); V2 keeps every contour. An empty mask gives the single box ``[0, 0, 0, 0]``.
    * An image is correct at ``tau`` iff the best IoU (``wsol.boxes.box_iou``, "+1" convention) between its
      boxes and ANY of its GT boxes is ``>= iou / 100``. BoxAcc(tau) is the percentage of correct images.
    * ``maxboxacc`` = max over tau of V1 BoxAcc at IoU 50; ``maxboxacc_v2`` = mean over the IoU thresholds
      (30, 50, 70) of max over tau of V2 BoxAcc, each IoU threshold taking its own best tau.

Two interchangeable implementations, selected by ``method``:
    * ``"exact"``: OpenCV does the thresholding and contour tracing, as in wsolevaluation. The result at
      ``tau`` depends only on the integer level ``int(tau * u8.max())``, so it is computed once per distinct
      level (at most 255 per map instead of 1000 at step 0.001) -- the same calls on the same masks.
    * ``"fast"``: one sweep over the component trees of the nested level sets (needs ``numba``). Identity
      with the exact path rests on three facts, each checked against OpenCV in ``tests/test_metrics.py``:
      (1) the outer contours are the 8-connected components of ``{u8 > L}`` and the hole contours the
      4-connected components of ``{u8 <= L}`` that do not touch the image edge, a hole's bounding rect being
      its pixels' box grown by one pixel on each side; (2) ``cv2.contourArea`` of an outer contour equals
      ``#(2x2 windows with 4 pixels in F) + #(windows with 3 in F) / 2`` where F is the component with its
      holes filled, and F is an 8-connected component of ``{psi > L}`` for ``psi`` the grayscale hole-filling
      of ``u8`` (4-connected paths to the edge), so V1 is decided among those; hole and nested contours are
      strictly smaller; (3) OpenCV lists top-level contours in DESCENDING raster order of their first
      pixel, so a V1 tie goes to the tied component whose first pixel comes last.
    * ``"auto"`` (default): ``"fast"`` when numba is importable, else ``"exact"``.

Public API: ``wsoleval_scoremap``, ``resize_boxes_wsoleval``, ``scoremap_thresholds``,
``scoremap_boxes_at_thresholds`` (the exact per-threshold boxes, for inspection), ``level_ious``
and ``BoxAccEvaluator`` (``update()`` / ``compute()`` / ``curve()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import cv2
import numpy as np

from wsol.boxes import box_iou

__all__ = [
    "RESIZE_LENGTH",
    "BoxAccEvaluator",
    "level_ious",
    "resize_boxes_wsoleval",
    "scoremap_boxes_at_thresholds",
    "scoremap_thresholds",
    "wsoleval_scoremap",
]

#: wsolevaluation evaluates every map and GT box at 224x224.
RESIZE_LENGTH = 224


# ------------------------------------------------------------------------------------------- preprocessing
def wsoleval_scoremap(cam: np.ndarray, size: tuple[int, int] = (RESIZE_LENGTH, RESIZE_LENGTH)) -> np.ndarray:
    """A CAM turned into a wsolevaluation score map: bicubic resize, then min-max normalisation.

    Mirrors ``CAMComputer.compute_and_evaluate_cams`` + ``normalize_scoremap``: the CAM is cast to float64
    first (their ``t2n``), resized with ``cv2.INTER_CUBIC`` (bicubic overshoot is kept, then removed by the
    normalisation), and min-max normalised. A map holding a NaN, or a constant map, becomes all zeros.

    Args:
        cam: ``[h, w]`` real-valued CAM at feature-map resolution.
        size: ``(width, height)`` of the result (OpenCV order); wsolevaluation uses 224x224.

    Returns:
        float64 ``[height, width]`` in ``[0, 1]``.

    Raises:
        ValueError: if ``cam`` is not 2-D, or holds an infinity (wsolevaluation would produce NaNs and
            then reject the map).
    """
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2:
        raise ValueError(f"cam must be 2-D [h, w]; got shape {cam.shape}")
    resized = cv2.resize(cam, tuple(int(s) for s in size), interpolation=cv2.INTER_CUBIC)
    if np.isnan(resized).any() or resized.min() == resized.max():
        return np.zeros_like(resized)
    if not np.isfinite(resized).all():
        raise ValueError("cam holds an infinite value; it cannot be normalised")
    # Same operation order as theirs (subtract the min, then divide by the new max), so the floats agree.
    resized -= resized.min()
    resized /= resized.max()
    return resized


def resize_boxes_wsoleval(
    boxes: np.ndarray,
    image_size: tuple[float, float],
    resize_size: tuple[int, int] = (RESIZE_LENGTH, RESIZE_LENGTH),
) -> np.ndarray:
    """GT boxes scaled to the evaluation size as wsolevaluation's ``resize_bbox`` does.

    Each coordinate becomes ``int(c * new / old)`` in float64 (truncation toward zero, not rounding), x with
    the widths and y with the heights.

    Args:
        boxes: ``[N, 4]`` boxes ``xyxy`` inclusive, original-image pixels.
        image_size: ``(width, height)`` of the original image.
        resize_size: ``(width, height)`` of the evaluation grid.

    Returns:
        int64 ``[N, 4]`` boxes ``xyxy`` inclusive on the resized grid.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    image_w, image_h = map(float, image_size)
    new_w, new_h = map(float, resize_size)
    scale = np.array([new_w, new_h, new_w, new_h])
    size = np.array([image_w, image_h, image_w, image_h])
    # (c * new) / old, in that order, as in resize_bbox; astype truncates toward zero like int().
    return (boxes * scale / size).astype(np.int64)


def scoremap_thresholds(cam_curve_interval: float) -> np.ndarray:
    """The threshold list ``np.arange(0, 1, cam_curve_interval)`` (float64), exactly as wsolevaluation."""
    if not 0.0 < cam_curve_interval < 1.0:
        raise ValueError(f"cam_curve_interval must lie in (0, 1); got {cam_curve_interval!r}")
    return np.arange(0, 1, cam_curve_interval)


def _check_scoremap(scoremap: np.ndarray, index: int | None = None) -> np.ndarray:
    """wsolevaluation's ``check_scoremap_validity``, raising ``ValueError`` naming the map; returns float64."""
    where = "score map" if index is None else f"score map {index}"
    scoremap = np.asarray(scoremap)
    if scoremap.ndim != 2:
        raise ValueError(f"{where} must be 2-D; got shape {scoremap.shape}")
    if not np.issubdtype(scoremap.dtype, np.floating):
        raise ValueError(f"{where} must be floating point; got dtype {scoremap.dtype}")
    # wsolevaluation's loaders hand float64 to the evaluator (t2n); the *255 quantisation depends on it.
    scoremap = scoremap.astype(np.float64, copy=False)
    if np.isnan(scoremap).any():
        raise ValueError(f"{where} contains NaN")
    if scoremap.size and (scoremap.min() < 0 or scoremap.max() > 1):
        raise ValueError(f"{where} must lie in [0, 1]; min={scoremap.min()}, max={scoremap.max()}")
    return scoremap


def _quantise(scoremap: np.ndarray) -> np.ndarray:
    return (scoremap * 255).astype(np.uint8)


def _levels(thresholds: np.ndarray, u8_max: int) -> np.ndarray:
    # int(tau * max) per threshold: the float64 product truncated toward zero, as their int(...) call.
    return (np.asarray(thresholds, dtype=np.float64) * float(u8_max)).astype(np.int64)


# ------------------------------------------------------------------------------------------------ exact path
def _contour_boxes(u8: np.ndarray, level: int, multi_contour: bool) -> np.ndarray:
    """Boxes of one binarisation, as wsolevaluation's ``scoremap2bbox`` (int64 ``[K, 4]``)."""
    height, width = u8.shape
    _, mask = cv2.threshold(u8, int(level), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return np.zeros((1, 4), dtype=np.int64)
    if not multi_contour:
        contours = [max(contours, key=cv2.contourArea)]
    boxes = np.empty((len(contours), 4), dtype=np.int64)
    for i, contour in enumerate(contours):
        x, y, w, h = cv2.boundingRect(contour)
        boxes[i] = (x, y, min(x + w, width - 1), min(y + h, height - 1))
    return boxes


def scoremap_boxes_at_thresholds(
    scoremap: np.ndarray, thresholds: Sequence[float], multi_contour: bool = False
) -> list[np.ndarray]:
    """The boxes wsolevaluation's ``compute_bboxes_from_scoremaps`` derives at every threshold (exact path).

    Args:
        scoremap: ``[H, W]`` float map in ``[0, 1]``.
        thresholds: the taus, e.g. ``scoremap_thresholds(0.01)``.
        multi_contour: ``False`` for V1 (largest contour only), ``True`` for V2 (every contour).

    Returns:
        One int64 ``[K, 4]`` array of ``xyxy`` boxes per threshold (``K == 1`` for V1).
    """
    u8 = _quantise(_check_scoremap(scoremap))
    levels = _levels(np.asarray(thresholds), int(u8.max()))
    cache: dict[int, np.ndarray] = {}
    out = []
    for level in levels.tolist():
        if level not in cache:
            cache[level] = _contour_boxes(u8, level, multi_contour)
        out.append(cache[level])
    return out


def _level_ious_exact(u8: np.ndarray, gt_boxes: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v1 = np.empty(len(levels))
    v2 = np.empty(len(levels))
    for i, level in enumerate(levels.tolist()):
        boxes = _contour_boxes(u8, level, multi_contour=True)
        ious = box_iou(boxes, gt_boxes).max(axis=1)
        v2[i] = ious.max()
        v1[i] = box_iou(_contour_boxes(u8, level, multi_contour=False), gt_boxes).max()
    return v1, v2


# ------------------------------------------------------------------------------------------------- fast path
# The kernels below are plain Python written for numba's nopython mode; ``_fast_kernels()`` compiles them on
# first use (and caches the machine code on disk), so importing this module never needs numba. Each kernel is
# self-contained (union-find and IoU are written inline) because a numba function can only call functions
# that are already compiled when it is.


def _k_fill_holes(u8: np.ndarray) -> np.ndarray:
    """psi(p) = min over 4-connected paths from p to the image edge of the max value along the path.

    {psi > L} is {u8 > L} with every hole (background 4-component not reaching the edge) filled. Priority
    flood from the edge pixels with one bucket per 8-bit level: O(pixels).
    """
    height, width = u8.shape
    n = height * width
    flat = u8.ravel()
    psi = np.empty(n, np.uint8)
    queued = np.zeros(n, np.bool_)
    head = np.full(256, -1, np.int64)
    nxt = np.empty(n, np.int32)
    for p in range(n):
        y = p // width
        x = p - y * width
        if y == 0 or y == height - 1 or x == 0 or x == width - 1:
            v = flat[p]
            psi[p] = v
            queued[p] = True
            nxt[p] = head[v]
            head[v] = p
    level = 0
    while level < 256:
        p = head[level]
        if p < 0:
            level += 1
            continue
        head[level] = nxt[p]
        y = p // width
        x = p - y * width
        for k in range(4):
            if k == 0:
                if y == 0:
                    continue
                q = p - width
            elif k == 1:
                if y == height - 1:
                    continue
                q = p + width
            elif k == 2:
                if x == 0:
                    continue
                q = p - 1
            else:
                if x == width - 1:
                    continue
                q = p + 1
            if not queued[q]:
                v = max(flat[q], level)
                psi[q] = v
                queued[q] = True
                nxt[q] = head[v]
                head[v] = q
    return psi.reshape(height, width)


def _k_pixel_order(vals2d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counting sort of the pixels of a uint8 map by value: ``(start int64[257], order int32[n])``; the pixels
    of value v are ``order[start[v]:start[v + 1]]``, in raster order. Shared by the sweeps (and computed once
    per map when two sweeps read the same map)."""
    vals = vals2d.ravel()
    n = vals.shape[0]
    start = np.zeros(257, np.int64)
    for p in range(n):
        start[vals[p] + 1] += 1
    for v in range(256):
        start[v + 1] += start[v]
    order = np.empty(n, np.int32)
    fill = start[:256].copy()
    for p in range(n):
        v = vals[p]
        order[fill[v]] = p
        fill[v] += 1
    return start, order


def _k_sweep_down(vals2d: np.ndarray, start: np.ndarray, order: np.ndarray, gt: np.ndarray, gt_area: np.ndarray,
                  need: np.ndarray, with_area: bool):
    """Union-find over pixels by decreasing value, 8-connected: the components of {vals > L} for L = 254..0.

    For every needed level L returns the best IoU over all components' boxes (``x + w`` convention,
    clipped), and -- when ``with_area`` -- the box and IoU of the component of largest contour area
    (area counted in half pixels from 2x2 windows; ties to the component whose first raster pixel is last,
    OpenCV's list order). An empty set gives the box [0, 0, 0, 0].
    """
    height, width = vals2d.shape
    n = height * width
    vals = vals2d.ravel()
    n_gt = gt.shape[0]
    # Contour area in half pixels, from 2x2 windows: a window adds 1 once three of its pixels are in (the
    # triangle) and 1 more once all four are (the square). Each increment is credited to the window pixel
    # whose arrival completes it -- the second-smallest and the smallest value -- and summed over unions:
    # by the end of that pixel's level the window's pixels (pairwise 8-adjacent) share one component.
    credit = np.zeros(n, np.int32)
    if with_area:
        quad = np.empty(4, np.int64)
        for wy in range(height - 1):
            for wx in range(width - 1):
                p = wy * width + wx
                quad[0] = p
                quad[1] = p + 1
                quad[2] = p + width
                quad[3] = p + width + 1
                lo = 0
                for k in range(1, 4):
                    if vals[quad[k]] < vals[quad[lo]]:
                        lo = k
                second = -1
                for k in range(4):
                    if k != lo and (second < 0 or vals[quad[k]] < vals[quad[second]]):
                        second = k
                credit[quad[lo]] += 1
                credit[quad[second]] += 1
    parent = np.full(n, -1, np.int32)
    size = np.zeros(n, np.int32)
    bx0 = np.empty(n, np.int32)
    by0 = np.empty(n, np.int32)
    bx1 = np.empty(n, np.int32)
    by1 = np.empty(n, np.int32)
    area2 = np.zeros(n, np.int32)
    first = np.empty(n, np.int32)
    active = np.empty(n, np.int32)
    pos = np.empty(n, np.int32)
    n_active = 0
    best_all = np.full(256, np.nan)
    best_v1 = np.full(256, np.nan)
    box_v1 = np.full((256, 4), -1, np.int64)
    for v in range(255, 0, -1):
        for i in range(start[v], start[v + 1]):
            p = order[i]
            parent[p] = p
            size[p] = 1
            y = p // width
            x = p - y * width
            bx0[p] = x
            bx1[p] = x
            by0[p] = y
            by1[p] = y
            area2[p] = credit[p]
            first[p] = p
            active[n_active] = p
            pos[p] = n_active
            n_active += 1
            rp = p  # the root of p's set, kept current through the merges below
            for dy in range(-1, 2):
                yy = y + dy
                if yy < 0 or yy >= height:
                    continue
                for dx in range(-1, 2):
                    xx = x + dx
                    if (dy == 0 and dx == 0) or xx < 0 or xx >= width:
                        continue
                    rq = yy * width + xx
                    if parent[rq] < 0:
                        continue
                    while parent[rq] != rq:
                        parent[rq] = parent[parent[rq]]
                        rq = parent[rq]
                    if rp == rq:
                        continue
                    if size[rp] < size[rq]:
                        rp, rq = rq, rp
                    parent[rq] = rp
                    size[rp] += size[rq]
                    bx0[rp] = min(bx0[rp], bx0[rq])
                    by0[rp] = min(by0[rp], by0[rq])
                    bx1[rp] = max(bx1[rp], bx1[rq])
                    by1[rp] = max(by1[rp], by1[rq])
                    area2[rp] += area2[rq]
                    first[rp] = min(first[rp], first[rq])
                    k = pos[rq]
                    n_active -= 1
                    last = active[n_active]
                    active[k] = last
                    pos[last] = k
        level = v - 1
        if not need[level]:
            continue
        if n_active == 0:
            ex0, ey0, ex1, ey1 = 0, 0, 0, 0
            best = 0.0
            for g in range(n_gt):
                iw = min(ex1, gt[g, 2]) - max(ex0, gt[g, 0]) + 1.0
                ih = min(ey1, gt[g, 3]) - max(ey0, gt[g, 1]) + 1.0
                inter = max(0.0, iw) * max(0.0, ih)
                union = 1.0 + gt_area[g] - inter
                iou = inter / union if union > 0 else 0.0
                best = max(best, iou)
            best_all[level] = best
            best_v1[level] = best
            box_v1[level, 0] = 0
            box_v1[level, 1] = 0
            box_v1[level, 2] = 0
            box_v1[level, 3] = 0
            continue
        best_any = 0.0
        chosen = -1
        for j in range(n_active):
            r = active[j]
            ex0 = bx0[r]
            ey0 = by0[r]
            ex1 = min(bx1[r] + 1, width - 1)
            ey1 = min(by1[r] + 1, height - 1)
            area_e = (ex1 - ex0 + 1.0) * (ey1 - ey0 + 1.0)
            best = 0.0
            for g in range(n_gt):
                iw = min(ex1, gt[g, 2]) - max(ex0, gt[g, 0]) + 1.0
                ih = min(ey1, gt[g, 3]) - max(ey0, gt[g, 1]) + 1.0
                inter = max(0.0, iw) * max(0.0, ih)
                union = area_e + gt_area[g] - inter
                iou = inter / union if union > 0 else 0.0
                best = max(best, iou)
            best_any = max(best_any, best)
            if with_area:
                if chosen < 0 or area2[r] > area2[chosen] or (area2[r] == area2[chosen] and first[r] > first[chosen]):
                    chosen = r
                    best_v1[level] = best
                    box_v1[level, 0] = ex0
                    box_v1[level, 1] = ey0
                    box_v1[level, 2] = ex1
                    box_v1[level, 3] = ey1
        best_all[level] = best_any
    return best_all, best_v1, box_v1


def _k_sweep_holes(u8: np.ndarray, start: np.ndarray, order: np.ndarray, gt: np.ndarray, gt_area: np.ndarray,
                   need: np.ndarray) -> np.ndarray:
    """Union-find over pixels by increasing value, 4-connected: the holes of {u8 > L} for L = 0..254.

    A hole is a component of {u8 <= L} that does not reach the image edge; its contour's bounding rect is its
    box grown by one pixel per side, so its wsolevaluation box is [x0 - 1, y0 - 1, x1 + 2, y1 + 2] (clipped).
    Returns the best IoU over all holes' boxes per needed level (0 where there is no hole).
    """
    height, width = u8.shape
    n = height * width
    n_gt = gt.shape[0]
    parent = np.full(n, -1, np.int32)
    size = np.zeros(n, np.int32)
    bx0 = np.empty(n, np.int32)
    by0 = np.empty(n, np.int32)
    bx1 = np.empty(n, np.int32)
    by1 = np.empty(n, np.int32)
    edge = np.zeros(n, np.bool_)
    active = np.empty(n, np.int32)
    pos = np.empty(n, np.int32)
    n_active = 0
    best_hole = np.zeros(256)
    for v in range(255):
        for i in range(start[v], start[v + 1]):
            p = order[i]
            parent[p] = p
            size[p] = 1
            y = p // width
            x = p - y * width
            bx0[p] = x
            bx1[p] = x
            by0[p] = y
            by1[p] = y
            edge[p] = y == 0 or y == height - 1 or x == 0 or x == width - 1
            active[n_active] = p
            pos[p] = n_active
            n_active += 1
            rp = p
            for k in range(4):
                if k == 0:
                    if y == 0:
                        continue
                    rq = p - width
                elif k == 1:
                    if y == height - 1:
                        continue
                    rq = p + width
                elif k == 2:
                    if x == 0:
                        continue
                    rq = p - 1
                else:
                    if x == width - 1:
                        continue
                    rq = p + 1
                if parent[rq] < 0:
                    continue
                while parent[rq] != rq:
                    parent[rq] = parent[parent[rq]]
                    rq = parent[rq]
                if rp == rq:
                    continue
                if size[rp] < size[rq]:
                    rp, rq = rq, rp
                parent[rq] = rp
                size[rp] += size[rq]
                bx0[rp] = min(bx0[rp], bx0[rq])
                by0[rp] = min(by0[rp], by0[rq])
                bx1[rp] = max(bx1[rp], bx1[rq])
                by1[rp] = max(by1[rp], by1[rq])
                edge[rp] = edge[rp] or edge[rq]
                k2 = pos[rq]
                n_active -= 1
                last = active[n_active]
                active[k2] = last
                pos[last] = k2
        if not need[v]:
            continue
        best_any = 0.0
        for j in range(n_active):
            r = active[j]
            if edge[r]:
                continue
            ex0 = bx0[r] - 1
            ey0 = by0[r] - 1
            ex1 = min(bx1[r] + 2, width - 1)
            ey1 = min(by1[r] + 2, height - 1)
            area_e = (ex1 - ex0 + 1.0) * (ey1 - ey0 + 1.0)
            for g in range(n_gt):
                iw = min(ex1, gt[g, 2]) - max(ex0, gt[g, 0]) + 1.0
                ih = min(ey1, gt[g, 3]) - max(ey0, gt[g, 1]) + 1.0
                inter = max(0.0, iw) * max(0.0, ih)
                union = area_e + gt_area[g] - inter
                iou = inter / union if union > 0 else 0.0
                best_any = max(best_any, iou)
        best_hole[v] = best_any
    return best_hole


_FAST_KERNELS: tuple[Callable[..., Any], ...] | None = None


def _fast_kernels() -> tuple[Callable[..., Any], ...]:
    """The numba-compiled kernels (compiled on first use; the machine code is cached on disk)."""
    global _FAST_KERNELS
    if _FAST_KERNELS is None:
        try:
            import numba  # noqa: PLC0415  (optional dependency, only for method="fast")
        except ImportError as err:
            raise ImportError("BoxAccEvaluator(method='fast') needs numba (pip install numba)") from err
        jit = numba.njit(cache=True, nogil=True)
        _FAST_KERNELS = (jit(_k_fill_holes), jit(_k_pixel_order), jit(_k_sweep_down), jit(_k_sweep_holes))
    return _FAST_KERNELS


def _numba_available() -> bool:
    try:
        import numba  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def level_ious(
    scoremap: np.ndarray, gt_boxes: np.ndarray, levels: np.ndarray | None = None, method: str = "exact"
) -> tuple[np.ndarray, np.ndarray]:
    """Best IoU with the GT boxes of the V1 box and of the V2 boxes at integer binarisation levels.

    Args:
        scoremap: ``[H, W]`` float map in ``[0, 1]``.
        gt_boxes: ``[G, 4]`` GT boxes ``xyxy`` inclusive on the map's grid, ``G >= 1``.
        levels: int levels ``L`` (mask = ``u8 > L``); default every level 0..254.
        method: ``"exact"`` or ``"fast"``.

    Returns:
        ``(v1, v2)``, float64 ``[len(levels)]`` each: the IoU of the largest-contour box, and the best IoU
        over all contour boxes, each maximised over the GT boxes.
    """
    u8 = _quantise(_check_scoremap(scoremap))
    gt = np.asarray(gt_boxes, dtype=np.int64).reshape(-1, 4)
    if len(gt) == 0:
        raise ValueError("level_ious needs at least one GT box")
    levels = np.arange(255) if levels is None else np.asarray(levels, dtype=np.int64)
    if method == "exact":
        return _level_ious_exact(u8, gt, levels)
    if method == "fast":
        return _level_ious_fast(u8, gt, levels)
    raise ValueError(f"method must be 'exact' or 'fast'; got {method!r}")


def _level_ious_fast(u8: np.ndarray, gt: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v1, v2, _ = _fast_level_results(u8, gt, levels)
    return v1, v2


def _fast_level_results(
    u8: np.ndarray, gt: np.ndarray, levels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """V1 IoU, V2 IoU and V1 box (int64 ``[len(levels), 4]``) at the given levels, by the level-set sweep."""
    fill_holes, pixel_order, sweep_down, sweep_holes = _fast_kernels()
    need = np.zeros(256, dtype=np.bool_)
    need[levels] = True
    u8 = np.ascontiguousarray(u8)
    gt = np.ascontiguousarray(gt, dtype=np.int64)
    gt_area = ((gt[:, 2] - gt[:, 0] + 1.0) * (gt[:, 3] - gt[:, 1] + 1.0)).astype(np.float64)
    start, order = pixel_order(u8)
    psi = fill_holes(u8)
    if np.array_equal(psi, u8):
        # No level has a hole (a hole pixel has u8 <= L < psi), so the outer contours are all the contours
        # and {psi > L} == {u8 > L}: one sweep gives V1 and V2.
        v2, v1, v1_box = sweep_down(u8, start, order, gt, gt_area, need, True)
    else:
        # V2: every outer contour (components of {u8 > L}) and every hole contour.
        outer_best, _, _ = sweep_down(u8, start, order, gt, gt_area, need, False)
        hole_best = sweep_holes(u8, start, order, gt, gt_area, need)
        # V1: the largest contour is a component of the hole-filled level set {psi > L}.
        psi_start, psi_order = pixel_order(psi)
        _, v1, v1_box = sweep_down(psi, psi_start, psi_order, gt, gt_area, need, True)
        v2 = np.maximum(outer_best, hole_best)
    return v1[levels], v2[levels], v1_box[levels]


# ------------------------------------------------------------------------------------------------ evaluator
class BoxAccEvaluator:
    """Accumulates BoxAcc(tau) for V1 (largest contour, IoU 50) and V2 (all contours, each IoU threshold).

    State is one counter per (curve, tau); no map is stored.

    Args:
        cam_curve_interval: step of the threshold list ``np.arange(0, 1, step)``.
        iou_thresholds: IoU thresholds in percent for V2 (wsolevaluation: 30, 50, 70).
        method: ``"auto"``, ``"exact"`` or ``"fast"`` (see the module docstring; all give identical counts).
    """

    def __init__(
        self,
        cam_curve_interval: float = 0.01,
        iou_thresholds: Sequence[int] = (30, 50, 70),
        method: str = "auto",
    ) -> None:
        if method not in ("auto", "exact", "fast"):
            raise ValueError(f"method must be 'auto', 'exact' or 'fast'; got {method!r}")
        if not iou_thresholds or any(not 0 < t <= 100 for t in iou_thresholds):
            raise ValueError(f"iou_thresholds must be percentages in (0, 100]; got {list(iou_thresholds)!r}")
        if method == "auto":
            method = "fast" if _numba_available() else "exact"
        self.method = method
        self.cam_curve_interval = float(cam_curve_interval)
        self.thresholds = scoremap_thresholds(cam_curve_interval)
        self.iou_thresholds = tuple(iou_thresholds)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.n_images = 0
        self._correct_v1 = np.zeros(len(self.thresholds), dtype=np.int64)
        self._correct_v2 = {t: np.zeros(len(self.thresholds), dtype=np.int64) for t in self.iou_thresholds}

    def update(self, scoremaps: np.ndarray | Sequence[np.ndarray], gt_boxes: Sequence[np.ndarray]) -> None:
        """Score a batch of maps.

        Args:
            scoremaps: ``[B, H, W]`` float maps in ``[0, 1]`` (e.g. from ``wsoleval_scoremap``), or a
                sequence of ``[H, W]`` maps.
            gt_boxes: ``B`` int arrays ``[G_i, 4]`` of GT boxes ``xyxy`` inclusive on the maps' grid
                (e.g. from ``resize_boxes_wsoleval``), each with ``G_i >= 1``.

        Raises:
            ValueError: on a batch-size mismatch, an image without GT box, or an invalid map (named by
                its index in the batch).
        """
        if len(scoremaps) != len(gt_boxes):
            raise ValueError(f"{len(scoremaps)} score maps but {len(gt_boxes)} GT box arrays")
        for i, (scoremap, boxes) in enumerate(zip(scoremaps, gt_boxes)):
            u8 = _quantise(_check_scoremap(scoremap, i))
            gt = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
            if len(gt) == 0:
                raise ValueError(f"score map {i} has no GT box; wsolevaluation needs one per image")
            levels_of_tau = _levels(self.thresholds, int(u8.max()))
            levels, inverse = np.unique(levels_of_tau, return_inverse=True)
            if self.method == "fast":
                v1, v2 = _level_ious_fast(u8, gt, levels)
            else:
                v1, v2 = _level_ious_exact(u8, gt, levels)
            v1, v2 = v1[inverse], v2[inverse]
            self._correct_v1 += v1 >= 50 / 100
            for t in self.iou_thresholds:
                # t / 100 exactly as wsolevaluation writes it (0.7 is not 70 / 100 after rounding otherwise).
                self._correct_v2[t] += v2 >= t / 100
            self.n_images += 1

    def curve(self) -> dict[str, np.ndarray]:
        """BoxAcc (percent) at every threshold: ``tau``, ``boxacc_v1_iou50``, ``boxacc_v2_iou{t}``."""
        if self.n_images == 0:
            raise ValueError("BoxAccEvaluator: no image was scored")
        out = {"tau": self.thresholds.copy(), "boxacc_v1_iou50": self._correct_v1 * 100.0 / self.n_images}
        for t in self.iou_thresholds:
            out[f"boxacc_v2_iou{t}"] = self._correct_v2[t] * 100.0 / self.n_images
        return out

    def compute(self) -> dict[str, float | int]:
        """MaxBoxAcc numbers (percent) and the thresholds that reach them (the first best tau).

        Returns:
            ``maxboxacc`` (V1, IoU 50), ``maxboxacc_tau``, ``maxboxacc_v2`` (mean over the IoU thresholds),
            ``maxboxacc_v2_iou{t}`` and ``maxboxacc_v2_iou{t}_tau`` for each IoU threshold, ``n_images``.
            These take the best tau on the scored split itself, as wsolevaluation reports them; see
            ``wsol.metrics.threshold`` for a tau fixed in advance or chosen on a held-out split.
        """
        curve = self.curve()
        best = int(np.argmax(curve["boxacc_v1_iou50"]))
        out: dict[str, float | int] = {
            "maxboxacc": float(curve["boxacc_v1_iou50"][best]),
            "maxboxacc_tau": float(self.thresholds[best]),
        }
        per_iou = []
        for t in self.iou_thresholds:
            acc = curve[f"boxacc_v2_iou{t}"]
            best = int(np.argmax(acc))
            per_iou.append(float(acc[best]))
            out[f"maxboxacc_v2_iou{t}"] = float(acc[best])
            out[f"maxboxacc_v2_iou{t}_tau"] = float(self.thresholds[best])
        out["maxboxacc_v2"] = float(np.mean(per_iou))
        out["n_images"] = self.n_images
        return out
