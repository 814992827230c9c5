"""The CAM authors' released test pipeline (``cam16_heuristics``): ten crops, merged ``|CAM|``, ``dt_box`` boxes.

Inference (``TenCropCAMs``): the image resized to ``size`` x ``size`` (256), the ten ``crop`` (224) crops of
``wsol.dtbox.ten_crop_boxes``; the softmax averaged over the crops ranks the classes; each crop's CAM (no bias,
``wsol.cam.compute_cams``) is resized to the crop (bicubic, as MATLAB ``imresize``), un-flipped and ``|CAM|``
summed on the canvas (``wsol.dtbox.paste_ten_crop_cams``). The batch it yields carries these canvas maps for the
top-k classes and the GT class.

Scoring (``Cam16LocalizationEvaluator``): each canvas map is resized to the image (bicubic), clamped at 0,
divided by its max (``wsol.cam.normalize_cams(mode="max")``), made an 8-bit heat map, and boxed by ``dt_box`` at
(20, 100, 110); the five guesses ``[c1 b1, c1 b2, c2 b1, c2 b2, c3 b1]`` are scored with the devkit rules, the
GT class's first box gives GT-known. Their classification errors are those of the five guess labels, as the devkit
scores such a file (``ClassificationEvaluator(guess_columns=(0, 0, 1, 1, 2))``).

Known deviations from the authors' MATLAB/C++ code: no JPEG round trip of the heat map before ``dt_box``; PyTorch
bicubic instead of MATLAB ``imresize`` (antialiasing off).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from wsol.cam import compute_cams, normalize_cams
from wsol.dtbox import RELEASED_THRESHOLDS, dt_box, dt_rects_to_xyxy, heuristic_guesses, paste_ten_crop_cams, ten_crop_boxes
from wsol.evaluation.base import CAMBatch, DatasetEvaluator
from wsol.evaluation.localization import evaluate_loc
from wsol.metrics.topk import DevkitErrors
from wsol.models import CAMNet

__all__ = ["GUESS_COLUMNS", "DT_BOX_THRESHOLDS", "TenCropCAMs", "Cam16LocalizationEvaluator", "heatmap_u8"]

#: The five guesses' classes: ranks 1, 1, 2, 2, 3 (``ILSVRC_evaluate_bbox.m``).
GUESS_COLUMNS = (0, 0, 1, 1, 2)
#: The thresholds of the released ``dt_box heatmap.jpg 20 100 110`` call (``wsol.dtbox``'s, named here as before).
DT_BOX_THRESHOLDS = RELEASED_THRESHOLDS


class TenCropCAMs:
    """Ten-crop inference: ``(classes [B, k+1], probs [B, k+1], canvas CAMs [B, k+1, size, size])``.

    Args:
        model: a ``CAMNet`` (classifier bias is never added to a CAM).
        topk: predicted classes kept (>= 3 for the guesses).
        size, crop: canvas and crop sides (256 and 224 for a 224-input network).
    """

    def __init__(self, model: CAMNet, topk: int, size: int, crop: int) -> None:
        if model.num_classes < 3 or topk < 3:
            raise ValueError(f"cam16_heuristics needs >= 3 predicted classes (top-3 guesses); model has "
                             f"{model.num_classes} classes, topk={topk}")
        self.model, self.topk, self.size, self.crop = model, min(topk, model.num_classes), size, crop
        self.boxes, self.flipped = ten_crop_boxes(size, crop)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = images.shape[0]
        crops = []
        for (x0, y0, x1, y1), flip in zip(self.boxes, self.flipped):
            c = images[:, :, y0:y1 + 1, x0:x1 + 1]
            crops.append(c.flip(-1) if flip else c)
        features = self.model.forward_features(torch.stack(crops, 1).flatten(0, 1))  # [B*10, K, h, w]
        probs = self.model.forward_head(features).float().softmax(1).view(b, 10, -1).mean(1)
        top = probs.topk(self.topk, dim=1).indices
        classes = torch.cat([top, labels.view(-1, 1).to(top)], 1)  # [B, k+1]
        cams = compute_cams(features.float(), self.model.classifier.weight.float(), classes.repeat_interleave(10, 0))
        cams = F.interpolate(cams, size=(self.crop, self.crop), mode="bicubic", align_corners=False)
        canvas = paste_ten_crop_cams(cams.view(b, 10, classes.shape[1], self.crop, self.crop), self.size)
        return classes.cpu(), probs.gather(1, classes).cpu(), canvas.cpu()


def heatmap_u8(canvas: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Canvas maps ``[C, S, S]`` -> the 8-bit heat maps ``dt_box`` reads, at ``size = (width, height)``.

    Bicubic resize to the image, clamp at 0 (bicubic overshoot; the merged ``|CAM|`` is non-negative), divide by
    the max, ``round(x * 255)``.
    """
    w, h = size
    maps = F.interpolate(canvas[None].float(), size=(h, w), mode="bicubic", align_corners=False)[0].clamp_min(0)
    return (normalize_cams(maps, mode="max") * 255).round().to(torch.uint8).numpy()


class Cam16LocalizationEvaluator(DatasetEvaluator):
    """Localization errors of the released heuristics over ``TenCropCAMs`` batches.

    Args:
        blacklist: image ids excluded from localization.
        thresholds: ``dt_box``'s three thresholds (the released call: 20, 100, 110).
    """

    def __init__(self, blacklist: Collection[str] = (), thresholds: tuple[int, int, int] = DT_BOX_THRESHOLDS,
                 keep_rows: bool = True) -> None:
        self.thresholds = tuple(thresholds)
        self.errors = DevkitErrors((1, 5), blacklist)
        self.keep_rows = keep_rows
        self._rows: list[dict[str, Any]] = []

    def reset(self) -> None:
        self.errors.reset()
        self._rows = []

    def rows(self) -> list[dict[str, Any]] | None:
        """Per image: the five guesses (``guess_labels``, ``guess_boxes``) and the GT-known box, by image index."""
        if not self.keep_rows:
            return None
        from wsol.engine.distributed import all_gather_objects

        return sorted((r for part in all_gather_objects(self._rows) for r in part), key=lambda r: r["index"])

    def process(self, batch: CAMBatch) -> None:
        for b, (record, size) in enumerate(zip(batch.records, batch.sizes)):
            if record.image_id in self.errors.blacklist or len(record.boxes) == 0:
                self.errors.loc_eligible(record)  # counted as excluded
                continue
            columns = [0, 1, 2, batch.topk]  # the top-3 classes' maps and the GT class's
            gray = heatmap_u8(batch.cams[b, columns], size)
            per_class = [dt_rects_to_xyxy(dt_box(g, self.thresholds)) for g in gray]
            guesses, boxes = heuristic_guesses(batch.predicted[b, :3].tolist(), per_class[:3])
            self.errors.add_loc(record, guesses, boxes, gt_known_box=per_class[-1][0])
            if self.keep_rows:
                self._rows.append({"index": int(batch.indices[b]), "image_id": record.image_id,
                                   "guess_labels": " ".join(map(str, guesses.tolist())),
                                   "guess_boxes": ";".join(" ".join(map(str, bx)) for bx in boxes.tolist()),
                                   "gt_known_box": " ".join(map(str, per_class[-1][0].tolist()))})

    def evaluate(self) -> dict[str, Any]:
        return evaluate_loc(self.errors)
