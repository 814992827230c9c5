"""Adversarial Complementary Learning (Zhang et al., CVPR 2018), as wsolevaluation trains and evaluates it.

Two classifier branches on the same features ``f``: branch A is the model's own classifier; its class map of the
ground-truth class (``A_y = W_A[y] . f + b_A[y]``, min-max normalised per image) marks the region that branch B may
not see: ``f`` is zeroed where that map is ``>= threshold``, and branch B (a second classifier, ``method_modules.
classifier_b``) classifies the erased features. Loss: ``CE(A) + CE(B)``. Test-time map of class c (wsolevaluation's
``return_cam``): ``max(minmax(A_c), minmax(B_c))``, B computed on the features erased by A's map of c itself;
classification uses branch A.

Branch heads: wsolevaluation's ACoL heads are three convolutions (3x3-1024, 3x3-1024, 1x1-C) per branch; here each
branch is the model's linear classifier (a 1x1 convolution on ``f``), so branch A's map is the CAM and the method adds
``K x C`` weights instead of two ~12M-parameter heads (on EfficientNet-Lite0 those heads would cost ~5x the trunk's
forward). The erasing and the map combination are wsolevaluation's (``scripts/check_against_wsolevaluation.py``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from wsol.cam import normalize_cams
from wsol.methods.base import MethodRandom, TrainingMethod, linear_class_maps
from wsol.methods.registry import register_method
from wsol.models.base import global_pool

__all__ = ["ACoL", "acol_erase", "acol_combine"]


def acol_erase(features: torch.Tensor, attention: torch.Tensor, threshold: float) -> torch.Tensor:
    """``features [B, K, h, w]`` zeroed where ``attention [B, 1, h, w]`` (in [0, 1]) is ``>= threshold``."""
    keep = (attention < threshold).to(features.dtype)
    return features * keep


def acol_combine(map_a: torch.Tensor, map_b: torch.Tensor) -> torch.Tensor:
    """The test-time map: the element-wise max of the two min-max normalised maps (``[..., h, w]``)."""
    return torch.maximum(normalize_cams(map_a, "minmax", constant="zeros", nan="zeros"),
                         normalize_cams(map_b, "minmax", constant="zeros", nan="zeros"))


@register_method("acol")
class ACoL(TrainingMethod):
    """Two classifiers; the second learns from the features the first's confident region is erased from.

    Args:
        threshold: erase where branch A's normalised map of the label is at least this (wsolevaluation's
            ``acol_threshold``).
    """

    name = "acol"

    def __init__(self, threshold: float) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"method.threshold={threshold!r}: must lie in [0, 1]")
        self.threshold = float(threshold)

    def options(self) -> dict[str, Any]:
        return {"threshold": self.threshold}

    def attach(self, model: Any) -> None:
        super().attach(model)
        if "classifier_b" not in model.method_modules:
            a = model.classifier
            model.method_modules["classifier_b"] = nn.Linear(a.in_features, a.out_features, bias=a.bias is not None)

    def _attention(self, model: Any, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Branch A's normalised maps of ``classes [B, k]``: ``[B, k, h, w]`` (no gradient, as the reference)."""
        maps = linear_class_maps(features.detach(), model.classifier, classes).detach()
        return normalize_cams(maps, "minmax", constant="zeros", nan="zeros")

    def branch_logits(self, model: Any, features: torch.Tensor,
                      labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits of branch A, logits of branch B on the features erased by A's map of the label)``."""
        logits = model.forward_head(features)
        attention = self._attention(model, features, labels.view(-1, 1))
        erased = acol_erase(features, attention, self.threshold)
        return logits, model.method_modules["classifier_b"](model.dropout(global_pool(erased, model.pool)))

    def loss(self, model: Any, inputs: torch.Tensor, labels: torch.Tensor,
             rng: MethodRandom) -> tuple[torch.Tensor, torch.Tensor]:
        logits, logits_b = self.branch_logits(model, model.forward_features(inputs), labels)
        return logits, F.cross_entropy(logits.float(), labels) + F.cross_entropy(logits_b.float(), labels)

    def class_maps(self, model: Any, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        features = features.float()
        map_a = linear_class_maps(features, model.classifier, classes)  # [B, k, h, w]
        attention = normalize_cams(map_a, "minmax", constant="zeros", nan="zeros")
        keep = (attention < self.threshold).to(features.dtype)  # [B, k, h, w]: each class erases by its own A map
        # B's map on the erased features, per class: W_B[c] . (f * keep_c) + b_B[c] = keep_c * (W_B[c] . f) + b_B[c]
        cls_b = model.method_modules["classifier_b"]
        map_b = keep * torch.einsum("bkhw,bjk->bjhw", features, cls_b.weight[classes].to(features.dtype))
        if cls_b.bias is not None:
            map_b = map_b + cls_b.bias[classes].to(features.dtype)[:, :, None, None]
        return acol_combine(map_a, map_b)
