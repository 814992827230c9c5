"""The CAM authors' released box generator ``dt_box`` and the ten-crop "heuristics" pipeline (``cam16_heuristics``).

``dt_box heatmap.jpg 20 100 110`` (``bboxgenerator/dt_box.cpp`` + ``dt.c`` in zhoubolei/CAM) ported faithfully:
    1. the heatmap is read as 8-bit grayscale (``cvLoadImage(path, 0)``; use ``cv2.imread(path,
       cv2.IMREAD_GRAYSCALE)``);
    2. for each threshold t (default 30, 90, 150; the given three only if ``0 < t0 < t1 < t2 < 255``):
       binarise ``gray > t``; exact Euclidean distance transform to the nearest 0 pixel (Felzenszwalb's
       algorithm in ``dt.c``); rescale as ``(int)(d * 255 / max(d) + 0.5)`` (no min subtraction; an image
       with no 0 pixel, or none with a 1, is left as the binary mask); keep ``> 10``;
    3. ``findContours(RETR_CCOMP, CHAIN_APPROX_SIMPLE)`` on each of the three masks, every contour's
       bounding rect ``(x, y, w, h)`` clamped as the released code does (``x, y`` to ``[0, W-5]``, ``w`` to
       ``[0, W - x - 5]`` with the UNclamped x, and the C ``LIMIT`` macro's behaviour when the bound is negative);
    4. ``std::sort`` by area ``w * h`` descending (libstdc++'s introsort, reproduced, so equal areas end up
       in the same order as the compiled program), then the merge loop: for each i, each later box j with
       overlap ``> (int)(max(area_i, area_j) * 0.5)`` is erased -- and, as released, the box that slides into
       slot j is skipped.
The output is the list of ``(x, y, w, h)``, best first, printed as ``"x y w h "`` groups. The devkit box of a
rect is ``[x, y, x + w, y + h]`` (``ILSVRC_evaluate_bbox.m``), see ``dt_rects_to_xyxy``.

Ten-crop pipeline (``prepare_image.m``, ``mergeTenCrop.m``, ``ILSVRC_evaluate_bbox.m``): the image is resized to
256x256; crops of 224 at (x0, y0) = (0, 0), (0, 32), (32, 0), (32, 32), (16, 16), then the same five flipped
left-right; per class the crops' CAMs (at crop resolution) are pasted back, flipped ones un-flipped, and
``|CAM|`` summed; five guesses ``[c1 b1, c1 b2, c2 b1, c2 b2, c3 b1]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "DEFAULT_THRESHOLDS",
    "RELEASED_THRESHOLDS",
    "dt_box",
    "dt_rects_to_xyxy",
    "format_dt_rects",
    "heuristic_guesses",
    "paste_ten_crop_cams",
    "ten_crop_boxes",
]

#: dt_box's built-in thresholds, used unless the given ones satisfy 0 < t0 < t1 < t2 < 255.
DEFAULT_THRESHOLDS = (30, 90, 150)
#: The thresholds of the released call ``dt_box heatmap.jpg 20 100 110`` (the pipeline behind the paper's numbers).
RELEASED_THRESHOLDS = (20, 100, 110)

Rect = tuple[int, int, int, int]


def _dt_binary_mask(gray: np.ndarray, threshold: int) -> np.ndarray:
    """``cvThreshold(gray > t)`` -> ``dt_binary`` -> ``cvThreshold(> 10)``, as a bool mask."""
    binary = gray > threshold
    if binary.all() or not binary.any():
        # dt.c's double_to_image returns early when min == max: the binary image is left as it is.
        return binary
    # Exact Euclidean distance to the nearest 0 pixel. dt.c computes the exact squared distance
    # (the +INF of foreground pixels never wins once a 0 pixel exists) and takes sqrt; scipy does the same.
    dist = ndimage.distance_transform_edt(binary)
    scale = 255.0 / (dist.max() - 0.0)  # min is 0: there is a background pixel
    # ROUND(t) = (int)(t + 0.5) on t >= 0; BOUND_8U is a no-op since d <= max.
    scaled = np.floor(dist * scale + 0.5)
    return scaled > 10


def _limit(v: int, lo: int, hi: int) -> int:
    # The C macro LIMIT(v, L, R): v < L ? L : (v > R ? R : v)  (returns R < L when R is negative and v >= L).
    return lo if v < lo else (hi if v > hi else v)


def _area(r: Rect) -> int:
    return r[2] * r[3]


def _std_sort(rects: list[Rect], less: Callable[[Rect, Rect], bool]) -> None:
    """In-place ``std::sort`` exactly as libstdc++ (GCC >= 4.9) runs it: introsort + final insertion sort."""
    n = len(rects)
    if n < 2:
        return
    v = rects

    def swap(i: int, j: int) -> None:
        v[i], v[j] = v[j], v[i]

    def move_median_to_first(result: int, a: int, b: int, c: int) -> None:
        if less(v[a], v[b]):
            if less(v[b], v[c]):
                swap(result, b)
            elif less(v[a], v[c]):
                swap(result, c)
            else:
                swap(result, a)
        elif less(v[a], v[c]):
            swap(result, a)
        elif less(v[b], v[c]):
            swap(result, c)
        else:
            swap(result, b)

    def unguarded_partition(first: int, last: int, pivot: int) -> int:
        while True:
            while less(v[first], v[pivot]):
                first += 1
            last -= 1
            while less(v[pivot], v[last]):
                last -= 1
            if not first < last:
                return first
            swap(first, last)
            first += 1

    def push_heap(first: int, hole: int, top: int, value: Rect) -> None:
        parent = (hole - 1) // 2
        while hole > top and less(v[first + parent], value):
            v[first + hole] = v[first + parent]
            hole = parent
            parent = (hole - 1) // 2
        v[first + hole] = value

    def adjust_heap(first: int, hole: int, length: int, value: Rect) -> None:
        top = hole
        child = hole
        while child < (length - 1) // 2:
            child = 2 * (child + 1)
            if less(v[first + child], v[first + child - 1]):
                child -= 1
            v[first + hole] = v[first + child]
            hole = child
        if length % 2 == 0 and child == (length - 2) // 2:
            child = 2 * (child + 1)
            v[first + hole] = v[first + child - 1]
            hole = child - 1
        push_heap(first, hole, top, value)

    def heap_sort(first: int, last: int) -> None:  # std::partial_sort(first, last, last)
        length = last - first
        if length >= 2:
            parent = (length - 2) // 2
            while True:
                adjust_heap(first, parent, length, v[first + parent])
                if parent == 0:
                    break
                parent -= 1
        while last - first > 1:
            last -= 1
            value = v[last]
            v[last] = v[first]
            adjust_heap(first, 0, last - first, value)

    def introsort_loop(first: int, last: int, depth: int) -> None:
        while last - first > 16:
            if depth == 0:
                heap_sort(first, last)
                return
            depth -= 1
            mid = first + (last - first) // 2
            move_median_to_first(first, first + 1, mid, last - 1)
            cut = unguarded_partition(first + 1, last, first)
            introsort_loop(cut, last, depth)
            last = cut

    def unguarded_linear_insert(i: int) -> None:
        value = v[i]
        prev = i - 1
        while less(value, v[prev]):
            v[i] = v[prev]
            i = prev
            prev -= 1
        v[i] = value

    def insertion_sort(first: int, last: int) -> None:
        for i in range(first + 1, last):
            if less(v[i], v[first]):
                value = v[i]
                v[first + 1 : i + 1] = v[first:i]
                v[first] = value
            else:
                unguarded_linear_insert(i)

    introsort_loop(0, n, 2 * (n.bit_length() - 1))
    if n > 16:
        insertion_sort(0, 16)
        for i in range(16, n):
            unguarded_linear_insert(i)
    else:
        insertion_sort(0, n)


def _big_overlap(a: Rect, b: Rect) -> bool:
    t = int(float(max(_area(a), _area(b))) * 0.5)
    x_overlap = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    y_overlap = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return x_overlap * y_overlap > t


def dt_box(gray: np.ndarray, thresholds: Sequence[int] = RELEASED_THRESHOLDS) -> list[Rect]:
    """The authors' ``dt_box`` box generator on an 8-bit heatmap.

    Args:
        gray: uint8 ``[H, W]`` heatmap as ``cvLoadImage(path, 0)`` reads it.
        thresholds: three integer thresholds on the 0-255 map; the released defaults ``(30, 90, 150)`` are
            used unless ``0 < t0 < t1 < t2 < 255`` (as in ``main()`` of dt_box.cpp).

    Returns:
        ``(x, y, w, h)`` rects, best first (the first is the standard prediction).

    Raises:
        ValueError: if ``gray`` is not a 2-D uint8 image.
    """
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"gray must be a 2-D uint8 image; got shape {gray.shape}, dtype {gray.dtype}")
    t = [int(x) for x in thresholds]
    if not (len(t) == 3 and 0 < t[0] < t[1] < t[2] < 255):
        t = list(DEFAULT_THRESHOLDS)
    height, width = gray.shape
    rects: list[Rect] = []
    for threshold in t:
        mask = _dt_binary_mask(gray, threshold).astype(np.uint8) * 255
        contours = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)[0]
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            rects.append(
                (
                    _limit(x, 0, width - 5),
                    _limit(y, 0, height - 5),
                    _limit(w, 0, width - x - 5),
                    _limit(h, 0, height - y - 5),
                )
            )
    _std_sort(rects, lambda a, b: _area(a) > _area(b))
    i = 0
    while i < len(rects):
        j = i + 1
        while j < len(rects):
            if _big_overlap(rects[i], rects[j]):
                del rects[j]  # the released loop then does ++j, skipping the rect that slid into slot j
            j += 1
        i += 1
    return rects


def format_dt_rects(rects: Sequence[Rect]) -> str:
    """The released output format: ``"x y w h "`` per rect, on one line."""
    return "".join(f"{x} {y} {w} {h} " for x, y, w, h in rects)


def dt_rects_to_xyxy(rects: Sequence[Rect]) -> np.ndarray:
    """``(x, y, w, h)`` rects as the devkit boxes ``ILSVRC_evaluate_bbox.m`` builds: ``[x, y, x + w, y + h]``,
    each pair ordered min/max (negative widths from the clamping quirk are swapped). int64 ``[N, 4]``."""
    r = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    x0, y0, x1, y1 = r[:, 0], r[:, 1], r[:, 0] + r[:, 2], r[:, 1] + r[:, 3]
    return np.stack([np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1), np.maximum(y0, y1)], axis=1)


# ------------------------------------------------------------------------------------------- ten crops
def ten_crop_boxes(size: int = 256, crop: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """The ten crops of ``prepare_image.m`` on a ``size x size`` image.

    Returns:
        ``(boxes, flipped)``: int64 ``[10, 4]`` crop boxes ``xyxy`` inclusive, in the order (x0, y0) =
        (0, 0), (0, d), (d, 0), (d, d), (d//2, d//2) with ``d = size - crop``, then the same five again;
        bool ``[10]``, True for the last five (flipped left-right).
    """
    d = size - crop
    if d < 0:
        raise ValueError(f"crop {crop} is larger than the image {size}")
    origins = [(0, 0), (0, d), (d, 0), (d, d), (d // 2, d // 2)]
    boxes = np.array([(x, y, x + crop - 1, y + crop - 1) for x, y in origins * 2], dtype=np.int64)
    flipped = np.array([False] * 5 + [True] * 5)
    return boxes, flipped


def paste_ten_crop_cams(cams: torch.Tensor, size: int = 256) -> torch.Tensor:
    """Per-crop CAMs pasted back onto the ``size x size`` canvas and ``|CAM|`` summed (``mergeTenCrop.m``).

    Args:
        cams: ``[B, 10, C, crop, crop]`` CAMs of the ten crops (``ten_crop_boxes`` order), already at crop
            resolution (the released code upsamples each crop's CAM before merging).
        size: canvas side (256).

    Returns:
        ``[B, C, size, size]`` sum over crops of ``|CAM|``, flipped crops flipped back first. (mergeTenCrop.m
        also sums three identical colour channels, a constant factor 3 that the later divide-by-max removes;
        it is not applied here.)
    """
    if cams.ndim != 5 or cams.shape[1] != 10 or cams.shape[-1] != cams.shape[-2]:
        raise ValueError(f"cams must have shape [B, 10, C, crop, crop]; got {tuple(cams.shape)}")
    crop = cams.shape[-1]
    boxes, flipped = ten_crop_boxes(size, crop)
    out = cams.new_zeros((cams.shape[0], cams.shape[2], size, size))
    for k in range(10):
        cam = cams[:, k].abs()
        if flipped[k]:
            cam = cam.flip(-1)
        x0, y0 = int(boxes[k, 0]), int(boxes[k, 1])
        out[:, :, y0 : y0 + crop, x0 : x0 + crop] += cam
    return out


def heuristic_guesses(classes_top3: Sequence[int], boxes_per_class: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The five guesses behind the 37.1% ILSVRC test number: ``[c1 b1, c1 b2, c2 b1, c2 b2, c3 b1]``.

    Args:
        classes_top3: the three best classes, best first.
        boxes_per_class: for each of them, ``[K_i, 4]`` boxes ``xyxy`` best first (``dt_rects_to_xyxy``).

    Returns:
        ``(labels, boxes)``: int64 ``[5]`` and ``[5, 4]``.

    Raises:
        ValueError: if a class has no box. A class with a single box reuses it as its second box: the
            released script indexes ``boxData_formulate(2, :)`` and would stop with an index error there.
    """
    if len(classes_top3) < 3 or len(boxes_per_class) < 3:
        raise ValueError("heuristic_guesses needs three classes and their boxes")
    labels, boxes = [], []
    for rank, n_boxes in ((0, 2), (1, 2), (2, 1)):
        b = np.asarray(boxes_per_class[rank]).reshape(-1, 4)
        if len(b) == 0:
            raise ValueError(f"class {classes_top3[rank]} (rank {rank + 1}) has no box")
        for j in range(n_boxes):
            labels.append(int(classes_top3[rank]))
            boxes.append(b[min(j, len(b) - 1)])
    return np.asarray(labels, dtype=np.int64), np.asarray(boxes, dtype=np.int64)
