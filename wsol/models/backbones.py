"""Native-GAP backbones: networks that already end in conv features -> global average pooling -> linear.

For each, ``CAMNet.backbone`` is the network up to its last conv block (pretrained part), the head
is ``nn.Identity()``, and ``CAMNet.classifier`` is a NEW ``nn.Linear(K, num_classes)``. With
``pretrained`` and ``num_classes == 1000`` the ImageNet classifier is copied into it
(``copy_imagenet_fc``), so the model classifies out of the box. Whether that copy reproduces the
original model exactly is stated per model:

============================  ====  ===========  ===================================================
name                          K     map at 224   pretrained model reproduced with the copied fc?
============================  ====  ===========  ===================================================
resnet18                      512   7x7          exactly (avgpool -> fc)
resnet50                      2048  7x7          exactly
inception_v3                  2048  5x5 (8x8 at  exactly (avgpool -> dropout -> fc); needs >= 75 px
                                    299)
efficientnet_b0               1280  7x7          exactly (avgpool -> dropout -> fc)
efficientnet_lite0/1/2        1280  7x7 (8x8,    exactly (``wsol.models.efficientnet_lite``)
                                    9x9 at 240,
                                    260)
mobilenet_v3_large            960   7x7          no fc copied: the original head is
                                                 Linear(960,1280)-Hardswish-Linear; not linear
convnext_tiny                 768   7x7          approximately: LayerNorm moved before pooling
============================  ====  ===========  ===================================================

Each also records its native input size (``CAMNet.default_image_size``) and names its last resolution
stage (``CAMNet.last_stage``: ``layer4``, ``Mixed_7a-c``, ...) for ``last_stage_modules()``.

Input normalisation (``CAMNet.mean/std``, for images in [0, 1]) is the one each set of weights was
trained with: ImageNet mean/std, except ``inception_v3`` (``(x - 0.5) / 0.5``; torchvision's
pretrained model gets there through ``transform_input=True``, which is dropped here and replaced
by declaring mean = std = 0.5 — the same function of the raw image) and the EfficientNet-Lite models
(``x * 2 - 1``, the same thing; defined in ``wsol.models.efficientnet_lite``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torchvision
from torch import nn

from wsol.models.base import CAMNet
from wsol.models.registry import register_model
from wsol.models.weights import load_pretrained, resolve_torchvision_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)  # mean = std = 0.5: x -> 2x - 1 (TF-style inputs in [-1, 1])

# Lazily resolves the weights file (so pretrained=False never looks for one); None = no weights.
WeightsFile = Callable[[], Path] | None


def children_until(model: nn.Module, names: Iterable[str]) -> nn.Sequential:
    """``nn.Sequential`` of the named children of ``model``, in the given (execution) order.

    Children keep their names, so the cut backbone's state-dict keys equal the original model's
    (``layer4.1.conv2.weight``) and the pretrained file loads without renaming.
    """
    return nn.Sequential(OrderedDict((name, getattr(model, name)) for name in names))


def build_native(
    backbone: nn.Module,
    num_features: int,
    num_classes: int,
    pool: str,
    *,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    dropout: float,
    weights_file: WeightsFile,
    rename: Mapping[str, str] | None = None,
    drop: Iterable[str] = (),
    fc_prefix: str | None,
    copy_imagenet_fc: bool,
    default_image_size: int | None = None,
    last_stage: tuple[str, ...] = (),
    taps: dict[str, tuple[str, ...]] | None = None,
) -> CAMNet:
    """Wrap a cut backbone into a ``CAMNet`` and load its pretrained weights.

    Args:
        backbone: the kept pretrained part, images -> ``[B, num_features, h, w]``.
        num_features: ``K``.
        num_classes: ``C``.
        pool: ``"gap"`` or ``"gmp"``.
        mean, std: input normalisation of the weights.
        dropout: dropout before the classifier.
        weights_file: callable returning the weights path (resolved lazily so that
            ``pretrained=False`` never looks for a file); ``None`` for no weights.
        rename, drop, fc_prefix: key mapping of the original file (``weights.load_pretrained``).
        copy_imagenet_fc: copy the original classifier when ``num_classes`` matches it.
        default_image_size: input side the weights were trained and evaluated at.
        last_stage: backbone submodule names of the last resolution stage (``CAMNet.last_stage_modules``).
        taps: the training-time methods' layer positions (``CAMNet.taps``).
    """
    model = CAMNet(backbone, nn.Identity(), num_features=num_features, num_classes=num_classes, pool=pool,
                   mean=mean, std=std, dropout=dropout, classifier_bias=True, default_image_size=default_image_size,
                   last_stage=last_stage, taps=taps)
    if weights_file is not None:
        load_pretrained(model, weights_file(), rename=rename, drop=drop, fc_prefix=fc_prefix,
                        copy_fc=copy_imagenet_fc)
    return model


def torchvision_weights_file(weights: str, pretrained: bool, weights_path: str | None) -> WeightsFile:
    """Lazy resolver of a torchvision weights file, or ``None`` when no weights are wanted."""
    if not pretrained and weights_path is None:
        return None
    return lambda: resolve_torchvision_weights(weights, weights_path)


@register_model("resnet18")
def resnet18(num_classes: int = 1000, pool: str = "gap", pretrained: bool = False, weights_path: str | None = None,
             weights: str = "ResNet18_Weights.IMAGENET1K_V1", dropout: float = 0.0,
             copy_imagenet_fc: bool = True) -> CAMNet:
    """ResNet-18 through ``layer4`` (K = 512, stride 32: 7x7 at 224).

    Args:
        num_classes: classifier outputs.
        pool: ``"gap"`` or ``"gmp"``.
        pretrained: load torchvision ImageNet weights (``weights``) from the torch hub cache.
        weights_path: explicit weights file (implies ``pretrained``).
        weights: torchvision weights enum name.
        dropout: dropout before the classifier (torchvision's ResNet has none).
        copy_imagenet_fc: copy the ImageNet fc when ``num_classes == 1000``.
    """
    net = torchvision.models.resnet18(weights=None)
    return _resnet(net, 512, num_classes, pool, torchvision_weights_file(weights, pretrained, weights_path), dropout,
                   copy_imagenet_fc)


@register_model("resnet50")
def resnet50(num_classes: int = 1000, pool: str = "gap", pretrained: bool = False, weights_path: str | None = None,
             weights: str = "ResNet50_Weights.IMAGENET1K_V1", dropout: float = 0.0,
             copy_imagenet_fc: bool = True) -> CAMNet:
    """ResNet-50 through ``layer4`` (K = 2048, 7x7 at 224). Arguments as ``resnet18``.

    The default weights are torchvision's V1 (76.1% top-1), the ones WSOL papers of the CAM era
    fine-tune; ``weights="ResNet50_Weights.IMAGENET1K_V2"`` selects the newer recipe.
    """
    net = torchvision.models.resnet50(weights=None)
    return _resnet(net, 2048, num_classes, pool, torchvision_weights_file(weights, pretrained, weights_path), dropout,
                   copy_imagenet_fc)


def _resnet(net: torchvision.models.ResNet, k: int, num_classes: int, pool: str,
            weights_file: WeightsFile, dropout: float, copy_imagenet_fc: bool) -> CAMNet:
    backbone = children_until(net, ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"])
    last = len(net.layer4) - 1
    # wsolevaluation's ResNet-50: ADL after layer3's first block and after layer4's first and last blocks
    # (_ADL_POSITION); SPG's B1 after layer3's first block (SPG_A1), B2 after layer3 (SPG_A2), C on the features.
    taps = {"adl": ("backbone.layer3.0", "backbone.layer4.0", f"backbone.layer4.{last}"),
            "spg": ("backbone.layer3.0", "backbone.layer3")}
    return build_native(backbone, k, num_classes, pool, mean=IMAGENET_MEAN, std=IMAGENET_STD, dropout=dropout,
                        weights_file=weights_file, fc_prefix="fc.", copy_imagenet_fc=copy_imagenet_fc,
                        default_image_size=224, last_stage=("layer4",), taps=taps)


INCEPTION_V3_LAYERS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                       "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                       "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")


@register_model("inception_v3")
def inception_v3(num_classes: int = 1000, pool: str = "gap", pretrained: bool = False,
                 weights_path: str | None = None, weights: str = "Inception_V3_Weights.IMAGENET1K_V1",
                 dropout: float = 0.5, copy_imagenet_fc: bool = True) -> CAMNet:
    """Inception-v3 through ``Mixed_7c`` (K = 2048): 8x8 at its native 299 input, 5x5 at 224; input >= 75 px.

    The auxiliary classifier is dropped (its keys are ignored when loading). torchvision's
    ``transform_input`` is not used: its pretrained weights expect ``(x - 0.5) / 0.5`` of the raw
    [0, 1] image, declared here as mean = std = 0.5 for the data pipeline. Dropout 0.5 before the
    fc as in torchvision. No architecture change (unlike wsolevaluation's InceptionV3 CAM, which
    removes Mixed_7 and adds convs); that variant is not implemented.
    """
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=True)
    backbone = children_until(net, INCEPTION_V3_LAYERS)
    return build_native(backbone, 2048, num_classes, pool, mean=HALF, std=HALF, dropout=dropout,
                        weights_file=torchvision_weights_file(weights, pretrained, weights_path), drop=("AuxLogits.",),
                        fc_prefix="fc.", copy_imagenet_fc=copy_imagenet_fc, default_image_size=299,
                        last_stage=("Mixed_7a", "Mixed_7b", "Mixed_7c"),  # Mixed_7a: 17x17 -> 8x8 at 299
                        # wsolevaluation's InceptionV3: ADL after Mixed_5d, Mixed_6e and its last conv (here: the
                        # features); SPG's B1 after Mixed_5d, B2 after Mixed_6d, C on the features
                        taps={"adl": ("backbone.Mixed_5d", "backbone.Mixed_6e", "head"),
                              "spg": ("backbone.Mixed_5d", "backbone.Mixed_6d")})


@register_model("mobilenet_v3_large")
def mobilenet_v3_large(num_classes: int = 1000, pool: str = "gap", pretrained: bool = False,
                       weights_path: str | None = None, weights: str = "MobileNet_V3_Large_Weights.IMAGENET1K_V1",
                       dropout: float = 0.2) -> CAMNet:
    """MobileNetV3-Large ``features`` (last layer: 1x1 conv 160 -> 960 + BN + Hardswish; 7x7 at 224).

    torchvision's head is avgpool -> Linear(960, 1280) -> Hardswish -> Dropout -> Linear(1280, 1000).
    The Hardswish makes it non-linear in the pooled features, so no single linear map of the
    features reproduces it and the CAM identity would not hold. We keep the 960-channel conv
    features as ``forward_features`` and train a new ``Linear(960, num_classes)``: the ImageNet
    head is dropped (never copied), so this model must be fine-tuned before it classifies.
    Dropout 0.2 (torchvision's rate) sits before the new classifier.
    """
    net = torchvision.models.mobilenet_v3_large(weights=None)
    backbone = nn.Sequential(OrderedDict(features=net.features))
    return build_native(backbone, 960, num_classes, pool, mean=IMAGENET_MEAN, std=IMAGENET_STD, dropout=dropout,
                        weights_file=torchvision_weights_file(weights, pretrained, weights_path), drop=("classifier.",),
                        fc_prefix=None, copy_imagenet_fc=False, default_image_size=224,
                        # features.13 is the last stride-2 block (112 -> 160 channels), features.16 the 960 conv.
                        last_stage=tuple(f"features.{i}" for i in range(13, 17)))


@register_model("efficientnet_b0")
def efficientnet_b0(num_classes: int = 1000, pool: str = "gap", pretrained: bool = False,
                    weights_path: str | None = None, weights: str = "EfficientNet_B0_Weights.IMAGENET1K_V1",
                    dropout: float = 0.2, copy_imagenet_fc: bool = True) -> CAMNet:
    """torchvision EfficientNet-B0 ``features`` (ends with 1x1 conv 320 -> 1280 + BN + SiLU; 7x7 at 224).

    Its head is avgpool -> Dropout(0.2) -> Linear, so the copied fc reproduces it exactly.
    """
    net = torchvision.models.efficientnet_b0(weights=None)
    backbone = nn.Sequential(OrderedDict(features=net.features))
    return build_native(backbone, 1280, num_classes, pool, mean=IMAGENET_MEAN, std=IMAGENET_STD, dropout=dropout,
                        weights_file=torchvision_weights_file(weights, pretrained, weights_path),
                        fc_prefix="classifier.1.", copy_imagenet_fc=copy_imagenet_fc, default_image_size=224,
                        # features.6 (192 channels, enters stride 32), features.7 (320), features.8 the 1280 conv.
                        last_stage=("features.6", "features.7", "features.8"))


@register_model("convnext_tiny")
def convnext_tiny(num_classes: int = 1000, pool: str = "gap", pretrained: bool = False,
                  weights_path: str | None = None, weights: str = "ConvNeXt_Tiny_Weights.IMAGENET1K_V1",
                  dropout: float = 0.0, copy_imagenet_fc: bool = True) -> CAMNet:
    """ConvNeXt-Tiny ``features`` + its final LayerNorm applied at every position (K = 768, 7x7 at 224).

    torchvision's head is avgpool -> LayerNorm2d -> Linear. LayerNorm is not linear, so the CAM
    needs it on the unpooled side: ``forward_features`` applies the pretrained LayerNorm2d (which
    normalises the channels at each pixel) to the 7x7 map, then pooling and the linear classifier
    follow, and the CAM identity holds exactly. This is timm's ``head_norm_first`` arrangement.
    It is NOT the pretrained model: mean(LN(f)) != LN(mean(f)), so with ``copy_imagenet_fc`` the
    out-of-the-box logits only approximate torchvision's convnext_tiny (not measured here: no
    ConvNeXt weights are available offline). Fine-tune before reporting classification numbers.
    """
    net = torchvision.models.convnext_tiny(weights=None)
    backbone = nn.Sequential(OrderedDict(features=net.features, norm=net.classifier[0]))
    return build_native(backbone, 768, num_classes, pool, mean=IMAGENET_MEAN, std=IMAGENET_STD, dropout=dropout,
                        weights_file=torchvision_weights_file(weights, pretrained, weights_path),
                        rename={"classifier.0.": "norm."}, fc_prefix="classifier.2.",
                        copy_imagenet_fc=copy_imagenet_fc, default_image_size=224,
                        # features.6 downsamples to stride 32 (384 -> 768), features.7 is stage 4.
                        last_stage=("features.6", "features.7", "norm"))
