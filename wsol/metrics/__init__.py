"""Localization metrics: ILSVRC devkit top-k errors, wsolevaluation MaxBoxAcc / MaxBoxAccV2 and PxAP.

Every metric is an evaluator with ``update()`` (one batch) and ``compute()`` (a flat dict of numbers),
holding bounded state (counters or histograms, never stored maps). The threshold policy (fixed tau,
held-out tau, oracle labelled as an upper bound) is in ``wsol.metrics.threshold``.
"""

from wsol.metrics.boxacc import BoxAccEvaluator, resize_boxes_wsoleval, wsoleval_scoremap
from wsol.metrics.pxap import PxAPEvaluator, combine_masks
from wsol.metrics.threshold import apply_threshold_policy
from wsol.metrics.topk import TopkLocalizationEvaluator

__all__ = [
    "BoxAccEvaluator",
    "PxAPEvaluator",
    "TopkLocalizationEvaluator",
    "apply_threshold_policy",
    "combine_masks",
    "resize_boxes_wsoleval",
    "wsoleval_scoremap",
]
