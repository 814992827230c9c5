"""Turning the Hydra config into explicit keyword arguments — used by the entry points only.

Library functions never see a ``DictConfig``; the mains (``wsol.run``, ``wsol.train``,
``wsol.evaluate``) call these helpers, and every default lives in ``configs/``.
"""

from __future__ import annotations

import json
import logging
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch
import torchvision
from omegaconf import DictConfig, OmegaConf

import wsol
from wsol.data.datasets import ImageSource, WSOLDataset, build_source, dataset_options
from wsol.data.transforms import build_train_transform
from wsol.models import CAMNet, build_model

log = logging.getLogger(__name__)


def to_dict(node: DictConfig | None) -> dict[str, Any]:
    """A resolved plain ``dict`` of a config node (``{}`` for ``None``)."""
    return {} if node is None else OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]


# Keys every data config has; any other key of a data node is an option of its dataset's factory.
COMMON_DATA_KEYS = ("name", "root", "num_classes", "train_split", "val_split", "test_split", "image_size",
                    "crop_size", "resize_size", "hflip", "on_error")


def source_from_cfg(data: DictConfig, split: str, num_classes: int | None = None) -> ImageSource:
    """Build split ``split`` of the dataset described by a ``configs/data/*.yaml`` node.

    Every key of the node that is not one of ``COMMON_DATA_KEYS`` (``data.gt_format``, ``data.num_images``,
    ...) is passed to the registered factory as a keyword argument. ``num_classes`` (the model's) is used
    when ``data.num_classes`` is null: labels are then checked against the model's classifier (e.g. 1000
    for an ImageNet model on a subset of ImageNet).

    Raises:
        ValueError: a key that is not an option of the dataset's factory, named with the dataset.
    """
    options = {key: value for key, value in to_dict(data).items() if key not in COMMON_DATA_KEYS}
    known = dataset_options(data.name)
    if known is not None:
        for key in options:
            if key not in known:
                hint = (" (dataset options are top-level keys of the data node now: data.<option>=..., "
                        "not data.kwargs.<option>)" if key == "kwargs" else "")
                raise ValueError(f"data.{key}: dataset {data.name!r} has no option {key!r}{hint}; "
                                 f"its options are: {', '.join(known) or 'none'}")
    n = data.num_classes if data.num_classes is not None else num_classes
    return build_source(data.name, split=split, root=data.root, num_classes=n, on_error=data.on_error, **options)


def split_name(data: DictConfig, which: str) -> str:
    """Map ``train|val|test`` to the dataset's own split name (``data.<which>_split``)."""
    key = f"{which}_split"
    if key not in data:
        raise ValueError(f"unknown split {which!r}; expected train, val or test")
    name = data[key]
    if name is None:
        raise ValueError(f"dataset {data.name!r} has no {which} split (data.{key} is null)")
    return str(name)


def model_from_cfg(model: DictConfig, num_classes: int | None) -> CAMNet:
    """Build the model described by a ``configs/model/*.yaml`` node.

    ``num_classes=None`` (a dataset config with ``num_classes: null``) keeps the model's own default
    (1000 ImageNet classes), so a pretrained ImageNet model can be scored without fine-tuning.
    """
    extra = {} if num_classes is None else {"num_classes": num_classes}
    return build_model(model.name, pool=model.pool, pretrained=model.pretrained, weights_path=model.weights_path,
                       **extra, **to_dict(model.get("kwargs")))


def train_dataset_from_cfg(data: DictConfig, model: CAMNet) -> WSOLDataset:
    source = source_from_cfg(data, split_name(data, "train"), model.num_classes)
    transform = build_train_transform(data.resize_size, data.crop_size, data.hflip, model.mean, model.std)
    return WSOLDataset(source, transform)


def train_kwargs(train: DictConfig) -> dict[str, Any]:
    """Keyword arguments of ``wsol.train.train_model`` from a ``configs/train/*.yaml`` node."""
    return dict(
        epochs=train.epochs, max_iters=train.max_iters, batch_size=train.batch_size,
        accumulate_grad_batches=train.accumulate_grad_batches, lr=train.optimizer.lr,
        momentum=train.optimizer.momentum, weight_decay=train.optimizer.weight_decay,
        nesterov=train.optimizer.nesterov, new_layer_lr_mult=train.new_layer_lr_mult,
        bias_lr_mult=train.bias_lr_mult,        scheduler=train.scheduler.name, scheduler_unit=train.scheduler.unit,
        milestones=list(train.scheduler.milestones), gamma=train.scheduler.gamma,
        warmup_iters=train.scheduler.warmup_iters, amp=train.amp, channels_last=train.channels_last,
        num_workers=train.num_workers, checkpoint_every=train.checkpoint_every,
        snapshot_every=train.snapshot_every, log_every=train.log_every,
        resume=train.resume,
    )


def git_commit() -> str:
    """The commit of the wsol checkout (``-dirty`` when it has uncommitted changes), or ``unknown``."""
    repo = Path(wsol.__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance() -> dict[str, str]:
    """Versions and commit recorded in every ``metrics.json``."""
    return {"wsol_version": wsol.__version__, "torch_version": torch.__version__,
            "torchvision_version": torchvision.__version__, "python_version": platform.python_version(),
            "git_commit": git_commit()}


def save_run_files(out_dir: Path, cfg: DictConfig, metrics: dict[str, Any]) -> None:
    """Write ``metrics.json`` and the resolved ``config.yaml`` into the run dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=False) + "\n")
