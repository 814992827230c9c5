"""Localization metrics: ILSVRC devkit top-k errors, wsolevaluation MaxBoxAcc / MaxBoxAccV2 and PxAP.

Every metric is an evaluator with ``update()`` (one batch) and ``compute()`` (a flat dict of numbers),
holding bounded state (counters or histograms, never stored maps).
"""

from wsol.metrics.topk import TopkLocalizationEvaluator

__all__ = ["TopkLocalizationEvaluator"]
