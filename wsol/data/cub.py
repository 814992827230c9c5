"""CUB-200-2011's own text files (``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt``,
``bounding_boxes.txt``, ``classes.txt``) as ``Annotations``.

Image ids are the ``images.txt`` paths (``001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg``), relative
to ``CUB_200_2011/images``. Boxes are ``x y w h`` extents (``wsol.data.geometry.xywh_to_xyxy(count_pixels=False)``:
``x1 = x + w``, the evidence is in that module's docstring). wsolevaluation's CUB metadata is read by
``wsol.data.metadata``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from wsol.data.geometry import xywh_to_xyxy
from wsol.data.records import Annotations, ImageRecord
from wsol.data.validation import (
    OnError,
    Problem,
    box_problem,
    check_box_tolerance,
    check_on_error,
    finalize_annotations,
    label_problem,
    parse_float,
    read_text,
)
from wsol.io import unsafe_path_message

__all__ = ["read_cub"]


def _numbered_table(path: Path, columns: int, problems: list[Problem]) -> dict[int, tuple[list[str], int]]:
    """``{numeric id: (fields after the id, line)}`` of a CUB text file; malformed lines become problems."""
    table: dict[int, tuple[list[str], int]] = {}
    for number, line in enumerate(read_text(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != columns or not (fields[0].isascii() and fields[0].isdigit()):
            problems.append(Problem(str(path), number, f"expected {columns} space-separated fields starting with an image number, got {line!r}"))
            continue
        key = int(fields[0])
        if key in table:
            problems.append(Problem(str(path), number, f"image number {key} repeated (first on line {table[key][1]})"))
            continue
        table[key] = (fields[1:], number)
    return table


def read_cub(
    root: str | os.PathLike[str],
    split: str,
    *,
    num_classes: int = 200,
    on_error: OnError = "raise",
    box_tolerance: float,
    sizes: Mapping[str, tuple[int, int]] | None = None,
) -> Annotations:
    """CUB-200-2011's text files: ``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt``,
    ``bounding_boxes.txt`` (``x y w h``, converted with ``xywh_to_xyxy(count_pixels=False)``, i.e.
    ``x1 = x + w``: CUB's ``w`` is the extent ``x1 - x0``; see ``wsol.data.geometry``).

    Args:
        root: the ``CUB_200_2011`` folder holding the text files (images under ``root/images``).
        split: ``"train"`` (``is_training_image`` 1), ``"test"`` (0) or ``"all"``.
        num_classes: CUB class ids are 1-based; labels are ``id - 1`` in ``[0, num_classes)``.
        on_error: ``"raise"`` or ``"skip"``.
        box_tolerance: pixels a box may overshoot its image (``data.box_tolerance``).
        sizes: ``{image_id: (width, height)}`` (the text files hold none).

    Returns:
        ``Annotations`` in ``images.txt`` order; image ids are the ``images.txt`` paths.
    """
    check_on_error(on_error)
    check_box_tolerance(box_tolerance)
    if split not in ("train", "test", "all"):
        raise ValueError(f"CUB split must be 'train', 'test' or 'all', got {split!r}")
    base = Path(root)
    files = {name: base / f"{name}.txt" for name in ("images", "image_class_labels", "train_test_split", "bounding_boxes")}
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (CUB-200-2011 text files expected in {base})")
    problems: list[Problem] = []
    images = _numbered_table(files["images"], 2, problems)
    labels = _numbered_table(files["image_class_labels"], 2, problems)
    splits = _numbered_table(files["train_test_split"], 2, problems)
    boxes = _numbered_table(files["bounding_boxes"], 5, problems)
    names: list[str] | None = None
    if (base / "classes.txt").is_file():
        names = [(line.split(maxsplit=1) + [""])[1] for line in read_text(base / "classes.txt") if line.strip()]
    records: list[ImageRecord] = []
    for key, ((image_id,), image_line) in images.items():
        unsafe = unsafe_path_message(image_id, root="the image root")
        if unsafe is not None:
            problems.append(Problem(str(files["images"]), image_line, unsafe))
            continue
        missing = [name for name, table in (("image_class_labels", labels), ("train_test_split", splits), ("bounding_boxes", boxes)) if key not in table]
        if missing:
            problems.append(Problem(str(files["images"]), image_line, f"image {key} ({image_id}) missing from {missing}", image_id))
            continue
        flag, split_line = splits[key][0][0], splits[key][1]
        if flag not in ("0", "1"):
            problems.append(Problem(str(files["train_test_split"]), split_line, f"is_training_image must be 0 or 1, got {flag!r}", image_id))
            continue
        if split != "all" and (flag == "1") != (split == "train"):
            continue
        (class_text,), label_line = labels[key]
        if not class_text.isdigit():
            problems.append(Problem(str(files["image_class_labels"]), label_line, f"class id {class_text!r} is not an integer", image_id))
            continue
        label = int(class_text) - 1
        reason = label_problem(label, num_classes)
        if reason:
            problems.append(Problem(str(files["image_class_labels"]), label_line, f"class id {class_text} -> {reason}", image_id))
            continue
        box_fields, box_line = boxes[key]
        values = [parse_float(value) for value in box_fields]
        if any(v is None for v in values):
            problems.append(Problem(str(files["bounding_boxes"]), box_line, f"non-numeric or non-finite box {box_fields}", image_id))
            continue
        xywh = np.array(values, dtype=np.float64)
        box = xywh_to_xyxy(xywh, count_pixels=False)[0]
        size = sizes.get(image_id) if sizes is not None else None
        reason = box_problem(box, size, box_tolerance)
        if reason:
            problems.append(Problem(str(files["bounding_boxes"]), box_line, f"{image_id}: x y w h {box_fields} -> {reason}", image_id))
            continue
        records.append(ImageRecord(image_id=image_id, label=label, boxes=box[None, :], size=size))
    for name, table in (("image_class_labels", labels), ("train_test_split", splits), ("bounding_boxes", boxes)):
        for key in sorted(set(table) - set(images)):
            problems.append(Problem(str(files[name]), table[key][1], f"image number {key} is not in images.txt", None, "warning"))
    return finalize_annotations(
        records, problems, num_classes=num_classes, on_error=on_error, class_names=names, source=str(base)
    )
