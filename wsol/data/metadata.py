"""The wsolevaluation metadata format: read (every problem reported with file and line), write, find.

A metadata folder holds (format of clovaai/wsolevaluation ``metadata/<dataset>/<split>/``):
    * ``image_ids.txt``: one image id per line, the path of the image relative to the image root.
    * ``class_labels.txt``: ``image_id,label`` with 0-based labels in the dataset's class order.
    * ``image_sizes.txt``: ``image_id,width,height`` of the stored image (may be empty: OpenImages, train).
    * ``localization.txt`` (may be empty: train splits), either boxes, one line per box,
      ``image_id,x0,y0,x1,y1`` inclusive pixels of the stored image (floats allowed), or masks (OpenImages30k),
      one line per mask, ``image_id,mask_path,ignore_path`` with the ignore path on the image's first line
      only.
    * ``blacklist.txt`` (a wsol extension, ignored by wsolevaluation): image ids excluded from localization
      scoring, written by ``wsol-prepare`` when converting the ILSVRC devkit with its blacklist.

The text, label, box and path rules and the ``on_error`` policy are every reader's (``wsol.data.validation``); this
format adds: blank lines and spaces around fields are ignored, fields are separated by commas with exactly the
expected count (a trailing comma is an extra, empty field: an error), image sizes are positive and at most
``max_image_pixels`` pixels (``wsol.data.images``), an id is listed once.

The shared names (``Problem``, ``AnnotationError``, ``read_text``, ``parse_int`` ...) are re-exported here, where
callers have long imported them from.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsol.data.images import check_max_pixels
from wsol.data.records import Annotations, ImageRecord
from wsol.data.validation import (  # noqa: F401  (re-exported: the names callers import from this module)
    MAX_LABEL,
    AnnotationError,
    OnError,
    Problem,
    Severity,
    box_problem,
    check_box_tolerance,
    check_on_error,
    finalize_annotations,
    label_problem,
    match_blacklist,
    parse_float,
    parse_int,
    read_text,
    read_text_lines,
    resolve_path,
    unsafe_path_problems,
)
from wsol.io import atomic_write_text, unsafe_path_message

IMAGE_IDS = "image_ids.txt"
CLASS_LABELS = "class_labels.txt"
IMAGE_SIZES = "image_sizes.txt"
LOCALIZATION = "localization.txt"
BLACKLIST = "blacklist.txt"


def _optional_lines(path: Path, problems: list[Problem]) -> list[tuple[int, str]]:
    """``read_text_lines`` of a file that may be absent (wsolevaluation ships empty files for train)."""
    if not path.exists() and not path.is_symlink():
        return []
    return read_text_lines(path, problems)


@dataclass
class _Parse:
    """What the per-file parsers of one metadata folder share: the folder, which ids are read, what went wrong."""

    root: Path
    select: Callable[[str], bool] | None
    problems: list[Problem]

    def report(self, path: Path, line: int | None, message: str, image_id: str | None,
               severity: Severity = "error") -> None:
        self.problems.append(Problem(str(path), line, message, image_id, severity))

    def skips(self, image_id: str) -> bool:
        """True for an id ``select`` leaves out (its lines are skipped unchecked, as if absent)."""
        return self.select is not None and not self.select(image_id)

    def reported_in(self, path: Path, errors_only: bool = False) -> set[str | None]:
        """The images that already have a problem in ``path``."""
        return {p.image_id for p in self.problems
                if p.file == str(path) and (not errors_only or p.severity == "error")}


def _parse_image_ids(p: _Parse) -> tuple[list[str], dict[str, int]]:
    """``image_ids.txt``: the split and its order; ``(ids in order, {id: line})``."""
    ids_path = p.root / IMAGE_IDS
    order: list[str] = []
    first_line: dict[str, int] = {}
    for number, text in read_text_lines(ids_path, p.problems):
        if p.skips(text):
            continue
        if "," in text:
            p.report(ids_path, number, f"image id {text!r} contains a comma (the other files are comma-separated)", None)
            continue
        unsafe = unsafe_path_message(text, root="the image root")
        if unsafe is not None:
            p.report(ids_path, number, unsafe, None)
            continue
        if text in first_line:
            p.report(ids_path, number, f"duplicate image id {text!r} (first on line {first_line[text]})", text)
            continue
        first_line[text] = number
        order.append(text)
    if not order:
        p.report(ids_path, None, "no image id" + (" selected" if p.select is not None else ""), None)
    return order, first_line


def _parse_labels(p: _Parse, order: list[str], first_line: dict[str, int], num_classes: int | None) -> dict[str, int]:
    """``class_labels.txt``: ``{id: label}``; every id of the split needs one label in ``[0, num_classes)``."""
    labels_path = p.root / CLASS_LABELS
    labels: dict[str, int] = {}
    label_line: dict[str, int] = {}
    for number, text in read_text_lines(labels_path, p.problems):
        fields = [field.strip() for field in text.split(",")]
        if len(fields) != 2:
            p.report(labels_path, number, f"expected 'image_id,label' (2 fields), got {len(fields)} fields: {text!r}",
                     fields[0] if fields[0] in first_line else None)
            continue
        image_id, label_text = fields
        if p.skips(image_id):
            continue
        label = parse_int(label_text)
        if image_id not in first_line:
            p.report(labels_path, number, f"label for {image_id!r}, which is not in {IMAGE_IDS}", None, "warning")
            continue
        if label is None:
            p.report(labels_path, number, f"label {label_text!r} of {image_id!r} is not an integer", image_id)
            continue
        if image_id in labels:
            if labels[image_id] != label:
                p.report(labels_path, number, f"{image_id!r} labelled {label} here but {labels[image_id]} on line {label_line[image_id]}", image_id)
            else:
                p.report(labels_path, number, f"{image_id!r} listed twice (same label, first on line {label_line[image_id]})", image_id, "warning")
            continue
        labels[image_id] = label
        label_line[image_id] = number
        reason = label_problem(label, num_classes)
        if reason:
            p.report(labels_path, number, f"{image_id!r}: {reason}", image_id)
    reported = p.reported_in(labels_path)
    for image_id in order:
        if image_id not in labels and image_id not in reported:
            p.report(labels_path, None, f"no label for {image_id!r} (line {first_line[image_id]} of {IMAGE_IDS})", image_id)
    return labels


def _parse_sizes(p: _Parse, order: list[str], first_line: dict[str, int],
                 max_image_pixels: int) -> dict[str, tuple[int, int]]:
    """``image_sizes.txt`` (optional; empty for OpenImages and train splits): ``{id: (width, height)}``."""
    sizes_path = p.root / IMAGE_SIZES
    sizes: dict[str, tuple[int, int]] = {}
    size_line: dict[str, int] = {}
    size_lines = _optional_lines(sizes_path, p.problems)
    for number, text in size_lines:
        fields = [field.strip() for field in text.split(",")]
        image_id = fields[0]
        if p.skips(image_id):
            continue
        known = image_id if image_id in first_line else None
        if len(fields) != 3:
            p.report(sizes_path, number, f"expected 'image_id,width,height' (3 fields), got {len(fields)} fields: {text!r}", known)
            continue
        width, height = parse_int(fields[1]), parse_int(fields[2])
        if known is None:
            p.report(sizes_path, number, f"size for {image_id!r}, which is not in {IMAGE_IDS}", None, "warning")
            continue
        if width is None or height is None or width <= 0 or height <= 0:
            p.report(sizes_path, number, f"size of {image_id!r} must be two positive integers, got {fields[1]!r}, {fields[2]!r}", image_id)
            continue
        if width * height > max_image_pixels:
            p.report(sizes_path, number, f"size of {image_id!r} is {width}x{height} = {width * height:,} pixels, over the "
                                         f"image size limit of {max_image_pixels:,} (max_image_pixels)", image_id)
            continue
        if image_id in sizes:
            if sizes[image_id] != (width, height):
                p.report(sizes_path, number, f"{image_id!r} has size {width}x{height} here but {sizes[image_id][0]}x{sizes[image_id][1]} on line {size_line[image_id]}", image_id)
            else:
                p.report(sizes_path, number, f"{image_id!r} listed twice (same size, first on line {size_line[image_id]})", image_id, "warning")
            continue
        sizes[image_id] = (width, height)
        size_line[image_id] = number
    if size_lines:
        reported = p.reported_in(sizes_path)
        for image_id in order:
            if image_id not in sizes and image_id not in reported:
                p.report(sizes_path, None, f"no size for {image_id!r}", image_id)
    return sizes


@dataclass
class _Localization:
    """What ``localization.txt`` gives per image: boxes, or masks and one ignore mask."""

    boxes: dict[str, list[list[float]]]
    masks: dict[str, list[str]]
    ignores: dict[str, str]


def _parse_localization(p: _Parse, order: list[str], first_line: dict[str, int], sizes: dict[str, tuple[int, int]],
                        box_tolerance: float) -> _Localization:
    """``localization.txt`` (optional; empty for train splits): boxes, or masks; its first line decides which."""
    loc_path = p.root / LOCALIZATION
    found = _Localization({}, {}, {})
    boxes, masks, ignores = found.boxes, found.masks, found.ignores
    kind: str | None = None
    loc_lines = _optional_lines(loc_path, p.problems)
    for number, text in loc_lines:
        fields = [field.strip() for field in text.split(",")]
        image_id = fields[0]
        known = image_id if image_id in first_line else None
        if kind is None:
            kind = "boxes" if len(fields) == 5 else "masks" if len(fields) == 3 else None
            if kind is None:
                p.report(loc_path, number, f"expected 'id,x0,y0,x1,y1' or 'id,mask,ignore', got {len(fields)} fields: {text!r}", None)
                break
        if p.skips(image_id):
            continue
        if known is None:
            p.report(loc_path, number, f"annotation for {image_id!r}, which is not in {IMAGE_IDS}", None, "warning")
            continue
        if kind == "boxes":
            if len(fields) != 5:
                p.report(loc_path, number, f"expected 'image_id,x0,y0,x1,y1' (5 fields), got {len(fields)} fields: {text!r}", image_id)
                continue
            values = [parse_float(field) for field in fields[1:]]
            if any(value is None for value in values):
                p.report(loc_path, number, f"box of {image_id!r} has a non-numeric or non-finite coordinate: {text!r}", image_id)
                continue
            box = np.array(values, dtype=np.float64)
            reason = box_problem(box, sizes.get(image_id), box_tolerance)
            if reason:
                p.report(loc_path, number, f"{image_id!r}: {reason}", image_id)
                continue
            boxes.setdefault(image_id, []).append(list(box))
        else:
            if len(fields) != 3 or not fields[1]:
                p.report(loc_path, number, f"expected 'image_id,mask_path,ignore_path', got {text!r}", image_id)
                continue
            _, mask_path, ignore_path = fields
            unsafe = [message for message in (unsafe_path_message(mask_path, what="mask path", root="the mask root"),
                                              unsafe_path_message(ignore_path, what="ignore-mask path", root="the mask root")
                                              if ignore_path else None) if message]
            if unsafe:
                p.report(loc_path, number, unsafe[0], None)
                continue
            if image_id in masks and ignore_path and ignores.get(image_id, "") not in ("", ignore_path):
                p.report(loc_path, number, f"{image_id!r} has a second ignore mask {ignore_path!r} (first {ignores[image_id]!r})", image_id)
                continue
            masks.setdefault(image_id, []).append(mask_path)
            if ignore_path and not ignores.get(image_id):
                ignores[image_id] = ignore_path
    if loc_lines and kind is not None:
        annotated = boxes if kind == "boxes" else masks
        what = "box" if kind == "boxes" else "mask"
        errored = p.reported_in(loc_path, errors_only=True)
        for image_id in order:
            if image_id not in annotated and image_id not in errored:
                p.report(loc_path, None, f"no {what} for {image_id!r} (every image of a split with {LOCALIZATION} needs one)", image_id)
    return found


def _parse_blacklist(p: _Parse, first_line: dict[str, int]) -> list[str]:
    """``blacklist.txt`` (wsol extension): the ids excluded from localization scoring."""
    blacklist: list[str] = []
    blacklist_path = p.root / BLACKLIST
    for number, text in _optional_lines(blacklist_path, p.problems):
        if p.skips(text):
            continue
        if text not in first_line:
            p.report(blacklist_path, number, f"blacklisted id {text!r} is not in {IMAGE_IDS}", None, "warning")
        blacklist.append(text)
    return blacklist


def collect_metadata(
    metadata_dir: str | os.PathLike[str],
    *,
    num_classes: int | None,
    box_tolerance: float,
    select: Callable[[str], bool] | None = None,
    max_image_pixels: int,
) -> tuple[list[ImageRecord], list[Problem], list[str]]:
    """Parse a metadata folder and report every problem instead of raising.

    Args:
        metadata_dir: folder with the ``*.txt`` files (see the module docstring for the rules).
        num_classes: labels must lie in ``[0, num_classes)``; ``None`` checks ``[0, 2**31 - 1]``.
        box_tolerance: pixels a box may overshoot its image (``data.box_tolerance``).
        select: when given, only the image ids for which it is true are read; the lines of every other id are
            skipped unchecked, as if absent (e.g. the 500 images of a subset out of 50,000).
        max_image_pixels: an ``image_sizes.txt`` entry of more pixels is an error (no loader would read it;
            ``data.max_image_pixels``).

    Returns:
        ``(records, problems, blacklist)``: one record per unique id of ``image_ids.txt`` that has a
        parseable label (in file order, including images with problems), every problem found, and the
        ids of ``blacklist.txt``.

    Raises:
        FileNotFoundError: ``metadata_dir`` or its ``image_ids.txt`` / ``class_labels.txt`` is missing.
    """
    check_max_pixels(max_image_pixels)
    check_box_tolerance(box_tolerance)
    root = Path(metadata_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"metadata folder not found: {root}")
    for required in (IMAGE_IDS, CLASS_LABELS):
        if not (root / required).exists():
            raise FileNotFoundError(f"{root / required}: missing (a metadata folder needs {IMAGE_IDS} and {CLASS_LABELS})")
    p = _Parse(root, select, [])
    order, first_line = _parse_image_ids(p)
    labels = _parse_labels(p, order, first_line, num_classes)
    sizes = _parse_sizes(p, order, first_line, max_image_pixels)
    loc = _parse_localization(p, order, first_line, sizes, box_tolerance)
    blacklist = _parse_blacklist(p, first_line)
    records: list[ImageRecord] = []
    for image_id in order:
        if image_id not in labels:
            continue
        image_boxes = loc.boxes.get(image_id)
        records.append(
            ImageRecord(
                image_id=image_id,
                label=labels[image_id],
                boxes=np.array(image_boxes, dtype=np.float64).reshape(-1, 4) if image_boxes else np.zeros((0, 4)),
                size=sizes.get(image_id),
                mask_paths=tuple(loc.masks.get(image_id, ())),
                ignore_path=loc.ignores.get(image_id) or None,
            )
        )
    return records, p.problems, blacklist


def read_metadata(
    metadata_dir: str | os.PathLike[str],
    *,
    num_classes: int | None = None,
    on_error: OnError = "raise",
    box_tolerance: float,
    class_names: list[str] | None = None,
    select: Callable[[str], bool] | None = None,
    max_image_pixels: int,
) -> Annotations:
    """Read a metadata folder into ``Annotations``, applying the ``on_error`` policy.

    Args:
        metadata_dir: folder with ``image_ids.txt``, ``class_labels.txt`` and optionally
            ``image_sizes.txt``, ``localization.txt``, ``blacklist.txt``.
        num_classes: the dataset's class count (labels outside ``[0, num_classes)`` are errors);
            ``None`` infers ``max(label) + 1``.
        on_error: ``"raise"`` or ``"skip"`` (see the module docstring).
        box_tolerance: pixels a box may overshoot its image before it is an error (``data.box_tolerance``).
        class_names: optional names, index = label.
        select: read only the image ids for which it is true (see ``collect_metadata``).
        max_image_pixels: largest image size (pixels) ``image_sizes.txt`` may state (``data.max_image_pixels``).

    Returns:
        The split's ``Annotations`` in ``image_ids.txt`` order.

    Raises:
        AnnotationError: listing every error with file and line (see ``on_error``).
        FileNotFoundError: the folder or a required file is missing.
    """
    check_on_error(on_error)
    records, problems, blacklist = collect_metadata(metadata_dir, num_classes=num_classes, box_tolerance=box_tolerance,
                                                    select=select, max_image_pixels=max_image_pixels)
    return finalize_annotations(
        records,
        problems,
        num_classes=num_classes,
        on_error=on_error,
        class_names=class_names,
        blacklist=blacklist,
        source=str(metadata_dir),
    )


def _format_number(value: float) -> str:
    """Integers without a decimal point (as wsolevaluation writes them), other floats by ``repr``."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def write_metadata(annotations: Annotations, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``annotations`` as a wsolevaluation metadata folder (plus ``blacklist.txt`` when non-empty).

    Args:
        annotations: records to write; all must have a size or none (``image_sizes.txt`` is then empty),
            and boxes and masks cannot be mixed in one split.
        out_dir: folder to create or overwrite (its metadata files are replaced as a set: a ``blacklist.txt`` of an
            earlier write is removed when ``annotations`` has none). Each file is written atomically.

    Returns:
        The files written.

    Raises:
        ValueError: the records cannot be represented (per-box classes differing from the image label,
            partial sizes, boxes and masks mixed, an id containing a comma).
    """
    records = annotations.records
    with_size = [record.size is not None for record in records]
    if any(with_size) and not all(with_size):
        missing = [record.image_id for record in records if record.size is None][:5]
        raise ValueError(f"some records have no size (e.g. {missing}); image_sizes.txt needs all or none")
    has_boxes = any(len(record.boxes) for record in records)
    has_masks = any(record.mask_paths for record in records)
    if has_boxes and has_masks:
        raise ValueError("a metadata split holds boxes or masks, not both")
    for record in records:
        for problem in unsafe_path_problems([record], f"write_metadata({out_dir})"):
            raise ValueError(str(problem))
        if "," in record.image_id:
            raise ValueError(f"image id {record.image_id!r} contains a comma")
        if len(record.boxes) and np.any(record.labels_of_boxes() != record.label):
            raise ValueError(
                f"{record.image_id!r} has boxes of classes {sorted(set(record.labels_of_boxes().tolist()))} other than "
                f"its label {record.label}; localization.txt cannot store per-box classes"
            )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {IMAGE_IDS: [], CLASS_LABELS: [], IMAGE_SIZES: [], LOCALIZATION: []}
    for record in records:
        lines[IMAGE_IDS].append(record.image_id)
        lines[CLASS_LABELS].append(f"{record.image_id},{int(record.label)}")
        if record.size is not None:
            lines[IMAGE_SIZES].append(f"{record.image_id},{int(record.size[0])},{int(record.size[1])}")
        for box in np.asarray(record.boxes, dtype=np.float64).reshape(-1, 4):
            lines[LOCALIZATION].append(",".join([record.image_id, *(_format_number(v) for v in box)]))
        for index, mask_path in enumerate(record.mask_paths):
            ignore = (record.ignore_path or "") if index == 0 else ""
            lines[LOCALIZATION].append(f"{record.image_id},{mask_path},{ignore}")
    if annotations.blacklist:
        order = [record.image_id for record in records if record.image_id in annotations.blacklist]
        lines[BLACKLIST] = order
    elif (out / BLACKLIST).exists():  # the folder is one split: a blacklist of an earlier write must not survive
        (out / BLACKLIST).unlink()
    written = []
    for name, content in lines.items():
        path = out / name
        atomic_write_text(path, "".join(f"{line}\n" for line in content))
        written.append(path)
    return written


def resolve_metadata_dir(root: str | os.PathLike[str], split: str,
                         metadata_dir: str | os.PathLike[str] | None = None) -> Path:
    """Find the metadata folder of ``split`` under ``root``.

    Order: ``metadata_dir`` (``{split}`` in it is replaced by the split; relative to ``root``), then
    ``root/metadata/<split>/``, then ``root/metadata/`` itself (a root holding a single split, such as
    ``ilsvrc_val_mini/acuity227``: it answers whatever split is asked, so point train and test at
    different roots).

    Raises:
        FileNotFoundError: listing the folders tried.
    """
    base = Path(root)
    if metadata_dir is not None:
        try:
            filled = str(metadata_dir).format(split=split)
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"metadata_dir {str(metadata_dir)!r}: only {{split}} is replaced in it, and braces "
                             f"must be doubled ({type(error).__name__}: {error})") from None
        candidates = [resolve_path(base, filled)]
    else:
        candidates = [base / "metadata" / split, base / "metadata"]
    for candidate in candidates:
        assert candidate is not None
        if (candidate / IMAGE_IDS).exists():  # a directory or unreadable file there is the reader's error to name
            return candidate
    raise FileNotFoundError(f"no {IMAGE_IDS} for split {split!r} in: {', '.join(str(c) for c in candidates)}")
