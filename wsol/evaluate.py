"""Scoring a model's CAMs on a dataset, batch by batch (``wsol-evaluate``).

Per batch: ``forward_features`` -> logits -> the top-k predicted classes and the GT class -> their
CAMs in one einsum (``wsol.cam``) -> a protocol scorer's ``update``. Memory is bounded by the batch,
whatever the dataset size: scorers keep counters and histograms only. The same CAMs can be written to
a sharded fp16 store (``wsol.cam_store``) and re-scored under any protocol without the network.

Protocols (``eval.protocol``; recorded in every result row):
    * ``paper``: each CAM bilinearly upsampled to the image's own resolution (where its GT boxes live),
      min-max normalised, kept >= ``cam_threshold``, box of the largest 8-connected component;
      top-1/top-5 classification and localization error (ILSVRC devkit rules) + GT-known error.
    * ``wsolevaluation``: clovaai/wsolevaluation's score maps (GT-class CAM, INTER_CUBIC to 224x224,
      min-max) and GT boxes resized to 224 with ``int()``; MaxBoxAcc (IoU 0.5, largest contour),
      MaxBoxAccV2 (IoU 0.3/0.5/0.7, all contours), PxAP where masks exist; plus the threshold policy.
    * ``cam16_heuristics``: the CAM authors' released test-set pipeline: 256x256 resize, ten 224 crops,
      averaged softmax, |CAM| merged on the 256 canvas, resized to the image, divided by its max,
      ``dt_box`` boxes at (20, 100, 110), guesses [c1 b1, c1 b2, c2 b1, c2 b2, c3 b1].
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from wsol import CONFIG_DIR
from wsol.boxes import cams_to_boxes
from wsol.cam import cam_classes, compute_cams, upsample_cams
from wsol.data.datasets import ImageSource
from wsol.data.transforms import build_eval_transform
from wsol.data.records import ImageRecord
from wsol.dtbox import dt_box, dt_rects_to_xyxy, heuristic_guesses, paste_ten_crop_cams, ten_crop_boxes
from wsol.metrics import TopkLocalizationEvaluator
from wsol.metrics.boxacc import BoxAccEvaluator, resize_boxes_wsoleval, wsoleval_scoremap
from wsol.metrics.pxap import PxAPEvaluator
from wsol.metrics.threshold import apply_threshold_policy
from wsol.models import CAMNet, check_cam_model

log = logging.getLogger(__name__)

PROTOCOLS = ("paper", "wsolevaluation", "cam16_heuristics")
TAU_POLICIES = ("oracle", "fixed", "heldout")


@dataclass
class EvalOutput:
    """Metrics (flat, percent) and named curves (column name -> values) of one evaluation."""

    metrics: dict[str, Any]
    curves: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


# ----------------------------------------------------------------------------- data
class _EvalItems(Dataset):
    """Items ``(tensor, label, index, (width, height))``: the size is the loaded image's, i.e. the
    pixel space of its GT boxes."""

    def __init__(self, source: ImageSource, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.source.annotations)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, tuple[int, int]]:
        image = self.source.load(index)
        return self.transform(image), self.source.annotations.records[index].label, index, image.size


def _collate(batch: list) -> tuple[torch.Tensor, torch.Tensor, list[int], list[tuple[int, int]]]:
    images, labels, indices, sizes = zip(*batch)
    return torch.stack(images), torch.as_tensor(labels), list(indices), list(sizes)


# ----------------------------------------------------------------------------- scorers
class PaperScorer:
    """The paper protocol over batches of CAMs ``[B, k+1, h, w]`` (top-k classes, then the GT class)."""

    def __init__(self, topk: int, cam_threshold: float, blacklist: frozenset[str] = frozenset()) -> None:
        if not 0.0 < cam_threshold < 1.0:
            raise ValueError(f"eval.cam_threshold must be in (0, 1), got {cam_threshold}")
        self.topk, self.cam_threshold = topk, cam_threshold
        self.evaluator = TopkLocalizationEvaluator(topk=sorted({1, topk}), blacklist=blacklist)

    def update(self, records: Sequence[ImageRecord], sizes: Sequence[tuple[int, int]], classes: np.ndarray,
               cams: torch.Tensor) -> None:
        # One image at a time: each is upsampled to its own (width, height).
        boxes = np.stack([cams_to_boxes(upsample_cams(cams[b:b + 1], (h, w))[0].numpy(), self.cam_threshold)
                          for b, (w, h) in enumerate(sizes)])
        self.evaluator.update(records, classes[:, :self.topk], boxes[:, :self.topk],
                              gt_known_boxes=boxes[:, self.topk])

    def compute(self) -> EvalOutput:
        return EvalOutput(self.evaluator.compute())


class WsolEvalScorer:
    """wsolevaluation's metrics over batches of CAMs ``[B, k+1, h, w]`` (the GT class's map is last).

    Args:
        topk: number of predicted classes in the batches (classification error at 1 and ``topk``).
        cam_curve_interval, iou_thresholds: as wsolevaluation (``--cam_curve_interval``, ``--iou_threshold_list``).
        load_mask: ``record -> uint8 [224, 224]`` mask (1 fg, 0 bg, 255 ignore) for PxAP, or None.
        box_method: ``"auto" | "exact" | "fast"`` (``wsol.metrics.boxacc.BoxAccEvaluator``).
    """

    def __init__(self, topk: int, cam_curve_interval: float, iou_thresholds: Sequence[int],
                 load_mask: Callable[[ImageRecord], np.ndarray] | None = None, box_method: str = "auto") -> None:
        self.topk = topk
        self.boxacc = BoxAccEvaluator(cam_curve_interval=cam_curve_interval, iou_thresholds=tuple(iou_thresholds),
                                      method=box_method)
        self.pxap = PxAPEvaluator(cam_curve_interval) if load_mask is not None else None
        self.load_mask = load_mask
        self.ks = sorted({1, topk})
        self.cls_wrong = dict.fromkeys(self.ks, 0)
        self.n_images = 0

    def update(self, records: Sequence[ImageRecord], sizes: Sequence[tuple[int, int]], classes: np.ndarray,
               cams: torch.Tensor) -> None:
        labels = np.array([r.label for r in records])
        for k in self.ks:
            self.cls_wrong[k] += int((classes[:, :k] != labels[:, None]).all(axis=1).sum())
        self.n_images += len(records)
        maps = [wsoleval_scoremap(cams[b, -1].numpy()) for b in range(len(records))]
        boxed = [b for b, r in enumerate(records) if len(r.boxes)]
        if boxed:
            self.boxacc.update([maps[b] for b in boxed],
                               [resize_boxes_wsoleval(records[b].boxes, sizes[b]) for b in boxed])
        if self.pxap is not None and self.load_mask is not None:
            self.pxap.update(maps, [self.load_mask(r) for r in records])

    def compute(self) -> EvalOutput:
        if self.n_images == 0:
            raise ValueError("no image was scored")
        metrics: dict[str, Any] = {f"top{k}_cls_err": 100.0 * self.cls_wrong[k] / self.n_images for k in self.ks}
        metrics["n_images"] = self.n_images
        curves: dict[str, dict[str, np.ndarray]] = {}
        if self.boxacc.n_images:  # no image with a box (e.g. OpenImages): PxAP only
            metrics.update({k: v for k, v in self.boxacc.compute().items() if k != "n_images"})
            metrics["n_loc_images"] = self.boxacc.n_images
            curves["boxacc"] = self.boxacc.curve()
        if self.pxap is not None:
            metrics.update({k: v for k, v in self.pxap.compute().items() if k != "n_images"})
            curves["pxap"] = self.pxap.curve()
        return EvalOutput(metrics, curves)


# ----------------------------------------------------------------------------- the loops
@torch.no_grad()
def forward_cams(model: CAMNet, images: torch.Tensor, labels: torch.Tensor,
                 topk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch through the model: ``(classes [B, k+1], probs [B, k+1], cams [B, k+1, h, w])`` on CPU.

    ``classes`` are the top-k predictions (best first) then the GT class; ``probs`` their softmax
    probabilities; ``cams`` float32 at feature-map resolution.
    """
    features = model.forward_features(images)
    logits = model.forward_head(features).float()
    classes = cam_classes(logits, labels.to(logits.device), topk)
    probs = logits.softmax(1).gather(1, classes)
    cams = compute_cams(features.float(), model.classifier.weight.float(), classes)
    return classes.cpu(), probs.cpu(), cams.cpu()


def build_scorer(protocol: str, *, topk: int, cam_threshold: float, cam_curve_interval: float,
                 iou_thresholds: Sequence[int], blacklist: frozenset[str] = frozenset(),
                 load_mask: Callable[[ImageRecord], np.ndarray] | None = None,
                 box_method: str = "auto") -> PaperScorer | WsolEvalScorer:
    """The scorer of a CAM-based protocol (``paper`` or ``wsolevaluation``)."""
    if protocol == "paper":
        return PaperScorer(topk, cam_threshold, blacklist)
    if protocol == "wsolevaluation":
        return WsolEvalScorer(topk, cam_curve_interval, iou_thresholds, load_mask, box_method)
    if protocol == "cam16_heuristics":
        raise ValueError("cam16_heuristics runs the network on ten crops; its CAMs cannot be re-scored "
                         "from a CAM store")
    raise ValueError(f"unknown eval.protocol {protocol!r}; expected one of {PROTOCOLS}")


@torch.no_grad()
def evaluate_model(
    model: CAMNet,
    source: ImageSource,
    *,
    protocol: str = "paper",
    image_size: int = 224,
    cam_threshold: float = 0.2,
    topk: int = 5,
    cam_curve_interval: float = 0.01,
    iou_thresholds: Sequence[int] = (30, 50, 70),
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    load_mask: Callable[[ImageRecord], np.ndarray] | None = None,
    box_method: str = "auto",
    cam_store: Any | None = None,
) -> EvalOutput:
    """Score ``model`` on ``source`` under ``protocol``, streaming batch by batch.

    Args:
        protocol: ``paper`` | ``wsolevaluation`` | ``cam16_heuristics`` (module docstring).
        image_size: evaluation input: the whole image resized to ``image_size x image_size``
            (``cam16_heuristics``: ``image_size`` crops of the image resized to ``image_size * 256/224``,
            i.e. the authors' 224 crops of 256 at ``image_size=224``).
        cam_threshold: paper protocol, in (0, 1).
        topk: predicted classes whose CAMs are computed (5 for top-5 errors).
        load_mask: PxAP masks for ``wsolevaluation`` (OpenImages), or None.
        cam_store: an open ``wsol.cam_store.CAMStoreWriter`` receiving every batch's CAMs, or None.

    Returns:
        ``EvalOutput`` with flat metrics (percent) and curves.
    """
    check_cam_model(model)
    annotations = source.annotations
    if len(annotations) == 0:
        raise ValueError("evaluation dataset is empty")
    device = torch.device(device)
    model.eval().to(device)
    topk = min(topk, model.num_classes)
    t0 = time.time()
    if protocol == "cam16_heuristics":
        # The authors' geometry is 256 -> 224 crops for a 224-input network; other input sizes keep the
        # same ratio (e.g. 64 px synthetic models: 73 -> 64 crops).
        out = _evaluate_cam16(model, source, batch_size=max(1, batch_size // 10), num_workers=num_workers,
                              device=device, size=round(image_size * 256 / 224), crop=image_size)
    else:
        scorer = build_scorer(protocol, topk=topk, cam_threshold=cam_threshold,
                              cam_curve_interval=cam_curve_interval, iou_thresholds=iou_thresholds,
                              blacklist=annotations.blacklist, load_mask=load_mask, box_method=box_method)
        loader = DataLoader(_EvalItems(source, build_eval_transform(image_size, model.mean, model.std)),
                            batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate)
        for images, labels, indices, sizes in tqdm(loader, desc=f"evaluate[{protocol}]", unit="batch",
                                                   disable=None):
            classes, probs, cams = forward_cams(model, images.to(device), labels, topk)
            if cam_store is not None:
                cam_store.add(torch.as_tensor(indices), torch.as_tensor(sizes), classes, probs, cams)
            scorer.update([annotations.records[i] for i in indices], sizes, classes.numpy(), cams)
        out = scorer.compute()
    out.metrics["eval_seconds"] = round(time.time() - t0, 2)
    return out


def rescore_cam_store(store: Any, source: ImageSource, *, protocol: str, topk: int, cam_threshold: float,
                      cam_curve_interval: float, iou_thresholds: Sequence[int], batch_size: int = 256,
                      load_mask: Callable[[ImageRecord], np.ndarray] | None = None,
                      box_method: str = "auto") -> EvalOutput:
    """Score CAMs saved by an earlier evaluation (``wsol.cam_store.CAMStore``) under ``protocol``."""
    annotations = source.annotations
    if len(store) != len(annotations):
        raise ValueError(f"the CAM store holds {len(store)} images but the dataset split has {len(annotations)}")
    stored_topk = int(store.meta.get("topk", topk))
    scorer = build_scorer(protocol, topk=min(topk, stored_topk), cam_threshold=cam_threshold,
                          cam_curve_interval=cam_curve_interval, iou_thresholds=iou_thresholds,
                          blacklist=annotations.blacklist, load_mask=load_mask, box_method=box_method)
    t0 = time.time()
    for batch in store.iter_batches(batch_size):
        records = [annotations.records[int(i)] for i in batch["indices"]]
        sizes = [(int(w), int(h)) for w, h in batch["sizes"]]
        scorer.update(records, sizes, batch["classes"].numpy(), batch["cams"])
    out = scorer.compute()
    out.metrics["eval_seconds"] = round(time.time() - t0, 2)
    return out


@torch.no_grad()
def _evaluate_cam16(model: CAMNet, source: ImageSource, *, batch_size: int, num_workers: int,
                    device: torch.device, size: int = 256, crop: int = 224) -> EvalOutput:
    """The authors' released heuristics pipeline (module docstring); ``batch_size`` images x 10 crops."""
    annotations = source.annotations
    boxes10, flipped = ten_crop_boxes(size, crop)
    evaluator = TopkLocalizationEvaluator(topk=(1, 5), blacklist=annotations.blacklist)
    loader = DataLoader(_EvalItems(source, build_eval_transform(size, model.mean, model.std)), batch_size=batch_size,
                        shuffle=False, num_workers=num_workers, collate_fn=_collate)
    if model.num_classes < 3:
        raise ValueError(f"cam16_heuristics needs >= 3 classes (top-3 guesses); the model has {model.num_classes}")
    for images, labels, indices, sizes in tqdm(loader, desc="evaluate[cam16_heuristics]", unit="batch",
                                               disable=None):
        images = images.to(device)
        crops = []
        for (x0, y0, x1, y1), flip in zip(boxes10, flipped):
            c = images[:, :, y0:y1 + 1, x0:x1 + 1]
            crops.append(c.flip(-1) if flip else c)
        b = images.shape[0]
        batch = torch.stack(crops, 1).flatten(0, 1)  # [B*10, 3, crop, crop], image-major
        features = model.forward_features(batch)
        probs = model.forward_head(features).float().softmax(1).view(b, 10, -1).mean(1)
        top = probs.topk(min(5, model.num_classes), dim=1).indices  # [B, 5]
        classes = torch.cat([top[:, :3], labels.view(-1, 1).to(top)], 1)  # [B, 4]: top-3 + GT
        cams = compute_cams(features.float(), model.classifier.weight.float(), classes.repeat_interleave(10, 0))
        # Each crop's CAM resized to the crop (bicubic, as MATLAB imresize), merged on the 256 canvas.
        cams = F.interpolate(cams, size=(crop, crop), mode="bicubic", align_corners=False)
        canvas = paste_ten_crop_cams(cams.view(b, 10, classes.shape[1], crop, crop), size)  # [B, 4, 256, 256]
        records = [annotations.records[i] for i in indices]
        guess_labels, guess_boxes, known = [], [], []
        for i, (w, h) in enumerate(sizes):
            maps = F.interpolate(canvas[i:i + 1], size=(h, w), mode="bicubic", align_corners=False)[0]
            maps = maps.clamp_min(0) / maps.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
            gray = (maps * 255).round().to(torch.uint8).cpu().numpy()  # the 8-bit heat map dt_box reads
            per_class = [dt_rects_to_xyxy(dt_box(g)) for g in gray]
            labs, bxs = heuristic_guesses(classes[i, :3].tolist(), per_class[:3])
            guess_labels.append(labs)
            guess_boxes.append(bxs)
            known.append(per_class[-1][0])
        evaluator.update(records, np.stack(guess_labels), np.stack(guess_boxes), gt_known_boxes=np.stack(known))
    return EvalOutput(evaluator.compute())


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


def run_evaluation(cfg: DictConfig, model: CAMNet, arch: str, out_dir: Path) -> dict[str, Any]:
    """Evaluate ``model`` (registry name ``arch``) as ``cfg.eval`` says; return the flat result row.

    Writes each curve (e.g. accuracy vs tau) as ``<name>_curve.csv`` into ``out_dir``, and the CAMs
    into ``out_dir/cams`` when ``eval.save_cams`` is true. With ``eval.tau_policy=heldout`` the
    validation split is scored first and its best tau is applied to the scored split.
    """
    from wsol.config import provenance, source_from_cfg, split_name
    from wsol.train import resolve_device

    ev = cfg.eval
    if cfg.data.num_classes is not None and model.num_classes != cfg.data.num_classes:
        raise ValueError(f"model has {model.num_classes} classes but dataset {cfg.data.name!r} has "
                         f"{cfg.data.num_classes} (data.num_classes)")
    if ev.tau_policy not in TAU_POLICIES:
        raise ValueError(f"unknown eval.tau_policy {ev.tau_policy!r}; expected one of {TAU_POLICIES}")
    device = resolve_device(cfg.device)
    kwargs = dict(protocol=ev.protocol, image_size=cfg.data.image_size, cam_threshold=ev.cam_threshold,
                  topk=cfg.cam.topk, cam_curve_interval=ev.cam_curve_interval,
                  iou_thresholds=list(ev.iou_thresholds), batch_size=ev.batch_size, num_workers=ev.num_workers,
                  device=device, box_method=ev.box_method)
    source = source_from_cfg(cfg.data, split_name(cfg.data, ev.split), model.num_classes)
    load_mask = _mask_loader(source)
    store = None
    if ev.save_cams or ev.export_scoremaps:
        from wsol.cam_store import CAMStoreWriter

        store = CAMStoreWriter(out_dir / "cams", meta={
            "dataset": cfg.data.name, "split": split_name(cfg.data, ev.split), "arch": arch, "pool": model.pool,
            "topk": min(cfg.cam.topk, model.num_classes), "image_size": cfg.data.image_size,
            "image_ids": [r.image_id for r in source.annotations.records]})
    out = evaluate_model(model, source, load_mask=load_mask, cam_store=store, **kwargs)
    if store is not None:
        store.close()
        if ev.export_scoremaps:
            from wsol.cam_store import CAMStore, export_wsoleval_scoremaps

            n = export_wsoleval_scoremaps(CAMStore(out_dir / "cams"), [r.image_id for r in source.annotations.records],
                                          ev.export_scoremaps, wsoleval_scoremap)
            log.info("wrote %d wsolevaluation score maps under %s", n, ev.export_scoremaps)
    row: dict[str, Any] = {
        "dataset": cfg.data.name, "data_root": None if cfg.data.root is None else str(cfg.data.root),
        "split": split_name(cfg.data, ev.split), "arch": arch, "pool": model.pool,
        "protocol": ev.protocol, "seed": cfg.seed, "image_size": cfg.data.image_size,
    }
    if ev.protocol == "paper":
        row["cam_threshold"] = ev.cam_threshold
    if ev.protocol == "wsolevaluation":
        row["cam_curve_interval"] = ev.cam_curve_interval
    row.update(out.metrics)
    if ev.protocol == "wsolevaluation" and "boxacc" in out.curves:
        row.update(_threshold_policy(cfg, model, out, kwargs))
    for name, curve in out.curves.items():
        _write_curve(out_dir / f"{name}_curve.csv", curve)
    skipped = source.annotations.skipped
    row.update({"n_skipped": len(skipped), "skipped": dict(sorted(skipped.items())), **provenance()})
    return row


def rescore_from_cfg(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Re-score a CAM store (``cams=DIR`` from an earlier ``eval.save_cams=true``) without the network."""
    from wsol.cam_store import CAMStore
    from wsol.config import provenance, source_from_cfg, split_name

    ev = cfg.eval
    store = CAMStore(cfg.cams)
    meta = store.meta
    source = source_from_cfg(cfg.data, split_name(cfg.data, ev.split), cfg.data.num_classes)
    ids = [r.image_id for r in source.annotations.records]
    if meta.get("image_ids") is not None and list(meta["image_ids"]) != ids:
        raise ValueError(f"{cfg.cams}: the stored CAMs are of other images than {cfg.data.name} split "
                         f"{split_name(cfg.data, ev.split)!r}")
    out = rescore_cam_store(store, source, protocol=ev.protocol, topk=cfg.cam.topk, cam_threshold=ev.cam_threshold,
                            cam_curve_interval=ev.cam_curve_interval, iou_thresholds=list(ev.iou_thresholds),
                            batch_size=ev.batch_size, load_mask=_mask_loader(source), box_method=ev.box_method)
    row: dict[str, Any] = {"dataset": cfg.data.name,
                           "data_root": None if cfg.data.root is None else str(cfg.data.root),
                           "split": split_name(cfg.data, ev.split),
                           "arch": meta.get("arch"), "pool": meta.get("pool"), "protocol": ev.protocol,
                           "seed": cfg.seed, "image_size": meta.get("image_size"), "cams": str(cfg.cams)}
    row.update(out.metrics)
    if ev.protocol == "wsolevaluation" and "boxacc" in out.curves:
        if ev.tau_policy == "heldout":
            raise ValueError("eval.tau_policy=heldout needs the network (it scores data.val_split); "
                             "use oracle or fixed when re-scoring stored CAMs")
        row.update(_threshold_policy(cfg, None, out, {}))  # type: ignore[arg-type]
    for name, curve in out.curves.items():
        _write_curve(out_dir / f"{name}_curve.csv", curve)
    return {**row, **provenance()}


def _threshold_policy(cfg: DictConfig, model: CAMNet, out: EvalOutput, kwargs: dict[str, Any]) -> dict[str, Any]:
    """MaxBoxAcc (V1 curve) under ``eval.tau_policy``: the oracle tau is reported as an upper bound."""
    from wsol.config import source_from_cfg, split_name

    ev = cfg.eval
    heldout = None
    if ev.tau_policy == "heldout":
        val_split = split_name(cfg.data, "val")
        if val_split == split_name(cfg.data, ev.split):
            raise ValueError(f"eval.tau_policy=heldout: the held-out split {val_split!r} is the scored split")
        val_source = source_from_cfg(cfg.data, val_split, model.num_classes)
        heldout = evaluate_model(model, val_source, load_mask=_mask_loader(val_source), **kwargs).curves["boxacc"]
    elif ev.tau_policy == "fixed" and ev.tau is None:
        raise ValueError("eval.tau_policy=fixed needs eval.tau (a threshold on the cam_curve_interval grid)")
    policy = apply_threshold_policy(out.curves["boxacc"], "boxacc_v1_iou50",
                                    tau=ev.tau if ev.tau_policy == "fixed" else None, heldout_curve=heldout)
    return {"tau_policy": ev.tau_policy, "tau": policy["tau"], "tau_source": policy["tau_source"],
            "boxacc_at_tau": policy["boxacc_at_tau"], "oracle_tau": policy["oracle_tau"]}


def _mask_loader(source: ImageSource) -> Callable[[ImageRecord], np.ndarray] | None:
    """PxAP masks for sources that have them (OpenImages30k), else None."""
    mask_root = getattr(source, "mask_root", None)
    if mask_root is None or not any(r.mask_paths for r in source.annotations.records):
        return None
    from wsol.data.masks import load_wsoleval_mask

    return lambda record: load_wsoleval_mask(mask_root, record.mask_paths, record.ignore_path)


def _write_curve(path: Path, curve: dict[str, np.ndarray]) -> None:
    import pandas as pd

    pd.DataFrame({k: np.asarray(v) for k, v in curve.items()}).to_csv(path, index=False, float_format="%.6g")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    """``wsol-evaluate``: Hydra app over ``configs/evaluate.yaml``."""
    from hydra.core.hydra_config import HydraConfig

    from wsol.config import model_from_cfg, save_run_files
    from wsol.report import format_summary

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.cams:
        row = rescore_from_cfg(cfg, out_dir)
    elif cfg.checkpoint:
        model, spec = load_trained_model(cfg.checkpoint)
        if (spec["name"], spec["pool"]) != (cfg.model.name, cfg.model.pool):
            log.warning("the checkpoint's model %s/%s replaces model=%s/%s", spec["name"], spec["pool"],
                        cfg.model.name, cfg.model.pool)
        row = run_evaluation(cfg, model, spec["name"], out_dir)
        row["checkpoint"] = str(cfg.checkpoint)
    else:
        row = run_evaluation(cfg, model_from_cfg(cfg.model, cfg.data.num_classes), cfg.model.name, out_dir)
    save_run_files(out_dir, cfg, row)
    print(format_summary(row))
    print(f"run dir: {out_dir}")



if __name__ == "__main__":
    main()
