"""Checkpoints: what a resumable training state holds, written atomically, read safely and checked.

A checkpoint (``<run>/checkpoints/last.pt``) is a dict of tensors and plain values (``torch.save``; loaded with
``weights_only=True``, so no pickled code runs):

    model          state dict of the network being trained
    optimizer      optimizer state dict (momentum buffers, per-group lr)
    scheduler      ``LambdaLR`` state dict
    step           optimizer steps done
    epoch, pos     the epoch in progress and the images of it already consumed (exact mid-epoch resume)
    rng            per-rank RNG states (Python, NumPy, torch CPU/CUDA), one entry per rank
    spec           what ``wsol-evaluate`` needs to rebuild the architecture (``model_spec``)
    fingerprint    the settings a resume must not change (batch size, schedule, lr, seed, data ...)
    history        the logged rows so far (step, epoch, lr, loss, acc)
    finished       true once the last step is done (a resumed finished run trains nothing)

``model.pt`` (final weights) holds ``model`` and ``spec`` only. Writes go through ``wsol.io.atomic_write`` (temp
file, fsync, rename): a kill during a write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsol.io import atomic_torch_save, load_torch_file

__all__ = ["CHECKPOINT_KEYS", "model_spec", "save_checkpoint", "load_checkpoint", "load_model_file",
           "get_rng_state", "set_rng_state", "fingerprint_diff"]

CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "step", "epoch", "pos", "rng", "spec", "fingerprint",
                   "history", "finished")


def model_spec(name: str, num_classes: int, pool: str, kwargs: dict[str, Any],
               method: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``wsol-evaluate`` needs to rebuild the architecture of a saved model (registry name and options, and
    the training-time method whose layers and map it carries: ``{"name": ..., **options}``, ``wsol.methods``)."""
    return {"name": name, "num_classes": int(num_classes), "pool": pool, "kwargs": dict(kwargs),
            "method": dict(method or {"name": "cam"})}


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (``wsol.io.atomic_write``)."""
    atomic_torch_save(state, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A resumable checkpoint, checked for every key a resume needs.

    Raises:
        FileNotFoundError: no such file.
        ValueError: empty/truncated/foreign file, or a dict missing checkpoint keys (e.g. a ``model.pt``).
    """
    state = load_torch_file(path, "checkpoint")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise ValueError(f"{path}: not a resumable wsol checkpoint (missing {missing}; found {sorted(state)[:8]})")
    return state


def load_model_file(path: str | Path) -> dict[str, Any]:
    """``model.pt`` or a checkpoint: a dict with ``model`` (state dict) and ``spec`` (architecture).

    Raises:
        FileNotFoundError, ValueError: as ``wsol.io.load_torch_file``; or the keys are missing.
    """
    state = load_torch_file(path, "model file")
    if "model" not in state or "spec" not in state or not isinstance(state["spec"], dict):
        raise ValueError(f"{path}: not a wsol model file (expected keys 'model' and 'spec'; found "
                         f"{sorted(state)[:8]})")
    spec = state["spec"]
    missing = [k for k in ("name", "num_classes", "pool", "kwargs") if k not in spec]
    if missing:
        raise ValueError(f"{path}: model spec lacks {missing}")
    return state


def get_rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors and plain tuples (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``get_rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fingerprint_diff(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between a checkpoint's fingerprint and the current run's (empty: same)."""
    keys = sorted(set(saved) | set(current))
    return [f"{k}: {saved.get(k, '<absent>')!r} in the checkpoint, {current.get(k, '<absent>')!r} now"
            for k in keys if saved.get(k) != current.get(k)]
