"""CAM math: golden values, the GAP identity, normalisation and class selection."""

from __future__ import annotations

import pytest
import torch

from wsol.cam import cam_classes, compute_cams, normalize_cams, upsample_cams
from wsol.models import build_model


def test_compute_cams_golden() -> None:
    # Two channels, 2x2 maps; class 1 weights (2, -1): M = 2*f0 - f1.
    f = torch.tensor([[[[1.0, 0.0], [2.0, 3.0]], [[0.0, 1.0], [1.0, 1.0]]]])  # [1, 2, 2, 2]
    w = torch.tensor([[1.0, 1.0], [2.0, -1.0], [0.0, 0.5]])  # [3 classes, 2]
    cams = compute_cams(f, w, torch.tensor([[1, 2, 1]]))
    assert cams.shape == (1, 3, 2, 2)
    assert torch.equal(cams[0, 0], torch.tensor([[2.0, -1.0], [3.0, 5.0]]))
    assert torch.equal(cams[0, 1], torch.tensor([[0.0, 0.5], [0.5, 0.5]]))
    assert torch.equal(cams[0, 2], cams[0, 0])


def test_compute_cams_per_image_classes() -> None:
    g = torch.Generator().manual_seed(0)
    f = torch.randn(3, 4, 5, 6, generator=g)
    w = torch.randn(7, 4, generator=g)
    classes = torch.tensor([[0, 6], [3, 3], [5, 1]])
    cams = compute_cams(f, w, classes)
    for b in range(3):
        for j in range(2):
            expected = (w[classes[b, j]].view(4, 1, 1) * f[b]).sum(0)
            torch.testing.assert_close(cams[b, j], expected)


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 3)])
def test_compute_cams_rejects_bad_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="features"):
        compute_cams(torch.zeros(shape), torch.zeros(5, 3), torch.zeros(2, 1, dtype=torch.long))


def test_gap_identity_small_cnn() -> None:
    # For a GAP model the spatial mean of the CAM plus the bias is the logit, for every class.
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=5, width=8).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        f = model.forward_features(x)
        logits = model.forward_head(f)
        all_classes = torch.arange(5).expand(2, 5)
        cams = compute_cams(f, model.classifier.weight, all_classes)
    torch.testing.assert_close(cams.mean((2, 3)) + model.classifier.bias, logits, atol=1e-5, rtol=1e-5)


def test_gmp_logits_are_fc_of_spatial_max() -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=5, pool="gmp", width=8).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        f = model.forward_features(x)
        torch.testing.assert_close(model(x), model.classifier(f.amax((2, 3))))


def test_cam_classes_topk_then_gt() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.5, 0.3], [2.0, 1.0, 0.0, -1.0]])
    out = cam_classes(logits, torch.tensor([3, 0]), topk=2)
    assert out.tolist() == [[1, 2, 3], [0, 1, 0]]
    # topk larger than the number of classes is clamped
    assert cam_classes(logits, torch.tensor([0, 0]), topk=9).shape == (2, 5)


def test_normalize_cams_minmax_and_constant() -> None:
    cams = torch.tensor([[[[1.0, 3.0], [5.0, 2.0]], [[4.0, 4.0], [4.0, 4.0]]]])
    out = normalize_cams(cams)
    assert out[0, 0].tolist() == [[0.0, 0.5], [1.0, 0.25]]
    assert out[0, 1].tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_normalize_cams_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        normalize_cams(torch.tensor([[[0.0, float("nan")]]]))


def test_upsample_cams_bilinear_half_pixel() -> None:
    # align_corners=False: a 1x2 map [0, 1] upsampled to width 4 gives [0, .25, .75, 1].
    out = upsample_cams(torch.tensor([[[[0.0, 1.0]]]]), (1, 4))
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))
