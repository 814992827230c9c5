"""Fine-tuning recipes: which parameters train, on what inputs, and the loop that trains them.

    ``full``        every parameter, on augmented images (the CAM paper's recipe).
    ``last_stage``  ``model.last_stage_modules()`` + the classifier, on augmented images; the rest of the trunk is
                    frozen and kept in eval mode (its BatchNorm statistics stay the pretrained ones).
    ``head``        the classifier only, on pooled features of the frozen trunk computed ONCE and cached
                    (``wsol.engine.features``: the plain image and its mirror); GAP and GMP heads and every seed share
                    one cache. The optimizer, schedule and loop are the same as for the other recipes.
    ``linear_svm``  the paper's section 4: a one-vs-rest linear SVM on the cached GAP (or GMP) features; its
                    weights become the classifier, so the CAM is computed from them exactly as from a trained fc.
Every recipe ends with ``model.pt`` (final weights + architecture spec) in the run dir.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from wsol.engine.features import (PooledFeatureItems, PooledFeatures, PooledHead, cached_pooled_features,
                                  fit_linear_svm)
from wsol.engine.optim import build_optimizer, build_param_groups, build_scheduler, lr_lambda
from wsol.engine.trainer import LoopSettings, Trainer, TrainResult, load_resumable, steps_per_epoch
from wsol.io import add_note, atomic_torch_save
from wsol.methods import MethodNet, new_layer_modules
from wsol.methods.cam import CAM
from wsol.models import CAMNet

log = logging.getLogger(__name__)

__all__ = ["RECIPES", "TrainSettings", "train_model", "train_linear_svm", "frozen_modules", "train_fingerprint"]

from wsol.choices import RECIPES, SCHEDULE_UNITS  # noqa: E402  (the one list: wsol.choices)


@dataclass(frozen=True)
class TrainSettings:
    """What ``configs/train/*.yaml`` says, as plain values (the optimizer class comes as a factory)."""

    recipe: str
    epochs: int
    max_iters: int | None
    batch_size: int
    accumulate_grad_batches: int
    optimizer: Callable[..., torch.optim.Optimizer]
    lr: float
    weight_decay: float
    new_layer_lr_mult: float
    bias_lr_mult: float
    schedule: str
    schedule_unit: str
    milestones: tuple[float, ...]
    gamma: float
    warmup_iters: int
    amp: bool
    channels_last: bool
    sync_bn: bool
    num_workers: int
    checkpoint_every: int
    snapshot_every: int | None
    log_every: int
    feature_cache: bool
    svm_C: float
    svm_max_iter: int

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown train.recipe {self.recipe!r}; expected one of {RECIPES}")
        if self.max_iters is None and self.epochs < 1:
            raise ValueError(f"train.epochs must be >= 1 (or set train.max_iters), got {self.epochs}")
        if self.max_iters is not None and self.max_iters < 1:
            raise ValueError(f"train.max_iters must be >= 1 or null, got {self.max_iters}")
        if self.schedule_unit not in SCHEDULE_UNITS:
            raise ValueError(f"train.scheduler.unit must be one of {SCHEDULE_UNITS}, got {self.schedule_unit!r}")


def train_fingerprint(settings: TrainSettings, *, seed: int, spec: dict[str, Any], data: dict[str, Any],
                      world_size: int) -> dict[str, Any]:
    """The settings a resume may not change (the checkpoint refuses a resume that changes one of them)."""
    keep = ("recipe", "epochs", "max_iters", "batch_size", "accumulate_grad_batches", "lr", "weight_decay",
            "new_layer_lr_mult", "bias_lr_mult", "schedule", "schedule_unit", "milestones", "gamma", "warmup_iters")
    out: dict[str, Any] = {k: getattr(settings, k) for k in keep}
    out["milestones"] = list(out["milestones"])
    out.update(optimizer=_factory_repr(settings.optimizer), seed=seed, model=spec, data=data, world_size=world_size)
    return out


def _factory_repr(factory: Callable[..., Any]) -> str:
    """A stable text of a ``functools.partial`` optimizer factory (class and keywords)."""
    func = getattr(factory, "func", factory)
    kw = getattr(factory, "keywords", {})
    return f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', repr(func))}({sorted(kw.items())})"


def frozen_modules(model: CAMNet, recipe: str) -> tuple[tuple[nn.Module, ...], list[nn.Module]]:
    """Freeze what ``recipe`` does not train.

    Returns:
        ``(frozen, new)``: the modules to keep in eval mode while training (everything that neither is trained nor
        contains a trained module: no BatchNorm statistics updates, no dropout or stochastic depth in the frozen
        trunk) and the modules that get ``train.new_layer_lr_mult`` (the surgery's new layers; the classifier only
        when the trunk is frozen).
    """
    if recipe == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return (), [m for m in model.new_modules() if m is not model.method_modules] + new_layer_modules(model)
    trainable: list[nn.Module] = [model.dropout, model.classifier, model.method_modules]
    if recipe == "last_stage":
        trainable += list(model.last_stage_modules())
    for p in model.parameters():
        p.requires_grad_(False)
    for m in trainable:
        for p in m.parameters():
            p.requires_grad_(True)
    trained = {id(m) for t in trainable for m in t.modules()}
    frozen = tuple(m for m in model.modules()
                   if id(m) not in trained and not any(id(c) in trained for c in m.modules()))
    return frozen, [model.classifier, *new_layer_modules(model)]


def train_linear_svm(model: CAMNet, feats: PooledFeatures, run_dir: Path, *, settings: TrainSettings, seed: int,
                     spec: dict[str, Any], arch: str, skipped: dict[str, str], started: float) -> TrainResult:
    """The ``linear_svm`` recipe (the paper's section 4): a linear SVM on the pooled features of ``model.pool``
    becomes ``model.classifier``; ``model.pt`` is written into ``run_dir``.

    Args:
        model: the ``CAMNet`` whose classifier (with a bias) receives the SVM's weights.
        feats: the training images' pooled features (``cached_pooled_features(...).kept()``).
        run_dir: where ``model.pt`` goes.
        settings: ``TrainSettings`` (``svm_C``, ``svm_max_iter``).
        seed: the SVM's ``random_state``.
        spec: the architecture spec stored with the weights.
        arch: the architecture's name, for messages.
        skipped: training images dropped under ``data.on_error=skip`` (recorded in the result).
        started: ``time.time()`` when the recipe started (the result's seconds include the feature pass).

    Returns:
        ``TrainResult`` with no optimizer step; ``train_acc`` is the SVM's accuracy on the plain views (a fraction).
    """
    weight, bias, info = fit_linear_svm(feats.of(model.pool)[0], feats.labels, C=settings.svm_C, seed=seed,
                                        max_iter=settings.svm_max_iter)
    if model.classifier.bias is None:
        raise ValueError(f"{arch}: the linear SVM needs a classifier with a bias")
    with torch.no_grad():
        model.classifier.weight.copy_(weight)
        model.classifier.bias.copy_(bias)
    acc = float((feats.of(model.pool)[0] @ weight.T + bias).argmax(1).eq(feats.labels).float().mean())
    atomic_torch_save({"model": model.state_dict(), "spec": spec}, run_dir / "model.pt")
    log.info("linear SVM on %d pooled features: train acc %.3f (%s)", len(feats.labels), acc, info)
    return TrainResult(0, 0.0, float("nan"), acc, time.time() - started,
                       [{"features_cached": feats.meta.get("cache_hit"), **info}],
                       skipped=dict(sorted(skipped.items())))


def _total_steps(settings: TrainSettings, n: int) -> tuple[int, list[int]]:
    per_epoch = steps_per_epoch(n, settings.batch_size)
    if per_epoch == 0:
        raise ValueError(f"the training set has {n} images, fewer than one batch of {settings.batch_size}")
    total = int(settings.max_iters) if settings.max_iters else settings.epochs * per_epoch
    scale = per_epoch if settings.schedule_unit == "epoch" else 1
    return total, [int(round(m * scale)) for m in settings.milestones]


def train_model(model: CAMNet, train_source: Any, run_dir: str | Path, *, settings: TrainSettings, seed: int,
                spec: dict[str, Any], fingerprint: dict[str, Any], device: torch.device,
                make_train_dataset: Callable[[CAMNet], Any], image_size: int, cache_dir: str | None,
                data_root: str | None, arch: str, resume: str | Path | None = None,
                stop_after: int | None = None) -> TrainResult:
    """Train ``model`` on ``train_source`` with ``settings.recipe``; write ``model.pt`` into ``run_dir``.

    Args:
        model: the ``CAMNet`` (pretrained weights already loaded where the recipe fine-tunes).
        train_source: the training split (``ImageSource``).
        run_dir: the run directory.
        settings: ``TrainSettings``.
        seed: data order / augmentation / SVM seed.
        spec: the architecture spec stored with the weights (``wsol.engine.checkpoint.model_spec``).
        fingerprint: what a resume may not change (``train_fingerprint``).
        device: training device.
        make_train_dataset: ``model -> Dataset`` of augmented training images (``full``, ``last_stage``).
        image_size: input side of the cached features (``head``, ``linear_svm``): the evaluation input size.
        cache_dir: feature cache directory, or None (``settings.feature_cache`` false disables it too).
        data_root, arch: recorded in the feature cache key.
        resume: a checkpoint to continue from, or None.
        stop_after: stop after this many optimizer steps (checkpointed), for time-boxed jobs and tests.
    """
    run_dir = Path(run_dir)
    t0 = time.time()
    method = model.train_method or CAM()
    method.check(model, settings.recipe)
    frozen, new = frozen_modules(model, settings.recipe)
    # training images dropped under data.on_error=skip: by the file checks when the split was built, or at load time
    skipped = dict(train_source.annotations.skipped)
    if settings.recipe == "head":  # the schedule needs one batch: say so before the feature pass, not after it
        _total_steps(settings, len(train_source.annotations))
    if settings.recipe in ("head", "linear_svm"):
        if resume is not None:
            # the features come from the trunk of the run being resumed, not from this process's fresh model (a
            # trunk that is not pretrained differs per init): restore the checkpoint's weights before the pass
            model.load_state_dict(load_resumable(resume, fingerprint)["model"])
        feats = cached_pooled_features(model, train_source, arch=arch,
                                       cache_dir=cache_dir if settings.feature_cache else None,
                                       image_size=image_size, hflip=True,
                                       batch_size=64, num_workers=settings.num_workers, device=device, data_root=data_root)
        skipped.update(feats.skipped)  # not trained on
        feats = feats.kept()
        if settings.recipe == "linear_svm":
            return train_linear_svm(model, feats, run_dir, settings=settings, seed=seed, spec=spec, arch=arch,
                                    skipped=skipped, started=t0)
        net: nn.Module = MethodNet(PooledHead(model), method)
        dataset = PooledFeatureItems(feats.of(model.pool), feats.labels)
        extra_info = feats.meta
    else:
        net, dataset, extra_info = model, make_train_dataset(model), {}
        if settings.sync_bn and torch.distributed.is_initialized():
            if device.type != "cuda":  # PyTorch's SyncBatchNorm runs on GPUs only
                log.warning("train.sync_bn ignored on %s: SyncBatchNorm needs CUDA; each rank keeps its own "
                            "batch statistics", device)
            else:
                net = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = MethodNet(net, method)
    net.to(device)
    if settings.channels_last and settings.recipe not in ("head",):
        net.to(memory_format=torch.channels_last)
    total, milestones = _total_steps(settings, len(dataset))
    loop = LoopSettings(total_steps=total, batch_size=settings.batch_size,
                        accumulate_grad_batches=settings.accumulate_grad_batches, seed=seed, amp=settings.amp,
                        channels_last=settings.channels_last and settings.recipe != "head",
                        num_workers=settings.num_workers if settings.recipe != "head" else 0,
                        checkpoint_every=settings.checkpoint_every, snapshot_every=settings.snapshot_every,
                        log_every=settings.log_every)
    groups = build_param_groups(model, lr=settings.lr, weight_decay=settings.weight_decay,
                                new_layer_lr_mult=settings.new_layer_lr_mult, bias_lr_mult=settings.bias_lr_mult,
                                new_modules=new)
    optimizer = build_optimizer(groups, settings.optimizer)
    scheduler = build_scheduler(optimizer, lr_lambda(settings.schedule, total_steps=total, milestones=milestones,
                                                     gamma=settings.gamma, warmup_steps=settings.warmup_iters))
    # the CAMNet's state is checkpointed (not the head wrapper's), so every checkpoint is a whole model
    trainer = Trainer(net, dataset, run_dir, settings=loop, optimizer=optimizer, scheduler=scheduler,
                      state_extra={"spec": spec}, fingerprint=fingerprint, device=device, frozen=frozen,
                      state_module=model)
    result = trainer.fit(resume=resume, stop_after=stop_after)
    if trainer.step >= total:
        try:
            atomic_torch_save({"model": model.state_dict(), "spec": spec}, run_dir / "model.pt")
        except OSError as err:
            raise add_note(err, f"the finished checkpoint (step {trainer.step}) is kept; resuming it trains nothing "
                                "and writes model.pt")
    if extra_info:
        result.history = result.history + [{"features_cached": extra_info.get("cache_hit"),
                                            "feature_extract_seconds": extra_info.get("extract_seconds")}]
    result.skipped = dict(sorted({**skipped, **result.skipped}.items()))
    return result

