"""Registered factories for real data sets: ``wsol_metadata``, ``ilsvrc``, ``cub``, ``openimages``.

Each factory ``fn(split, root, **kwargs)`` returns a ``FileImageSource`` (satisfying
``wsol.data.datasets.ImageSource``): the split's ``Annotations`` plus ``load(i)`` through
``wsol.data.images.load_rgb``. Relative paths in the keyword arguments are relative to ``root``.

Bad input is handled when the source is built, so that nothing is discovered half-way through a run:
``check_files="header"`` (default) opens every image header (missing, empty, unidentifiable or too large files;
size vs metadata) and checks the file's end marker, which finds truncated JPEG and PNG files without decoding
(``wsol.data.images.check_image``: ~0.2 ms per image, as the header alone; files of other formats are
decoded); ``"decode"`` decodes every image (also corrupt pixel data, unsupported modes; slow); ``"none"``
trusts the files. With ``on_error="skip"`` the bad images are dropped and listed in ``annotations.skipped``;
with ``"raise"`` the build fails listing every bad file. A file that still fails in ``load`` (corrupt pixel
data below ``"decode"``, or any problem with ``"none"``) raises ``ImageLoadError`` naming it: never a
silently wrong score (``FileImageSource.on_error`` tells a loader whether it may skip it instead).

Image ids and mask paths are joined to their roots through ``wsol.io.safe_join``: an id that is absolute or
climbs out of its root is refused before the disk is touched. Symbolic links inside the roots are followed
(a cluster's image folders linked to shared storage keep working).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from PIL import Image

from wsol.data.datasets import DATASETS
from wsol.data.formats import (
    ILSVRC_NUM_CLASSES,
    devkit_ids_to_labels,
    infer_devkit_id_map,
    read_blacklist,
    read_devkit_id_map,
    read_devkit_mat,
    read_devkit_xml,
    read_kaggle_csv,
    read_synsets,
    read_train_folder,
    read_cub,
)
from wsol.data.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    AlphaPolicy,
    ImageLoadError,
    check_image,
    check_max_pixels,
    load_rgb,
)
from wsol.data.metadata import (
    DEFAULT_BOX_TOLERANCE,
    IMAGE_IDS,
    OnError,
    Problem,
    box_problem,
    check_box_tolerance,
    check_on_error,
    finalize_annotations,
    read_metadata,
    resolve_metadata_dir,
    resolve_path,
)
from wsol.data.records import Annotations, ImageRecord
from wsol.io import UnsafePathError, safe_join

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
        apply_exif_orientation: passed to ``load_rgb`` (default False; see ``wsol.data.images``).
        alpha: passed to ``load_rgb``.
        max_image_pixels: passed to ``load_rgb`` (larger images are refused before decoding).
        on_error: the data config's policy: ``"skip"`` allows a loader to drop an image whose ``load`` fails
            and list it in ``annotations.skipped`` (``wsol.data.datasets.load_or_skip``); ``load`` itself
            always raises.
    """

    annotations: Annotations
    images_dir: Path
    description: str = ""
    mask_root: Path | None = None
    apply_exif_orientation: bool = False
    alpha: AlphaPolicy = "white"
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    on_error: OnError = "raise"

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
    box_tolerance: float,
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
    level: CheckLevel = "header",
    on_error: OnError = "raise",
    mask_root: PathLike | None = None,
    apply_exif_orientation: bool = False,
    alpha: AlphaPolicy = "white",
    box_tolerance: float = DEFAULT_BOX_TOLERANCE,
    workers: int | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
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
        box_tolerance: for boxes checked against sizes read here.
        workers: threads (decoding releases the GIL); default ``min(8, cpu count)``.
        max_image_pixels: larger images are refused (``wsol.data.images``).

    Returns:
        ``(annotations, problems)``: sizes filled in where they were unknown, bad records handled per
        ``on_error``; ``problems`` lists everything found.
    """
    check_on_error(on_error)
    check_max_pixels(max_image_pixels)
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
    mask_root: Path | None = None,
    apply_exif_orientation: bool = False,
    alpha: AlphaPolicy = "white",
    box_tolerance: float = DEFAULT_BOX_TOLERANCE,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
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


def _default_images_dir(base: Path, images_dir: PathLike | None) -> Path:
    """``images_dir`` if given, else ``root/images`` when it exists, else ``root`` (wsolevaluation layout)."""
    if images_dir is not None:
        resolved = resolve_path(base, images_dir)
        assert resolved is not None
        return resolved
    return base / "images" if (base / "images").is_dir() else base


@DATASETS.register("wsol_metadata")
def wsol_metadata(
    split: str,
    root: PathLike,
    metadata_dir: PathLike | None = None,
    images_dir: PathLike | None = None,
    on_error: OnError = "raise",
    num_classes: int | None = None,
    check_files: CheckLevel = "header",
    mask_root: PathLike | None = None,
    apply_exif_orientation: bool = False,
    alpha: AlphaPolicy = "white",
    box_tolerance: float = DEFAULT_BOX_TOLERANCE,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> FileImageSource:
    """Any data set in wsolevaluation metadata format: ``root/images/<image_id>`` + ``root/metadata/*.txt``.

    Args:
        split: the split name (selects ``root/metadata/<split>`` when it exists).
        root: data set folder.
        metadata_dir: metadata folder (``{split}`` replaced), e.g. ``metadata/ILSVRC/{split}``.
        images_dir: image root (default ``root/images`` if present, else ``root``).
        on_error: ``"raise"`` or ``"skip"`` bad annotations and images.
        num_classes: labels must lie in ``[0, num_classes)``; ``None`` infers it.
        check_files: ``"none"``, ``"header"`` or ``"decode"`` (see the module docstring).
        mask_root: root of mask files for mask metadata (default: the image root).
        apply_exif_orientation: see ``wsol.data.images``.
        alpha: ``"white"`` or ``"drop"``.
        box_tolerance: pixels a box may overshoot its image.
        max_image_pixels: larger images (and ``image_sizes.txt`` entries) are refused (``wsol.data.images``).

    Returns:
        A ``FileImageSource``.
    """
    check_on_error(on_error)
    base = Path(root)
    meta = resolve_metadata_dir(base, split, metadata_dir)
    annotations = read_metadata(meta, num_classes=num_classes, on_error=on_error, box_tolerance=box_tolerance,
                                max_image_pixels=max_image_pixels)
    images = _default_images_dir(base, images_dir)
    has_masks = any(record.mask_paths for record in annotations.records)
    masks = (resolve_path(base, mask_root) or images) if has_masks else None
    return build_file_source(
        annotations, images, f"wsol_metadata {meta}", check_files=check_files, on_error=on_error,
        mask_root=masks, apply_exif_orientation=apply_exif_orientation, alpha=alpha, box_tolerance=box_tolerance,
        max_image_pixels=max_image_pixels,
    )


IlsvrcFormat = Literal["auto", "metadata", "devkit_xml", "kaggle", "devkit_mat"]


@DATASETS.register("ilsvrc")
def ilsvrc(
    split: str,
    root: PathLike,
    gt_format: IlsvrcFormat = "auto",
    metadata_dir: PathLike | None = None,
    images_dir: PathLike | None = None,
    train_dir: PathLike = "train",
    synsets: PathLike | None = None,
    xml_dir: PathLike | None = None,
    label_file: PathLike | None = None,
    devkit_meta: PathLike | None = None,
    kaggle_csv: PathLike | None = None,
    devkit_mat: PathLike | None = None,
    id_map_reference: PathLike | None = None,
    blacklist_file: PathLike | None = None,
    on_error: OnError = "raise",
    num_classes: int = ILSVRC_NUM_CLASSES,
    check_files: CheckLevel = "header",
    train_check_files: CheckLevel = "none",
    apply_exif_orientation: bool = False,
    alpha: AlphaPolicy = "white",
    box_tolerance: float = DEFAULT_BOX_TOLERANCE,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> FileImageSource:
    """ILSVRC (ImageNet-1k CLS-LOC), labels in sorted-WNID order, from whichever ground truth the user has.

    ``split="train"`` reads the ``train_dir`` folder layout (unless ``gt_format="metadata"``). Other splits
    (wsolevaluation's ``test`` = the 50,000 ILSVRC2012 val images, ``val`` = its ImageNetV2 held-out set)
    read, by ``gt_format``:

    * ``"metadata"``: ``metadata_dir`` (``{split}`` replaced) or ``root/metadata/<split>``.
    * ``"devkit_xml"``: ``xml_dir`` (``Annotations/CLS-LOC/val``), classes from ``synsets`` or the train
      folders; optional ``label_file`` + ``devkit_meta`` (``meta_clsloc.mat``/``meta.mat``/``map_clsloc.txt``).
    * ``"kaggle"``: ``kaggle_csv`` (``LOC_val_solution.csv``) + ``synsets`` (``LOC_synset_mapping.txt``).
    * ``"devkit_mat"``: ``devkit_mat`` (cached ground truth) with ids mapped by ``devkit_meta`` (+ class list)
      or inferred against the metadata folder ``id_map_reference``.
    * ``"auto"``: metadata if found, else the first of xml_dir / kaggle_csv / devkit_mat that is given.

    ``blacklist_file`` (``ILSVRC2014_clsloc_validation_blacklist.txt``) fills ``annotations.blacklist``.
    Images are under ``images_dir`` (default ``root/images`` if it exists, else ``root`` as in wsolevaluation's
    layout, where image ids start with ``val/``); the train split's images are under ``train_dir``.
    ``check_files`` applies to evaluation splits; the train split uses ``train_check_files`` (default
    ``"none"``: its 1.28M images are checked as they are loaded, not all at start-up). ``max_image_pixels``:
    larger images are refused (``wsol.data.images``).

    Returns:
        A ``FileImageSource``.
    """
    check_on_error(on_error)
    base = Path(root)
    images = _default_images_dir(base, images_dir)
    common = dict(
        check_files=check_files, on_error=on_error, apply_exif_orientation=apply_exif_orientation, alpha=alpha,
        box_tolerance=box_tolerance, max_image_pixels=max_image_pixels,
    )
    blacklist = read_blacklist(resolve_path(base, blacklist_file)) if blacklist_file is not None else frozenset()  # type: ignore[arg-type]

    def class_list() -> list[str]:
        if synsets is not None:
            return read_synsets(resolve_path(base, synsets))[0]  # type: ignore[arg-type]
        folder = resolve_path(base, train_dir)
        if folder is not None and folder.is_dir():
            return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
        if devkit_meta is not None:
            return sorted(read_devkit_id_map(resolve_path(base, devkit_meta)).values())  # type: ignore[arg-type]
        raise ValueError("ILSVRC needs its class list: pass synsets= (LOC_synset_mapping.txt), a train folder, or devkit_meta=")

    if split == "train" and gt_format != "metadata":
        folder = resolve_path(base, train_dir)
        assert folder is not None
        # Ids are "<train folder name>/<wnid>/<file>" relative to the folder's parent, as wsolevaluation's
        # "train/n01440764/..." relative to dataset/ILSVRC.
        annotations = read_train_folder(folder, image_prefix=f"{folder.name}/")
        if annotations.num_classes != num_classes:
            raise ValueError(f"{folder}: {annotations.num_classes} class folders, expected num_classes={num_classes}")
        # The 1.28M training images are not opened at start-up (minutes on a network file system): a bad one
        # raises naming its file when it is loaded. ``train_check_files`` asks for the up-front check.
        return build_file_source(annotations, folder.parent, f"ilsvrc train folder {folder}",  # type: ignore[arg-type]
                             **{**common, "check_files": train_check_files})

    chosen = gt_format
    if chosen == "auto":
        try:
            resolve_metadata_dir(base, split, metadata_dir)
            chosen = "metadata"
        except FileNotFoundError:
            given = [(name, value) for name, value in (("devkit_xml", xml_dir), ("kaggle", kaggle_csv), ("devkit_mat", devkit_mat)) if value is not None]
            if not given:
                raise FileNotFoundError(
                    f"ilsvrc split {split!r}: no metadata under {base} and none of xml_dir, kaggle_csv, devkit_mat given"
                ) from None
            chosen = given[0][0]
    if chosen == "metadata":
        meta = resolve_metadata_dir(base, split, metadata_dir)
        annotations = read_metadata(meta, num_classes=num_classes, on_error=on_error, box_tolerance=box_tolerance,
                                    max_image_pixels=max_image_pixels)
        description = f"ilsvrc {split} from metadata {meta}"
    elif chosen == "devkit_xml":
        if xml_dir is None:
            raise ValueError("gt_format='devkit_xml' needs xml_dir= (e.g. Annotations/CLS-LOC/val)")
        wnids = class_list()
        id_to_label = None
        if label_file is not None:
            if devkit_meta is None:
                raise ValueError("label_file= needs devkit_meta= (meta_clsloc.mat, meta.mat or map_clsloc.txt) to map its ids")
            id_to_label = devkit_ids_to_labels(read_devkit_id_map(resolve_path(base, devkit_meta)), wnids)  # type: ignore[arg-type]
        annotations = read_devkit_xml(
            resolve_path(base, xml_dir), wnids, label_file=resolve_path(base, label_file), id_to_label=id_to_label,  # type: ignore[arg-type]
            blacklist=blacklist, on_error=on_error, box_tolerance=box_tolerance,
        )
        description = f"ilsvrc {split} from devkit XML {resolve_path(base, xml_dir)}"
    elif chosen == "kaggle":
        if kaggle_csv is None:
            raise ValueError("gt_format='kaggle' needs kaggle_csv= (LOC_val_solution.csv) and synsets=")
        annotations = read_kaggle_csv(
            resolve_path(base, kaggle_csv), class_list(), blacklist=blacklist, on_error=on_error, box_tolerance=box_tolerance,  # type: ignore[arg-type]
        )
        description = f"ilsvrc {split} from Kaggle CSV {resolve_path(base, kaggle_csv)}"
    elif chosen == "devkit_mat":
        if devkit_mat is None:
            raise ValueError("gt_format='devkit_mat' needs devkit_mat= (the cached ground-truth .mat)")
        mat = resolve_path(base, devkit_mat)
        assert mat is not None
        if devkit_meta is not None:
            id_to_label = devkit_ids_to_labels(read_devkit_id_map(resolve_path(base, devkit_meta)), class_list())  # type: ignore[arg-type]
        elif id_map_reference is not None:
            reference = read_metadata(resolve_path(base, id_map_reference), num_classes=num_classes)  # type: ignore[arg-type]
            id_to_label = infer_devkit_id_map(mat, reference)
        else:
            raise ValueError("gt_format='devkit_mat' needs devkit_meta= (meta_clsloc.mat / map_clsloc.txt) or id_map_reference=")
        annotations = read_devkit_mat(mat, id_to_label, num_classes=num_classes, blacklist=blacklist, on_error=on_error, box_tolerance=box_tolerance)
        description = f"ilsvrc {split} from devkit .mat {mat}"
    else:
        raise ValueError(f"gt_format must be auto, metadata, devkit_xml, kaggle or devkit_mat, got {gt_format!r}")
    if blacklist and not annotations.blacklist:
        annotations.blacklist = frozenset(i for i in blacklist if i in {r.image_id for r in annotations.records})
    return build_file_source(annotations, images, description, **common)  # type: ignore[arg-type]


@DATASETS.register("cub")
def cub(
    split: str,
    root: PathLike,
    gt_format: Literal["auto", "metadata", "cub_text"] = "auto",
    metadata_dir: PathLike | None = None,
    images_dir: PathLike | None = None,
    on_error: OnError = "raise",
    num_classes: int = 200,
    check_files: CheckLevel = "header",
    apply_exif_orientation: bool = False,
    alpha: AlphaPolicy = "white",
    box_tolerance: float = DEFAULT_BOX_TOLERANCE,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> FileImageSource:
    """CUB-200-2011: wsolevaluation metadata (``train``/``val`` = CUBV2/``test``) or the original text files.

    ``gt_format="auto"`` uses metadata when ``metadata_dir`` or ``root/metadata/<split>`` exists, else the
    ``CUB_200_2011`` text files in ``root`` (splits ``train``/``test``; images under ``root/images``).
    ``max_image_pixels``: larger images are refused (``wsol.data.images``).

    Returns:
        A ``FileImageSource``.
    """
    check_on_error(on_error)
    base = Path(root)
    common = dict(
        check_files=check_files, on_error=on_error, apply_exif_orientation=apply_exif_orientation, alpha=alpha,
        box_tolerance=box_tolerance, max_image_pixels=max_image_pixels,
    )
    chosen = gt_format
    if chosen == "auto":
        try:
            resolve_metadata_dir(base, split, metadata_dir)
            chosen = "metadata"
        except FileNotFoundError:
            chosen = "cub_text"
    if chosen == "metadata":
        meta = resolve_metadata_dir(base, split, metadata_dir)
        annotations = read_metadata(meta, num_classes=num_classes, on_error=on_error, box_tolerance=box_tolerance,
                                    max_image_pixels=max_image_pixels)
        return build_file_source(annotations, _default_images_dir(base, images_dir), f"cub {split} from metadata {meta}", **common)  # type: ignore[arg-type]
    if chosen != "cub_text":
        raise ValueError(f"gt_format must be auto, metadata or cub_text, got {gt_format!r}")
    annotations = read_cub(base, split, num_classes=num_classes, on_error=on_error, box_tolerance=box_tolerance)
    images = resolve_path(base, images_dir) if images_dir is not None else base / "images"
    assert images is not None
    return build_file_source(annotations, images, f"cub {split} from CUB text files in {base}", **common)  # type: ignore[arg-type]


@DATASETS.register("openimages")
def openimages(
    split: str,
    root: PathLike,
    metadata_dir: PathLike | None = None,
    images_dir: PathLike | None = None,
    mask_root: PathLike | None = None,
    on_error: OnError = "raise",
    num_classes: int = 100,
    check_files: CheckLevel = "header",
    apply_exif_orientation: bool = False,
    alpha: AlphaPolicy = "white",
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> FileImageSource:
    """OpenImages30k (wsolevaluation): metadata with per-image masks and one ignore mask.

    Layout as wsolevaluation's ``dataset/OpenImages``: images and masks under ``root`` (ids ``test/...``),
    metadata in ``root/metadata/<split>`` or ``metadata_dir``. Test and val splits must hold masks.
    ``max_image_pixels``: larger images are refused (``wsol.data.images``).

    Returns:
        A ``FileImageSource`` whose ``mask_root`` locates the masks.
    """
    check_on_error(on_error)
    base = Path(root)
    meta = resolve_metadata_dir(base, split, metadata_dir)
    annotations = read_metadata(meta, num_classes=num_classes, on_error=on_error, max_image_pixels=max_image_pixels)
    if split != "train" and annotations.records and not any(record.mask_paths for record in annotations.records):
        raise ValueError(f"{meta}: split {split!r} has no mask annotations (localization.txt of masks expected)")
    images = _default_images_dir(base, images_dir)
    masks = resolve_path(base, mask_root) if mask_root is not None else images
    return build_file_source(
        annotations, images, f"openimages {split} from metadata {meta}", check_files=check_files, on_error=on_error,
        mask_root=masks, apply_exif_orientation=apply_exif_orientation, alpha=alpha, max_image_pixels=max_image_pixels,
    )
