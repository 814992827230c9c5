"""The one interface every protocol's evaluator implements, and the batch of CAMs they all read.

Modelled on detectron2's ``DatasetEvaluator``: ``reset()`` forgets, ``process(batch)`` scores one batch and keeps
only bounded state (counters, histograms, one small row per image), ``evaluate()`` returns flat metrics. Under
``torch.distributed`` each rank processes its own images and ``evaluate()`` first sums the counters over the ranks
(``synchronize``), so the metrics equal a single-process run exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from wsol.data.records import ImageRecord

__all__ = ["CAMBatch", "DatasetEvaluator", "EvaluatorList"]


@dataclass
class CAMBatch:
    """What the network produced for a batch of ``B`` images, plus their ground truth.

    Attributes:
        records: the images' ground truth (``ImageRecord``), ``B`` of them.
        indices: int64 ``[B]`` position of each image in its split's records.
        sizes: ``(width, height)`` of each image as loaded — the pixel space of its GT boxes.
        classes: int64 ``[B, k+1]``: the top-k predicted classes (best first), then the GT class.
        scores: float32 ``[B, k+1]``: softmax probability of each of those classes.
        cams: float32 ``[B, k+1, h, w]``: the CAM of each of those classes (feature-map resolution, or the
            256x256 ten-crop canvas for ``cam16_heuristics``).
    """

    records: Sequence[ImageRecord]
    indices: np.ndarray
    sizes: Sequence[tuple[int, int]]
    classes: np.ndarray
    scores: np.ndarray
    cams: torch.Tensor
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        b = len(self.records)
        if (len(self.indices), len(self.sizes), self.classes.shape[0], self.scores.shape[0], self.cams.shape[0]) \
                != (b,) * 5:
            raise ValueError("CAMBatch: records, indices, sizes, classes, scores and cams disagree on the batch size")
        if self.classes.shape != self.scores.shape or self.cams.shape[:2] != self.classes.shape:
            raise ValueError(f"CAMBatch: classes {self.classes.shape}, scores {self.scores.shape} and cams "
                             f"{tuple(self.cams.shape)} disagree on k+1")

    @property
    def topk(self) -> int:
        """Number of predicted classes (the GT class is the extra, last column)."""
        return self.classes.shape[1] - 1

    @property
    def predicted(self) -> np.ndarray:
        """int64 ``[B, k]``: the predicted classes, best first."""
        return self.classes[:, :-1]

    @property
    def gt_cams(self) -> torch.Tensor:
        """``[B, h, w]``: the GT class's CAM (the last column)."""
        return self.cams[:, -1]


class DatasetEvaluator:
    """Base class: accumulate over ``process`` calls, report with ``evaluate``."""

    def reset(self) -> None:
        """Forget everything accumulated."""
        raise NotImplementedError

    def process(self, batch: CAMBatch) -> None:
        """Score one batch."""
        raise NotImplementedError

    def evaluate(self) -> dict[str, Any]:
        """Flat metrics (percent) over everything processed on every rank."""
        raise NotImplementedError

    def curves(self) -> dict[str, dict[str, np.ndarray]]:
        """Named curves (e.g. accuracy vs tau) to write next to the metrics; none by default."""
        return {}

    def rows(self) -> list[dict[str, Any]] | None:
        """Per-image rows (e.g. ``predictions.csv``), gathered on every rank; None when not kept."""
        return None


class EvaluatorList(DatasetEvaluator):
    """Several evaluators fed the same batches; their metrics and curves are merged (keys must not clash)."""

    def __init__(self, evaluators: Sequence[DatasetEvaluator]) -> None:
        self.evaluators = list(evaluators)

    def reset(self) -> None:
        for e in self.evaluators:
            e.reset()

    def process(self, batch: CAMBatch) -> None:
        for e in self.evaluators:
            e.process(batch)

    def evaluate(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for e in self.evaluators:
            for key, value in e.evaluate().items():
                if key in out and out[key] != value:
                    raise ValueError(f"evaluators disagree on {key!r}: {out[key]!r} vs {value!r}")
                out[key] = value
        return out

    def curves(self) -> dict[str, dict[str, np.ndarray]]:
        return {k: v for e in self.evaluators for k, v in e.curves().items()}

    def rows(self) -> list[dict[str, Any]] | None:
        for e in self.evaluators:
            rows = e.rows()
            if rows is not None:
                return rows
        return None
