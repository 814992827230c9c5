"""What every annotation reader shares: the problems it reports, the ``on_error`` policy, the text rules, the checks.

Text rules (one rule set: the metadata reader, every other format's reader, ``wsol-score`` and ``wsol-prepare`` use
these functions): UTF-8 (a byte-order mark on the first line is dropped; a byte that is not UTF-8 is an error naming
the file and line), LF, CRLF or CR line ends. Integers are ASCII digits with an optional sign (``parse_int``: ``1e3``,
``1_000``, ``٣`` are not labels); coordinates are decimal or exponent notation, finite (``parse_float``). Image ids
and mask paths must name a file inside their root (``wsol.io.unsafe_path_reason``: no absolute path, no ``..``, no
backslash, ...): such an id is an error that no ``on_error`` policy skips, since it is never a data error
(``unsafe_path_problems``, the backstop every reader's records pass through in ``finalize_annotations``). Labels lie
in ``[0, num_classes)`` (``[0, 2**31 - 1]`` when the count is unknown: ``label_problem``); boxes are finite, not
inverted and inside their image up to ``box_tolerance`` pixels (``box_problem``).

Every problem is reported as a ``Problem`` naming the file and 1-based line. Problems tied to an image either raise
(``on_error="raise"``, all of them listed at once) or drop that image and record the reason in
``Annotations.skipped`` (``on_error="skip"``); problems not tied to an image (a missing file, a line with no usable
id) always raise (``finalize_annotations``). A bad box drops its whole image, never just the box: scoring an image
against part of its ground truth would be a silently wrong number.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from wsol.data.geometry import boxes_inverted, boxes_outside
from wsol.data.records import Annotations, ImageRecord
from wsol.io import unsafe_path_message

__all__ = ["MAX_LABEL", "AnnotationError", "OnError", "Problem", "Severity", "box_problem",
           "check_box_tolerance", "check_on_error", "finalize_annotations", "label_problem", "match_blacklist",
           "parse_float", "parse_int", "read_text", "read_text_lines", "resolve_path", "unsafe_path_problems"]

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
Severity = Literal["error", "warning"]

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
    problems = list(problems) + unsafe_path_problems(records, source)
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


def unsafe_path_problems(records: Iterable[ImageRecord], source: str) -> list[Problem]:
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


def parse_int(text: str) -> int | None:
    """An ASCII decimal integer with an optional sign (not ``int()``: it takes ``1_000`` and other digits)."""
    return int(text) if _INT.fullmatch(text) else None


def parse_float(text: str) -> float | None:
    """A finite ASCII decimal or exponent number (not ``float()``: it takes ``nan``, ``inf``, ``1_0``)."""
    if not _FLOAT.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def resolve_path(root: Path, path: str | os.PathLike[str] | None) -> Path | None:
    """``path`` relative to ``root`` unless absolute; ``None`` stays ``None``."""
    if path is None:
        return None
    path = Path(os.path.expanduser(str(path)))
    return path if path.is_absolute() else root / path


def match_blacklist(entries: Iterable[str], image_ids: Sequence[str]) -> list[str]:
    """The ids of ``image_ids`` that blacklist ``entries`` name: the same id, or the same file stem (an entry
    ``val/ILSVRC2012_val_00000007.JPEG`` names ``val/n01440764/ILSVRC2012_val_00000007.JPEG`` of Imagenette)."""
    entries = set(entries)
    stems = {Path(e).stem for e in entries}
    return [i for i in image_ids if i in entries or Path(i).stem in stems]
