"""The inference copy of a network: eval-mode BatchNorm folded into the convolution before it (the standard conv+BN
fusion), and TF-SAME padding without input copies where a model offers it (``pad_by_crop``, EfficientNet-Lite).

An eval-mode ``BatchNorm2d`` is a per-channel affine map, ``y = (x - mean) / sqrt(var + eps) * gamma + beta``; after a
convolution it folds into the convolution's weight and bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``), which
removes one pass over every feature map. The fused network computes the same function up to float rounding: its
CAMs differ in the last bits, so a run records whether it was fused (``eval.fused``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["check_batch", "conv_bn_pairs", "fuse_for_inference"]


def check_batch(image_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The batch a fused copy is checked on: 2 images of ``image_size`` in [-1, 1], the same on every run (seed 0)."""
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(2, 3, image_size, image_size, generator=generator) * 2 - 1).to(device)


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(conv, bn)`` submodule names where a ``BatchNorm2d`` is registered right after a ``Conv2d`` of the same
    parent, with as many features as the convolution has output channels.

    Registration order is the data flow in every architecture of the registry (EfficientNet-Lite's
    ``_expand_conv``/``_bn0``, torchvision's ``Conv2dNormActivation``, ResNet's ``conv1``/``bn1``); the fused network is
    checked against the original (``fuse_for_inference``), so a model where it is not is refused, not mis-fused.
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
def fuse_for_inference(model: nn.Module, example: torch.Tensor, *, rtol: float = 1e-4) -> nn.Module:
    """A copy of ``model`` in eval mode, every ``conv_bn_pairs`` BatchNorm folded into its convolution and every
    module with a ``pad_by_crop`` switch set to it.

    Args:
        model: a ``CAMNet`` (anything with ``forward_features`` and ``forward``) or a plain module.
        example: an input batch on the model's device; the copy's features and logits on it are compared with the
            original's.
        rtol: the largest allowed ``max |fused - original| / max |original|`` of the features and of the logits.

    Returns:
        The fused copy (``model`` itself is left as it was, training mode included); ``fused.fused_bn_pairs`` lists
        what was folded, ``fused.crop_padded`` the modules padding without a copy, and ``fused.fusion_max_abs_diff``
        the largest difference of the features (or outputs) on ``example``.

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
            parent_name, _, conv_attr = conv_name.rpartition(".")
            parent = fused.get_submodule(parent_name)
            setattr(parent, conv_attr, fuse_conv_bn_eval(fused.get_submodule(conv_name), fused.get_submodule(bn_name)))
            setattr(parent, bn_name.rpartition(".")[2], nn.Identity())
        cropped = [name for name, m in fused.named_modules() if hasattr(m, "pad_by_crop")]
        for name in cropped:
            fused.get_submodule(name).pad_by_crop = True
        outputs = ([lambda m, x: m.forward_features(x)] if hasattr(model, "forward_features") else []) \
            + [lambda m, x: m(x)]
        diffs = []
        for f in outputs:
            ref, out = f(model, example), f(fused, example)
            diffs.append(diff := float((out - ref).abs().max()))
            if diff > rtol * max(float(ref.abs().max()), 1e-12):
                raise ValueError(f"folding BatchNorm into {len(pairs)} convolutions changed the output by {diff:.3g} "
                                 f"(max |output| {float(ref.abs().max()):.3g}): a BatchNorm follows another layer "
                                 f"than the convolution registered before it; pairs: {pairs[:8]}")
    finally:
        model.train(was_training)
    fused.fused_bn_pairs, fused.crop_padded, fused.fusion_max_abs_diff = pairs, cropped, diffs[0]
    return fused
