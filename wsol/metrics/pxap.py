"""PxAP: pixel-wise average precision, exactly as wsolevaluation's ``MaskEvaluator`` (OpenImages30k).

Convention (``evaluation.py`` of clovaai/wsolevaluation): with ``thresholds = np.arange(0, 1, step)`` the
score histogram has right-edge list ``thresholds + [1.0, 2.0, 3.0]``, i.e. bins ``[0, s), ..., [1 - s, 1),
[1, 2), [2, 3]`` (``np.histogram``). GT masks are uint8 with 1 = foreground, 0 = background and 255 = ignore
(ignored pixels are in neither histogram). Cumulating from the top bin gives TP/FP per threshold and

    PxAP = 100 * sum_i precision[i + 1] * (recall[i + 1] - recall[i])   over i with tp + fp != 0 at i + 1.

GT masks are built by ``wsol.data.masks`` (``load_wsoleval_mask`` / ``combine_masks``); a mask holding any
other value than 0, 1 and 255 is rejected.

Public API: ``PxAPEvaluator``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wsol.metrics.scoremap import check_scoremap, scoremap_thresholds

__all__ = ["PxAPEvaluator"]


class PxAPEvaluator:
    """Accumulates the foreground / background score histograms and computes PxAP.

    Args:
        cam_curve_interval: histogram bin width ``s`` (``eval.cam_curve_interval``; 0.001 for final numbers).
    """

    def __init__(self, cam_curve_interval: float) -> None:
        self.thresholds = scoremap_thresholds(cam_curve_interval)
        self.edges = np.append(self.thresholds, [1.0, 2.0, 3.0])
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.n_images = 0
        self._hist_fg = np.zeros(len(self.edges) - 1, dtype=np.float64)
        self._hist_bg = np.zeros(len(self.edges) - 1, dtype=np.float64)

    def update(self, scoremaps: np.ndarray | Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> None:
        """Add a batch: float maps ``[B, H, W]`` in [0, 1] and uint8 masks ``[B, H, W]`` (1 / 0 / 255)."""
        if len(scoremaps) != len(masks):
            raise ValueError(f"{len(scoremaps)} score maps but {len(masks)} masks")
        for i, (scoremap, mask) in enumerate(zip(scoremaps, masks)):
            scoremap = check_scoremap(scoremap, i)
            mask = np.asarray(mask)
            if mask.shape != scoremap.shape:
                raise ValueError(f"mask {i} has shape {mask.shape}, its score map {scoremap.shape}")
            unknown = (mask != 0) & (mask != 1) & (mask != 255)
            if unknown.any():
                raise ValueError(f"mask {i} holds values {np.unique(mask[unknown])[:5].tolist()}; "
                                 "expected 0 (background), 1 (foreground) and 255 (ignored)")
            self._hist_fg += np.histogram(scoremap[mask == 1], bins=self.edges)[0]
            self._hist_bg += np.histogram(scoremap[mask == 0], bins=self.edges)[0]
            self.n_images += 1

    def curve(self) -> dict[str, np.ndarray]:
        """Precision and recall per threshold, ordered from the top bin down (wsolevaluation's order)."""
        tp = self._hist_fg[::-1].cumsum()
        fn = self._hist_fg.sum() - tp
        fp = self._hist_bg[::-1].cumsum()
        if ((tp + fn) <= 0).all():
            raise ValueError("no foreground pixel in the evaluated masks")
        if ((tp + fp) <= 0).all():
            raise ValueError("no positive prediction in the evaluated maps")
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp / (tp + fp)
            recall = tp / (tp + fn)
        return {"precision": precision, "recall": recall, "tp_plus_fp": tp + fp}

    def compute(self) -> dict[str, float | int]:
        """``{"pxap": percent, "n_images": ...}``."""
        if self.n_images == 0:
            raise ValueError("PxAPEvaluator: no image was scored")
        c = self.curve()
        keep = c["tp_plus_fp"] != 0
        auc = (c["precision"][1:] * np.diff(c["recall"]))[keep[1:]].sum() * 100
        return {"pxap": float(auc), "n_images": self.n_images}
