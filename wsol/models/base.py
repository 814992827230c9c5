"""The common shape of every CAM model: backbone features -> global pooling -> linear classifier.

Every registered architecture is a ``CAMNet``: ``forward_features(x) -> [B, K, h, w]`` and a
``classifier`` (``nn.Linear(K, C)``), so the class activation map of class c is one einsum,
``M_c = sum_k classifier.weight[c, k] * f_k`` (``wsol.cam.compute_cams``), for every model alike.
"""

from __future__ import annotations

import torch
from torch import nn

from wsol.choices import POOLS

__all__ = ["POOLS", "CAMNet", "global_pool"]


def global_pool(features: torch.Tensor, pool: str) -> torch.Tensor:
    """Global pooling over space.

    Args:
        features: ``[B, K, h, w]``.
        pool: ``"gap"`` (global average pooling) or ``"gmp"`` (global max pooling).

    Returns:
        ``[B, K]``.
    """
    if pool == "gap":
        return features.mean(dim=(2, 3))
    if pool == "gmp":
        return features.amax(dim=(2, 3))
    raise ValueError(f"unknown pool {pool!r}; expected one of {POOLS}")


class CAMNet(nn.Module):
    """Backbone + (optional) added layers -> global pooling -> ``classifier``.

    Args:
        backbone: maps images ``[B, 3, H, W]`` to features; pretrained part of the network.
        head: layers added by the surgery (e.g. the CAM paper's 3x3 conv + ReLU), applied after the
            backbone; ``nn.Identity()`` when none. Trained with the "new layers" learning rate.
        num_features: channels ``K`` of ``forward_features``.
        num_classes: classes ``C``.
        pool: ``"gap"`` or ``"gmp"``.
        mean, std: input normalisation this model expects, applied by the data transforms to images
            in [0, 1] (``(x - mean) / std`` per channel).
        dropout: dropout before the classifier (the CAM paper's VGG-GAP prototxt uses 0.5).
        classifier_bias: whether the classifier has a bias (the paper's text sets it to 0).
        default_image_size: the square input side the pretrained weights were trained and evaluated at
            (a fact of the published model, e.g. 240 for EfficientNet-Lite1); ``None`` when not applicable.
        last_stage: names (``backbone.get_submodule`` paths, e.g. ``("layer4",)``) of the backbone's last
            resolution stage, for ``last_stage_modules``; empty when the architecture does not define one.
        taps: layer positions the training-time methods use (``wsol.methods``), as ``get_submodule`` paths of
            the CAMNet itself (``"backbone.layer4.0"``; ``"head"`` is the output of ``forward_features``):
            ``"adl"``: the layers after which ADL acts; ``"spg"``: the two layers feeding SPG's B1 and B2
            branches. A method whose key a model does not declare cannot train it (a config error).

    ``method_modules`` holds the layers a training-time method adds (ACoL's second classifier, SPG's branches;
    empty for plain CAM, so the state dict of a CAM model is unchanged), and ``train_method`` the attached method,
    whose ``class_maps`` is the model's test-time localization map (``wsol.methods``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        num_features: int,
        num_classes: int,
        pool: str,
        mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        std: tuple[float, float, float] = (0.229, 0.224, 0.225),
        dropout: float = 0.0,
        classifier_bias: bool = True,
        default_image_size: int | None = None,
        last_stage: tuple[str, ...] = (),
        taps: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; expected one of {POOLS}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.backbone = backbone
        self.head = head
        self.pool = pool
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(num_features, num_classes, bias=classifier_bias)
        self.default_image_size = default_image_size
        for name in last_stage:  # fail at construction, not when a recipe first asks for the stage
            backbone.get_submodule(name)
        self.last_stage = tuple(last_stage)
        self.method_modules = nn.ModuleDict()
        self.train_method = None  # set by wsol.methods.attach_method; None = plain CAM
        self.taps = {key: tuple(names) for key, names in (taps or {}).items()}
        for names in self.taps.values():
            for name in names:
                self.get_submodule(name)

    @property
    def num_features(self) -> int:
        return self.classifier.in_features

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` (already normalised) -> features ``[B, K, h, w]``."""
        return self.head(self.backbone(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Features ``[B, K, h, w]`` -> logits ``[B, C]`` (pool, dropout, classifier)."""
        return self.classifier(self.dropout(global_pool(features, self.pool)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def new_modules(self) -> list[nn.Module]:
        """The layers the surgery added (trained with the new-layer learning-rate multiplier)."""
        return [self.head, self.classifier, self.method_modules]

    def last_stage_modules(self) -> list[nn.Module]:
        """The backbone's last resolution stage, resolved by name (``self.last_stage``).

        That is every backbone layer computing at the final stride (ResNet ``layer4``; EfficientNet-Lite
        the blocks from the last stride-2 block on plus the head conv and its BN), including the block
        that enters that resolution. A "last stage" fine-tuning recipe trains these and
        ``new_modules()`` and freezes the rest of the backbone.

        Raises:
            NotImplementedError: the architecture defines no last stage (e.g. the CAM paper's networks,
                whose trunks are cut inside a stage, and ``small_cnn``).
        """
        if not self.last_stage:
            raise NotImplementedError(
                f"last_stage_modules() is not defined for this model (backbone {type(self.backbone).__name__}); "
                "it is defined for resnet18/50, inception_v3, mobilenet_v3_large, efficientnet_b0, convnext_tiny "
                "and efficientnet_lite0/1/2. Fine-tune the whole network, or freeze layers by name yourself.")
        return [self.backbone.get_submodule(name) for name in self.last_stage]
