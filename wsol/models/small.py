"""A small GAP CNN that trains from scratch on a 2-core CPU in minutes (the default model)."""

from __future__ import annotations

from torch import nn

from wsol.models.base import CAMNet
from wsol.models.registry import register_model


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


@register_model("small_cnn")
def small_cnn(
    num_classes: int,
    pool: str = "gap",
    width: int = 24,
    pretrained: bool = False,
) -> CAMNet:
    """Five 3x3 conv-BN-ReLU blocks with two stride-2 stages: feature map = input / 4.

    At the default 96x96 synthetic input the CAM is 24x24. The last block (``width*4`` channels)
    is the "added" CAM layer, trained like any other since the network starts from scratch.

    Args:
        num_classes: classifier outputs.
        pool: ``"gap"`` or ``"gmp"``.
        width: channels of the first block; K = 4 * width features (24: the default job's setting).
        pretrained: must be False (there are no weights).
    """
    if pretrained:
        raise ValueError("small_cnn has no pretrained weights; set model.pretrained=false")
    backbone = nn.Sequential(
        _conv_bn_relu(3, width),
        _conv_bn_relu(width, width * 2, stride=2),
        _conv_bn_relu(width * 2, width * 2),
        _conv_bn_relu(width * 2, width * 4, stride=2),
    )
    head = _conv_bn_relu(width * 4, width * 4)
    # methods: ADL after the two last backbone blocks and on the features; SPG's B1/B2 after those two blocks
    taps = {"adl": ("backbone.2", "backbone.3", "head"), "spg": ("backbone.2", "backbone.3")}
    return CAMNet(backbone, head, num_features=width * 4, num_classes=num_classes, pool=pool,
                  mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), taps=taps)
