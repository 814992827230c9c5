"""Self-produced Guidance (Zhang et al., ECCV 2018), as wsolevaluation trains it (``wsol/method/spg.py``).

Besides the classifier (whose class map, a 1x1 convolution with bias, is the CAM plus a constant), three branches
predict a one-channel foreground logit map: B1 and B2 from two intermediate layers (``CAMNet.taps["spg"]``, placed as
wsolevaluation places them; see each model) through their own 3x3 conv + ReLU and a SHARED 3x3 conv + ReLU + 1x1 conv,
and C from the final features (3x3 conv + ReLU + 1x1 conv). Every map is upsampled bilinearly to the input size and
trained with a pixel-wise BCE against a target built from another map (``spg_target``: 1 where the map is above the
high threshold — the pixels above 0.7 x its max when fewer than 30 are —, 0 where below the low one, ignored between):

* B2 against the label's min-max normalised class map (thresholds ``thresholds[0]``, default (0.7, 0.01)),
* B1 against ``sigmoid(B2)`` (``thresholds[1]``, (0.5, 0.05)),
* C against ``(sigmoid(B1) + sigmoid(B2)) / 2`` (``thresholds[2]``, (0.7, 0.1)),

plus the classification cross-entropy. Targets carry no gradient. The test-time map is the classifier's class map,
i.e. the CAM. wsolevaluation upsamples to a fixed 224 x 224; here to the training input's size (224 in every recipe
that trains at 224). Branch layers start with Xavier-uniform weights and zero biases (wsolevaluation's
``initialize_weights(..., 'xavier')``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from wsol.cam import normalize_cams
from wsol.methods.base import MethodRandom, TrainingMethod, linear_class_maps, probe_channels, tap_outputs
from wsol.methods.registry import register_method

__all__ = ["SPG", "spg_target", "spg_attention_loss", "spg_guidance_loss", "IGNORE"]

IGNORE = 255.0  # target value of the pixels that are neither foreground nor background (the reference's)
MIN_FOREGROUND = 30  # fewer foreground pixels than this: use 0.7 x the map's max instead (the reference's rule)


def spg_target(attention: torch.Tensor, high: float, low: float) -> torch.Tensor:
    """The SPG target of maps ``attention [B, 1, H, W]``: 1 (foreground), 0 (background) or ``IGNORE``.

    Foreground: ``attention > high``, or ``> 0.7 * max`` for an image with fewer than 30 such pixels; background:
    ``attention < low`` (wins over foreground, as the reference applies it second).
    """
    fg = attention > high
    few = fg.flatten(1).sum(1) < MIN_FOREGROUND
    if few.any():
        peak = attention.flatten(1).max(1).values.view(-1, 1, 1, 1)
        fg = torch.where(few.view(-1, 1, 1, 1), attention > peak * 0.7, fg)
    target = torch.full_like(attention, IGNORE)
    target[fg] = 1.0
    target[attention < low] = 0.0
    return target


def spg_attention_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean BCE-with-logits over the pixels whose target is not ``IGNORE`` (``[B, 1, H, W]`` each)."""
    keep = target != IGNORE
    if not keep.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[keep], target[keep])


def _conv_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]


@register_method("spg")
class SPG(TrainingMethod):
    """Self-produced guidance branches trained against targets made from the network's own maps.

    Args:
        thresholds: ``[[high, low]] x 3`` for the B2, B1 and C targets (wsolevaluation's ``spg_thresholds``).
        branch_channels: width of the B branches' 3x3 convs (wsolevaluation: 512 for VGG16 and Inception-v3).
        c_channels: width of the C branch's 3x3 conv (wsolevaluation: 512).
        branch_lr: ``"trunk"``: the branches train at the optimizer's lr; ``"new_layers"``: at the classifier's
            (``train.new_layer_lr_mult`` times it), as wsolevaluation does with its ImageNet learning rates (~1e-4).
    """

    name = "spg"
    tap_key = "spg"

    def __init__(self, thresholds: Sequence[Sequence[float]], branch_channels: int, c_channels: int,
                 branch_lr: str) -> None:
        if branch_lr not in ("trunk", "new_layers"):
            raise ValueError(f"method.branch_lr={branch_lr!r}: must be 'trunk' or 'new_layers'")
        self.branch_lr = branch_lr
        pairs = [tuple(float(v) for v in pair) for pair in thresholds]
        if len(pairs) != 3 or any(len(p) != 2 or not (0 <= p[1] <= p[0] <= 1) for p in pairs):
            raise ValueError(f"method.thresholds={thresholds!r}: must be three [high, low] pairs with "
                             "0 <= low <= high <= 1")
        for key, v in (("branch_channels", branch_channels), ("c_channels", c_channels)):
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"method.{key}={v!r}: must be an integer >= 1")
        self.thresholds = tuple(pairs)
        self.branch_channels, self.c_channels = int(branch_channels), int(c_channels)

    def options(self) -> dict[str, Any]:
        return {"thresholds": [list(p) for p in self.thresholds], "branch_channels": self.branch_channels,
                "c_channels": self.c_channels, "branch_lr": self.branch_lr}

    def new_layer_modules(self, model: Any) -> list[nn.Module]:
        return [model.method_modules] if self.branch_lr == "new_layers" else []

    def attach(self, model: Any) -> None:
        super().attach(model)
        if "spg_b1" in model.method_modules:
            return
        b1, b2 = self.tap_names(model)
        channels = probe_channels(model, (b1, b2), model.default_image_size or 64)
        h, hc = self.branch_channels, self.c_channels
        mods = {
            "spg_b1": nn.Sequential(*_conv_relu(channels[b1], h)),
            "spg_b2": nn.Sequential(*_conv_relu(channels[b2], h)),
            "spg_b_shared": nn.Sequential(*_conv_relu(h, h), nn.Conv2d(h, 1, 1)),
            "spg_c": nn.Sequential(*_conv_relu(model.num_features, hc), nn.Conv2d(hc, 1, 1)),
        }
        for name, module in mods.items():
            for m in module.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
            model.method_modules[name] = module

    def loss(self, model: Any, inputs: torch.Tensor, labels: torch.Tensor,
             rng: MethodRandom) -> tuple[torch.Tensor, torch.Tensor]:
        b1, b2 = self.tap_names(model)
        with tap_outputs(model, (b1, b2)) as taps:
            features = model.forward_features(inputs)
        logits = model.forward_head(features)
        m = model.method_modules
        size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
        logits_b1 = m["spg_b_shared"](m["spg_b1"](taps[b1]))
        logits_b2 = m["spg_b_shared"](m["spg_b2"](taps[b2]))
        logits_c = m["spg_c"](features)
        class_map = linear_class_maps(features.float(), model.classifier, labels.view(-1, 1))
        loss = F.cross_entropy(logits.float(), labels) + spg_guidance_loss(class_map, logits_b1, logits_b2, logits_c,
                                                                           self.thresholds, size)
        return logits, loss


def spg_guidance_loss(class_map: torch.Tensor, logits_b1: torch.Tensor, logits_b2: torch.Tensor,
                      logits_c: torch.Tensor, thresholds: Sequence[Sequence[float]],
                      size: tuple[int, int]) -> torch.Tensor:
    """SPG's three pixel-wise losses (everything but the classification loss).

    Args:
        class_map: ``[B, 1, h, w]`` the label's class map (with the classifier bias; a 1x1 convolution's output).
        logits_b1, logits_b2, logits_c: ``[B, 1, h', w']`` the B1, B2 and C branch outputs (logits).
        thresholds: ``[[high, low]] x 3`` for the B2, B1 and C targets.
        size: ``(H, W)`` every map is upsampled to (bilinear, ``align_corners=False``) before the loss.

    Returns:
        ``BCE(B2 | T(attention)) + BCE(B1 | T(sigmoid B2)) + BCE(C | T((sigmoid B1 + sigmoid B2) / 2))``, where
        ``attention`` is the min-max normalised upsampled class map and ``T = spg_target``; targets carry no gradient.
    """

    def up(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t.float(), size=size, mode="bilinear", align_corners=False)

    b1, b2, c = up(logits_b1), up(logits_b2), up(logits_c)
    with torch.no_grad():
        attention = normalize_cams(up(class_map.detach()), "minmax", constant="zeros", nan="zeros")
        b2i = torch.sigmoid(b2)
        fused = (torch.sigmoid(b1) + b2i) / 2.0
    (h1, l1), (h2, l2), (h3, l3) = thresholds
    return (spg_attention_loss(b2, spg_target(attention, h1, l1))
            + spg_attention_loss(b1, spg_target(b2i, h2, l2))
            + spg_attention_loss(c, spg_target(fused, h3, l3)))
