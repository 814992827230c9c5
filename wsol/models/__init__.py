"""Model building: every registered entry builds a ``CAMNet`` (``forward_features`` + ``classifier``).

Factories register themselves next to their definitions (``@register_model``, ``wsol.models.registry``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from wsol.models.base import POOLS, CAMNet, global_pool
from wsol.models.registry import MODELS, register_model


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
        **kwargs: model-specific options (e.g. ``width`` of ``small_cnn``), defaulting in the factory's signature.
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


# Import the definitions so their @register_model decorators run.
from wsol.models import backbones, efficientnet_lite, paper, small  # noqa: E402,F401

__all__ = ["MODELS", "CAMNet", "POOLS", "build_model", "check_cam_model", "global_pool", "list_models",
           "register_model"]
