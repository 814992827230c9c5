"""Fine-tuning / training of a CAM model with exact resume (``wsol-train``).

The loop is written so that a run interrupted at any checkpoint and resumed gives the same weights
as an uninterrupted run: the sampler is a seeded permutation per epoch that can start mid-epoch,
every sample's augmentation is seeded by ``(seed, epoch, index)`` (so it does not depend on which
worker loads it), and checkpoints hold the model, optimizer, scheduler, AMP scaler, step counters and
RNG states. Checkpoints are written atomically (temp file + rename) so a crash never loses the last one.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from wsol import CONFIG_DIR
from wsol.models import CAMNet

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- data order and seeding
class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` pairs: a permutation seeded by ``(seed, epoch)``, from ``start`` on.

    ``start`` lets a resumed run continue mid-epoch at exactly the next sample.
    """

    def __init__(self, num_samples: int, seed: int, epoch: int, start: int = 0) -> None:
        self.num_samples, self.seed, self.epoch, self.start = num_samples, seed, epoch, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.num_samples, generator=g).tolist()
        return ((self.epoch, i) for i in perm[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


class SeededAugmentation(Dataset):
    """Wraps a dataset so that item ``(epoch, index)`` is transformed under a seed of its own."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        torch.manual_seed((self.seed * 1_000_003 + epoch) * 10_000_019 + index)
        return self.dataset[index]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ----------------------------------------------------------------------------- optimizer and schedule
def build_param_groups(model: CAMNet, lr: float, weight_decay: float, new_layer_lr_mult: float,
                       bias_lr_mult: float = 1.0) -> list[dict]:
    """Parameter groups: pretrained backbone vs ``model.new_modules()``, each split by kind.

    * new layers (the surgery's added conv and the classifier) get ``lr * new_layer_lr_mult``;
    * biases get ``bias_lr_mult`` on top and no weight decay (Caffe's ``lr_mult: 2, decay_mult: 0``
      on biases in the CAM prototxts);
    * other 1-D parameters (normalisation scales) get no weight decay.
    """
    new_ids = {id(p) for m in model.new_modules() for p in m.parameters()}
    # biases of convolutions and linear layers (normalisation shifts are "norm" parameters)
    bias_ids = {id(m.bias) for m in model.modules()
                if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) and m.bias is not None}
    groups: dict[tuple[bool, str], list[nn.Parameter]] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        kind = "bias" if id(p) in bias_ids else ("norm" if p.ndim <= 1 else "weight")
        groups.setdefault((id(p) in new_ids, kind), []).append(p)
    out = []
    for (is_new, kind), params in sorted(groups.items()):
        mult = (new_layer_lr_mult if is_new else 1.0) * (bias_lr_mult if kind == "bias" else 1.0)
        out.append({"params": params, "lr": lr * mult, "lr_mult": mult,
                    "weight_decay": weight_decay if kind == "weight" else 0.0,
                    "name": f"{'new' if is_new else 'backbone'}_{kind}"})
    return out


def lr_factor(step: int, total_steps: int, name: str, milestones: Sequence[int], gamma: float,
              warmup_iters: int) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (milestones already in steps)."""
    if warmup_iters > 0 and step < warmup_iters:
        warm = (step + 1) / warmup_iters
    else:
        warm = 1.0
    if name == "step":
        return warm * gamma ** sum(step >= m for m in milestones)
    if name == "cosine":
        return warm * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    raise ValueError(f"unknown scheduler {name!r}; expected 'step' or 'cosine'")


# ----------------------------------------------------------------------------- checkpoints
def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, key, *rest = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically: a crash mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``: no pickled code is executed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def model_spec(model_name: str, num_classes: int, pool: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What ``wsol-evaluate`` needs to rebuild the architecture of a saved model."""
    return {"name": model_name, "num_classes": num_classes, "pool": pool, "kwargs": dict(kwargs)}


# ----------------------------------------------------------------------------- the loop
@dataclass
class TrainResult:
    """Summary of a finished training run."""

    steps: int
    epochs: float
    final_loss: float
    train_acc: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def train_model(
    model: CAMNet,
    dataset: Dataset,
    out_dir: str | Path,
    *,
    spec: dict[str, Any],
    seed: int,
    epochs: int,
    max_iters: int | None,
    batch_size: int,
    accumulate_grad_batches: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
    new_layer_lr_mult: float,
    bias_lr_mult: float,
    scheduler: str,
    scheduler_unit: str,
    milestones: Sequence[float],
    gamma: float,
    warmup_iters: int,
    amp: bool,
    channels_last: bool,
    num_workers: int,
    checkpoint_every: int,
    log_every: int,
    resume: str | None,
    snapshot_every: int | None = None,
    device: str = "auto",
    stop_after: int | None = None,
) -> TrainResult:
    """Train ``model`` on ``dataset`` (items ``(image, label, index)``) with SGD.

    Args:
        spec: ``model_spec(...)`` stored in checkpoints so evaluation can rebuild the model.
        epochs / max_iters: training length; ``max_iters`` (optimizer steps) wins when set.
        batch_size: images per optimizer step; split into ``accumulate_grad_batches`` micro-batches.
        scheduler_unit: ``"epoch"`` or ``"iter"``: unit of ``milestones``.
        resume: ``None``, ``"auto"`` (``out_dir/checkpoints/last.pt`` if present) or a checkpoint path.
        snapshot_every: if set, also keep the weights every this many steps as
            ``out_dir/snapshots/model_step<N>.pt`` (the CAM authors compare snapshots 80k-120k).
        stop_after: stop (after checkpointing) once this many optimizer steps are done — for
            testing exact resume and for time-boxed jobs.

    Returns:
        A ``TrainResult``; ``out_dir/model.pt`` holds the final weights and ``spec``.
    """
    out_dir = Path(out_dir)
    if batch_size % accumulate_grad_batches:
        raise ValueError(f"batch_size {batch_size} is not divisible by accumulate_grad_batches "
                         f"{accumulate_grad_batches}")
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError("training dataset is empty")
    micro = batch_size // accumulate_grad_batches
    steps_per_epoch = n // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"training set has {n} images, fewer than one batch of {batch_size}")
    total_steps = int(max_iters) if max_iters else epochs * steps_per_epoch
    to_steps = (lambda m: int(round(m * steps_per_epoch))) if scheduler_unit == "epoch" else (lambda m: int(m))
    if scheduler_unit not in ("epoch", "iter"):
        raise ValueError(f"scheduler unit must be 'epoch' or 'iter', got {scheduler_unit!r}")
    milestone_steps = [to_steps(m) for m in milestones]

    dev = resolve_device(device)
    use_amp = amp and dev.type == "cuda"
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    groups = build_param_groups(model, lr, weight_decay, new_layer_lr_mult, bias_lr_mult)
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)

    step, epoch, pos = 0, 0, 0  # pos: samples of the current epoch already consumed
    ckpt_path = out_dir / "checkpoints" / "last.pt"
    resume_path = (ckpt_path if ckpt_path.is_file() else None) if resume == "auto" else resume
    seed_everything(seed)
    if resume_path:
        state = load_checkpoint(resume_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, epoch, pos = state["step"], state["epoch"], state["pos"]
        _set_rng_state(state["rng"])
        log.info("resumed from %s at step %d (epoch %d, sample %d)", resume_path, step, epoch, pos)

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                    "step": step, "epoch": epoch, "pos": pos, "rng": _rng_state(),
                                    "spec": spec})

    wrapped = SeededAugmentation(dataset, seed)
    history: list[dict[str, float]] = []
    csv_path = out_dir / "train_log.csv"
    new_log = not csv_path.exists() or not resume_path
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_file = open(csv_path, "w" if new_log else "a", newline="")
    writer = csv.writer(csv_file)
    if new_log:
        writer.writerow(["step", "epoch", "lr", "loss", "acc"])
    t0 = time.time()
    running_loss, running_correct, running_seen = 0.0, 0, 0
    model.train()
    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
               disable=None)
    try:
        while step < total_steps:
            sampler = EpochSampler(n, seed, epoch, start=pos)
            loader = DataLoader(wrapped, batch_size=micro, sampler=sampler, num_workers=num_workers,
                                drop_last=True, pin_memory=dev.type == "cuda",
                                persistent_workers=False)
            it = iter(loader)
            while step < total_steps:
                factor = lr_factor(step, total_steps, scheduler, milestone_steps, gamma, warmup_iters)
                for g in optimizer.param_groups:
                    g["lr"] = lr * g["lr_mult"] * factor
                optimizer.zero_grad(set_to_none=True)
                got = 0
                for _ in range(accumulate_grad_batches):
                    batch = next(it, None)
                    if batch is None:
                        break
                    images, labels, _ = batch
                    images = images.to(dev, non_blocking=True)
                    labels = labels.to(dev, non_blocking=True)
                    if channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                        logits = model(images)
                        loss = F.cross_entropy(logits.float(), labels)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}")
                    (loss / accumulate_grad_batches).backward()
                    got += 1
                    pos += len(labels)
                    running_loss += loss.item() * len(labels)
                    running_correct += int((logits.argmax(1) == labels).sum())
                    running_seen += len(labels)
                if got < accumulate_grad_batches:
                    # End of epoch: a partial step is dropped (its gradients discarded), like drop_last.
                    optimizer.zero_grad(set_to_none=True)
                    break
                optimizer.step()
                step += 1
                bar.update(1)
                if step % log_every == 0 or step == total_steps:
                    row = {"step": step, "epoch": epoch + pos / n, "lr": lr * factor,
                           "loss": running_loss / running_seen, "acc": running_correct / running_seen}
                    history.append(row)
                    writer.writerow([row[k] for k in ("step", "epoch", "lr", "loss", "acc")])
                    csv_file.flush()
                    bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['acc']:.3f}")
                    log.info("step %d/%d epoch %.2f lr %.4g loss %.4f acc %.3f", step, total_steps,
                             row["epoch"], row["lr"], row["loss"], row["acc"])
                    running_loss, running_correct, running_seen = 0.0, 0, 0
                if step % checkpoint_every == 0:
                    checkpoint()
                if snapshot_every and step % snapshot_every == 0:
                    save_checkpoint(out_dir / "snapshots" / f"model_step{step}.pt",
                                    {"model": model.state_dict(), "spec": spec, "step": step})
                if stop_after is not None and step >= stop_after:
                    checkpoint()
                    return TrainResult(step, epoch + pos / n, history[-1]["loss"] if history else float("nan"),
                                       history[-1]["acc"] if history else float("nan"), time.time() - t0, history)
            else:
                break
            epoch, pos = epoch + 1, 0
            checkpoint()
    finally:
        bar.close()
        csv_file.close()
    checkpoint()
    torch.save({"model": model.state_dict(), "spec": spec}, out_dir / "model.pt")
    last = history[-1] if history else {"loss": float("nan"), "acc": float("nan")}
    return TrainResult(step, epoch + pos / n, last["loss"], last["acc"], time.time() - t0, history)


# ----------------------------------------------------------------------------- entry point
def run_training(cfg: DictConfig, out_dir: Path) -> tuple[CAMNet, TrainResult]:
    """Build model and data from the config and train (shared by ``wsol-train`` and ``wsol-run``)."""
    from wsol.config import model_from_cfg, to_dict, train_dataset_from_cfg, train_kwargs

    seed_everything(cfg.seed)
    model = model_from_cfg(cfg.model, cfg.data.num_classes)
    dataset = train_dataset_from_cfg(cfg.data, model)
    spec = model_spec(cfg.model.name, model.num_classes, cfg.model.pool, to_dict(cfg.model.get("kwargs")))
    log.info("training %s (%s) on %s: %d images", cfg.model.name, cfg.model.pool, cfg.data.name, len(dataset))
    result = train_model(model, dataset, out_dir, spec=spec, seed=cfg.seed, device=cfg.device,
                         **train_kwargs(cfg.train))
    return model, result


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    """``wsol-train``: Hydra app over ``configs/train.yaml``."""
    from wsol.config import save_run_files

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    _, result = run_training(cfg, out_dir)
    save_run_files(out_dir, cfg, {"task": "train", "dataset": cfg.data.name, "arch": cfg.model.name,
                                  "pool": cfg.model.pool, "seed": cfg.seed, "steps": result.steps,
                                  "epochs": round(result.epochs, 3), "final_loss": result.final_loss,
                                  "train_acc": result.train_acc, "train_seconds": round(result.seconds, 1)})
    print(f"trained {result.steps} steps in {result.seconds:.0f}s; final loss {result.final_loss:.4f}, "
          f"train acc {100 * result.train_acc:.1f}%; weights: {out_dir / 'model.pt'}")


if __name__ == "__main__":
    main()
