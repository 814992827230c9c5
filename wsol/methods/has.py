"""Hide-and-Seek (Singh & Lee, ICCV 2017), as wsolevaluation trains it (``wsol/method/has.py``).

Each image of a training batch is cut into square cells of ``grid_size`` x ``grid_size`` PIXELS (wsolevaluation's
meaning of its ``has_grid_size``: the default 4 hides 4x4-pixel cells, not a 4x4 grid) and each cell is hidden with
probability ``drop_rate`` (a uniform draw ``u <= drop_rate``, the reference's test) by setting the NORMALISED input to 0
(the dataset mean colour, as the original HaS). Cells at the right/bottom border are cut to the image. The reference
walks the image with its width as the row range (``image[b, :, x:x_end, y:y_end]`` with ``x`` up to the width);
on square inputs, the ones it trains on, that is the same as rows over the height and columns over the width (here).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from wsol.methods.base import MethodRandom, TrainingMethod
from wsol.methods.registry import register_method

__all__ = ["HideAndSeek", "has_hidden_mask", "apply_has"]


def has_hidden_mask(draws: torch.Tensor, grid_size: int, drop_rate: float, height: int,
                    width: int) -> torch.Tensor:
    """Which pixels HaS hides.

    Args:
        draws: uniform ``[B, ceil(H / g), ceil(W / g)]``, one per cell, row-major (the reference's draw order).
        grid_size: cell side ``g`` in pixels.
        drop_rate: a cell is hidden iff its draw is ``<= drop_rate``.
        height, width: image size ``H, W``.

    Returns:
        bool ``[B, 1, H, W]``, True where the pixel is hidden.
    """
    rows, cols = -(-height // grid_size), -(-width // grid_size)
    if draws.shape[1:] != (rows, cols):
        raise ValueError(f"draws must be [B, {rows}, {cols}] for a {height}x{width} image and grid {grid_size}; "
                         f"got {tuple(draws.shape)}")
    hidden = (draws <= drop_rate).unsqueeze(1)  # [B, 1, rows, cols]
    full = hidden.repeat_interleave(grid_size, dim=2).repeat_interleave(grid_size, dim=3)
    return full[:, :, :height, :width]


def apply_has(inputs: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """``inputs [B, C, H, W]`` with the hidden pixels (``[B, 1, H, W]`` bool) set to 0 (a new tensor)."""
    return inputs.masked_fill(hidden.to(inputs.device), 0.0)


@register_method("has")
class HideAndSeek(TrainingMethod):
    """Hide random ``grid_size`` x ``grid_size``-pixel cells of each training image with probability ``drop_rate``.

    Args:
        grid_size: cell side in pixels (wsolevaluation's ``has_grid_size``; 0 disables hiding, as there).
        drop_rate: probability of hiding a cell.
    """

    name = "has"

    def __init__(self, grid_size: int, drop_rate: float) -> None:
        if isinstance(grid_size, bool) or int(grid_size) != grid_size or grid_size < 0:
            raise ValueError(f"method.grid_size={grid_size!r}: must be an integer >= 0 (pixels; 0 = off)")
        if not 0.0 <= drop_rate <= 1.0:
            raise ValueError(f"method.drop_rate={drop_rate!r}: must lie in [0, 1]")
        self.grid_size, self.drop_rate = int(grid_size), float(drop_rate)

    def options(self) -> dict[str, Any]:
        return {"grid_size": self.grid_size, "drop_rate": self.drop_rate}

    def loss(self, model: Any, inputs: torch.Tensor, labels: torch.Tensor,
             rng: MethodRandom) -> tuple[torch.Tensor, torch.Tensor]:
        if self.grid_size > 0:
            b, _, h, w = inputs.shape
            g = self.grid_size
            hidden = has_hidden_mask(rng.rand(b, -(-h // g), -(-w // g)), g, self.drop_rate, h, w)
            inputs = apply_has(inputs, hidden)
        logits = model(inputs)
        return logits, F.cross_entropy(logits.float(), labels)
