"""Training-time WSOL methods (wsol.methods): golden values of each method's rule, exact resume of each method's
training, the test-time maps, and the config errors raised before any work."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

from conftest import synthetic_source
from wsol import CONFIG_DIR
from wsol.cam import compute_cams
from wsol.cli import ConfigError
from wsol.data.datasets import WSOLDataset
from wsol.data.transforms import build_train_transform
from wsol.engine.checkpoint import load_model_file, model_spec
from wsol.engine.recipes import TrainSettings, train_model
from wsol.engine.trainer import seed_everything
from wsol.evaluation.inference import forward_cams
from wsol.methods import METHODS, MethodRandom, attach_method, build_method, list_methods, method_random
from wsol.methods.acol import acol_combine, acol_erase
from wsol.methods.adl import adl_maps, adl_select
from wsol.methods.cutmix import apply_cutmix, cutmix_box
from wsol.methods.has import apply_has, has_hidden_mask
from wsol.methods.spg import IGNORE, spg_attention_loss, spg_target
from wsol.models import build_model

CPU = torch.device("cpu")

def _yaml_spec(name: str) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "method" / f"{name}.yaml"))


def test_every_method_has_a_config_and_the_config_is_its_options() -> None:
    assert set(list_methods()) == {p.stem for p in (Path(CONFIG_DIR) / "method").glob("*.yaml")}
    for name in list_methods():
        spec = _yaml_spec(name)
        assert spec["name"] == name
        method = build_method(spec)
        assert method.spec() == spec, name  # every option is recorded in the model spec, nothing else
        assert set(spec) - {"name"} == set(METHODS.options(name) or ())


def test_wsolevaluation_defaults() -> None:
    # wsolevaluation's config.py: HaS grid 4 / drop 0.5; ACoL 0.7; SPG thresholds; ADL 0.75 / 0.9; CutMix 1.0 / 1.0
    assert _yaml_spec("has") == {"name": "has", "grid_size": 4, "drop_rate": 0.5}
    assert _yaml_spec("acol")["threshold"] == 0.7
    assert _yaml_spec("spg")["thresholds"] == [[0.7, 0.01], [0.5, 0.05], [0.7, 0.1]]
    assert _yaml_spec("adl") == {"name": "adl", "drop_rate": 0.75, "threshold": 0.9}
    assert _yaml_spec("cutmix") == {"name": "cutmix", "beta": 1.0, "prob": 1.0}


# ----------------------------------------------------------------------------- golden values of each rule
def test_has_hides_the_cells_whose_draw_is_at_most_the_rate_and_cuts_border_cells() -> None:
    # 5x5 image, 2-pixel cells: 3x3 cells, the last row/column of cells 1 pixel wide
    draws = torch.tensor([[[0.5, 0.51, 0.0], [0.9, 0.2, 0.7], [0.6, 0.6, 0.49]]])
    hidden = has_hidden_mask(draws, 2, 0.5, 5, 5)
    expected = torch.tensor([[1, 1, 0, 0, 1],
                             [1, 1, 0, 0, 1],
                             [0, 0, 1, 1, 0],
                             [0, 0, 1, 1, 0],
                             [0, 0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(hidden[0, 0], expected)  # 0.5 <= 0.5 hides (the reference's test), 0.51 does not
    x = torch.arange(50, dtype=torch.float32).view(1, 2, 5, 5) + 1
    out = apply_has(x, hidden)
    assert torch.equal(out[0, :, expected], torch.zeros(2, int(expected.sum())))
    assert torch.equal(out[0, :, ~expected], x[0, :, ~expected])
    with pytest.raises(ValueError, match=r"draws must be \[B, 3, 3\]"):
        has_hidden_mask(draws[:, :2], 2, 0.5, 5, 5)


def test_cutmix_box_and_mixed_share_golden() -> None:
    # lam 0.75: cut = sqrt(0.25) = 0.5 -> 5 rows, 4 columns; half-sides 2 and 2 around (2, 7), clipped to 10 x 8
    assert cutmix_box(10, 8, 0.75, 2, 7) == (0, 5, 4, 8)
    # int() truncates: 10 * sqrt(1 - 0.5) = 7.07 -> 7 rows, half-side 3 (the reference's cut // 2 on both sides)
    assert cutmix_box(10, 8, 0.5, 5, 4) == (2, 2, 8, 6)
    x = torch.stack([torch.full((1, 10, 8), 1.0), torch.full((1, 10, 8), 2.0)])
    mixed, lam = apply_cutmix(x, torch.tensor([1, 0]), (0, 5, 4, 8))
    assert lam == pytest.approx(1 - 4 * 3 / 80)  # the kept share of the image, not the Beta draw
    assert mixed[0, 0, :4, 5:].eq(2).all() and mixed[0, 0].eq(1).sum() == 80 - 12 and mixed[1, 0, :4, 5:].eq(1).all()
    assert x[0].eq(1).all()  # the input is not modified


def test_adl_maps_and_the_coin_golden() -> None:
    x = torch.tensor([[[[0.0, 2.0], [4.0, 6.0]], [[2.0, 2.0], [2.0, 2.0]]]])  # channel mean [[1, 2], [3, 4]]
    importance, drop = adl_maps(x, 0.9)
    assert torch.allclose(importance[0, 0], torch.sigmoid(torch.tensor([[1.0, 2.0], [3.0, 4.0]])))
    assert torch.equal(drop[0, 0], torch.tensor([[1.0, 1.0], [1.0, 0.0]]))  # < 0.9 * 4 = 3.6
    _, drop_low = adl_maps(x, 0.5)
    assert torch.equal(drop_low[0, 0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))  # < 2: only the 1
    # floor(draw + 0.75) == 1 -> the drop mask (probability 0.75), else the importance map
    assert torch.equal(adl_select(importance, drop, 0.25, 0.75), drop)
    assert torch.equal(adl_select(importance, drop, 0.2499, 0.75), importance)


def test_acol_erases_at_the_threshold_and_combines_normalised_maps() -> None:
    attention = torch.tensor([[[[0.2, 0.7], [0.69, 1.0]]]])
    feats = torch.ones(1, 3, 2, 2)
    assert torch.equal(acol_erase(feats, attention, 0.7)[0, 1], torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    a = torch.tensor([[0.0, 1.0], [2.0, 4.0]])  # minmax: 0, .25, .5, 1
    b = torch.tensor([[3.0, 1.0], [1.0, 1.0]])  # minmax: 1, 0, 0, 0
    assert torch.equal(acol_combine(a, b), torch.tensor([[1.0, 0.25], [0.5, 1.0]]))


def test_acol_test_time_map_golden() -> None:
    # two channels, 2x2 map, two classes; branch A = the classifier, branch B = method_modules.classifier_b
    model = build_model("small_cnn", num_classes=2, width=4)
    attach_method(model, {"name": "acol", "threshold": 0.7})
    f = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [2.0, 0.0]]]])
    model.classifier = nn.Linear(2, 2)
    model.method_modules["classifier_b"] = nn.Linear(2, 2)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, -1.0]]))
        model.classifier.bias.copy_(torch.tensor([5.0, 0.0]))  # a constant: no effect after min-max
        model.method_modules["classifier_b"].weight.copy_(torch.tensor([[2.0, 1.0], [1.0, 0.0]]))
        model.method_modules["classifier_b"].bias.zero_()
    maps = model.train_method.class_maps(model, f, torch.tensor([[0]]))
    # A_0 = f0 + f1 = [[1, 1], [2, 0]] -> minmax [[.5, .5], [1, 0]]; erase >= .7: the (1, 0) pixel
    # B_0 on erased f = 2 f0 + f1 with f zeroed at (1, 0) = [[2, 1], [0, 0]] -> minmax [[1, .5], [0, 0]]
    assert torch.equal(maps[0, 0], torch.tensor([[1.0, 0.5], [1.0, 0.0]]))


def test_spg_target_foreground_fallback_and_background_golden() -> None:
    att = torch.full((2, 1, 6, 6), 0.5)
    att[0].view(-1)[:30] = 0.8  # 30 foreground pixels (not fewer than 30): the 0.7 threshold stands
    att[0].view(-1)[30:] = 0.05
    att[1].view(-1)[:2] = torch.tensor([0.9, 0.65])  # 1 pixel > 0.7: fall back to > 0.7 * 0.9 = 0.63
    att[1].view(-1)[2] = 0.005
    t = spg_target(att, 0.7, 0.01)
    assert t[0].view(-1)[:30].eq(1).all() and t[0].view(-1)[30:].eq(IGNORE).all()  # 0.05 is not < 0.01
    assert spg_target(att, 0.7, 0.1)[0].view(-1)[30:].eq(0).all()  # 0.05 < 0.1: background
    assert t[1].view(-1)[:2].eq(1).all() and t[1].view(-1)[2] == 0 and t[1].view(-1)[3:].eq(IGNORE).all()
    # background wins over foreground (the reference marks background second)
    assert spg_target(torch.full((1, 1, 6, 6), 0.5), 0.4, 0.6).eq(0).all()


def test_spg_loss_ignores_the_ignored_pixels() -> None:
    logits = torch.tensor([[[[0.0, 2.0], [5.0, -1.0]]]])
    target = torch.tensor([[[[1.0, IGNORE], [IGNORE, 0.0]]]])
    # mean of -log(sigmoid(0)) and -log(1 - sigmoid(-1))
    expected = (math.log(2.0) + math.log(1 + math.exp(-1.0))) / 2
    assert spg_attention_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


# ----------------------------------------------------------------------------- training, resume, maps
SETTINGS = TrainSettings(
    recipe="full", epochs=2, max_iters=None, batch_size=8, accumulate_grad_batches=2,
    optimizer=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9, nesterov=True), lr=0.05,
    weight_decay=5e-4, new_layer_lr_mult=10.0, bias_lr_mult=1.0, schedule="cosine", schedule_unit="iter",
    milestones=(), gamma=0.1, warmup_iters=2, amp=True, channels_last=False, sync_bn=False, num_workers=0,
    checkpoint_every=100, snapshot_every=None, log_every=1, feature_cache=False, svm_C=1.0, svm_max_iter=1000)


def _train(tmp: Path, method: str, *, seed: int = 0, resume: Any = None, stop_after: int | None = None,
           recipe: str = "full") -> tuple[Any, Any]:
    seed_everything(seed)
    model = build_model("small_cnn", num_classes=4, width=4)
    spec_method = _yaml_spec(method)
    attach_method(model, spec_method)
    spec = model_spec("small_cnn", 4, "gap", {"width": 4}, spec_method)
    source = synthetic_source("train", 36, 4)
    from dataclasses import replace

    result = train_model(
        model, source, tmp, settings=replace(SETTINGS, recipe=recipe), seed=1, spec=spec, fingerprint={"v": 1},
        device=CPU, make_train_dataset=lambda m: WSOLDataset(source, build_train_transform(36, 32, True, m.mean,
                                                                                          m.std)),
        image_size=32, cache_dir=None, data_root=None, arch="small_cnn", resume=resume, stop_after=stop_after)
    return model, result


@pytest.fixture(scope="module")
def cam_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    model, _ = _train(tmp_path_factory.mktemp("cam"), "cam")
    return model.state_dict()


@pytest.mark.parametrize("method", ["has", "cutmix", "adl", "acol", "spg"])
def test_each_method_trains_changes_the_training_and_resumes_exactly(method: str, tmp_path: Path,
                                                                     cam_weights: dict) -> None:
    model_a, result = _train(tmp_path / "a", method)
    assert result.steps == 2 * (36 // 8) and math.isfinite(result.final_loss)
    # the method did something: the weights differ from plain CAM training from the same start and data
    assert any(not torch.equal(v, model_a.state_dict()[k]) for k, v in cam_weights.items())
    _, partial = _train(tmp_path / "b", method, stop_after=3)  # stopped mid-epoch, between two micro-batch draws
    assert partial.steps == 3
    model_c, _ = _train(tmp_path / "b", method, seed=123, resume=tmp_path / "b" / "checkpoints" / "last.pt")
    state_a, state_c = model_a.state_dict(), model_c.state_dict()
    assert state_a.keys() == state_c.keys()
    for name, a in state_a.items():
        assert torch.equal(a, state_c[name]), name
    saved = load_model_file(tmp_path / "b" / "model.pt")
    assert saved["spec"]["method"] == _yaml_spec(method)
    extra = {k for k in saved["model"] if k.startswith("method_modules.")}
    assert bool(extra) == (method in ("acol", "spg"))  # only ACoL and SPG add layers


def test_method_draws_depend_on_seed_step_rank_and_micro_batch_only() -> None:
    a, b = method_random(0, 5, 0, 1), method_random(0, 5, 0, 1)
    assert torch.equal(a.rand(8), b.rand(8)) and a.numpy.random() == b.numpy.random()
    others = [method_random(1, 5, 0, 1), method_random(0, 6, 0, 1), method_random(0, 5, 1, 1),
              method_random(0, 5, 0, 0)]
    first = method_random(0, 5, 0, 1).rand(8)
    assert all(not torch.equal(first, o.rand(8)) for o in others)
    assert isinstance(a, MethodRandom)


def test_adl_is_off_at_test_time_and_the_acol_map_is_used_by_evaluation() -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=4, width=4).eval()
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 2])
    plain = forward_cams(model, x, y, 2)
    attach_method(model, _yaml_spec("adl"))
    with_adl = forward_cams(model, x, y, 2)
    assert all(torch.equal(p, q) for p, q in zip(plain, with_adl))
    acol = build_model("small_cnn", num_classes=4, width=4).eval()
    acol.load_state_dict(model.state_dict())
    attach_method(acol, _yaml_spec("acol"))
    classes, _, maps = forward_cams(acol, x, y, 2)
    assert torch.equal(classes, plain[0])  # classification: branch A = the CAM model's classifier
    expected = acol.train_method.class_maps(acol, acol.forward_features(x), classes)
    assert torch.equal(maps, expected) and not torch.allclose(maps, plain[2])
    assert maps.min() >= 0 and maps.amax(dim=(2, 3)).eq(1).all()  # max of two [0, 1] maps


def test_acol_map_is_the_reference_erase_then_classify_per_class() -> None:
    # the batched map (keep_c * W_B f + b) equals erasing the features by each class's A map and running branch B
    torch.manual_seed(1)
    model = build_model("small_cnn", num_classes=5, width=4).eval()
    attach_method(model, _yaml_spec("acol"))
    nn.init.normal_(model.method_modules["classifier_b"].weight)
    f = torch.randn(2, 16, 6, 6)
    classes = torch.tensor([[4, 0, 2], [1, 1, 3]])
    maps = model.train_method.class_maps(model, f, classes)
    for b in range(2):
        for j in range(3):
            c = classes[b, j]
            a = compute_cams(f[b:b + 1], model.classifier.weight, c.view(1, 1)) + model.classifier.bias[c]
            from wsol.cam import normalize_cams

            erased = acol_erase(f[b:b + 1], normalize_cams(a, "minmax"), 0.7)
            head = model.method_modules["classifier_b"]
            bmap = compute_cams(erased, head.weight, c.view(1, 1)) + head.bias[c]
            assert torch.allclose(maps[b, j], acol_combine(a, bmap)[0, 0], atol=1e-6)


def test_spg_branches_are_sized_from_the_declared_layers() -> None:
    model = build_model("small_cnn", num_classes=3, width=4)
    attach_method(model, _yaml_spec("spg"))
    m = model.method_modules
    assert m["spg_b1"][0].in_channels == 8 and m["spg_b2"][0].in_channels == 16  # backbone.2 and backbone.3
    assert m["spg_c"][0].in_channels == model.num_features
    assert m["spg_b1"][0].out_channels == _yaml_spec("spg")["branch_channels"]


# ----------------------------------------------------------------------------- config errors before any work
def _prepare(overrides: list[str], tmp: Path) -> Any:
    from wsol.jobs import prepare_job

    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(config_name="run", overrides=["data.num_images={train:16,val:8,test:8}", "data.image_size=32",
                                                    "data.render_size=32", "device=cpu", *overrides])
    return prepare_job(cfg, tmp, train=True, evaluate=True, named=True)


@pytest.mark.parametrize("overrides, match", [
    (["method=has", "train=head"], r"method=has trains on images and feature maps; train.recipe=head"),
    (["method=cutmix", "train=linear_svm"], r"method=cutmix .* train.recipe=linear_svm"),
    (["method=adl", "model=googlenet_gap"], r"method=adl: the model declares no adl layer positions"),
    (["method=spg", "model=alexnet_gap"], r"method=spg: the model declares no spg layer positions"),
    (["method=has", "method.grid_size=-1"], r"method.grid_size=-1: must be an integer >= 0"),
    (["method=acol", "method.threshold=1.5"], r"method.threshold=1.5: must lie in \[0, 1\]"),
    (["method=spg", "method.thresholds=[[0.7,0.01]]"], r"method.thresholds=.*three \[high, low\] pairs"),
    (["method=has", "+method.gridsize=4"], r"method.gridsize: method 'has' has no option 'gridsize'; its options "
                                           r"are: grid_size, drop_rate"),
    (["method.name=hide"], r"method.name='hide': unknown method; known: acol, adl, cam, cutmix, has, spg"),
])
def test_bad_method_settings_are_config_errors(overrides: list[str], match: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=match):
        _prepare(overrides, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing was written: no work done


def test_a_method_group_typo_names_the_choices() -> None:
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="hide"), \
            initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        compose(config_name="run", overrides=["method=hide"])


def test_the_method_is_in_the_model_spec_and_the_checkpoint_rebuilds_it(tmp_path: Path) -> None:
    job = _prepare(["method=spg", "method.branch_channels=8", "method.c_channels=4"], tmp_path)
    assert job.spec["method"] == {"name": "spg", "thresholds": [[0.7, 0.01], [0.5, 0.05], [0.7, 0.1]],
                                  "branch_channels": 8, "c_channels": 4, "branch_lr": "trunk"}
    assert job.model.train_method.name == "spg" and job.model.method_modules["spg_c"][0].out_channels == 4


def test_spg_branches_train_at_the_trunk_lr_unless_asked() -> None:
    from wsol.engine.recipes import frozen_modules

    for branch_lr, expect_new in (("trunk", False), ("new_layers", True)):
        model = build_model("small_cnn", num_classes=3, width=4)
        attach_method(model, {**_yaml_spec("spg"), "branch_lr": branch_lr})
        _, new = frozen_modules(model, "full")
        assert (model.method_modules in new) == expect_new and model.classifier in new
    acol = build_model("small_cnn", num_classes=3, width=4)
    attach_method(acol, _yaml_spec("acol"))  # ACoL's second classifier is a classifier: the classifier's lr
    assert acol.method_modules in frozen_modules(acol, "full")[1]
    with pytest.raises(ValueError, match="method.branch_lr='fast': must be 'trunk' or 'new_layers'"):
        build_method({**_yaml_spec("spg"), "branch_lr": "fast"})
