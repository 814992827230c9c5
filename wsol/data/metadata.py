"""Read, validate and write the wsolevaluation metadata format.

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

Text rules (one reader, one rule set: ``wsol-score``, ``wsol-prepare check`` and every dataset factory use it):
UTF-8 (a byte-order mark on the first line is dropped; a byte that is not UTF-8 is an error naming the file and
line), LF, CRLF or CR line ends, blank lines and spaces around fields ignored, fields separated by commas with exactly
the expected count (a trailing comma is an extra, empty field: an error). Integers are ASCII digits with an optional
sign (``1e3``, ``1_000``, ``٣`` are not labels); coordinates are decimal or exponent notation, finite. Image ids
and mask paths must name a file inside their root (``wsol.io.unsafe_path_reason``: no absolute path, no ``..``,
no backslash, ...): such a line is an error that no ``on_error`` policy skips, since it is never a data error.
Image sizes are positive and at most ``max_image_pixels`` pixels (``wsol.data.images``), labels lie in
``[0, num_classes)`` (``[0, 2**31 - 1]`` when the count is unknown).

Every problem is reported as a ``Problem`` naming the file and 1-based line. Problems tied to an image
either raise (``on_error="raise"``, all of them listed at once) or drop that image and record the reason
in ``Annotations.skipped`` (``on_error="skip"``). Problems not tied to an image (a missing file, a line
with no usable id) always raise. A bad box drops its whole image, never just the box: scoring an image
against part of its ground truth would be a silently wrong number.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from wsol.data.geometry import boxes_inverted, boxes_outside
from wsol.data.images import DEFAULT_MAX_IMAGE_PIXELS, check_max_pixels
from wsol.data.records import Annotations, ImageRecord
from wsol.io import atomic_write_text, unsafe_path_message

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
Severity = Literal["error", "warning"]

IMAGE_IDS = "image_ids.txt"
CLASS_LABELS = "class_labels.txt"
IMAGE_SIZES = "image_sizes.txt"
LOCALIZATION = "localization.txt"
BLACKLIST = "blacklist.txt"

# Rescaled float boxes overshoot the last pixel by up to one pixel (see geometry.boxes_outside).
DEFAULT_BOX_TOLERANCE = 1.0
_MAX_PROBLEMS_IN_MESSAGE = 20
#: Largest label accepted when the class count is unknown: any framework's int32 class index.
MAX_LABEL = 2**31 - 1
_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an annotation source.

    Attributes:
        file: the file the problem is in.
        line: 1-based line number (or record number for ``.mat`` files), ``None`` for the whole file.
        message: what is wrong, with the offending value.
        image_id: the image the problem belongs to, ``None`` when it cannot be attributed to one.
        severity: ``"error"`` (the image cannot be scored as annotated) or ``"warning"`` (harmless, e.g.
            a label listed for an image that is not in the split).
    """

    file: str
    line: int | None
    message: str
    image_id: str | None = None
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.severity}: {self.message}"


class AnnotationError(ValueError):
    """Raised with every error found in an annotation source (``on_error="raise"``).

    Attributes:
        problems: the errors, each naming its file and line.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        shown = "\n  ".join(str(problem) for problem in problems[:_MAX_PROBLEMS_IN_MESSAGE])
        more = len(problems) - _MAX_PROBLEMS_IN_MESSAGE
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{len(problems)} annotation error(s):\n  {shown}{tail}")


def check_box_tolerance(tolerance: float) -> float:
    """``tolerance`` as a float after checking it is finite and >= 0 (a NaN would let every box through)."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or tolerance < 0:
        raise ValueError(f"box_tolerance must be a finite number >= 0 (pixels), got {tolerance!r}")
    return float(tolerance)


def check_on_error(on_error: str) -> None:
    """Raise ``ValueError`` unless ``on_error`` is ``"raise"`` or ``"skip"``."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def label_problem(label: int, num_classes: int | None) -> str | None:
    """The reason ``label`` is invalid for ``num_classes`` classes, or ``None`` when it is fine."""
    upper = MAX_LABEL if num_classes is None else num_classes - 1
    if label < 0 or label > upper:
        unknown = " (num_classes unknown: at most 2**31 - 1)" if num_classes is None else ""
        return f"label {label} outside [0, {upper}]{unknown}"
    return None


def box_problem(box: np.ndarray, size: tuple[int, int] | None, tolerance: float) -> str | None:
    """The reason an inclusive ``xyxy`` box is invalid, or ``None``.

    Args:
        box: float ``[4]``.
        size: ``(width, height)`` of the image, or ``None`` when unknown (only inversion is checked).
        tolerance: pixels a box may overshoot the image (rounding in rescaled boxes).
    """
    def values() -> str:  # formatted only for a message: this runs on every box of 50,000 images
        return ", ".join(f"{v:g}" for v in box)

    if not np.all(np.isfinite(box)):
        return f"box ({values()}) has a non-finite coordinate"
    if boxes_inverted(box)[0]:
        return f"box ({values()}) is inverted (x1 < x0 or y1 < y0)"
    if size is None and min(box[0], box[1]) < -tolerance:
        # Without the image size the far side cannot be checked, but no image has pixels left of / above 0.
        return f"box ({values()}) has a negative coordinate beyond the {tolerance:g} px tolerance"
    if size is not None and boxes_outside(box, size, tolerance)[0]:
        return (
            f"box ({values()}) lies outside the {size[0]}x{size[1]} image by more than {tolerance:g} px "
            f"(pixels are [0, {size[0] - 1}] x [0, {size[1] - 1}])"
        )
    return None


def finalize_annotations(
    records: list[ImageRecord],
    problems: list[Problem],
    *,
    num_classes: int | None,
    on_error: OnError,
    class_names: list[str] | None = None,
    blacklist: Iterable[str] = (),
    source: str = "",
) -> Annotations:
    """Apply the ``on_error`` policy to parsed records and their problems.

    Args:
        records: every image that could be parsed, in canonical order.
        problems: everything found while parsing.
        num_classes: the dataset's class count; ``None`` infers ``max(label) + 1`` (logged).
        on_error: ``"raise"``: any error raises ``AnnotationError``; ``"skip"``: images with errors are
            dropped and listed in ``Annotations.skipped`` with their reasons.
        class_names: optional names, index = label.
        blacklist: ids excluded from localization scoring.
        source: what was read, for the log.

    Returns:
        The split's ``Annotations``.

    Raises:
        AnnotationError: on errors with ``on_error="raise"``, and always on errors not tied to an image.
    """
    check_on_error(on_error)
    problems = list(problems) + _unsafe_paths(records, source)
    errors = [p for p in problems if p.severity == "error"]
    for warning in (p for p in problems if p.severity == "warning"):
        logger.warning("%s", warning)
    unattributed = [p for p in errors if p.image_id is None]
    if unattributed or (errors and on_error == "raise"):
        raise AnnotationError(unattributed + [p for p in errors if p.image_id is not None])
    skipped: dict[str, str] = {}
    for problem in errors:
        assert problem.image_id is not None
        reason = str(problem)
        skipped[problem.image_id] = f"{skipped[problem.image_id]}; {reason}" if problem.image_id in skipped else reason
    kept = [record for record in records if record.image_id not in skipped]
    if skipped:
        logger.warning("%s: skipped %d image(s) with annotation errors", source or "annotations", len(skipped))
    if num_classes is None:
        num_classes = max((record.label for record in kept), default=-1) + 1
        logger.info("%s: num_classes not given, inferred %d from the labels", source or "annotations", num_classes)
    ids = {record.image_id for record in kept}
    return Annotations(
        records=kept,
        num_classes=num_classes,
        class_names=class_names,
        blacklist=frozenset(match_blacklist(blacklist, sorted(ids))),
        skipped=skipped,
    )


def _unsafe_paths(records: Iterable[ImageRecord], source: str) -> list[Problem]:
    """Every image id or mask path that does not name a file inside its root (an error no policy skips).

    The readers report these with file and line where they read them; this is the backstop every reader's
    records pass through (``finalize_annotations``), so no format can hand such an id to a loader.
    """
    found: list[Problem] = []
    for record in records:
        for name, what, root in ((record.image_id, "image id", "the image root"),
                                 *((m, "mask path", "the mask root") for m in record.mask_paths),
                                 *(((record.ignore_path, "ignore-mask path", "the mask root"),)
                                   if record.ignore_path is not None else ())):
            message = unsafe_path_message(name, what=what, root=root)
            if message is not None:
                found.append(Problem(source or "annotations", None, message, None))
    return found


def _decode_lines(path: Path, problems: list[Problem]) -> list[tuple[int, str]] | None:
    """``(1-based number, text without its line end)`` of every line, ``None`` when the file cannot be read.

    Line ends are LF, CRLF or CR. A UTF-8 byte-order mark on the first line is dropped (Windows editors write
    it). A line that is not UTF-8, a path that is not a regular file and an unreadable file become problems not
    tied to an image (they always raise), naming the file and line.
    """
    if not path.is_file():
        kind = "a directory" if path.is_dir() else None if not path.exists() else "not a regular file"
        problems.append(Problem(str(path), None, "file not found" if kind is None else f"is {kind}, expected a text file"))
        return None
    try:
        data = path.read_bytes()
    except OSError as error:
        problems.append(Problem(str(path), None, f"cannot be read: {error.strerror or error}"))
        return None
    lines: list[tuple[int, str]] = []
    for number, raw in enumerate(data.splitlines(), start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            lines.append((number, raw.decode("utf-8")))
        except UnicodeDecodeError as error:
            problems.append(Problem(str(path), number, f"not UTF-8 text: byte 0x{raw[error.start]:02x} at column "
                                                       f"{error.start + 1} (save the file as UTF-8)"))
    return lines


def read_text_lines(path: Path, problems: list[Problem]) -> list[tuple[int, str]]:
    """``(1-based line number, stripped text)`` of the non-blank lines of a UTF-8 text file.

    Problems (see ``_decode_lines``) are appended to ``problems``; what can be read is returned.
    """
    lines = _decode_lines(path, problems) or []
    return [(number, text.strip()) for number, text in lines if text.strip()]


def read_text(path: str | os.PathLike[str]) -> list[str]:
    """Every line of a UTF-8 text file, line ends removed (LF, CRLF, CR; a leading byte-order mark dropped).

    The text reader of every annotation format, so that each names the file and line of a bad byte.

    Raises:
        FileNotFoundError: no such file.
        AnnotationError: (a ``ValueError``) not a regular file, unreadable, or a line that is not UTF-8,
            naming the file and line.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise FileNotFoundError(f"{path}: file not found")
    problems: list[Problem] = []
    lines = _decode_lines(path, problems)
    if problems or lines is None:
        raise AnnotationError(problems)
    return [text for _, text in lines]


def _optional_lines(path: Path, problems: list[Problem]) -> list[tuple[int, str]]:
    """``read_text_lines`` of a file that may be absent (wsolevaluation ships empty files for train)."""
    if not path.exists() and not path.is_symlink():
        return []
    return read_text_lines(path, problems)


def parse_int(text: str) -> int | None:
    """An ASCII decimal integer with an optional sign (not ``int()``: it takes ``1_000`` and other digits)."""
    return int(text) if _INT.fullmatch(text) else None


def parse_float(text: str) -> float | None:
    """A finite ASCII decimal or exponent number (not ``float()``: it takes ``nan``, ``inf``, ``1_0``)."""
    if not _FLOAT.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def collect_metadata(
    metadata_dir: str | os.PathLike[str],
    *,
    num_classes: int | None = None,
    box_tolerance: float = DEFAULT_BOX_TOLERANCE,
    select: Callable[[str], bool] | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> tuple[list[ImageRecord], list[Problem], list[str]]:
    """Parse a metadata folder and report every problem instead of raising.

    Args:
        metadata_dir: folder with the ``*.txt`` files (see the module docstring for the rules).
        num_classes: labels must lie in ``[0, num_classes)``; ``None`` checks ``[0, 2**31 - 1]``.
        box_tolerance: pixels a box may overshoot its image.
        select: when given, only the image ids for which it is true are read; the lines of every other id are
            skipped unchecked, as if absent (e.g. the 500 images of a subset out of 50,000).
        max_image_pixels: an ``image_sizes.txt`` entry of more pixels is an error (no loader would read it).

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
    problems: list[Problem] = []

    def report(path: Path, line: int | None, message: str, image_id: str | None, severity: Severity = "error") -> None:
        problems.append(Problem(str(path), line, message, image_id, severity))

    # image_ids.txt: the split and its order.
    ids_path = root / IMAGE_IDS
    order: list[str] = []
    first_line: dict[str, int] = {}
    for number, text in read_text_lines(ids_path, problems):
        if select is not None and not select(text):
            continue
        if "," in text:
            report(ids_path, number, f"image id {text!r} contains a comma (the other files are comma-separated)", None)
            continue
        unsafe = unsafe_path_message(text, root="the image root")
        if unsafe is not None:
            report(ids_path, number, unsafe, None)
            continue
        if text in first_line:
            report(ids_path, number, f"duplicate image id {text!r} (first on line {first_line[text]})", text)
            continue
        first_line[text] = number
        order.append(text)
    if not order:
        report(ids_path, None, "no image id" + (" selected" if select is not None else ""), None)

    # class_labels.txt
    labels_path = root / CLASS_LABELS
    labels: dict[str, int] = {}
    label_line: dict[str, int] = {}
    for number, text in read_text_lines(labels_path, problems):
        fields = [field.strip() for field in text.split(",")]
        if len(fields) != 2:
            report(labels_path, number, f"expected 'image_id,label' (2 fields), got {len(fields)} fields: {text!r}",
                   fields[0] if fields[0] in first_line else None)
            continue
        image_id, label_text = fields
        if select is not None and not select(image_id):
            continue
        label = parse_int(label_text)
        if image_id not in first_line:
            report(labels_path, number, f"label for {image_id!r}, which is not in {IMAGE_IDS}", None, "warning")
            continue
        if label is None:
            report(labels_path, number, f"label {label_text!r} of {image_id!r} is not an integer", image_id)
            continue
        if image_id in labels:
            if labels[image_id] != label:
                report(labels_path, number, f"{image_id!r} labelled {label} here but {labels[image_id]} on line {label_line[image_id]}", image_id)
            else:
                report(labels_path, number, f"{image_id!r} listed twice (same label, first on line {label_line[image_id]})", image_id, "warning")
            continue
        labels[image_id] = label
        label_line[image_id] = number
        reason = label_problem(label, num_classes)
        if reason:
            report(labels_path, number, f"{image_id!r}: {reason}", image_id)
    reported = {p.image_id for p in problems if p.file == str(labels_path)}
    for image_id in order:
        if image_id not in labels and image_id not in reported:
            report(labels_path, None, f"no label for {image_id!r} (line {first_line[image_id]} of {IMAGE_IDS})", image_id)

    # image_sizes.txt (optional; empty for OpenImages and train splits)
    sizes_path = root / IMAGE_SIZES
    sizes: dict[str, tuple[int, int]] = {}
    size_line: dict[str, int] = {}
    size_lines = _optional_lines(sizes_path, problems)
    for number, text in size_lines:
        fields = [field.strip() for field in text.split(",")]
        image_id = fields[0]
        if select is not None and not select(image_id):
            continue
        known = image_id if image_id in first_line else None
        if len(fields) != 3:
            report(sizes_path, number, f"expected 'image_id,width,height' (3 fields), got {len(fields)} fields: {text!r}", known)
            continue
        width, height = parse_int(fields[1]), parse_int(fields[2])
        if known is None:
            report(sizes_path, number, f"size for {image_id!r}, which is not in {IMAGE_IDS}", None, "warning")
            continue
        if width is None or height is None or width <= 0 or height <= 0:
            report(sizes_path, number, f"size of {image_id!r} must be two positive integers, got {fields[1]!r}, {fields[2]!r}", image_id)
            continue
        if width * height > max_image_pixels:
            report(sizes_path, number, f"size of {image_id!r} is {width}x{height} = {width * height:,} pixels, over the "
                                       f"image size limit of {max_image_pixels:,} (max_image_pixels)", image_id)
            continue
        if image_id in sizes:
            if sizes[image_id] != (width, height):
                report(sizes_path, number, f"{image_id!r} has size {width}x{height} here but {sizes[image_id][0]}x{sizes[image_id][1]} on line {size_line[image_id]}", image_id)
            else:
                report(sizes_path, number, f"{image_id!r} listed twice (same size, first on line {size_line[image_id]})", image_id, "warning")
            continue
        sizes[image_id] = (width, height)
        size_line[image_id] = number
    if size_lines:
        reported = {p.image_id for p in problems if p.file == str(sizes_path)}
        for image_id in order:
            if image_id not in sizes and image_id not in reported:
                report(sizes_path, None, f"no size for {image_id!r}", image_id)

    # localization.txt (optional; empty for train splits)
    loc_path = root / LOCALIZATION
    boxes: dict[str, list[list[float]]] = {}
    masks: dict[str, list[str]] = {}
    ignores: dict[str, str] = {}
    kind: str | None = None
    loc_lines = _optional_lines(loc_path, problems)
    for number, text in loc_lines:
        fields = [field.strip() for field in text.split(",")]
        image_id = fields[0]
        known = image_id if image_id in first_line else None
        if kind is None:
            kind = "boxes" if len(fields) == 5 else "masks" if len(fields) == 3 else None
            if kind is None:
                report(loc_path, number, f"expected 'id,x0,y0,x1,y1' or 'id,mask,ignore', got {len(fields)} fields: {text!r}", None)
                break
        if select is not None and not select(image_id):
            continue
        if known is None:
            report(loc_path, number, f"annotation for {image_id!r}, which is not in {IMAGE_IDS}", None, "warning")
            continue
        if kind == "boxes":
            if len(fields) != 5:
                report(loc_path, number, f"expected 'image_id,x0,y0,x1,y1' (5 fields), got {len(fields)} fields: {text!r}", image_id)
                continue
            values = [parse_float(field) for field in fields[1:]]
            if any(value is None for value in values):
                report(loc_path, number, f"box of {image_id!r} has a non-numeric or non-finite coordinate: {text!r}", image_id)
                continue
            box = np.array(values, dtype=np.float64)
            reason = box_problem(box, sizes.get(image_id), box_tolerance)
            if reason:
                report(loc_path, number, f"{image_id!r}: {reason}", image_id)
                continue
            boxes.setdefault(image_id, []).append(list(box))
        else:
            if len(fields) != 3 or not fields[1]:
                report(loc_path, number, f"expected 'image_id,mask_path,ignore_path', got {text!r}", image_id)
                continue
            _, mask_path, ignore_path = fields
            unsafe = [message for message in (unsafe_path_message(mask_path, what="mask path", root="the mask root"),
                                              unsafe_path_message(ignore_path, what="ignore-mask path", root="the mask root")
                                              if ignore_path else None) if message]
            if unsafe:
                report(loc_path, number, unsafe[0], None)
                continue
            if image_id in masks and ignore_path and ignores.get(image_id, "") not in ("", ignore_path):
                report(loc_path, number, f"{image_id!r} has a second ignore mask {ignore_path!r} (first {ignores[image_id]!r})", image_id)
                continue
            masks.setdefault(image_id, []).append(mask_path)
            if ignore_path and not ignores.get(image_id):
                ignores[image_id] = ignore_path
    if loc_lines and kind is not None:
        annotated = boxes if kind == "boxes" else masks
        what = "box" if kind == "boxes" else "mask"
        errored = {p.image_id for p in problems if p.file == str(loc_path) and p.severity == "error"}
        for image_id in order:
            if image_id not in annotated and image_id not in errored:
                report(loc_path, None, f"no {what} for {image_id!r} (every image of a split with {LOCALIZATION} needs one)", image_id)

    # blacklist.txt (wsol extension)
    blacklist: list[str] = []
    blacklist_path = root / BLACKLIST
    for number, text in _optional_lines(blacklist_path, problems):
        if select is not None and not select(text):
            continue
        if text not in first_line:
            report(blacklist_path, number, f"blacklisted id {text!r} is not in {IMAGE_IDS}", None, "warning")
        blacklist.append(text)

    records: list[ImageRecord] = []
    for image_id in order:
        if image_id not in labels:
            continue
        image_boxes = boxes.get(image_id)
        records.append(
            ImageRecord(
                image_id=image_id,
                label=labels[image_id],
                boxes=np.array(image_boxes, dtype=np.float64).reshape(-1, 4) if image_boxes else np.zeros((0, 4)),
                size=sizes.get(image_id),
                mask_paths=tuple(masks.get(image_id, ())),
                ignore_path=ignores.get(image_id) or None,
            )
        )
    return records, problems, blacklist


def read_metadata(
    metadata_dir: str | os.PathLike[str],
    *,
    num_classes: int | None = None,
    on_error: OnError = "raise",
    box_tolerance: float = DEFAULT_BOX_TOLERANCE,
    class_names: list[str] | None = None,
    select: Callable[[str], bool] | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> Annotations:
    """Read a metadata folder into ``Annotations``, applying the ``on_error`` policy.

    Args:
        metadata_dir: folder with ``image_ids.txt``, ``class_labels.txt`` and optionally
            ``image_sizes.txt``, ``localization.txt``, ``blacklist.txt``.
        num_classes: the dataset's class count (labels outside ``[0, num_classes)`` are errors);
            ``None`` infers ``max(label) + 1``.
        on_error: ``"raise"`` or ``"skip"`` (see the module docstring).
        box_tolerance: pixels a box may overshoot its image before it is an error.
        class_names: optional names, index = label.
        select: read only the image ids for which it is true (see ``collect_metadata``).
        max_image_pixels: largest image size (pixels) ``image_sizes.txt`` may state.

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
        for problem in _unsafe_paths([record], f"write_metadata({out_dir})"):
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


def resolve_path(root: Path, path: str | os.PathLike[str] | None) -> Path | None:
    """``path`` relative to ``root`` unless absolute; ``None`` stays ``None``."""
    if path is None:
        return None
    path = Path(os.path.expanduser(str(path)))
    return path if path.is_absolute() else root / path


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


def match_blacklist(entries: Iterable[str], image_ids: Sequence[str]) -> list[str]:
    """The ids of ``image_ids`` that blacklist ``entries`` name: the same id, or the same file stem (an entry
    ``val/ILSVRC2012_val_00000007.JPEG`` names ``val/n01440764/ILSVRC2012_val_00000007.JPEG`` of Imagenette)."""
    entries = set(entries)
    stems = {Path(e).stem for e in entries}
    return [i for i in image_ids if i in entries or Path(i).stem in stems]
