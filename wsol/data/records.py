"""The in-memory form of localization annotations, shared by every dataset format.

Conventions, stated once here:
    * Boxes are ``xyxy`` in the pixel coordinates of the image as stored on disk, with INCLUSIVE
      pixel coordinates (the ILSVRC devkit and wsolevaluation convention): a box covering one pixel
      at column 3 has x0 = x1 = 3 and width = x1 - x0 + 1.
    * Class labels are 0-based indices into the dataset's class order (for ILSVRC: sorted WNIDs,
      which is torchvision's ``ImageFolder`` order).
    * ``size`` is ``(width, height)`` of the stored image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ImageRecord:
    """One image's weak label and its localization ground truth.

    Attributes:
        image_id: path of the image relative to the dataset's image root (wsolevaluation ``image_id``).
        label: 0-based class index of the image (the weak, image-level label).
        boxes: float64 ``[N, 4]`` GT boxes, ``xyxy`` inclusive, stored-image pixels; ``N`` may be 0
            (no box: scored for classification only, reported as such).
        size: ``(width, height)`` of the stored image, or ``None`` when the metadata does not say.
        box_labels: int64 ``[N]`` class of each box, or ``None`` meaning every box has class ``label``
            (ILSVRC devkit ground truth can hold several classes per image).
        mask_paths: pixel-mask files (OpenImages30k), relative to the mask root.
        ignore_path: the ignore-mask file (OpenImages30k), or ``None``.
    """

    image_id: str
    label: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.float64))
    size: tuple[int, int] | None = None
    box_labels: np.ndarray | None = None
    mask_paths: tuple[str, ...] = ()
    ignore_path: str | None = None

    def labels_of_boxes(self) -> np.ndarray:
        """int64 ``[N]``: the class of every box (``label`` repeated when ``box_labels`` is None)."""
        if self.box_labels is not None:
            return np.asarray(self.box_labels, dtype=np.int64)
        return np.full(len(self.boxes), self.label, dtype=np.int64)

    def image_labels(self) -> np.ndarray:
        """int64: every class present in the image (for devkit classification scoring)."""
        return np.unique(np.concatenate([[self.label], self.labels_of_boxes()]).astype(np.int64))


@dataclass
class Annotations:
    """A split's records with its class order.

    Attributes:
        records: one ``ImageRecord`` per image, in the split's canonical order.
        num_classes: number of classes of the dataset (labels are in ``[0, num_classes)``).
        class_names: optional human-readable names, index = label.
        blacklist: image ids excluded from localization scoring (the ILSVRC devkit blacklist).
        skipped: ``{image_id: reason}`` for images dropped because the user asked to skip bad input.
    """

    records: list[ImageRecord]
    num_classes: int
    class_names: list[str] | None = None
    blacklist: frozenset[str] = frozenset()
    skipped: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)
