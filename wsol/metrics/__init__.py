"""Localization metrics: ILSVRC devkit top-k errors, wsolevaluation MaxBoxAcc / MaxBoxAccV2 and PxAP.

Pure functions and accumulators of bounded state (counters or histograms, never stored maps); the per-protocol
evaluators that use them live in ``wsol.evaluation``. The threshold policy (fixed tau,
held-out tau, oracle labelled as an upper bound) is in ``wsol.metrics.threshold``.
"""

from wsol.metrics.boxacc import BoxAccEvaluator, resize_boxes_wsoleval, wsoleval_scoremap
from wsol.metrics.pxap import PxAPEvaluator, combine_masks
from wsol.metrics.threshold import apply_threshold_policy

__all__ = [
    "BoxAccEvaluator",
    "PxAPEvaluator",
    "apply_threshold_policy",
    "combine_masks",
    "resize_boxes_wsoleval",
    "wsoleval_scoremap",
]
