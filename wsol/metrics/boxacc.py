"""MaxBoxAcc and MaxBoxAccV2 exactly as wsolevaluation (Choe et al., CVPR 2020) computes them.

The protocol, stated once here (``evaluation.py`` of clovaai/wsolevaluation); score maps and thresholds
follow ``wsol.metrics.scoremap``:
    * GT boxes: ``xyxy`` inclusive in original-image pixels, scaled to 224x224 with
      ``wsol.boxes.resize_boxes(boxes, (W, H), (224, 224), truncate=True)`` (their ``resize_bbox``).
    * The map is quantised as ``u8 = (map * 255).astype(uint8)`` and, at threshold ``tau``, binarised
      STRICTLY above the integer level ``L = int(tau * u8.max())`` (``cv2.threshold(..., THRESH_BINARY)``).
    * Boxes: contours of the binary mask (``cv2.findContours``, ``RETR_TREE`` so hole contours count too,
      ``CHAIN_APPROX_SIMPLE``); each contour's ``cv2.boundingRect`` ``(x, y, w, h)`` becomes
      ``[x, y, min(x + w, W - 1), min(y + h, H - 1)]`` (note ``x + w``: one pixel wider than the contour).
      V1 keeps only ``max(contours, key=cv2.contourArea)`` (polygon area; the first in OpenCV's list on a
      tie); V2 keeps every contour. An empty mask gives the single box ``[0, 0, 0, 0]``.
    * An image is correct at ``tau`` iff the best IoU (``wsol.boxes.box_iou``, "+1" convention) between its
      boxes and ANY of its GT boxes is ``>= iou / 100``. BoxAcc(tau) is the percentage of correct images.
    * ``maxboxacc`` = max over tau of V1 BoxAcc at IoU 50; ``maxboxacc_v2`` = MEAN over the IoU thresholds
      (30, 50, 70) of the max over tau of V2 BoxAcc, each IoU threshold taking ITS OWN best tau.

The result at ``tau`` depends only on the integer level ``L``:
    * ``"exact"``: OpenCV thresholds and traces contours at every distinct level, as wsolevaluation does, and
      every box of a map is scored with ONE ``box_iou`` call. It is the oracle the tests hold the fast path to.
    * ``"fast"``: one sweep over the nested level sets per map, all in numba (``wsol.metrics.kernels``): one
      kernel call scores a whole ``[B, H, W]`` batch (a sequence of maps: one call per map) and adds its
      correct-image counts, with its scratch memory reused from call to call (``_workspace``). Identity with
      the exact path rests on three facts, each checked against OpenCV in ``tests/test_metrics.py``:
      (1) the outer contours are the 8-connected components of ``{u8 > L}``, with bounding rect = pixel
      box, and the hole contours are the 4-connected components of ``{u8 <= L}`` that do not touch the
      edge, with bounding rect = pixel box grown by one pixel on each side; (2) ``cv2.contourArea`` of an
      outer contour equals ``#(2x2 windows with 4 pixels in F) + #(windows with 3 in F) / 2`` where F is the
      component with its holes filled, and F is an 8-connected component of ``{psi > L}`` for ``psi`` the
      grayscale hole filling of ``u8`` (4-connected paths to the edge); hole and nested contours are
      strictly smaller, so V1 is decided among the components of ``{psi > L}`` -- which are also the
      top-level outer contours, with the same boxes; (3) OpenCV lists top-level contours in DESCENDING
      raster order of their first pixel, so a V1 tie goes to the tied component whose first pixel comes
      last. Outer contours nested inside a hole are found by counting: components of ``{u8 > L}`` = Euler
      number + holes; only when some needed level has more than ``{psi > L}`` does a second sweep over
      ``{u8 > L}`` run. The IoUs are ``box_iou``'s operations on the same integers, so bit for bit the same.
    * ``"auto"``: ``"fast"`` when numba is importable, else ``"exact"``.

Public API: ``quantise``, ``threshold_levels``, ``scoremap_boxes_at_thresholds`` (the exact per-threshold
boxes, for inspection), ``level_boxes`` and ``level_ious`` (per level), ``BoxAccEvaluator``
(``update()`` / ``compute()`` / ``curve()``). Boxes move to the 224 grid with
``wsol.boxes.resize_boxes(..., truncate=True)``; score maps come from ``wsol.metrics.scoremap``. This module
needs no torch; numba is imported only by the fast path.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from wsol.boxes import box_iou, resize_boxes
from wsol.choices import BOX_METHODS
from wsol.metrics.scoremap import check_scoremap, scoremap_thresholds

__all__ = [
    "BOX_METHODS",
    "BoxAccEvaluator",
    "LevelBoxes",
    "level_boxes",
    "level_ious",
    "quantise",
    "scoremap_boxes_at_thresholds",
    "threshold_levels",
    "v2_mean",
]

#: Binarisation levels: L in 0..255 (the mask ``u8 > 255`` is always empty).
N_LEVELS = 256


def quantise(scoremap: np.ndarray) -> np.ndarray:
    """wsolevaluation's 8-bit map: ``(map * 255).astype(uint8)`` of a float64 map in [0, 1] (truncation)."""
    return (np.asarray(scoremap, dtype=np.float64) * 255).astype(np.uint8)


def threshold_levels(thresholds: np.ndarray, u8_max: int) -> np.ndarray:
    """``int(tau * u8.max())`` per threshold: the float64 product truncated toward zero, as their ``int()``."""
    return (np.asarray(thresholds, dtype=np.float64) * float(u8_max)).astype(np.int64)


# ------------------------------------------------------------------------------------- boxes of the levels
@dataclass(frozen=True)
class LevelBoxes:
    """The boxes of an 8-bit map at a set of levels, in wsolevaluation's box convention.

    Attributes:
        levels: int64 ``[K]`` the levels (``mask = u8 > L``).
        v1: int ``[K, 4]`` the largest contour's box at each level (``[0, 0, 0, 0]`` for an empty mask).
        v2: int ``[R, 4]`` every contour box of every level, each valid over a range of levels ...
        v2_lo: int ``[R]`` ... from ``v2_lo`` ...
        v2_hi: int ``[R]`` ... to ``v2_hi`` inclusive (a box may hold over levels that are not asked for;
            every level asked for has at least one box).
    """

    levels: np.ndarray
    v1: np.ndarray
    v2: np.ndarray
    v2_lo: np.ndarray
    v2_hi: np.ndarray


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
    u8 = quantise(check_scoremap(scoremap))
    levels = threshold_levels(np.asarray(thresholds), int(u8.max()))
    cache: dict[int, np.ndarray] = {}
    out = []
    for level in levels.tolist():
        if level not in cache:
            cache[level] = _contour_boxes(u8, level, multi_contour)
        out.append(cache[level])
    return out


def _level_boxes_exact(u8: np.ndarray, levels: np.ndarray) -> LevelBoxes:
    v1 = np.stack([_contour_boxes(u8, level, multi_contour=False)[0] for level in levels.tolist()])
    v2 = [_contour_boxes(u8, level, multi_contour=True) for level in levels.tolist()]
    lo = np.repeat(levels, [len(b) for b in v2])
    return LevelBoxes(levels, v1, np.concatenate(v2), lo, lo)


def _level_boxes_fast(u8: np.ndarray, levels: np.ndarray) -> LevelBoxes:
    """The level-set sweep (``wsol.metrics.kernels``; its docstring states the contour-box conventions)."""
    kernels = _fast_kernels()
    need = np.zeros(N_LEVELS, dtype=np.bool_)
    need[levels] = True
    u8 = np.ascontiguousarray(u8)
    boxes, lo, hi, largest, n_outer = kernels.level_records(u8, need, _workspace(*u8.shape))
    empty = levels[n_outer[levels] == 0]
    if len(empty):  # {u8 > L} is empty (L >= u8.max()): the single box [0, 0, 0, 0]
        boxes = np.concatenate([boxes, np.zeros((len(empty), 4), np.int32)])
        lo = np.concatenate([lo, empty.astype(np.int32)])
        hi = np.concatenate([hi, empty.astype(np.int32)])
    return LevelBoxes(levels, largest[levels], boxes, lo, hi)


_scratch = threading.local()
_MAX_KEPT_WORKSPACE = 64 * 2**20


def _workspace(height: int, width: int) -> np.ndarray:
    """The kernels' scratch buffer for maps of this shape (``kernels.workspace_size``: ~4 MB at 224x224), kept
    per thread (the kernels release the GIL) for the next call, so that no map pays for allocating it and
    faulting its pages in. A few shapes are kept, and none over 64 MB (a map over ~800k pixels gets its own)."""
    size = _fast_kernels().workspace_size(height, width)
    if size > _MAX_KEPT_WORKSPACE:
        return np.empty(size, np.uint8)
    cache = getattr(_scratch, "buffers", None)
    if cache is None:
        cache = _scratch.buffers = {}
    buffer = cache.get((height, width))
    if buffer is None:
        if len(cache) >= 4:
            cache.clear()
        buffer = cache[(height, width)] = np.empty(size, np.uint8)
    return buffer


def level_boxes(scoremap: np.ndarray, levels: np.ndarray | None = None, method: str = "exact") -> LevelBoxes:
    """V1 and V2 boxes of a score map at integer binarisation levels.

    Args:
        scoremap: ``[H, W]`` float map in ``[0, 1]``.
        levels: int levels ``L`` (mask = ``u8 > L``) in 0..255; default every level 0..254.
        method: ``"exact"`` (OpenCV) or ``"fast"`` (level-set sweep); the boxes per level are the same sets.

    Returns:
        ``LevelBoxes``.
    """
    levels = np.arange(N_LEVELS - 1) if levels is None else np.asarray(levels, dtype=np.int64).reshape(-1)
    if len(levels) and (levels.min() < 0 or levels.max() >= N_LEVELS):
        raise ValueError(f"levels must lie in 0..{N_LEVELS - 1}; got {levels.min()}..{levels.max()}")
    if method not in ("exact", "fast"):
        raise ValueError(f"method must be 'exact' or 'fast'; got {method!r}")
    return _level_boxes(quantise(check_scoremap(scoremap)), levels, method)


def _level_boxes(u8: np.ndarray, levels: np.ndarray, method: str) -> LevelBoxes:
    return _level_boxes_fast(u8, levels) if method == "fast" else _level_boxes_exact(u8, levels)


def max_over_level_ranges(lo: np.ndarray, hi: np.ndarray, values: np.ndarray, n_levels: int = N_LEVELS) -> np.ndarray:
    """``out[L] = max(values[r] for r with lo[r] <= L <= hi[r])`` (0 where no range covers L), vectorised.

    Each range is covered by two power-of-two blocks (a sparse table written instead of read); the blocks are
    then pushed down to single levels. O(R + n_levels log n_levels).
    """
    depth = max(1, int(n_levels - 1).bit_length() + 1)
    table = np.zeros((depth, n_levels))
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.asarray(hi, dtype=np.int64)
    if len(lo):
        k = np.frexp(hi - lo + 1)[1].astype(np.int64) - 1  # floor(log2(length)), exactly
        np.maximum.at(table, (k, lo), values)
        np.maximum.at(table, (k, hi - (1 << k) + 1), values)
    for j in range(depth - 1, 0, -1):
        half = 1 << (j - 1)
        np.maximum(table[j - 1], table[j], out=table[j - 1])
        np.maximum(table[j - 1, half:], table[j, :-half], out=table[j - 1, half:])
    return table[0]


def score_level_boxes(boxes: LevelBoxes, gt_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best IoU with the GT boxes of the V1 box and of the V2 boxes at each level of ``boxes``.

    Every box is scored once, in one ``box_iou`` call; V2 takes the max over the boxes valid at each level.

    Returns:
        ``(v1, v2)``, float64 ``[len(boxes.levels)]`` each.
    """
    ious = box_iou(np.concatenate([boxes.v1, boxes.v2]), gt_boxes).max(axis=1)
    v1, v2 = ious[: len(boxes.v1)], ious[len(boxes.v1) :]
    return v1, max_over_level_ranges(boxes.v2_lo, boxes.v2_hi, v2)[boxes.levels]


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
    gt = np.asarray(gt_boxes, dtype=np.int64).reshape(-1, 4)
    if len(gt) == 0:
        raise ValueError("level_ious needs at least one GT box")
    return score_level_boxes(level_boxes(scoremap, levels, method), gt)


def _fast_kernels():  # noqa: ANN202  (the module, typed by its own annotations)
    """``wsol.metrics.kernels``, imported on first use so that this module never needs numba."""
    try:
        from wsol.metrics import kernels  # noqa: PLC0415
    except ImportError as err:
        raise ImportError("BoxAccEvaluator(method='fast') needs numba (pip install numba)") from err
    return kernels


def _numba_available() -> bool:
    try:
        import numba  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------------------------ evaluator
def v2_mean(per_iou: Sequence[float]) -> float:
    """MaxBoxAccV2's combination of its IoU thresholds: the MEAN of the per-threshold accuracies (each taken at its
    own tau), as wsolevaluation's ``np.average(...)`` of ``BoxEvaluator.compute()``."""
    return float(np.mean(per_iou))


class BoxAccEvaluator:
    """Accumulates BoxAcc(tau) for V1 (largest contour, IoU 50) and V2 (all contours, each IoU threshold).

    State is one counter per (curve, tau); no map is stored.

    Args:
        cam_curve_interval: step of the threshold list ``np.arange(0, 1, step)`` (``eval.cam_curve_interval``).
        iou_thresholds: IoU thresholds in percent for V2 (``eval.iou_thresholds``; wsolevaluation: 30, 50, 70).
        method: ``"auto"``, ``"exact"`` or ``"fast"`` (``BOX_METHODS``, ``eval.box_method``; see the module docstring;
            all give identical counts).
    """

    def __init__(self, cam_curve_interval: float, iou_thresholds: Sequence[int], method: str) -> None:
        if method not in BOX_METHODS:
            raise ValueError(f"method must be one of {BOX_METHODS}; got {method!r}")
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
        # row 0: V1 correct-image counts per tau; row 1 + j: V2 counts at iou_thresholds[j]
        self._correct = np.zeros((1 + len(self.iou_thresholds), len(self.thresholds)), dtype=np.int64)

    def update(self, scoremaps: np.ndarray | Sequence[np.ndarray], gt_boxes: Sequence[np.ndarray]) -> None:
        """Score a batch of maps.

        The batch counts as a whole or not at all: if a map is invalid, nothing of the batch is added.

        Args:
            scoremaps: ``[B, H, W]`` float maps in ``[0, 1]`` (e.g. from ``wsoleval_scoremap``), or a
                sequence of ``[H, W]`` maps.
            gt_boxes: ``B`` int arrays ``[G_i, 4]`` of GT boxes ``xyxy`` inclusive on the maps' grid
                (e.g. from ``resize_boxes(..., truncate=True)``), each with ``G_i >= 1``.

        Raises:
            ValueError: on a batch-size mismatch, an image without GT box, or an invalid map (named by
                its index in the batch; the first problem in batch order is reported).
        """
        if len(scoremaps) != len(gt_boxes):
            raise ValueError(f"{len(scoremaps)} score maps but {len(gt_boxes)} GT box arrays")
        gts = []
        for i, boxes in enumerate(gt_boxes):
            gt = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
            if len(gt) == 0:
                for earlier in range(i + 1):  # a problem with an earlier map, or this one, comes first
                    check_scoremap(scoremaps[earlier], earlier)
                raise ValueError(f"score map {i} has no GT box; wsolevaluation needs one per image")
            gts.append(gt)
        counts = np.zeros_like(self._correct)
        if self.method == "fast":
            self._count_fast(scoremaps, gts, counts)
        else:
            for i, (scoremap, gt) in enumerate(zip(scoremaps, gts)):
                self._count_exact(quantise(check_scoremap(scoremap, i)), gt, counts)
        self._correct += counts
        self.n_images += len(gts)

    def _count_exact(self, u8: np.ndarray, gt: np.ndarray, counts: np.ndarray) -> None:
        # the levels of the taus, nondecreasing: their distinct values and, per tau, its level's index
        levels_of_tau = threshold_levels(self.thresholds, int(u8.max()))
        first = np.empty(len(levels_of_tau), dtype=bool)
        first[:1] = True
        np.not_equal(levels_of_tau[1:], levels_of_tau[:-1], out=first[1:])
        levels, inverse = levels_of_tau[first], np.cumsum(first) - 1
        v1, v2 = score_level_boxes(_level_boxes_exact(u8, levels), gt)
        v1, v2 = v1[inverse], v2[inverse]
        counts[0] += v1 >= 50 / 100
        for j, t in enumerate(self.iou_thresholds):
            # t / 100 exactly as wsolevaluation writes it (0.7 is not 70 / 100 after rounding otherwise).
            counts[1 + j] += v2 >= t / 100

    def _count_fast(self, scoremaps: np.ndarray | Sequence[np.ndarray], gts: list[np.ndarray],
                    counts: np.ndarray) -> None:
        """One kernel call for a ``[B, H, W]`` float32/float64 array, else one per map (``kernels.boxacc_counts``)."""
        kernels = _fast_kernels()
        iou = np.array([t / 100 for t in self.iou_thresholds], dtype=np.float64)
        if (isinstance(scoremaps, np.ndarray) and scoremaps.ndim == 3 and scoremaps.dtype in (np.float32, np.float64)
                and scoremaps.shape[1] * scoremaps.shape[2] > 0):
            batches = [(np.ascontiguousarray(scoremaps), 0)]
        else:
            batches = []
            for i, scoremap in enumerate(scoremaps):
                scoremap = np.asarray(scoremap)
                if scoremap.ndim != 2 or not np.issubdtype(scoremap.dtype, np.floating) or scoremap.size == 0:
                    for earlier in range(i):  # a problem with an earlier map comes first
                        check_scoremap(scoremaps[earlier], earlier)
                    # raises for the first two; an empty map fails on its max as on the exact path
                    self._count_exact(quantise(check_scoremap(scoremap, i)), gts[i], counts)
                    continue
                if scoremap.dtype not in (np.float32, np.float64):
                    scoremap = scoremap.astype(np.float64)
                batches.append((np.ascontiguousarray(scoremap)[None], i))
        for maps, first in batches:
            gt = np.concatenate(gts[first : first + len(maps)])
            gt_start = np.zeros(len(maps) + 1, dtype=np.int64)
            np.cumsum([len(g) for g in gts[first : first + len(maps)]], out=gt_start[1:])
            bad = kernels.boxacc_counts(maps, gt, gt_start, self.thresholds, iou, _workspace(*maps.shape[1:]), counts)
            if bad >= 0:
                check_scoremap(maps[bad], first + bad)  # raises, naming the value
                raise AssertionError("unreachable: the kernel rejected a valid map")

    def counts(self) -> np.ndarray:
        """int64 ``[len(iou_thresholds) + 2, T]`` state: row 0 the V1 correct-image counts per tau,
        rows 1.. the V2 counts per IoU threshold, and a last row holding ``n_images`` in its first cell. Adding the
        counts of several evaluators (e.g. one per ``torch.distributed`` rank or per fold) and ``load_counts`` of
        the sum gives the evaluator of all their images."""
        extra = np.zeros(len(self.thresholds), dtype=np.int64)
        extra[0] = self.n_images
        return np.concatenate([self._correct, extra[None]])

    def load_counts(self, counts: np.ndarray) -> None:
        """Replace the state by ``counts`` (the layout of ``counts()``)."""
        counts = np.asarray(counts, dtype=np.int64)
        if counts.shape != (len(self.iou_thresholds) + 2, len(self.thresholds)):
            raise ValueError(f"counts of shape {counts.shape} do not fit this evaluator "
                             f"({len(self.iou_thresholds) + 2} x {len(self.thresholds)})")
        self._correct = counts[:-1].copy()
        self.n_images = int(counts[-1, 0])

    def curve(self) -> dict[str, np.ndarray]:
        """BoxAcc (percent) at every threshold: ``tau``, ``boxacc_v1_iou50``, ``boxacc_v2_iou{t}``."""
        if self.n_images == 0:
            raise ValueError("BoxAccEvaluator: no image was scored")
        out = {"tau": self.thresholds.copy(), "boxacc_v1_iou50": self._correct[0] * 100.0 / self.n_images}
        for j, t in enumerate(self.iou_thresholds):
            out[f"boxacc_v2_iou{t}"] = self._correct[1 + j] * 100.0 / self.n_images
        return out

    def compute(self) -> dict[str, float | int]:
        """MaxBoxAcc numbers (percent) and the thresholds that reach them (the first best tau).

        Returns:
            ``maxboxacc`` (V1, IoU 50), ``maxboxacc_tau``, ``maxboxacc_v2`` (mean over the IoU thresholds of
            each one's best accuracy), ``maxboxacc_v2_iou{t}`` and ``maxboxacc_v2_iou{t}_tau`` for each IoU
            threshold, ``n_images``. These take the best tau on the scored split itself, as wsolevaluation
            reports them; see ``wsol.metrics.threshold`` for a tau fixed in advance or chosen on a held-out
            split.
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
        out["maxboxacc_v2"] = v2_mean(per_iou)
        out["n_images"] = self.n_images
        return out
