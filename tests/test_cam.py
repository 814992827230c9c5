"""CAM math: golden values, the GAP identity, normalisation and class selection."""

from __future__ import annotations

import numpy as np
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


# ------------------------------------------------------------------------------------------ normalize_cams
MAP = [[1.0, 3.0], [5.0, 2.0]]  # min 1, max 5: the two modes give different numbers


@pytest.mark.parametrize("to_array", [np.asarray, lambda x: torch.tensor(x, dtype=torch.float64)], ids=["numpy", "torch"])
def test_normalize_cams_modes_golden(to_array) -> None:  # noqa: ANN001
    cams = to_array([[MAP, [[4.0, 4.0], [4.0, 4.0]]]])  # [1, 2, 2, 2]
    minmax = normalize_cams(cams, "minmax")
    assert type(minmax) is type(cams) and tuple(minmax.shape) == (1, 2, 2, 2)
    # (x - 1) / 4
    assert minmax[0, 0].tolist() == [[0.0, 0.5], [1.0, 0.25]]
    # x / 5: the released heuristics' rule (no min subtraction)
    assert normalize_cams(cams, "max")[0, 0].tolist() == [[0.2, 0.6], [1.0, 0.4]]
    # a constant map: its divisor is 0 under minmax; what it becomes is the caller's explicit choice
    assert minmax[0, 1].tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert normalize_cams(cams, "minmax", constant="ones")[0, 1].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    # under "max" a constant positive map is simply at its max; only the zero map is degenerate
    assert normalize_cams(cams, "max")[0, 1].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    zero = to_array([[0.0, 0.0]])
    assert normalize_cams(zero, "max").tolist() == [[0.0, 0.0]]
    assert normalize_cams(zero, "max", constant="ones").tolist() == [[1.0, 1.0]]


def test_normalize_cams_keeps_dtype_and_numpy_torch_agree() -> None:
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((3, 5, 7)).astype(np.float32)
    out = normalize_cams(maps, "minmax")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, normalize_cams(torch.from_numpy(maps), "minmax").numpy())
    assert normalize_cams(np.arange(6).reshape(2, 3), "minmax").dtype == np.float64  # integers become float
    assert normalize_cams(torch.arange(6).reshape(2, 3), "minmax").dtype == torch.float32


def test_normalize_cams_minmax_is_bit_identical_to_subtract_then_divide_by_new_max() -> None:
    # wsolevaluation: x -= x.min(); x /= x.max(). Multiplying by 1 / (max - min), or dividing x - min by
    # max - min computed from the original values in another order, differs in the last bit on such maps.
    rng = np.random.default_rng(1)
    for _ in range(50):
        x = rng.standard_normal((9, 11)) * rng.uniform(1e-3, 1e3) + rng.uniform(-1e3, 1e3)
        theirs = x.copy()
        theirs -= theirs.min()
        theirs /= theirs.max()
        np.testing.assert_array_equal(normalize_cams(x, "minmax"), theirs)


def test_normalize_cams_nan_and_inf() -> None:
    maps = np.array([[[0.0, np.nan]], [[1.0, 2.0]]])
    with pytest.raises(ValueError, match=r"NaN in map\(s\) \[0\]"):
        normalize_cams(maps, "minmax")
    with pytest.raises(ValueError, match="NaN"):
        normalize_cams(torch.tensor([[[0.0, float("nan")]]]), "minmax")
    # wsolevaluation's normalize_scoremap: a map holding a NaN becomes zeros; the other maps are untouched
    np.testing.assert_array_equal(normalize_cams(maps, "minmax", nan="zeros"), [[[0.0, 0.0]], [[0.0, 1.0]]])
    with pytest.raises(ValueError, match="infinite"):
        normalize_cams(np.array([[0.0, np.inf]]), "minmax", nan="zeros")
    with pytest.raises(ValueError, match="non-negative"):
        normalize_cams(np.array([[0.0, -1.0, 2.0]]), "max")
    for bad in ({"mode": "mean"}, {"mode": "minmax", "constant": "nan"}, {"mode": "minmax", "nan": "ignore"}):
        with pytest.raises(ValueError):
            normalize_cams(np.ones((2, 2)), **bad)
    with pytest.raises(ValueError, match="H, W"):
        normalize_cams(np.ones(3), "minmax")


def test_upsample_cams_bilinear_half_pixel() -> None:
    # align_corners=False: a 1x2 map [0, 1] upsampled to width 4 gives [0, .25, .75, 1].
    out = upsample_cams(torch.tensor([[[[0.0, 1.0]]]]), (1, 4))
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))
