"""Model registry: every entry builds a ``CAMNet`` (``forward_features`` + ``classifier``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from wsol.models.base import POOLS, CAMNet, global_pool
from wsol.registry import Registry

MODELS: Registry[CAMNet] = Registry("model")


def list_models() -> list[str]:
    """Names of the registered architectures."""
    return MODELS.names()


def build_model(name: str, num_classes: int = 1000, pool: str = "gap", pretrained: bool = False,
                weights_path: str | None = None, **kwargs: Any) -> CAMNet:
    """Build a registered model.

    Args:
        name: registry name (``list_models()``).
        num_classes: classifier outputs.
        pool: ``"gap"`` or ``"gmp"``.
        pretrained: load ImageNet weights for the backbone (see each model's docstring for where
            the weights are looked up); never downloads in tests.
        weights_path: explicit backbone weights file (loaded with ``weights_only=True``); implies
            ``pretrained``.
        **kwargs: model-specific options (e.g. ``width`` of ``small_cnn``, ``weights_path``).
    """
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; expected one of {POOLS}")
    if weights_path is not None:
        kwargs["weights_path"] = weights_path
    model = MODELS.build(name, num_classes=num_classes, pool=pool, pretrained=pretrained, **kwargs)
    check_cam_model(model, name)
    return model


def check_cam_model(model: nn.Module, name: str = "model") -> None:
    """Fail loudly if ``model`` cannot give a CAM: it needs ``forward_features`` and a Linear ``classifier``."""
    if not callable(getattr(model, "forward_features", None)):
        raise TypeError(f"{name}: has no forward_features(x) -> [B,K,h,w]; cannot compute a CAM")
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, nn.Linear):
        raise TypeError(f"{name}: classifier must be an nn.Linear, got {type(classifier).__name__}; "
                        "cannot compute a CAM")


# Registrations (import order = registry order is irrelevant; names are sorted).
from wsol.models import backbones as _backbones  # noqa: E402
from wsol.models import efficientnet_lite as _lite  # noqa: E402
from wsol.models import paper as _paper  # noqa: E402
from wsol.models import small as _small  # noqa: E402

MODELS.register("small_cnn")(_small.small_cnn)
# The CAM paper's networks (wsol/models/paper.py): pretrained trunk + added conv(s) -> GAP/GMP -> fc.
MODELS.register("alexnet_gap")(_paper.alexnet_gap)
MODELS.register("alexnet_star_gap")(_paper.alexnet_star_gap)
MODELS.register("vgg16_gap")(_paper.vgg16_gap)
MODELS.register("googlenet_gap")(_paper.googlenet_gap)
# Networks that end in GAP -> linear already (wsol/models/backbones.py).
MODELS.register("resnet18")(_backbones.resnet18)
MODELS.register("resnet50")(_backbones.resnet50)
MODELS.register("inception_v3")(_backbones.inception_v3)
MODELS.register("mobilenet_v3_large")(_backbones.mobilenet_v3_large)
MODELS.register("efficientnet_b0")(_backbones.efficientnet_b0)
MODELS.register("convnext_tiny")(_backbones.convnext_tiny)
MODELS.register("efficientnet_lite0")(_lite.efficientnet_lite0)
MODELS.register("efficientnet_lite1")(_lite.efficientnet_lite1)
MODELS.register("efficientnet_lite2")(_lite.efficientnet_lite2)

__all__ = ["MODELS", "CAMNet", "POOLS", "build_model", "check_cam_model", "global_pool", "list_models"]
