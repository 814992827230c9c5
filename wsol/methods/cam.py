"""Plain CAM training (Zhou et al. 2016): cross-entropy on the pooled logits; the map is the CAM."""

from __future__ import annotations

from wsol.methods.base import TrainingMethod
from wsol.methods.registry import register_method

__all__ = ["CAM"]


@register_method("cam")
class CAM(TrainingMethod):
    """No change to training or to the map (``TrainingMethod``'s defaults)."""

    name = "cam"
