"""Top-k classification error — one evaluator for every protocol (ILSVRC devkit rules, ``wsol.metrics.topk``).

An image with several ground-truth classes (possible in devkit ground truth) scores the MEAN over its classes of
"the class is among the first k guesses", as ``eval_clsloc.m`` does; with one class per image (CUB, ILSVRC
CLS-LOC, Imagenette) this is the usual top-k error, so the paper and wsolevaluation protocols agree on it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from wsol.engine.distributed import all_reduce_sum
from wsol.evaluation.base import CAMBatch, DatasetEvaluator
from wsol.metrics.topk import DevkitErrors

__all__ = ["ClassificationEvaluator"]


class ClassificationEvaluator(DatasetEvaluator):
    """``top{k}_cls_err`` for each k.

    Args:
        ks: the k values (e.g. ``(1, 5)``).
        guess_columns: which predicted classes make the guesses, in order. Default: the top-k predictions as they
            come. The CAM authors' heuristics submit ``[c1, c1, c2, c2, c3]`` (``(0, 0, 1, 1, 2)``): the devkit
            scores those five labels, so their top-5 error is the top-3 error of the network.
    """

    def __init__(self, ks: Sequence[int], guess_columns: Sequence[int] | None = None) -> None:
        self.errors = DevkitErrors(ks)
        self.ks = self.errors.ks
        self.guess_columns = None if guess_columns is None else np.asarray(guess_columns, dtype=np.int64)

    def reset(self) -> None:
        self.errors.reset()

    def process(self, batch: CAMBatch) -> None:
        guesses = batch.predicted if self.guess_columns is None else batch.predicted[:, self.guess_columns]
        if guesses.shape[1] < self.ks[-1]:
            raise ValueError(f"top-{self.ks[-1]} error needs {self.ks[-1]} guesses; the batch has {guesses.shape[1]}")
        for record, g in zip(batch.records, guesses):
            self.errors.add_cls(record, g)

    def evaluate(self) -> dict[str, Any]:
        out = self.errors.compute(all_reduce_sum(self.errors.state))
        if not out:
            raise ValueError("no image was scored")
        return out
