"""wsol.models.fusion: the inference copy (BatchNorm folded, SAME padding without copies), checked against the original."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from torch import nn

from wsol import CONFIG_DIR
from wsol.config import check_values, config_fingerprint
from wsol.models import build_model
from wsol.models.fusion import conv_bn_pairs, fuse_for_inference


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose(config_name=name, overrides=overrides)


def _random_bn_stats(model: nn.Module) -> None:
    """Running statistics and affine parameters far from identity, so that a missed or wrong fold shows."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)


def test_fold_by_hand() -> None:
    # y = (2x - mean 1) / sqrt(var 3 + eps 1) * gamma 3 + beta 0.5 = 3x - 1
    net = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1, eps=1.0))
    net[0].weight.data.fill_(2.0)
    net[1].running_mean.fill_(1.0)
    net[1].running_var.fill_(3.0)
    net[1].weight.data.fill_(3.0)
    net[1].bias.data.fill_(0.5)
    fused = fuse_for_inference(net, torch.randn(1, 1, 3, 3))
    assert fused.fused_bn_pairs == [("0", "1")] and isinstance(fused[1], nn.Identity)
    assert fused[0].weight.item() == pytest.approx(3.0) and fused[0].bias.item() == pytest.approx(-1.0)
    x = torch.tensor([[[[0.0, 1.0], [2.0, -1.0]]]])
    assert fused(x).flatten().tolist() == pytest.approx([-1.0, 2.0, 5.0, -4.0])
    assert isinstance(net[1], nn.BatchNorm2d) and net.training  # the original is left as it was


@pytest.mark.parametrize("arch,pairs", [("efficientnet_lite0", 49), ("resnet18", 20), ("mobilenet_v3_large", 46)])
def test_registry_models_fold_every_batchnorm_and_compute_the_same(arch: str, pairs: int) -> None:
    torch.manual_seed(0)
    model = build_model(arch, num_classes=10)
    _random_bn_stats(model)
    x = torch.randn(2, 3, 96, 96)
    fused = fuse_for_inference(model, x)
    assert len(fused.fused_bn_pairs) == pairs
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    model.eval()
    with torch.no_grad():
        y = torch.randn(3, 3, 112, 112)  # another batch and size than the check's
        ref, out = model.forward_features(y), fused.forward_features(y)
    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()
    with torch.no_grad():
        scale = float(model.forward_features(x).abs().max())
    assert 0 < fused.fusion_max_abs_diff <= 1e-4 * scale
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == pairs  # untouched
    assert (len(fused.crop_padded) > 0) == arch.startswith("efficientnet_lite")


@pytest.mark.parametrize("size", [(224, 224), (97, 97), (224, 97), (96, 61)])
@pytest.mark.parametrize("kernel,stride", [(3, 2), (5, 2), (3, 1), (1, 1)])
def test_same_padding_by_crop_equals_the_padded_copy(size: tuple[int, int], kernel: int, stride: int) -> None:
    """TF SAME with the odd pixel at the bottom/right, both ways: the same output shape and values."""
    from wsol.models.efficientnet_lite import SameConv2d

    torch.manual_seed(0)
    conv = SameConv2d(6, 6, kernel, stride=stride, groups=6)
    x = torch.randn(2, 6, *size)
    with torch.no_grad():
        ref = conv(x)
        conv.pad_by_crop = True
        out = conv(x)
    assert ref.shape[-2:] == tuple(-(-n // stride) for n in size) and out.shape == ref.shape
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


class _NormFirst(nn.Module):
    """Registers conv then bn, but normalises the input before the convolution: a fold would be wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.bn(x))


def test_a_batchnorm_that_does_not_follow_its_conv_is_refused() -> None:
    net = _NormFirst()
    _random_bn_stats(net)
    assert conv_bn_pairs(net) == [("conv", "bn")]
    with pytest.raises(ValueError, match=r"changed the output by .*pairs: \[\('conv', 'bn'\)\]"):
        fuse_for_inference(net, torch.randn(2, 4, 8, 8))


TINY = ["data.num_images={train:8,val:8,test:12}", "data.image_size=32", "data.render_size=32", "device=cpu",
        "+model.kwargs.width=4"]


def test_eval_fused_scores_the_same_and_keeps_its_own_store(tmp_path: Path) -> None:
    from wsol.jobs import evaluate_job, prepare_job

    plain = evaluate_job(prepare_job(_compose("evaluate", ["eval.save_cams=true", *TINY]), tmp_path / "a",
                                     train=False, evaluate=True))
    fused = evaluate_job(prepare_job(_compose("evaluate", ["eval.save_cams=true", "eval.fused=true", *TINY]),
                                     tmp_path / "b", train=False, evaluate=True))
    assert "fused_bn_pairs" not in plain and fused["fused_bn_pairs"] > 0
    for key in ("top1_cls_err", "top1_loc_err", "gt_known_loc_err"):
        assert fused[key] == plain[key], key
    # a store made unfused is not reused as a fused one in the same run dir (its meta records the fusion)
    with pytest.raises(FileExistsError, match="complete CAM store"):
        evaluate_job(prepare_job(_compose("evaluate", ["eval.save_cams=true", "eval.fused=true", *TINY]),
                                 tmp_path / "a", train=False, evaluate=True))


def test_fused_is_checked_and_fingerprinted_only_when_on() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        _compose("evaluate", ["eval.fused=maybe"])
    assert "fused" in str(err.value) + str(err.value.__cause__)
    assert check_values(_compose("evaluate", ["eval.fused=true"])) == []
    assert "fused" not in config_fingerprint(_compose("evaluate", []))["eval"]  # older runs keep their fingerprint
    assert config_fingerprint(_compose("evaluate", ["eval.fused=true"]))["eval"]["fused"] is True
