"""CutMix (Yun et al., ICCV 2019), as wsolevaluation trains it (``main.py`` + ``wsol/method/cutmix.py``).

Per micro-batch, with probability ``prob`` (the reference applies it iff ``prob > u``): ``lam ~ Beta(beta, beta)``,
a partner permutation of the batch, a box of side ``int(S * sqrt(1 - lam))`` per axis centred at a uniform pixel
(clipped to the image), the partners' pixels pasted into it, and the loss
``lam' * CE(logits, y) + (1 - lam') * CE(logits, y[perm])`` with ``lam'`` = the share of the image outside the box.
The box follows the reference's arithmetic exactly (``cutmix_box``): its first axis is the tensor's dim 2 (rows), the
half-sides are ``cut // 2`` on both sides of the centre.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from wsol.methods.base import MethodRandom, TrainingMethod
from wsol.methods.registry import register_method

__all__ = ["CutMix", "cutmix_box", "apply_cutmix"]


def cutmix_box(size2: int, size3: int, lam: float, center2: int, center3: int) -> tuple[int, int, int, int]:
    """The pasted box ``(r1, c1, r2, c2)`` (rows ``r1:r2`` of dim 2, columns ``c1:c2`` of dim 3, end-exclusive).

    Args:
        size2, size3: the image's dim-2 and dim-3 sizes.
        lam: the Beta draw (the share of the image that would be kept without clipping).
        center2, center3: the box centre, uniform integers in ``[0, size2)`` and ``[0, size3)``.
    """
    cut = math.sqrt(1.0 - lam)
    cut2, cut3 = int(size2 * cut), int(size3 * cut)
    r1 = min(max(center2 - cut2 // 2, 0), size2)
    c1 = min(max(center3 - cut3 // 2, 0), size3)
    r2 = min(max(center2 + cut2 // 2, 0), size2)
    c2 = min(max(center3 + cut3 // 2, 0), size3)
    return r1, c1, r2, c2


def apply_cutmix(inputs: torch.Tensor, perm: torch.Tensor, box: tuple[int, int, int, int]) -> tuple[torch.Tensor, float]:
    """Paste ``inputs[perm]``'s pixels in ``box`` into ``inputs`` (a new tensor); returns it and the kept share ``lam'``."""
    r1, c1, r2, c2 = box
    mixed = inputs.clone()
    mixed[:, :, r1:r2, c1:c2] = inputs[perm.to(inputs.device), :, r1:r2, c1:c2]
    lam = 1.0 - (r2 - r1) * (c2 - c1) / (inputs.shape[-1] * inputs.shape[-2])
    return mixed, lam


@register_method("cutmix")
class CutMix(TrainingMethod):
    """Paste a random box of a partner image into each training image; labels mixed by area.

    Args:
        beta: the Beta distribution's parameter (0 disables CutMix, as in the reference).
        prob: probability of mixing a micro-batch.
    """

    name = "cutmix"

    def __init__(self, beta: float, prob: float) -> None:
        if not beta >= 0.0:
            raise ValueError(f"method.beta={beta!r}: must be >= 0 (0 = off)")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"method.prob={prob!r}: must lie in [0, 1]")
        self.beta, self.prob = float(beta), float(prob)

    def options(self) -> dict[str, Any]:
        return {"beta": self.beta, "prob": self.prob}

    def draw(self, rng: MethodRandom, batch: int, size2: int,
             size3: int) -> tuple[torch.Tensor, tuple[int, int, int, int]] | None:
        """The micro-batch's draws, in the reference's order: apply?, lam, partner permutation, centre (dim 2, 3)."""
        if not (self.beta > 0 and self.prob > rng.numpy.random()):
            return None
        lam = float(rng.numpy.beta(self.beta, self.beta))
        perm = torch.randperm(batch, generator=rng.torch)
        c2, c3 = int(rng.numpy.integers(size2)), int(rng.numpy.integers(size3))
        return perm, cutmix_box(size2, size3, lam, c2, c3)

    def loss(self, model: Any, inputs: torch.Tensor, labels: torch.Tensor,
             rng: MethodRandom) -> tuple[torch.Tensor, torch.Tensor]:
        drawn = self.draw(rng, inputs.shape[0], inputs.shape[2], inputs.shape[3])
        if drawn is None:
            logits = model(inputs)
            return logits, F.cross_entropy(logits.float(), labels)
        perm, box = drawn
        mixed, lam = apply_cutmix(inputs, perm, box)
        logits = model(mixed)
        partner = labels[perm.to(labels.device)]
        loss = F.cross_entropy(logits.float(), labels) * lam + F.cross_entropy(logits.float(), partner) * (1.0 - lam)
        return logits, loss
