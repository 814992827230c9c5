"""The loop that feeds every evaluator: images -> network -> CAMs -> ``CAMBatch`` -> ``process`` (and the store).

``inference_on_dataset`` (detectron2's name) runs a CAM producer over a split, batch by batch, with memory bounded
by the batch whatever the dataset size. Under ``torch.distributed`` each rank takes a contiguous block of the
images (``shard_indices``: no image dropped or counted twice when the world size does not divide the dataset) and
the evaluators sum their counters at ``evaluate()``. The maps are rounded to float16 before scoring in every run
(the CAM store's precision: what is stored is what is scored, and a run without the store scores the same numbers),
and with a store an interrupted run resumes from the finished shards.

``score_cam_store`` feeds stored CAMs to the same evaluators, without the network.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from wsol.cam import cam_classes, compute_cams
from wsol.data.records import ImageRecord
from wsol.data.datasets import SkippedImage, load_or_skip, record_skipped, split_skipped
from wsol.engine.distributed import all_gather_objects, get_dist, shard_indices
from wsol.evaluation.base import CAMBatch, DatasetEvaluator
from wsol.evaluation.store import CAMStore, CAMStoreWriter, iter_journaled_batches
from wsol.models import CAMNet

log = logging.getLogger(__name__)

__all__ = ["CAMProducer", "forward_cams", "EvalItems", "inference_on_dataset", "score_cam_store",
           "select_topk"]

#: ``(images [B,3,H,W], labels [B]) -> (classes [B,k+1], probs [B,k+1], cams [B,k+1,h,w])`` on the CPU.
CAMProducer = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@torch.no_grad()
def forward_cams(model: CAMNet, images: torch.Tensor, labels: torch.Tensor,
                 topk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch through the model: ``(classes [B, k+1], probs [B, k+1], cams [B, k+1, h, w])`` on the CPU.

    ``classes`` are the top-k predictions (best first) then the GT class; ``probs`` their softmax probabilities;
    ``cams`` float32 at feature-map resolution — one ``forward_features``, one einsum, no hooks. A model trained with
    a method whose map is not the CAM (ACoL) gives that method's map (``model.train_method.class_maps``).
    """
    features = model.forward_features(images)
    logits = model.forward_head(features).float()
    classes = cam_classes(logits, labels.to(logits.device), topk)
    probs = logits.softmax(1).gather(1, classes)
    method = getattr(model, "train_method", None)
    if method is not None:
        cams = method.class_maps(model, features, classes)
    else:
        cams = compute_cams(features.float(), model.classifier.weight.float(), classes)
    return classes.cpu(), probs.cpu(), cams.cpu()


class EvalItems(Dataset):
    """Items ``(tensor, label, index, (width, height))``; the size is the loaded image's (its GT boxes' space).

    An image that fails to load under ``data.on_error=skip`` comes out as a ``SkippedImage`` (the collate function
    sets it aside; the loop lists it in ``annotations.skipped``, and so in ``metrics.json``).
    """

    def __init__(self, source: Any, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.source.annotations)

    def __getitem__(self, index: int) -> Any:
        image = load_or_skip(self.source, index)
        if isinstance(image, SkippedImage):
            return image
        return self.transform(image), self.source.annotations.records[index].label, index, image.size


def _collate(batch: list) -> tuple[torch.Tensor | None, torch.Tensor, list[int], list[tuple[int, int]], list]:
    kept, skipped = split_skipped(batch)
    if not kept:
        return None, torch.zeros(0, dtype=torch.int64), [], [], skipped
    images, labels, indices, sizes = zip(*kept)
    return torch.stack(images), torch.as_tensor(labels), list(indices), list(sizes), skipped


def select_topk(classes: torch.Tensor, scores: torch.Tensor, cams: torch.Tensor,
                topk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the first ``topk`` predicted columns and the GT column (always the LAST one) of stored CAMs."""
    stored = classes.shape[1] - 1
    if topk > stored:
        raise ValueError(f"the CAM store holds the top-{stored} classes per image; top-{topk} was asked "
                         f"(cam.topk <= {stored}, or evaluate the model again)")
    cols = list(range(topk)) + [stored]
    return classes[:, cols], scores[:, cols], cams[:, cols]


def _process(evaluator: DatasetEvaluator, records: Sequence[ImageRecord], indices: Sequence[int],
             sizes: Sequence[tuple[int, int]], classes: torch.Tensor, scores: torch.Tensor,
             cams: torch.Tensor) -> None:
    evaluator.process(CAMBatch(records=[records[i] for i in indices], indices=np.asarray(indices, dtype=np.int64),
                               sizes=[(int(w), int(h)) for w, h in sizes], classes=classes.numpy(),
                               scores=scores.numpy(), cams=cams))


@torch.no_grad()
def inference_on_dataset(producer: CAMProducer, source: Any, evaluator: DatasetEvaluator, *,
                         transform: Callable[[Image.Image], torch.Tensor], batch_size: int, num_workers: int,
                         device: torch.device, store: CAMStoreWriter | None = None, desc: str = "evaluate") -> None:
    """Run ``producer`` over this rank's share of ``source`` and feed ``evaluator`` (and ``store``).

    Args:
        producer: e.g. ``lambda x, y: forward_cams(model, x, y, topk)`` or ``wsol.evaluation.cam16.TenCropCAMs``.
        source: an ``ImageSource`` (``annotations`` + ``load(i)``).
        evaluator: receives every batch (``reset`` is the caller's business).
        transform: PIL image -> normalised tensor.
        store: an open ``CAMStoreWriter``; images it already holds (a resumed run) are scored from it.
    """
    from tqdm import tqdm

    records = source.annotations.records
    info = get_dist()
    mine = shard_indices(len(records), info.rank, info.world_size)
    todo = list(mine)
    if store is not None and store.done_indices:
        done = set(mine) & store.done_indices
        for batch in iter_journaled_batches(store.dir, done, batch_size):
            _process(evaluator, records, batch["indices"].tolist(), batch["sizes"].tolist(), batch["classes"],
                     batch["scores"], batch["cams"])
        todo = [i for i in mine if i not in store.done_indices]
        log.info("resumed: %d images scored from the store's finished shards, %d to compute", len(done), len(todo))
    if not todo:
        all_gather_objects([])  # keep the ranks' collective calls in step
        return
    loader = DataLoader(Subset(EvalItems(source, transform), todo), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=_collate, pin_memory=device.type == "cuda")
    skipped: list[SkippedImage] = []
    for images, labels, indices, sizes, dropped in tqdm(loader, desc=desc, unit="batch",
                                                        disable=None if info.is_main else True):
        skipped += dropped
        if images is None:
            continue
        classes, scores, cams = producer(images.to(device, non_blocking=True), labels)
        # ONE precision for every path: the maps are rounded to float16 (the store's dtype) before they are scored,
        # stored or not, so a run with eval.save_cams=true and one without give the same boxes and metrics
        cams = cams.to(torch.float16).float()
        if store is not None:
            store.add(torch.as_tensor(indices), torch.as_tensor(sizes), classes, scores, cams)
        _process(evaluator, records, indices, sizes, classes, scores, cams)
    for part in all_gather_objects(skipped):  # every rank's, so rank 0's metrics.json lists them all
        record_skipped(source.annotations, part)
    if skipped:
        log.warning("%d image(s) skipped at load time (data.on_error=skip), e.g. %s", len(skipped), skipped[0].reason)


def score_cam_store(store: CAMStore, source: Any, evaluator: DatasetEvaluator, *, topk: int,
                    batch_size: int = 256) -> None:
    """Feed the CAMs of a complete store to ``evaluator`` (this rank's share), keeping ``topk`` predictions.

    Raises:
        ValueError: an image whose stored frame (its ``(width, height)`` when the CAMs were made) differs from the
            size its record states now (another ``data.render_size``, a resized copy): its boxes would be scored
            against maps of another frame. Checked before the image is scored; the first such image is named.
    """
    records = source.annotations.records
    info = get_dist()
    mine = set(shard_indices(len(records), info.rank, info.world_size))
    for batch in store.iter_batches(batch_size):
        keep = torch.tensor([i in mine for i in batch["indices"].tolist()], dtype=torch.bool)
        if not keep.any():
            continue
        classes, scores, cams = select_topk(batch["classes"][keep], batch["scores"][keep], batch["cams"][keep], topk)
        if (batch["indices"][keep] >= len(records)).any():
            raise ValueError(f"{store.dir}: image indices beyond the split's {len(records)} images")
        indices, sizes = batch["indices"][keep].tolist(), batch["sizes"][keep].tolist()
        _check_frames(store, source, indices, sizes)
        _process(evaluator, records, indices, sizes, classes, scores, cams)


def _check_frames(store: CAMStore, source: Any, indices: Sequence[int], sizes: Sequence[Sequence[int]]) -> None:
    """Refuse stored maps whose image had another size than the one its record (its boxes) refers to now.

    The record's ``size`` (metadata, or the synthetic render size) is compared; an image with boxes but no recorded
    size is measured from its file's header when the source has files.
    """
    from wsol.data.images import read_image_size

    records = source.annotations.records
    image_path = getattr(source, "image_path", None)
    for i, stored in zip(indices, sizes):
        record = records[i]
        now = record.size
        if now is None and len(record.boxes) and image_path is not None:  # as the loader would see it
            # a source with files (``FileImageSource``) carries the data config's image options
            now = read_image_size(image_path(i), apply_exif_orientation=source.apply_exif_orientation,
                                  max_pixels=source.max_image_pixels)
        if now is not None and tuple(now) != tuple(stored):
            raise ValueError(f"{store.dir}: image {record.image_id!r} was {stored[0]}x{stored[1]} when its CAMs were "
                             f"stored but is {now[0]}x{now[1]} here (another data.render_size or a resized copy?): "
                             "its boxes would be scored against maps of another frame; evaluate the model on these "
                             "images instead")
