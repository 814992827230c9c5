"""Scoring a model's CAMs on a dataset, batch by batch (``wsol-evaluate``).

Per batch: ``forward_features`` -> logits -> the top-k predicted classes and the GT class ->
their CAMs in one einsum (``wsol.cam``) -> boxes -> the protocol's evaluator (``update``). Memory
is bounded by the batch, whatever the dataset size; the evaluators keep counters only.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from tqdm import tqdm

from wsol import CONFIG_DIR
from wsol.boxes import cams_to_boxes
from wsol.cam import cam_classes, compute_cams, upsample_cams
from wsol.data.datasets import WSOLDataset
from wsol.metrics import TopkLocalizationEvaluator
from wsol.models import CAMNet, check_cam_model

log = logging.getLogger(__name__)

PROTOCOLS = ("paper",)


def _collate(batch: list) -> tuple[torch.Tensor, torch.Tensor, list[int], list[tuple[int, int]]]:
    images, labels, indices = zip(*[(b[0], b[1], b[2]) for b in batch])
    return torch.stack(images), torch.as_tensor(labels), list(indices), [b[3] for b in batch]


class _WithSize(torch.utils.data.Dataset):
    """Adds the loaded image's ``(width, height)`` to each item: the pixel space of its GT boxes."""

    def __init__(self, dataset: WSOLDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, tuple[int, int]]:
        image = self.dataset.source.load(index)
        record = self.dataset.source.annotations.records[index]
        return self.dataset.transform(image), record.label, index, image.size


@torch.no_grad()
def evaluate_model(
    model: CAMNet,
    dataset: WSOLDataset,
    *,
    protocol: str = "paper",
    cam_threshold: float = 0.2,
    topk: int = 5,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Score ``model`` on ``dataset`` under ``protocol``.

    Args:
        protocol: ``"paper"``: each CAM bilinearly upsampled to the image's own resolution, min-max
            normalised, thresholded at ``cam_threshold``, box of the largest 8-connected component;
            top-1/top-5 classification and localization error (ILSVRC devkit rules) and GT-known
            localization error.
        cam_threshold: in (0, 1).
        topk: number of predicted classes whose CAMs are boxed (5 for top-5 errors).

    Returns:
        Flat metrics (percent errors; ``n_images`` ...).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown eval.protocol {protocol!r}; expected one of {PROTOCOLS}")
    if not 0.0 < cam_threshold < 1.0:
        raise ValueError(f"eval.cam_threshold must be in (0, 1), got {cam_threshold}")
    check_cam_model(model)
    annotations = dataset.source.annotations
    if len(annotations) == 0:
        raise ValueError("evaluation dataset is empty")
    device = torch.device(device)
    model.eval().to(device)
    topk = min(topk, model.num_classes)
    evaluator = TopkLocalizationEvaluator(topk=sorted({1, topk}), blacklist=annotations.blacklist)
    loader = DataLoader(_WithSize(dataset), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_collate)
    t0 = time.time()
    for images, labels, indices, sizes in tqdm(loader, desc=f"evaluate[{protocol}]", unit="batch", disable=None):
        images = images.to(device)
        features = model.forward_features(images)
        logits = model.forward_head(features)
        classes = cam_classes(logits.float(), labels.to(device), topk)  # [B, topk + 1]
        cams = compute_cams(features.float(), model.classifier.weight.float(), classes).cpu()
        classes = classes.cpu().numpy()
        records = [annotations.records[i] for i in indices]
        boxes = np.stack([cams_to_boxes(upsample_cams(cams[b:b + 1], (h, w))[0].numpy(), cam_threshold)
                          for b, (w, h) in enumerate(sizes)])  # [B, topk + 1, 4] in image pixels
        evaluator.update(records, classes[:, :topk], boxes[:, :topk], gt_known_boxes=boxes[:, topk])
    metrics = evaluator.compute()
    metrics["eval_seconds"] = round(time.time() - t0, 2)
    return metrics


# ----------------------------------------------------------------------------- entry points
def load_trained_model(path: str | Path) -> tuple[CAMNet, dict[str, Any]]:
    """Rebuild a model saved by ``wsol-train`` / ``wsol-run`` (``model.pt`` or a checkpoint).

    Loaded with ``weights_only=True``: the file's architecture spec and tensors only, no pickled code.
    """
    from wsol.models import build_model
    from wsol.train import load_checkpoint

    state = load_checkpoint(path)
    if "spec" not in state or "model" not in state:
        raise ValueError(f"{path}: not a wsol checkpoint (expected keys 'spec' and 'model', "
                         f"found {sorted(state)[:8]})")
    spec = state["spec"]
    model = build_model(spec["name"], num_classes=spec["num_classes"], pool=spec["pool"], pretrained=False,
                        **spec["kwargs"])
    model.load_state_dict(state["model"])
    return model, spec


def run_evaluation(cfg: DictConfig, model: CAMNet, arch: str) -> dict[str, Any]:
    """Evaluate ``model`` (registry name ``arch``) as ``cfg.eval`` says; return the flat result row."""
    from wsol.config import eval_dataset_from_cfg, provenance
    from wsol.train import resolve_device

    if cfg.data.num_classes is not None and model.num_classes != cfg.data.num_classes:
        raise ValueError(f"model has {model.num_classes} classes but dataset {cfg.data.name!r} has "
                         f"{cfg.data.num_classes} (data.num_classes)")
    dataset = eval_dataset_from_cfg(cfg.data, model, cfg.eval.split)
    metrics = evaluate_model(model, dataset, protocol=cfg.eval.protocol, cam_threshold=cfg.eval.cam_threshold,
                             topk=cfg.cam.topk, batch_size=cfg.eval.batch_size, num_workers=cfg.eval.num_workers,
                             device=resolve_device(cfg.device))
    skipped = dataset.source.annotations.skipped
    row: dict[str, Any] = {
        "dataset": cfg.data.name, "split": str(cfg.data[f"{cfg.eval.split}_split"]), "arch": arch,
        "pool": model.pool, "protocol": cfg.eval.protocol, "seed": cfg.seed,
        "image_size": cfg.data.image_size, "cam_threshold": cfg.eval.cam_threshold,
        **metrics,
        "n_skipped": len(skipped), "skipped_ids": sorted(skipped),
        **provenance(),
    }
    return row


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    """``wsol-evaluate``: Hydra app over ``configs/evaluate.yaml``."""
    from hydra.core.hydra_config import HydraConfig

    from wsol.config import model_from_cfg, save_run_files
    from wsol.report import format_summary

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.checkpoint:
        model, spec = load_trained_model(cfg.checkpoint)
        if (spec["name"], spec["pool"]) != (cfg.model.name, cfg.model.pool):
            log.warning("the checkpoint's model %s/%s replaces model=%s/%s", spec["name"], spec["pool"],
                        cfg.model.name, cfg.model.pool)
        row = run_evaluation(cfg, model, spec["name"])
        row["checkpoint"] = str(cfg.checkpoint)
    else:
        row = run_evaluation(cfg, model_from_cfg(cfg.model, cfg.data.num_classes), cfg.model.name)
    save_run_files(out_dir, cfg, row)
    print(format_summary(row))
    print(f"run dir: {out_dir}")



if __name__ == "__main__":
    main()
