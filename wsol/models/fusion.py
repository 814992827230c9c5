"""Inference-time folding of eval-mode BatchNorm into the convolution before it (the standard conv+BN fusion).

An eval-mode ``BatchNorm2d`` is a per-channel affine map, ``y = (x - mean) / sqrt(var + eps) * gamma + beta``; after a
convolution it folds into the convolution's weight and bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``), which
removes one pass over every feature map. The fused network computes the same function up to float rounding: its
CAMs differ in the last bits, so a run records whether it was fused (``eval.fuse_bn``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fold_batchnorm", "conv_bn_pairs"]


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(conv, bn)`` submodule names where a ``BatchNorm2d`` is registered right after a ``Conv2d`` of the same
    parent, with as many features as the convolution has output channels.

    Registration order is the data flow in every architecture of the registry (EfficientNet-Lite's
    ``_expand_conv``/``_bn0``, torchvision's ``Conv2dNormActivation``, ResNet's ``conv1``/``bn1``); the caller checks the
    fused network against the original (``fold_batchnorm``), so a model where it is not is refused, not mis-fused.
    """
    pairs = []
    for parent_name, parent in model.named_modules():
        children = list(parent.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d and bn.track_running_stats \
                    and bn.num_features == conv.out_channels:
                prefix = f"{parent_name}." if parent_name else ""
                pairs.append((prefix + conv_name, prefix + bn_name))
    return pairs


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example: torch.Tensor, *, rtol: float = 1e-4) -> nn.Module:
    """A copy of ``model`` in eval mode with every ``conv_bn_pairs`` BatchNorm folded into its convolution.

    Args:
        model: a ``CAMNet`` (anything with ``forward_features`` and ``forward``) or a plain module.
        example: an input batch on the model's device; the copy's features and logits on it are compared with the
            original's.
        rtol: the largest allowed ``max |fused - original| / max |original|`` of the features and of the logits.

    Returns:
        The fused copy (``model`` itself is left as it was); ``fused.fused_bn_pairs`` lists what was folded and
        ``fused.fusion_max_abs_diff`` the largest difference of the features on ``example``.

    Raises:
        ValueError: the fused copy computes something else on ``example`` (a BatchNorm registered after a
            convolution it does not follow), naming the pairs.
    """
    was_training = model.training
    model.eval()
    try:
        fused = copy.deepcopy(model)
        pairs = conv_bn_pairs(fused)
        for conv_name, bn_name in pairs:
            conv, bn = fused.get_submodule(conv_name), fused.get_submodule(bn_name)
            parent_name, _, _ = conv_name.rpartition(".")
            parent = fused.get_submodule(parent_name)
            setattr(parent, conv_name.rpartition(".")[2], fuse_conv_bn_eval(conv, bn))
            setattr(parent, bn_name.rpartition(".")[2], nn.Identity())
        worst = 0.0
        run = ((lambda m, x: m.forward_features(x)), (lambda m, x: m(x))) if hasattr(model, "forward_features") \
            else ((lambda m, x: m(x)),)
        for f in run:
            ref, out = f(model, example), f(fused, example)
            diff = float((out - ref).abs().max())
            worst = max(worst, diff) if f is run[0] else worst
            if diff > rtol * max(float(ref.abs().max()), 1e-12):
                raise ValueError(f"folding BatchNorm into {len(pairs)} convolutions changed the output by {diff:.3g} "
                                 f"(max |output| {float(ref.abs().max()):.3g}): a BatchNorm follows another layer "
                                 f"than the convolution registered before it; pairs: {pairs[:8]}")
    finally:
        model.train(was_training)
    fused.fused_bn_pairs = pairs
    fused.fusion_max_abs_diff = worst
    return fused
