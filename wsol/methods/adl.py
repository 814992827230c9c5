"""Attention-based Dropout Layer (Choe & Shim, CVPR 2019), as wsolevaluation trains it (``wsol/method/adl.py``).

At each declared position (``CAMNet.taps["adl"]``: the outputs of named layers, placed as wsolevaluation places its
ADL modules for VGG16, ResNet-50 and Inception-v3; see each model) the training forward multiplies the activation
``x [B, C, h, w]`` by ONE of two maps, chosen per layer and forward by a coin that picks the drop mask with
probability ``drop_rate`` (the reference's ``floor(u + drop_rate)``):

* the importance map ``sigmoid(mean_c x)``, or
* the drop mask ``mean_c x < threshold * max_hw(mean_c x)`` (per image; 0 on the most activated region).

ADL is off at test time: evaluation runs the plain network, so the map is the CAM.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from wsol.methods.base import MethodRandom, TrainingMethod, edit_outputs
from wsol.methods.registry import register_method

__all__ = ["ADL", "adl_maps", "adl_select"]


def adl_maps(x: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(importance, drop_mask)``, each ``[B, 1, h, w]`` in ``x``'s dtype, of activations ``x [B, C, h, w]``."""
    attention = x.mean(dim=1, keepdim=True)
    importance = torch.sigmoid(attention)
    peak = attention.flatten(1).max(dim=1, keepdim=True).values.view(-1, 1, 1, 1)
    drop_mask = (attention < peak * threshold).to(x.dtype)
    return importance, drop_mask


def adl_select(importance: torch.Tensor, drop_mask: torch.Tensor, draw: float, drop_rate: float) -> torch.Tensor:
    """The map ADL applies: the drop mask iff ``floor(draw + drop_rate) == 1`` (``draw`` uniform in [0, 1))."""
    binary = float(torch.floor(torch.tensor(draw, dtype=torch.float32) + drop_rate))
    return (1.0 - binary) * importance + binary * drop_mask


@register_method("adl")
class ADL(TrainingMethod):
    """Attention-based dropout at the model's declared ADL positions during training.

    Args:
        drop_rate: probability that a layer applies its drop mask (else its importance map).
        threshold: the drop mask hides where the channel-mean activation is at least this share of its maximum.
    """

    name = "adl"
    tap_key = "adl"

    def __init__(self, drop_rate: float, threshold: float) -> None:
        if not 0.0 <= drop_rate <= 1.0:
            raise ValueError(f"method.drop_rate={drop_rate!r}: must lie in [0, 1]")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"method.threshold={threshold!r}: must lie in [0, 1]")
        self.drop_rate, self.threshold = float(drop_rate), float(threshold)

    def options(self) -> dict[str, Any]:
        return {"drop_rate": self.drop_rate, "threshold": self.threshold}

    def layer(self, draw: float):  # noqa: ANN201
        """The ADL function of one position for one forward (its coin already drawn)."""

        def apply(x: torch.Tensor) -> torch.Tensor:
            importance, drop_mask = adl_maps(x, self.threshold)
            return x.mul(adl_select(importance, drop_mask, draw, self.drop_rate))

        return apply

    def loss(self, model: Any, inputs: torch.Tensor, labels: torch.Tensor,
             rng: MethodRandom) -> tuple[torch.Tensor, torch.Tensor]:
        names = self.tap_names(model)
        draws = rng.rand(len(names)).tolist()  # one coin per position, in declaration (= execution) order
        with edit_outputs(model, {name: self.layer(d) for name, d in zip(names, draws)}):
            logits = model(inputs)
        return logits, F.cross_entropy(logits.float(), labels)
