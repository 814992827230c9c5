"""wsolevaluation's protocol (Choe et al., CVPR 2020): MaxBoxAcc, MaxBoxAccV2, PxAP and the threshold policy.

Per image, the GT class's CAM becomes a 224x224 score map exactly as that suite makes it
(``wsol.metrics.scoremap.wsoleval_scoremap``: bicubic, min-max) and the GT boxes are resized to the same grid with its
``int(c * 224 / size)`` arithmetic; ``wsol.metrics.boxacc.BoxAccEvaluator`` accumulates BoxAcc(tau) for every tau,
``PxAPEvaluator`` the pixel histograms where masks exist (OpenImages30k).

The threshold policy (``tau_policy``: oracle, fixed, heldout, crossfold) is ``wsol.metrics.threshold``'s, applied to
the run's curves; for ``crossfold`` the scored images are split into ``folds`` folds by a hash of their id
(``fold_of``) and one ``BoxAccEvaluator`` accumulates each fold (Imagenette: boxes exist only for the ILSVRC val
images, so no held-out split with boxes exists).

The headline ``boxacc_at_tau`` is V1 (largest box, IoU 0.5); ``boxacc_v2_at_tau`` applies the same policy to each
IoU threshold of V2 (each with its own tau) and averages, as MaxBoxAccV2 does.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

import numpy as np

from wsol.boxes import resize_boxes
from wsol.data.records import ImageRecord
from wsol.engine.distributed import all_reduce_sum
from wsol.evaluation.base import CAMBatch, DatasetEvaluator
from wsol.metrics.boxacc import BoxAccEvaluator, v2_mean
from wsol.metrics.pxap import PxAPEvaluator
from wsol.metrics.scoremap import RESIZE_LENGTH, scoremap_thresholds, wsoleval_scoremap
from wsol.metrics.threshold import (TAU_POLICIES, accuracy_at_tau, best_tau, check_tau_policy, crossfold_accuracy,
                                   policy_tau)

__all__ = ["WsolEvalEvaluator", "TAU_POLICIES", "fold_of"]


def fold_of(image_id: str, folds: int) -> int:
    """The cross-validation fold of an image: a SHA-1 of its id modulo ``folds`` (stable across runs and ranks)."""
    return int.from_bytes(hashlib.sha1(image_id.encode()).digest()[:8], "little") % folds


class WsolEvalEvaluator(DatasetEvaluator):
    """MaxBoxAcc / MaxBoxAccV2 / PxAP over the GT-class CAMs, and the threshold policy.

    Args:
        cam_curve_interval: tau step (wsolevaluation ``--cam_curve_interval``; 0.001 for final numbers).
        iou_thresholds: MaxBoxAccV2 IoU thresholds in percent.
        box_method: ``auto`` | ``exact`` | ``fast`` (``BoxAccEvaluator``; identical counts).
        load_mask: ``record -> uint8 [224, 224]`` mask (1 fg, 0 bg, 255 ignore) for PxAP, or None.
        tau_policy: one of ``TAU_POLICIES`` (module docstring).
        tau: the ``fixed`` policy's tau (on the threshold grid).
        heldout_curve: the ``heldout`` policy's curve (``curves()["boxacc"]`` of the held-out split).
        folds: the ``crossfold`` policy's number of folds (>= 2).
    """

    def __init__(self, cam_curve_interval: float, iou_thresholds: Sequence[int], *, box_method: str,
                 load_mask: Callable[[ImageRecord], np.ndarray] | None = None, tau_policy: str, tau: float | None,
                 heldout_curve: dict[str, np.ndarray] | None = None, folds: int) -> None:
        self.thresholds = scoremap_thresholds(cam_curve_interval)
        check_tau_policy(tau_policy, tau=tau, heldout_curve=heldout_curve, folds=folds, grid=self.thresholds)
        self.tau_policy, self.tau, self.heldout_curve = tau_policy, tau, heldout_curve
        self.folds = folds if tau_policy == "crossfold" else 1
        self._boxacc = [BoxAccEvaluator(cam_curve_interval, tuple(iou_thresholds), box_method)
                        for _ in range(self.folds)]
        self.iou_thresholds = tuple(iou_thresholds)
        self.cam_curve_interval = float(cam_curve_interval)
        self.load_mask = load_mask
        self._pxap = PxAPEvaluator(cam_curve_interval) if load_mask is not None else None
        self.reset()

    def reset(self) -> None:
        for e in self._boxacc:
            e.reset()
        if self._pxap is not None:
            self._pxap.reset()
        self._synced: tuple[list[np.ndarray], int] | None = None

    def process(self, batch: CAMBatch) -> None:
        maps = [wsoleval_scoremap(cam.numpy()) for cam in batch.gt_cams]
        for record, size, scoremap in zip(batch.records, batch.sizes, maps):
            if len(record.boxes):
                fold = fold_of(record.image_id, self.folds) if self.folds > 1 else 0
                self._boxacc[fold].update([scoremap], [resize_boxes(record.boxes, size, (RESIZE_LENGTH, RESIZE_LENGTH), truncate=True)])
        if self._pxap is not None and self.load_mask is not None:
            self._pxap.update(maps, [self.load_mask(r) for r in batch.records])

    # ------------------------------------------------------------------ counts, summed over ranks
    def _fold_evaluators(self) -> list[BoxAccEvaluator]:
        """Per fold, an evaluator holding the counts of every rank (``BoxAccEvaluator.counts`` summed)."""
        stacked = all_reduce_sum(np.stack([e.counts() for e in self._boxacc]))
        out = []
        for counts in stacked:
            e = BoxAccEvaluator(self.cam_curve_interval, self.iou_thresholds, "exact")
            e.load_counts(counts)
            out.append(e)
        return out

    @staticmethod
    def _merged(evaluators: list[BoxAccEvaluator]) -> BoxAccEvaluator:
        merged = BoxAccEvaluator(evaluators[0].cam_curve_interval, evaluators[0].iou_thresholds, "exact")
        merged.load_counts(sum(e.counts() for e in evaluators))
        return merged

    def curves(self) -> dict[str, dict[str, np.ndarray]]:
        out: dict[str, dict[str, np.ndarray]] = {}
        total = self._merged(self._fold_evaluators())
        if total.n_images:
            out["boxacc"] = total.curve()
        if self._pxap is not None and self._pxap.n_images:
            out["pxap"] = self._pxap.curve()
        return out

    def evaluate(self) -> dict[str, Any]:
        folds = self._fold_evaluators()
        total = self._merged(folds)
        out: dict[str, Any] = {}
        if total.n_images:
            # MaxBoxAcc / MaxBoxAccV2 (oracle tau) as wsol.metrics.boxacc defines them: one rule, one place
            out.update({k: v for k, v in total.compute().items() if k != "n_images"})
            out["n_loc_images"] = total.n_images
            out.update(self._policy(total, folds))
        if self._pxap is not None:
            # PxAP histograms are float sums of pixel counts: exact in float64 for any realistic dataset
            self._pxap._hist_fg = all_reduce_sum(self._pxap._hist_fg)
            self._pxap._hist_bg = all_reduce_sum(self._pxap._hist_bg)
            self._pxap.n_images = int(all_reduce_sum(np.array([self._pxap.n_images]))[0])
            if self._pxap.n_images:
                out["pxap"] = self._pxap.compute()["pxap"]
        return out

    def _policy(self, total: BoxAccEvaluator, folds: list[BoxAccEvaluator]) -> dict[str, Any]:
        """``boxacc_at_tau`` (V1) and ``boxacc_v2_at_tau`` under the policy (``wsol.metrics.threshold``), with the
        tau(s) used.

        V2 under a policy follows MaxBoxAccV2's rule with the policy's tau per IoU threshold: the mean over the IoU
        thresholds of BoxAcc at that threshold's tau (``v2_mean``, the same function ``BoxAccEvaluator`` uses).
        """
        curve = total.curve()
        keys = ["boxacc_v1_iou50"] + [f"boxacc_v2_iou{t}" for t in self.iou_thresholds]
        out: dict[str, Any] = {"tau_policy": self.tau_policy, "oracle_tau": best_tau(curve, keys[0])[0]}
        if self.tau_policy == "crossfold":
            n = [e.n_images for e in folds]
            if min(n) == 0:
                raise ValueError(f"crossfold: a fold is empty ({n} images per fold); use fewer folds")
            fold_curves = [e.curve() for e in folds]
            accs, fold_taus = zip(*(crossfold_accuracy(fold_curves, n, key) for key in keys))
            out.update(boxacc_at_tau=accs[0], boxacc_v2_at_tau=v2_mean(accs[1:]), tau=None,
                       tau_per_fold=fold_taus[0], tau_folds=self.folds, n_per_fold=n)
            return out
        chosen = [policy_tau(self.tau_policy, curve, key, tau=self.tau, heldout_curve=self.heldout_curve)
                  for key in keys]
        accs = [accuracy_at_tau(curve, key, tau) for key, tau in zip(keys, chosen)]
        out.update(boxacc_at_tau=accs[0], boxacc_v2_at_tau=v2_mean(accs[1:]), tau=chosen[0],
                   tau_v2=dict(zip(self.iou_thresholds, chosen[1:])))
        return out
