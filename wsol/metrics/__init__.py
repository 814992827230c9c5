"""Localization metrics as pure functions and small accumulators; numba kernels in ``wsol.metrics.kernels``.

    * ``wsol.metrics.scoremap``: wsolevaluation's score maps (224 grid, thresholds, validity, CAM -> map).
    * ``wsol.metrics.boxacc``: MaxBoxAcc / MaxBoxAccV2 (exact OpenCV path and the one-pass fast path).
    * ``wsol.metrics.pxap``: PxAP.
    * ``wsol.metrics.threshold``: the threshold policy (oracle as an upper bound, fixed tau, held-out tau, crossfold).
    * ``wsol.metrics.topk``: ILSVRC devkit top-k errors.

Importing ``wsol.metrics`` loads NumPy and OpenCV only (no torch, no numba). The per-protocol evaluators that use
these live in ``wsol.evaluation``.
"""

from __future__ import annotations

from wsol.metrics.boxacc import BoxAccEvaluator
from wsol.metrics.pxap import PxAPEvaluator
from wsol.metrics.scoremap import RESIZE_LENGTH, check_scoremap, scoremap_thresholds, wsoleval_scoremap
from wsol.metrics.threshold import crossfold_accuracy, policy_tau

__all__ = [
    "RESIZE_LENGTH",
    "BoxAccEvaluator",
    "PxAPEvaluator",
    "check_scoremap",
    "crossfold_accuracy",
    "policy_tau",
    "scoremap_thresholds",
    "wsoleval_scoremap",
]

