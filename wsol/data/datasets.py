"""Dataset registry and the torch ``Dataset`` that feeds images + weak labels to the network.

A registered dataset factory returns an ``ImageSource``: the split's ``Annotations`` plus a way to
load image ``i`` as an RGB ``PIL.Image`` whose pixels are those the GT boxes refer to (for the
real datasets: the stored pixels, EXIF orientation NOT applied, as wsolevaluation and torchvision
read them; see ``wsol.data.images``). ``WSOLDataset`` wraps a source
with a transform for training or evaluation.

Skipping at load time: a source built with ``on_error="skip"`` has already dropped every image its file check
found bad (``check_files``). An image that still fails when loaded (corrupt pixel data under the default check,
any problem with ``check_files="none"``) may be dropped by a loader through ``load_or_skip`` (a ``SkippedImage``
in place of the image, removed from the batch by ``split_skipped``) and recorded with ``record_skipped`` in
``annotations.skipped``, which ``metrics.json`` lists. Without ``on_error="skip"``, ``load_or_skip`` raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch
from PIL import Image
from torch.utils.data import Dataset

from wsol.data.images import ImageLoadError
from wsol.data.records import Annotations
from wsol.registry import Registry


class ImageSource(Protocol):
    """What every dataset factory returns."""

    annotations: Annotations

    def load(self, index: int) -> Image.Image:
        """Image ``index`` of ``annotations.records`` as an RGB PIL image."""
        ...


DATASETS: Registry[ImageSource] = Registry(
    "dataset", modules=("wsol.data.synthetic", "wsol.data.real", "wsol.data.imagenette"))

# Keyword arguments every factory receives from the data config's common keys (``wsol.config.source_from_cfg``);
# they are not dataset options.
INTERFACE_ARGUMENTS = ("split", "root", "num_classes", "on_error")


def dataset_options(name: str) -> tuple[str, ...] | None:
    """The dataset-specific keyword arguments of the factory registered as ``name``.

    These are the keys a data config may hold besides the common ones (``data.gt_format``,
    ``data.num_images`` ...). ``None`` when the factory accepts any keyword (``**kwargs``).

    Raises:
        KeyError: ``name`` is not registered (listing the known names).
    """
    return DATASETS.options(name, exclude=INTERFACE_ARGUMENTS)


def build_source(name: str, split: str, **kwargs: Any) -> ImageSource:
    """Build the split ``split`` of the registered dataset ``name``; raises if it has no image."""
    source = DATASETS.build(name, split=split, **kwargs)
    if len(source.annotations) == 0:
        raise ValueError(f"dataset {name!r} split {split!r} is empty ({kwargs})")
    return source


class WSOLDataset(Dataset):
    """Items are ``(image_tensor, label, index)``; ``index`` points into ``source.annotations.records``."""

    def __init__(self, source: ImageSource, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.source = source
        self.transform = transform

    def __len__(self) -> int:
        return len(self.source.annotations)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int] | SkippedImage:
        """The item, or a ``SkippedImage`` when the image fails to load under ``on_error="skip"``
        (``collate_skipping`` drops it from the batch)."""
        image = load_or_skip(self.source, index)
        if isinstance(image, SkippedImage):
            return image
        return self.transform(image), self.source.annotations.records[index].label, index


@dataclass(frozen=True)
class SkippedImage:
    """What a loader yields in place of an image it dropped under ``on_error="skip"``.

    Attributes:
        index: the record's index in ``source.annotations.records``.
        image_id: the record's id.
        reason: the load error, naming the file.
    """

    index: int
    image_id: str
    reason: str


def load_or_skip(source: ImageSource, index: int) -> Image.Image | SkippedImage:
    """``source.load(index)``, or a ``SkippedImage`` when it fails and the source was built to skip bad images.

    Only ``ImageLoadError`` (a problem of that image's file) is skipped, and only when ``source.on_error`` is
    ``"skip"``; anything else propagates. The result crosses DataLoader worker processes (it pickles).

    Raises:
        ImageLoadError: the image cannot be loaded and the source's policy is ``"raise"`` (the default).
    """
    try:
        return source.load(index)
    except ImageLoadError as error:
        if getattr(source, "on_error", "raise") != "skip":
            raise
        return SkippedImage(index, source.annotations.records[index].image_id, str(error))


def split_skipped(batch: Sequence[Any]) -> tuple[list[Any], list[SkippedImage]]:
    """Separate the ``SkippedImage`` items of a DataLoader batch (for a ``collate_fn``): ``(kept, skipped)``."""
    kept = [item for item in batch if not isinstance(item, SkippedImage)]
    return kept, [item for item in batch if isinstance(item, SkippedImage)]


def collate_skipping(batch: Sequence[Any]) -> tuple[Any, list[SkippedImage]]:
    """DataLoader ``collate_fn``: ``(default_collate(kept items) or None when none is left, skipped)``."""
    from torch.utils.data import default_collate

    kept, skipped = split_skipped(batch)
    return (default_collate(kept) if kept else None), skipped


def record_skipped(annotations: Annotations, skipped: Iterable[SkippedImage]) -> None:
    """Add images dropped at load time to ``annotations.skipped`` (``{image_id: reason}``, as the file checks do)."""
    for item in skipped:
        annotations.skipped[item.image_id] = item.reason
