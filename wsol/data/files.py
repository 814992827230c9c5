"""Images on disk behind a split's annotations: the checks made when a split is built, and the source that loads them.

``check_image_files`` (``check_files="header"``) opens every image header (missing, empty, unidentifiable or too large
files; size vs metadata) and checks the file's end marker, which finds truncated JPEG and PNG files without decoding
(``wsol.data.images.check_image``: ~0.2 ms per image, as the header alone; files of other formats are decoded);
``"decode"`` decodes every image (also corrupt pixel data, unsupported modes; slow); ``"none"`` trusts the files.
With ``on_error="skip"`` the bad images are dropped and listed in ``annotations.skipped``; with ``"raise"`` the build
fails listing every bad file. A file that still fails in ``FileImageSource.load`` (corrupt pixel data below
``"decode"``, or any problem with ``"none"``) raises ``ImageLoadError`` naming it: never a silently wrong score.

Image ids and mask paths are joined to their roots through ``wsol.io.safe_join``: an id that is absolute or climbs out
of its root is refused before the disk is touched. Symbolic links inside the roots are followed (a cluster's image
folders linked to shared storage keep working). The dataset factories (``wsol.data.real``, ``wsol.data.imagenette``)
build their sources with ``build_file_source``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from PIL import Image

from wsol.data.images import AlphaPolicy, ImageLoadError, check_image, check_max_pixels, load_rgb
from wsol.data.records import Annotations, ImageRecord
from wsol.data.validation import (
    OnError,
    Problem,
    box_problem,
    check_box_tolerance,
    check_on_error,
    finalize_annotations,
)
from wsol.io import UnsafePathError, safe_join

__all__ = ["CheckLevel", "FileImageSource", "PathLike", "build_file_source", "check_image_files"]

CheckLevel = Literal["none", "header", "decode"]
PathLike = str | os.PathLike[str]


@dataclass
class FileImageSource:
    """Annotations plus images on disk at ``images_dir / image_id``.

    Attributes:
        annotations: the split's records (bad ones already dropped or reported).
        images_dir: image root; ``image_id`` is relative to it.
        description: where the annotations came from (format and files), for logs and metrics.
        mask_root: root of OpenImages mask files (``mask_paths`` are relative to it), else ``None``.
        apply_exif_orientation: passed to ``load_rgb`` (see ``wsol.data.images``).
        alpha: passed to ``load_rgb``.
        max_image_pixels: passed to ``load_rgb`` (larger images are refused before decoding).
        on_error: the data config's policy: ``"skip"`` allows a loader to drop an image whose ``load`` fails
            and list it in ``annotations.skipped`` (``wsol.data.datasets.load_or_skip``); ``load`` itself
            always raises.
    """

    annotations: Annotations
    images_dir: Path
    description: str
    mask_root: Path | None
    apply_exif_orientation: bool
    alpha: AlphaPolicy
    max_image_pixels: int
    on_error: OnError

    def image_path(self, index: int) -> Path:
        """File of record ``index`` (``safe_join``: the id may not leave the image root)."""
        return safe_join(self.images_dir, self.annotations.records[index].image_id)

    def load(self, index: int) -> Image.Image:
        """Record ``index`` as an RGB image, checked against its metadata size.

        Raises:
            ImageLoadError: the file is missing, corrupt, truncated, too large or of the wrong size.
            UnsafePathError: the id is not a relative path inside the image root.
        """
        record = self.annotations.records[index]
        return load_rgb(
            self.image_path(index),
            expected_size=record.size,
            apply_exif_orientation=self.apply_exif_orientation,
            alpha=self.alpha,
            max_pixels=self.max_image_pixels,
        )


def _check_one(
    record: ImageRecord,
    images_dir: Path,
    mask_root: Path | None,
    level: CheckLevel,
    apply_exif_orientation: bool,
    alpha: AlphaPolicy,
    box_tolerance: float | None,
    max_image_pixels: int,
) -> tuple[ImageRecord, list[Problem]]:
    """Check one record's files; fill its size from the header when the annotations had none."""
    problems: list[Problem] = []
    try:
        path = safe_join(images_dir, record.image_id)
    except UnsafePathError as error:
        return record, [Problem(str(images_dir), None, str(error), None)]  # never skippable: not a data error
    try:
        size = check_image(path, level="decode" if level == "decode" else "header", expected_size=record.size,
                           apply_exif_orientation=apply_exif_orientation, alpha=alpha, max_pixels=max_image_pixels)
    except ImageLoadError as error:
        return record, [Problem(error.path, None, error.reason, record.image_id)]
    if record.size is None:
        # Formats without sizes (Kaggle CSV, devkit .mat, CUB text): take the header's and check the boxes now.
        record = replace(record, size=(int(size[0]), int(size[1])))
        if len(record.boxes) and box_tolerance is None:
            raise ValueError(f"{record.image_id}: boxes to check against the image size, but no box_tolerance given")
        for number, box in enumerate(record.boxes, start=1):
            reason = box_problem(box, record.size, box_tolerance)
            if reason:
                problems.append(Problem(str(path), None, f"box {number}: {reason}", record.image_id))
    if mask_root is not None:
        for mask, what in (*((m, "mask path") for m in record.mask_paths),
                           *(((record.ignore_path, "ignore-mask path"),) if record.ignore_path else ())):
            try:
                mask_path = safe_join(mask_root, mask, what=what)
            except UnsafePathError as error:
                problems.append(Problem(str(mask_root), None, str(error), None))
                continue
            if not mask_path.is_file():
                problems.append(Problem(str(mask_path), None, "mask file not found", record.image_id))
    return record, problems


def check_image_files(
    annotations: Annotations,
    images_dir: PathLike,
    *,
    level: CheckLevel,
    on_error: OnError,
    mask_root: PathLike | None,
    apply_exif_orientation: bool,
    alpha: AlphaPolicy,
    box_tolerance: float | None,
    workers: int | None = None,
    max_image_pixels: int,
) -> tuple[Annotations, list[Problem]]:
    """Check that every record's image (and mask) file exists and agrees with its annotation.

    Args:
        annotations: records to check.
        images_dir: image root.
        level: ``"none"``, ``"header"`` (open, identify, compare size, end-of-file marker: finds truncated
            JPEG/PNG; see ``wsol.data.images.check_image``) or ``"decode"`` (decode fully).
        on_error: ``"raise"``: any problem raises ``AnnotationError``; ``"skip"``: drop those records and
            add them to ``skipped``.
        mask_root: when given, mask and ignore files must exist under it.
        apply_exif_orientation: as ``load_rgb``.
        alpha: as ``load_rgb``.
        box_tolerance: for boxes checked against sizes read here (``data.box_tolerance``); None when the records
            hold no box (masks, labels only).
        workers: threads (decoding releases the GIL); default ``min(8, cpu count)``.
        max_image_pixels: larger images are refused (``wsol.data.images``).

    Returns:
        ``(annotations, problems)``: sizes filled in where they were unknown, bad records handled per
        ``on_error``; ``problems`` lists everything found.
    """
    check_on_error(on_error)
    check_max_pixels(max_image_pixels)
    if box_tolerance is not None:
        check_box_tolerance(box_tolerance)
    if level == "none":
        return annotations, []
    if level not in ("header", "decode"):
        raise ValueError(f"check_files must be 'none', 'header' or 'decode', got {level!r}")
    root = Path(images_dir)
    masks = Path(mask_root) if mask_root is not None else None
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(
            lambda r: _check_one(r, root, masks, level, apply_exif_orientation, alpha, box_tolerance, max_image_pixels),
            annotations.records
        ))
    records = [record for record, _ in results]
    problems = [problem for _, found in results for problem in found]
    checked = finalize_annotations(
        records, problems, num_classes=annotations.num_classes, on_error=on_error,
        class_names=annotations.class_names, blacklist=annotations.blacklist, source=str(root),
    )
    checked.skipped = {**annotations.skipped, **checked.skipped}
    return checked, problems


def build_file_source(
    annotations: Annotations,
    images_dir: Path,
    description: str,
    *,
    check_files: CheckLevel,
    on_error: OnError,
    mask_root: Path | None,
    apply_exif_orientation: bool,
    alpha: AlphaPolicy,
    box_tolerance: float | None,
    max_image_pixels: int,
) -> FileImageSource:
    """A ``FileImageSource`` over ``images_dir`` after ``check_image_files`` at level ``check_files``.

    Raises:
        FileNotFoundError: ``images_dir`` missing. AnnotationError: bad files with ``on_error="raise"``.
    """
    if not images_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {images_dir} ({description})")
    annotations, _ = check_image_files(
        annotations, images_dir, level=check_files, on_error=on_error, mask_root=mask_root,
        apply_exif_orientation=apply_exif_orientation, alpha=alpha, box_tolerance=box_tolerance,
        max_image_pixels=max_image_pixels,
    )
    return FileImageSource(
        annotations=annotations, images_dir=images_dir, description=description, mask_root=mask_root,
        apply_exif_orientation=apply_exif_orientation, alpha=alpha, max_image_pixels=max_image_pixels,
        on_error=on_error,
    )
