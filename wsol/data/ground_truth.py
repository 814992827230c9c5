"""One dispatcher for the ILSVRC val ground truth in any format the suite reads, for every dataset built on it.

Formats (``gt_format``): ``metadata`` (a wsolevaluation metadata folder, ``wsol.data.metadata``), ``devkit_xml`` (the
devkit's ``Annotations/CLS-LOC/val`` folder), ``kaggle`` (``LOC_val_solution.csv``), ``devkit_mat`` (the ILSVRC2014
devkit's cached ground truth ``.mat``, whose class ids go through the devkit's id map ``devkit_meta`` or are inferred
against a metadata folder of the same images, ``id_map_reference``); readers in ``wsol.data.formats``. The ``ilsvrc``
factory (``wsol.data.real``) and the ``imagenette`` factory (``wsol.data.imagenette``) choose the format (each from
its own options: one path per format, or one path of any kind told by ``detect_gt_format``) and read through
``read_ilsvrc_ground_truth``, so both apply the same readers with the same checks.

Labels: metadata and the ``.mat`` give labels as the data set numbers them (sorted WNIDs); the XML and Kaggle readers
name classes by WNID and are read against the caller's class list (``LabelSpace.wnids``), then mapped to the caller's
labels (``LabelSpace.relabel``; an object of a class outside the list is an error of its image).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from wsol.data.formats import (
    infer_devkit_id_map,
    read_devkit_mat,
    read_devkit_mat_objects,
    read_devkit_xml,
    read_kaggle_csv,
)
from wsol.data.metadata import IMAGE_IDS, read_metadata
from wsol.data.records import Annotations
from wsol.data.validation import OnError

__all__ = ["GT_FORMATS", "GtFormat", "LabelSpace", "detect_gt_format", "read_ilsvrc_ground_truth"]

GtFormat = Literal["auto", "metadata", "devkit_xml", "kaggle", "devkit_mat"]
#: The formats ``read_ilsvrc_ground_truth`` reads (``auto`` is resolved by each factory first).
GT_FORMATS = ("metadata", "devkit_xml", "kaggle", "devkit_mat")


@dataclass(frozen=True)
class LabelSpace:
    """How the ground truth's classes become the caller's labels.

    Attributes:
        wnids: the class list the WNID-named readers (XML, Kaggle) index, sorted (called only when needed: building
            it may read files).
        devkit_labels: a devkit id map file (``meta_clsloc.mat``, ``meta.mat``, ``map_clsloc.txt``) -> ``{devkit id:
            label}``.
        relabel: ``relabel[i]`` is the caller's label of ``wnids()[i]``; None keeps ``i`` (the list is the data set's
            whole class order).
    """

    wnids: Callable[[], list[str]]
    devkit_labels: Callable[[Path], dict[int, int]]
    relabel: Sequence[int] | None = None


def detect_gt_format(gt: Path) -> str:
    """``metadata`` (folder with ``image_ids.txt``), ``devkit_xml`` (folder of ``*.xml``), ``kaggle`` (``.csv``)
    or ``devkit_mat`` (``.mat``).

    Raises:
        FileNotFoundError / ValueError: ``gt`` missing or of none of these kinds.
    """
    if not gt.exists():
        raise FileNotFoundError(f"ground truth not found: {gt}")
    if gt.is_dir():
        if (gt / IMAGE_IDS).is_file():
            return "metadata"
        if next(gt.rglob("*.xml"), None) is not None:
            return "devkit_xml"
        raise ValueError(f"{gt}: a folder with neither {IMAGE_IDS} (wsolevaluation metadata) nor *.xml (devkit)")
    suffix = gt.suffix.lower()
    if suffix == ".csv":
        return "kaggle"
    if suffix == ".mat":
        return "devkit_mat"
    raise ValueError(f"{gt}: cannot tell its format (expected a metadata or XML folder, a .csv or a .mat); "
                     f"set gt_format")


def _relabel(annotations: Annotations, relabel: Sequence[int] | None, num_classes: int) -> Annotations:
    """Labels (and per-box labels) ``i`` -> ``relabel[i]``."""
    if relabel is None:
        return annotations
    table = np.asarray(relabel, dtype=np.int64)
    records = [replace(r, label=int(table[r.label]),
                       box_labels=None if r.box_labels is None else table[np.asarray(r.box_labels, dtype=np.int64)])
               for r in annotations.records]
    return replace(annotations, records=records, num_classes=num_classes, class_names=None)


def read_ilsvrc_ground_truth(
    gt_format: str,
    path: Path,
    labels: LabelSpace,
    *,
    num_classes: int,
    on_error: OnError,
    box_tolerance: float,
    max_image_pixels: int,
    devkit_meta: Path | None,
    id_map_reference: Path | None,
    label_file: Path | None = None,
    blacklist: frozenset[str] = frozenset(),
    select: Callable[[str], bool] | None = None,
) -> Annotations:
    """The ILSVRC val ground truth at ``path`` in format ``gt_format``, labelled in ``labels``' space.

    Args:
        gt_format: one of ``GT_FORMATS``.
        path: the metadata folder, XML folder, ``.csv`` or ``.mat``.
        labels: the caller's class list and label numbering (``LabelSpace``).
        num_classes: the label range of metadata and ``.mat`` labels, and of the result.
        on_error: ``"raise"`` or ``"skip"`` bad records (``wsol.data.validation``).
        box_tolerance: pixels a box may overshoot its image.
        max_image_pixels: largest image size a metadata folder may state.
        devkit_meta: the devkit's id map (``.mat`` class ids; with ``label_file``, XML); or None.
        id_map_reference: ``devkit_mat`` without ``devkit_meta``: a metadata folder of the same images to infer the
            devkit id map from.
        label_file: ``devkit_xml`` only: the devkit's val label file, cross-checked against the XML (needs
            ``devkit_meta``).
        blacklist: image ids excluded from localization (passed to the readers that take one).
        select: read only the image ids for which it is true (the other records are skipped unchecked).

    Raises:
        ValueError: an unknown format, a missing companion file (``devkit_meta``/``id_map_reference``); the readers'
            ``AnnotationError`` (``on_error="raise"``), naming file and line.
    """
    if gt_format == "metadata":
        return read_metadata(path, num_classes=num_classes, on_error=on_error, box_tolerance=box_tolerance,
                             max_image_pixels=max_image_pixels, select=select)
    if gt_format == "devkit_xml":
        id_to_label = None
        if label_file is not None:
            if devkit_meta is None:
                raise ValueError("label_file= needs devkit_meta= (meta_clsloc.mat, meta.mat or map_clsloc.txt) to map "
                                 "its ids")
            id_to_label = labels.devkit_labels(devkit_meta)
        annotations = read_devkit_xml(path, labels.wnids(), label_file=label_file, id_to_label=id_to_label,
                                      blacklist=blacklist, on_error=on_error, box_tolerance=box_tolerance,
                                      select=select)
        return _relabel(annotations, labels.relabel, num_classes)
    if gt_format == "kaggle":
        annotations = read_kaggle_csv(path, labels.wnids(), blacklist=blacklist, on_error=on_error,
                                      box_tolerance=box_tolerance, select=select)
        return _relabel(annotations, labels.relabel, num_classes)
    if gt_format == "devkit_mat":
        if devkit_meta is None and id_map_reference is None:
            raise ValueError("gt_format 'devkit_mat' needs devkit_meta (meta_clsloc.mat / map_clsloc.txt) or "
                             "id_map_reference (a metadata folder to infer the devkit id map from)")
        objects = read_devkit_mat_objects(path)  # read once: seconds for the 50,000 records
        if devkit_meta is not None:
            id_to_label = labels.devkit_labels(devkit_meta)
        else:
            assert id_map_reference is not None
            reference = read_metadata(id_map_reference, num_classes=num_classes, box_tolerance=box_tolerance,
                                      max_image_pixels=max_image_pixels, select=select)
            id_to_label = infer_devkit_id_map(path, reference, objects=objects)
        return read_devkit_mat(path, id_to_label, num_classes=num_classes, blacklist=blacklist, on_error=on_error,
                               box_tolerance=box_tolerance, select=select, objects=objects)
    raise ValueError(f"gt_format must be auto, metadata, devkit_xml, kaggle or devkit_mat, got {gt_format!r}")
