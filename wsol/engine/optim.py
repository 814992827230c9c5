"""Optimizer and learning-rate schedule builders.

* Parameter groups (``build_param_groups``): the pretrained trunk vs the layers the surgery added
  (``model.new_modules()``), each split into weights / biases / normalisation parameters, so that the Caffe
  recipes' ``lr_mult`` / ``decay_mult`` are expressed once: biases ``bias_lr_mult`` x lr and no weight decay,
  normalisation parameters no weight decay, new layers ``new_layer_lr_mult`` x lr.
* The optimizer class is chosen by config (``train/optimizer/*.yaml`` with a Hydra ``_target_``, instantiated as a
  partial by the entry point): this module receives a factory ``params -> Optimizer``.
* The schedule is a ``torch.optim.lr_scheduler.LambdaLR`` stepped once per optimizer step; its factor multiplies
  every group's own initial lr (so the multipliers above are kept).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

__all__ = ["build_param_groups", "build_optimizer", "build_scheduler", "lr_lambda", "SCHEDULES"]

from wsol.choices import SCHEDULES  # noqa: E402  (the one list: wsol.choices)


def build_param_groups(model: nn.Module, *, lr: float, weight_decay: float, new_layer_lr_mult: float,
                       bias_lr_mult: float, new_modules: Iterable[nn.Module] = ()) -> list[dict]:
    """Parameter groups of the trainable (``requires_grad``) parameters of ``model``.

    Args:
        model: the network.
        lr, weight_decay: base values.
        new_layer_lr_mult: lr multiplier of parameters of ``new_modules``.
        bias_lr_mult: extra lr multiplier of conv/linear biases (Caffe prototxts: 2).
        new_modules: the layers the surgery added (``model.new_modules()``).

    Returns:
        Groups ``{"params", "lr", "weight_decay", "name"}``, named ``{new|backbone}_{weight|bias|norm}``; empty
        groups are left out.
    """
    new_ids = {id(p) for m in new_modules for p in m.parameters()}
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
        out.append({"params": params, "lr": lr * mult,
                    "weight_decay": weight_decay if kind == "weight" else 0.0,
                    "name": f"{'new' if is_new else 'backbone'}_{kind}"})
    return out


def build_optimizer(groups: list[dict], factory: Callable[..., torch.optim.Optimizer]) -> torch.optim.Optimizer:
    """``factory(groups)`` (a Hydra partial such as ``torch.optim.SGD(momentum=0.9, ...)``); a clear error if the
    optimizer's options do not fit it."""
    if not groups:
        raise ValueError("no trainable parameter: every parameter is frozen")
    try:
        return factory(groups)
    except TypeError as err:
        raise ValueError(f"train.optimizer: {err}") from err


def lr_lambda(name: str, *, total_steps: int, milestones: Sequence[int], gamma: float,
              warmup_steps: int) -> Callable[[int], float]:
    """The lr factor at optimizer step ``step`` (0-based: the factor used for the ``step+1``-th update).

    Args:
        name: ``step`` (x ``gamma`` at each milestone, Caffe's "step"/"multistep"), ``cosine`` (half cosine from 1 to
            0 over ``total_steps``), ``constant``.
        total_steps: length of the run in optimizer steps.
        milestones: ``step`` schedule, in optimizer steps (``train.scheduler.milestones``, converted to steps).
        gamma: ``step`` schedule factor (``train.scheduler.gamma``).
        warmup_steps: linear warm-up ``(step + 1) / warmup_steps`` over the first steps, 0 for none
            (``train.scheduler.warmup_iters``).
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; expected one of {SCHEDULES}")
    ms = sorted(int(m) for m in milestones)

    def factor(step: int) -> float:
        warm = (step + 1) / warmup_steps if 0 < warmup_steps and step < warmup_steps else 1.0
        if name == "step":
            return warm * gamma ** sum(step >= m for m in ms)
        if name == "cosine":
            return warm * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
        return warm

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, factor: Callable[[int], float]) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying ``factor`` to every group's initial lr (stepped once per optimizer step)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
