"""Training loop: exact resume, parameter groups, schedules, bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wsol.data.datasets import WSOLDataset, build_source
from wsol.data.transforms import build_train_transform
from wsol.models import build_model
from wsol.train import (EpochSampler, build_param_groups, load_checkpoint, lr_factor, model_spec,
                        seed_everything, train_model)

TRAIN = dict(epochs=2, max_iters=None, batch_size=8, accumulate_grad_batches=2, lr=0.05, momentum=0.9,
             weight_decay=5e-4, nesterov=True, new_layer_lr_mult=10.0, bias_lr_mult=2.0, scheduler="step", scheduler_unit="iter",
             milestones=[3], gamma=0.1, warmup_iters=2, amp=True, channels_last=False, num_workers=0,
             checkpoint_every=100, log_every=1, device="cpu")


def _setup(seed: int = 0) -> tuple[torch.nn.Module, WSOLDataset]:
    seed_everything(seed)
    model = build_model("small_cnn", num_classes=4, width=4)
    source = build_source("synthetic", split="train", num_images={"train": 36}, num_classes=4, render_size=32,
                          scale_range=(0.15, 0.7), aspect_range=(0.35, 0.8), two_instance_prob=0.2, part_prob=0.7,
                          max_distractors=3, seed=0)
    # random crop + flip so that augmentation randomness is part of what must resume exactly
    transform = build_train_transform(36, 32, True, model.mean, model.std)
    return model, WSOLDataset(source, transform)


def test_resume_is_exact(tmp_path: Path) -> None:
    spec = model_spec("small_cnn", 4, "gap", {"width": 4})
    model_a, data = _setup()
    result = train_model(model_a, data, tmp_path / "a", spec=spec, seed=1, resume=None, **TRAIN)
    assert result.steps == 2 * (36 // 8)

    model_b, data = _setup()
    partial = train_model(model_b, data, tmp_path / "b", spec=spec, seed=1, resume=None, stop_after=3, **TRAIN)
    assert partial.steps == 3  # stopped mid-epoch 0 (4 steps per epoch)
    model_c, data = _setup(seed=123)  # a different init: everything must come from the checkpoint
    train_model(model_c, data, tmp_path / "b", spec=spec, seed=1, resume="auto", **TRAIN)

    for (name, a), c in zip(model_a.state_dict().items(), model_c.state_dict().values()):
        assert torch.equal(a, c), name
    saved = load_checkpoint(tmp_path / "b" / "model.pt")
    assert saved["spec"] == spec
    assert (tmp_path / "a" / "train_log.csv").read_text().count("\n") == 1 + result.steps


def test_param_groups_separate_new_layers_and_biases() -> None:
    model = build_model("small_cnn", num_classes=4, width=4)
    groups = build_param_groups(model, lr=0.01, weight_decay=5e-4, new_layer_lr_mult=10.0, bias_lr_mult=2.0)
    by_name = {g["name"]: g for g in groups}
    # small_cnn: convs without bias + BN in backbone and head; the classifier has weight and bias
    assert set(by_name) == {"backbone_weight", "backbone_norm", "new_weight", "new_norm", "new_bias"}
    assert by_name["backbone_weight"]["lr"] == pytest.approx(0.01)
    assert by_name["new_weight"]["lr"] == pytest.approx(0.1)
    assert by_name["new_bias"]["lr"] == pytest.approx(0.2)
    assert by_name["new_bias"]["params"] == [model.classifier.bias]
    assert by_name["backbone_weight"]["weight_decay"] == 5e-4 and by_name["new_norm"]["weight_decay"] == 0.0
    new = {id(p) for m in model.new_modules() for p in m.parameters()}
    for g in groups:
        assert all((id(p) in new) == g["name"].startswith("new") for p in g["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_lr_factor_step_and_cosine() -> None:
    # the CAM authors' solver: x0.1 at 40k, 80k, 120k of 160k iterations
    ms = [40000, 80000, 120000]
    assert lr_factor(39999, 160000, "step", ms, 0.1, 0) == 1.0
    assert lr_factor(40000, 160000, "step", ms, 0.1, 0) == pytest.approx(0.1)
    assert lr_factor(159999, 160000, "step", ms, 0.1, 0) == pytest.approx(1e-3)
    assert lr_factor(50, 100, "cosine", [], 0.1, 0) == pytest.approx(0.5)
    assert lr_factor(0, 100, "cosine", [], 0.1, 4) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="unknown scheduler"):
        lr_factor(0, 10, "poly", [], 0.1, 0)


def test_sampler_resumes_mid_epoch() -> None:
    full = list(EpochSampler(10, seed=3, epoch=2))
    assert sorted(i for _, i in full) == list(range(10))
    assert list(EpochSampler(10, seed=3, epoch=2, start=4)) == full[4:]
    assert full != list(EpochSampler(10, seed=3, epoch=3))


def test_bad_values(tmp_path: Path) -> None:
    model, data = _setup()
    spec = model_spec("small_cnn", 4, "gap", {})
    with pytest.raises(ValueError, match="not divisible"):
        train_model(model, data, tmp_path, spec=spec, seed=0, resume=None, **{**TRAIN, "batch_size": 7})
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_model(model, data, tmp_path, spec=spec, seed=0, resume=None, **{**TRAIN, "batch_size": 64})
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        train_model(model, data, tmp_path, spec=spec, seed=0, resume=str(tmp_path / "nope.pt"), **TRAIN)
