"""The CAM paper's networks (Zhou et al., CVPR 2016, §3.1), cut from torchvision's pretrained models.

Every network keeps a pretrained conv trunk, adds conv layer(s) + ReLU (``CAMNet.head``, a "new
layer"), then global pooling and a new linear classifier. Sources: the paper's text, and the
authors' released Caffe files (zhoubolei/CAM at c63f285: ``models/train_val_googlenetCAM.prototxt``,
``deploy_vgg16CAM.prototxt``, ``deploy_alexnetplusCAM_imagenet.prototxt``,
``solver_imagenet_googlenetCAM.prototxt``).

============================  ========================================  =====  ==========
name                          trunk (pretrained, torchvision)           K      map at 224
============================  ========================================  =====  ==========
``alexnet_gap``               ``features`` through conv5+ReLU           1024   13x13
``alexnet_star_gap``          conv1-conv5 + pool5 (3x3, stride 1)       512    11x11
``vgg16_gap``                 ``features`` through conv5_3+ReLU         1024   14x14
``googlenet_gap``             through ``inception4e``                   1024   14x14
============================  ========================================  =====  ==========

Decisions (each a keyword argument, so the other reading can be selected):

- **CAM conv groups** (``cam_conv_groups``, default 2 = released code). The paper's text says
  "a convolutional layer of size 3x3, stride 1, pad 1 with 1024 units"; every released prototxt
  has ``group: 2`` on it (an artefact of two-GPU Caffe AlexNet). Default 2 follows the code that
  produced the published numbers; ``cam_conv_groups=1`` is the paper's text.
- **Classifier bias** (``classifier_bias``, default True = released code). The paper (§2) sets the
  softmax input bias to 0; the prototxts keep a learnable ``CAM_fc`` bias initialised to 0. The
  CAM never includes the bias either way; with a bias, spatial mean of the CAM + bias = logit.
- **VGG16 pool5 is removed.** The reference text's "pool5 included" cannot give 14x14: conv5_3 is
  at stride 16 (224 / 16 = 14) and pool5 would halve it to 7x7. The released
  ``deploy_vgg16CAM.prototxt`` goes conv5_3 -> relu5_3 -> CAM_conv -> 14x14 average pool, so
  "after conv5_3" means pool5 is cut off with everything after it. Implemented: pool5 removed.
- **AlexNet**: torchvision's AlexNet (the "one weird trick" variant) is not Caffe's: conv1 has 64
  filters with padding 2 (Caffe: 96, no padding, 227 input), no LRN, channels 64/192/384/256/256
  (Caffe 96/256/384/384/256). At 224: conv1 -> 55, pool1 -> 27, pool2 -> 13, conv3-5 stay 13,
  so dropping the last max-pool gives the paper's 13x13 (conv5 has 256 channels, not 384).
- **AlexNet*-GAP** follows the released ``deploy_alexnetplusCAM_imagenet.prototxt`` (the paper's
  text only says "two convolutional layers added before GAP"): pool5 becomes 3x3 max pooling with
  stride 1 (13 -> 11), then conv6 and conv7 (3x3, pad 1, 512 units, group 2, ReLU each) replace
  the 1024-unit CAM conv, then 11x11 average pooling, dropout 0.5, fc. The released network's conv5
  has 384 channels; here conv5 is torchvision's pretrained 256-channel layer. (Caffe rounds pooling
  output sizes up, PyTorch down; at 13 -> 11 with stride 1 they agree.)
- **GoogLeNet**: torchvision's GoogLeNet has BatchNorm after every conv (``BasicConv2d`` = conv +
  BN + ReLU), unlike the BN-free original the authors fine-tuned; kept as is (its weights need it).
  maxpool4, inception5a/5b, the auxiliary classifiers and dropout are dropped (the released
  train_val has no aux losses and no dropout before CAM_fc). torchvision's ``transform_input``
  (pretrained default) maps ImageNet-normalised input to ``(x - 0.5) / 0.5``; it is disabled and
  the model declares mean = std = 0.5 instead, which is the same function of the raw image.
- **Dropout** before the classifier: 0.5 for VGG16 (``CAM_dropout``) and AlexNet* (``drop8``),
  0 for GoogLeNet (none in its train_val); AlexNet-GAP has no released prototxt, 0.5 assumed like
  the other AlexNet.
- **Initialisation** per the prototxts: added convs N(0, 0.01) with constant bias (GoogLeNet
  CAM_conv 1, AlexNet+ conv6/7 1, VGG16 deploy file 0; ``cam_conv_bias_init``); classifier bias 0,
  weights Caffe "xavier" (U(+-sqrt(3 / fan_in))) for GoogLeNet, N(0, 0.01) for AlexNet+ (fc9);
  VGG16's CAM_fc filler is not published (N(0, 0.01) used). Caffe's biases learn at 2x lr without
  weight decay (``lr_mult 2, decay_mult 0``); that is the optimiser's business (train config).
- The input normalisation is the torchvision weights' (ImageNet mean/std on [0, 1] RGB), not
  Caffe's BGR 0-255 mean subtraction (104, 117, 123), because the trunk weights are torchvision's.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torchvision
from torch import nn

from wsol.models.backbones import (HALF, IMAGENET_MEAN, IMAGENET_STD, WeightsFile, children_until,
                                   torchvision_weights_file)
from wsol.models.base import CAMNet
from wsol.models.registry import register_model
from wsol.models.weights import load_pretrained

CAM_CONV_CHANNELS = 1024
GOOGLENET_LAYERS = ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
                    "inception4a", "inception4b", "inception4c", "inception4d", "inception4e")


def cam_conv(in_channels: int, out_channels: int = CAM_CONV_CHANNELS, groups: int = 2,
             bias_init: float = 1.0) -> nn.Sequential:
    """The paper's added layer: 3x3 conv, stride 1, pad 1 (keeps the map size) + ReLU.

    Args:
        in_channels: trunk channels (must be divisible by ``groups``).
        out_channels: units (1024 in the paper).
        groups: 2 in the released prototxts, 1 in the paper's text.
        bias_init: constant bias initialisation (prototxt ``bias_filler``).

    Weights ~ N(0, 0.01) (prototxt ``weight_filler: gaussian, std 0.01``).
    """
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"cam_conv_groups={groups} must divide in/out channels ({in_channels}, {out_channels})")
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, groups=groups)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.constant_(conv.bias, bias_init)
    return nn.Sequential(OrderedDict(conv=conv, relu=nn.ReLU(inplace=True)))


def _init_classifier(model: CAMNet, scheme: str) -> None:
    """Initialise ``model.classifier`` as the prototxt's filler: ``"xavier"`` (Caffe) or ``"gaussian"`` (std 0.01)."""
    weight = model.classifier.weight
    if scheme == "xavier":
        bound = math.sqrt(3.0 / weight.shape[1])  # Caffe XavierFiller: variance 1 / fan_in, uniform
        nn.init.uniform_(weight, -bound, bound)
    elif scheme == "gaussian":
        nn.init.normal_(weight, std=0.01)
    else:
        raise ValueError(f"unknown classifier init {scheme!r}")
    if model.classifier.bias is not None:
        nn.init.zeros_(model.classifier.bias)


def _finish(backbone: nn.Module, head: nn.Module, num_features: int, num_classes: int, pool: str, *,
            mean: tuple[float, float, float], std: tuple[float, float, float], dropout: float,
            classifier_bias: bool, classifier_init: str, weights_file: WeightsFile,
            drop: tuple[str, ...], taps: dict[str, tuple[str, ...]] | None = None) -> CAMNet:
    # 224: the input size of the torchvision trunk weights and of the paper's experiments.
    model = CAMNet(backbone, head, num_features=num_features, num_classes=num_classes, pool=pool, mean=mean, std=std,
                   dropout=dropout, classifier_bias=classifier_bias, default_image_size=224, taps=taps)
    _init_classifier(model, classifier_init)
    if weights_file is not None:
        # The ImageNet classifier of the trunk sits after the removed layers: never copied.
        load_pretrained(model, weights_file(), drop=drop, fc_prefix=None, copy_fc=False)
    return model


@register_model("alexnet_gap")
def alexnet_gap(num_classes: int = 1000, pool: str = "gap", pretrained: bool = False,
                weights_path: str | None = None, weights: str = "AlexNet_Weights.IMAGENET1K_V1",
                cam_conv_groups: int = 2, cam_conv_bias_init: float = 1.0, dropout: float = 0.5,
                classifier_bias: bool = True) -> CAMNet:
    """AlexNet-GAP: torchvision AlexNet ``features`` without the last max-pool (256 x 13 x 13 at 224)
    -> CAM conv (1024) + ReLU -> pooling -> dropout -> fc.

    Args:
        num_classes: classifier outputs.
        pool: ``"gap"`` or ``"gmp"``.
        pretrained: load the torchvision ImageNet weights of the trunk (torch hub cache).
        weights_path: explicit weights file (implies ``pretrained``): a torchvision AlexNet state
            dict, or a whole CAMNet state dict of this model.
        weights: torchvision weights enum name.
        cam_conv_groups: groups of the added conv (2 = released code, 1 = paper text).
        cam_conv_bias_init: its bias initialisation.
        dropout: before the classifier.
        classifier_bias: learnable classifier bias (released code) or none (paper text: bias 0).
    """
    net = torchvision.models.alexnet(weights=None)
    backbone = nn.Sequential(OrderedDict(features=net.features[:-1]))  # keeps indices: keys stay "features.N."
    return _finish(backbone, cam_conv(256, groups=cam_conv_groups, bias_init=cam_conv_bias_init), CAM_CONV_CHANNELS,
                   num_classes, pool, mean=IMAGENET_MEAN, std=IMAGENET_STD, dropout=dropout,
                   classifier_bias=classifier_bias, classifier_init="gaussian",
                   weights_file=torchvision_weights_file(weights, pretrained, weights_path), drop=("classifier.",))


@register_model("alexnet_star_gap")
def alexnet_star_gap(num_classes: int = 1000, pool: str = "gap", pretrained: bool = False,
                     weights_path: str | None = None, weights: str = "AlexNet_Weights.IMAGENET1K_V1",
                     cam_conv_groups: int = 2, cam_conv_channels: int = 512, cam_conv_bias_init: float = 1.0,
                     dropout: float = 0.5, classifier_bias: bool = True) -> CAMNet:
    """AlexNet*-GAP (the released AlexNet+ CAM network): conv1-conv5 -> 3x3/1 max-pool (11x11 at 224)
    -> conv6, conv7 (3x3, pad 1, 512, group 2, ReLU) -> pooling -> dropout 0.5 -> fc.

    Arguments as ``alexnet_gap``; ``cam_conv_groups`` / ``cam_conv_channels`` / ``cam_conv_bias_init``
    apply to both added convs (released: 2 / 512 / 1).
    """
    net = torchvision.models.alexnet(weights=None)
    backbone = nn.Sequential(OrderedDict(features=net.features[:-1], pool5=nn.MaxPool2d(kernel_size=3, stride=1)))
    head = nn.Sequential(OrderedDict(
        conv6=cam_conv(256, cam_conv_channels, groups=cam_conv_groups, bias_init=cam_conv_bias_init),
        conv7=cam_conv(cam_conv_channels, cam_conv_channels, groups=cam_conv_groups, bias_init=cam_conv_bias_init),
    ))
    return _finish(backbone, head, cam_conv_channels, num_classes, pool, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                   dropout=dropout, classifier_bias=classifier_bias, classifier_init="gaussian",
                   weights_file=torchvision_weights_file(weights, pretrained, weights_path), drop=("classifier.",))


@register_model("vgg16_gap")
def vgg16_gap(num_classes: int = 1000, pool: str = "gap", pretrained: bool = False,
              weights_path: str | None = None, weights: str = "VGG16_Weights.IMAGENET1K_V1",
              cam_conv_groups: int = 2, cam_conv_bias_init: float = 0.0, dropout: float = 0.5,
              classifier_bias: bool = True) -> CAMNet:
    """VGGnet-GAP: VGG16 ``features`` through conv5_3 + ReLU, pool5 removed (512 x 14 x 14 at 224)
    -> CAM conv (1024) + ReLU -> pooling -> dropout 0.5 -> fc. Arguments as ``alexnet_gap``."""
    net = torchvision.models.vgg16(weights=None)
    backbone = nn.Sequential(OrderedDict(features=net.features[:-1]))  # features[-1] is pool5
    # wsolevaluation's VGG16 (14x14): ADL after pool3 (features.16), conv4_3 + ReLU (.22) and conv5_3 + ReLU (.29);
    # SPG's B1 after pool4 (.23), B2 after conv5_3 (.29), C on the features (here: after the CAM conv)
    taps = {"adl": ("backbone.features.16", "backbone.features.22", "backbone.features.29"),
            "spg": ("backbone.features.23", "backbone.features.29")}
    return _finish(backbone, cam_conv(512, groups=cam_conv_groups, bias_init=cam_conv_bias_init), CAM_CONV_CHANNELS,
                   num_classes, pool, mean=IMAGENET_MEAN, std=IMAGENET_STD, dropout=dropout,
                   classifier_bias=classifier_bias, classifier_init="gaussian",
                   weights_file=torchvision_weights_file(weights, pretrained, weights_path), drop=("classifier.",),
                   taps=taps)


@register_model("googlenet_gap")
def googlenet_gap(num_classes: int = 1000, pool: str = "gap", pretrained: bool = False,
                  weights_path: str | None = None, weights: str = "GoogLeNet_Weights.IMAGENET1K_V1",
                  cam_conv_groups: int = 2, cam_conv_bias_init: float = 1.0, dropout: float = 0.0,
                  classifier_bias: bool = True) -> CAMNet:
    """GoogLeNet-GAP: torchvision GoogLeNet through ``inception4e`` (832 x 14 x 14 at 224)
    -> CAM conv (1024) + ReLU -> pooling -> fc. Inputs ``(x - 0.5) / 0.5``. Arguments as ``alexnet_gap``.

    With ``pool="gmp"`` this is the paper's GoogLeNet-GMP.
    """
    net = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=False, init_weights=True)
    backbone = children_until(net, GOOGLENET_LAYERS)
    return _finish(backbone, cam_conv(832, groups=cam_conv_groups, bias_init=cam_conv_bias_init), CAM_CONV_CHANNELS,
                   num_classes, pool, mean=HALF, std=HALF, dropout=dropout, classifier_bias=classifier_bias,
                   classifier_init="xavier", weights_file=torchvision_weights_file(weights, pretrained, weights_path),
                   drop=("aux1.", "aux2.", "inception5a.", "inception5b.", "fc."))
