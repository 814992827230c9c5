"""Registered factories for real data sets: ``wsol_metadata``, ``ilsvrc``, ``cub``, ``openimages``.

Each factory ``fn(split, root, **options)`` returns a ``FileImageSource`` (``wsol.data.files``, satisfying
``wsol.data.datasets.ImageSource``): the split's ``Annotations`` plus ``load(i)`` through
``wsol.data.images.load_rgb``. Relative paths in the options are relative to ``root``. The options are the keys of
``configs/data/<name>.yaml``, their one home: ``ilsvrc``, ``cub`` and ``openimages`` take every option as a required
keyword (as the ``synthetic`` generator does); ``wsol_metadata`` still has defaults for the callers that build it
without them (``tests/test_bad_inputs.py`` and others, ``scripts/``), equal to its YAML's.

Bad input is handled when the source is built, so that nothing is discovered half-way through a run
(``check_files``: ``none`` | ``header`` | ``decode``, see ``wsol.data.files``); the ground truth of every ILSVRC format
goes through one dispatcher (``wsol.data.ground_truth``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from wsol.data.datasets import DATASETS
from wsol.data.devkit import devkit_ids_to_labels, read_blacklist, read_devkit_id_map, read_synsets, read_train_folder
from wsol.data.files import (  # noqa: F401  (re-exported: the names callers import from this module)
    CheckLevel,
    FileImageSource,
    PathLike,
    build_file_source,
    check_image_files,
)
from wsol.data.ground_truth import GtFormat, LabelSpace, read_ilsvrc_ground_truth
from wsol.data.images import AlphaPolicy
from wsol.data.metadata import read_metadata, resolve_metadata_dir
from wsol.data.validation import OnError, check_on_error, resolve_path


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
    *,
    metadata_dir: PathLike | None = None,
    images_dir: PathLike | None = None,
    on_error: OnError = "raise",
    num_classes: int | None = None,
    check_files: CheckLevel,
    mask_root: PathLike | None = None,
    apply_exif_orientation: bool,
    alpha: AlphaPolicy,
    box_tolerance: float,
    max_image_pixels: int,
) -> FileImageSource:
    """Any data set in wsolevaluation metadata format: ``root/images/<image_id>`` + ``root/metadata/*.txt``.

    ``check_files`` and the image and box options are required: their one home is ``configs/data/wsol_metadata.yaml``.

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


@DATASETS.register("ilsvrc")
def ilsvrc(
    split: str,
    root: PathLike,
    *,
    gt_format: GtFormat,
    metadata_dir: PathLike | None,
    images_dir: PathLike | None,
    train_dir: PathLike,
    synsets: PathLike | None,
    xml_dir: PathLike | None,
    label_file: PathLike | None,
    devkit_meta: PathLike | None,
    kaggle_csv: PathLike | None,
    devkit_mat: PathLike | None,
    id_map_reference: PathLike | None,
    blacklist_file: PathLike | None,
    on_error: OnError,
    num_classes: int,
    check_files: CheckLevel,
    train_check_files: CheckLevel,
    apply_exif_orientation: bool,
    alpha: AlphaPolicy,
    box_tolerance: float,
    max_image_pixels: int,
) -> FileImageSource:
    """ILSVRC (ImageNet-1k CLS-LOC), labels in sorted-WNID order, from whichever ground truth the user has.

    ``split="train"`` reads the ``train_dir`` folder layout (unless ``gt_format="metadata"``). Other splits
    (wsolevaluation's ``test`` = the 50,000 ILSVRC2012 val images, ``val`` = its ImageNetV2 held-out set)
    read, by ``gt_format`` (``wsol.data.ground_truth``):

    * ``"metadata"``: ``metadata_dir`` (``{split}`` replaced) or ``root/metadata/<split>``.
    * ``"devkit_xml"``: ``xml_dir`` (``Annotations/CLS-LOC/val``), classes from ``synsets`` or the train
      folders; optional ``label_file`` + ``devkit_meta`` (``meta_clsloc.mat``/``meta.mat``/``map_clsloc.txt``).
    * ``"kaggle"``: ``kaggle_csv`` (``LOC_val_solution.csv``) + ``synsets`` (``LOC_synset_mapping.txt``).
    * ``"devkit_mat"``: ``devkit_mat`` (cached ground truth) with ids mapped by ``devkit_meta`` (+ class list)
      or inferred against the metadata folder ``id_map_reference``.
    * ``"auto"``: metadata if found, else the first of xml_dir / kaggle_csv / devkit_mat that is given.

    ``blacklist_file`` (``ILSVRC2014_clsloc_validation_blacklist.txt``) fills ``annotations.blacklist``.
    Images are under ``images_dir`` (``None``: ``root/images`` if it exists, else ``root`` as in wsolevaluation's
    layout, where image ids start with ``val/``); the train split's images are under ``train_dir``.
    ``check_files`` applies to evaluation splits; the train split uses ``train_check_files`` (``"none"`` in the
    config: its 1.28M images are checked as they are loaded, not all at start-up). ``max_image_pixels``:
    larger images are refused (``wsol.data.images``). Every option is ``configs/data/ilsvrc.yaml``'s.

    Returns:
        A ``FileImageSource``.
    """
    check_on_error(on_error)
    base = Path(root)
    images = _default_images_dir(base, images_dir)
    common = dict(
        check_files=check_files, on_error=on_error, mask_root=None, apply_exif_orientation=apply_exif_orientation,
        alpha=alpha, box_tolerance=box_tolerance, max_image_pixels=max_image_pixels,
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
        path = resolve_metadata_dir(base, split, metadata_dir)
        description = f"ilsvrc {split} from metadata {path}"
    else:
        # each format's file has its own option; "needs" names the one that is missing
        option, what = {"devkit_xml": (xml_dir, "xml_dir= (e.g. Annotations/CLS-LOC/val)"),
                        "kaggle": (kaggle_csv, "kaggle_csv= (LOC_val_solution.csv) and synsets="),
                        "devkit_mat": (devkit_mat, "devkit_mat= (the cached ground-truth .mat)")}.get(chosen, (None, ""))
        if not what:
            raise ValueError(f"gt_format must be auto, metadata, devkit_xml, kaggle or devkit_mat, got {gt_format!r}")
        if option is None:
            raise ValueError(f"gt_format='{chosen}' needs {what}")
        path = resolve_path(base, option)
        assert path is not None
        kind = {"devkit_xml": "devkit XML", "kaggle": "Kaggle CSV", "devkit_mat": "devkit .mat"}[chosen]
        description = f"ilsvrc {split} from {kind} {path}"
    labels = LabelSpace(
        wnids=class_list,
        devkit_labels=lambda meta: devkit_ids_to_labels(read_devkit_id_map(meta), class_list()))
    annotations = read_ilsvrc_ground_truth(
        chosen, path, labels, num_classes=num_classes, on_error=on_error, box_tolerance=box_tolerance,
        max_image_pixels=max_image_pixels, devkit_meta=resolve_path(base, devkit_meta),
        id_map_reference=resolve_path(base, id_map_reference),
        label_file=resolve_path(base, label_file) if chosen == "devkit_xml" else None,
        blacklist=blacklist if chosen != "metadata" else frozenset())
    if blacklist and not annotations.blacklist:
        annotations.blacklist = frozenset(i for i in blacklist if i in {r.image_id for r in annotations.records})
    return build_file_source(annotations, images, description, **common)  # type: ignore[arg-type]


@DATASETS.register("cub")
def cub(
    split: str,
    root: PathLike,
    *,
    gt_format: Literal["auto", "metadata", "cub_text"],
    metadata_dir: PathLike | None,
    images_dir: PathLike | None,
    on_error: OnError,
    num_classes: int,
    check_files: CheckLevel,
    apply_exif_orientation: bool,
    alpha: AlphaPolicy,
    box_tolerance: float,
    max_image_pixels: int,
) -> FileImageSource:
    """CUB-200-2011: wsolevaluation metadata (``train``/``val`` = CUBV2/``test``) or the original text files.

    ``gt_format="auto"`` uses metadata when ``metadata_dir`` or ``root/metadata/<split>`` exists, else the
    ``CUB_200_2011`` text files in ``root`` (splits ``train``/``test``; images under ``root/images``).
    ``max_image_pixels``: larger images are refused (``wsol.data.images``). Every option is
    ``configs/data/cub.yaml``'s.

    Returns:
        A ``FileImageSource``.
    """
    check_on_error(on_error)
    base = Path(root)
    common = dict(
        check_files=check_files, on_error=on_error, mask_root=None, apply_exif_orientation=apply_exif_orientation,
        alpha=alpha, box_tolerance=box_tolerance, max_image_pixels=max_image_pixels,
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
    *,
    metadata_dir: PathLike | None,
    images_dir: PathLike | None,
    mask_root: PathLike | None,
    on_error: OnError,
    num_classes: int,
    check_files: CheckLevel,
    apply_exif_orientation: bool,
    alpha: AlphaPolicy,
    box_tolerance: float,
    max_image_pixels: int,
) -> FileImageSource:
    """OpenImages30k (wsolevaluation): metadata with per-image masks and one ignore mask.

    Layout as wsolevaluation's ``dataset/OpenImages``: images and masks under ``root`` (ids ``test/...``),
    metadata in ``root/metadata/<split>`` or ``metadata_dir``. Test and val splits must hold masks; ``box_tolerance``
    checks the boxes of a split that holds boxes instead (e.g. a train split). ``max_image_pixels``: larger images are
    refused (``wsol.data.images``). Every option is ``configs/data/openimages.yaml``'s.

    Returns:
        A ``FileImageSource`` whose ``mask_root`` locates the masks.
    """
    check_on_error(on_error)
    base = Path(root)
    meta = resolve_metadata_dir(base, split, metadata_dir)
    annotations = read_metadata(meta, num_classes=num_classes, on_error=on_error, box_tolerance=box_tolerance,
                                max_image_pixels=max_image_pixels)
    if split != "train" and annotations.records and not any(record.mask_paths for record in annotations.records):
        raise ValueError(f"{meta}: split {split!r} has no mask annotations (localization.txt of masks expected)")
    images = _default_images_dir(base, images_dir)
    masks = resolve_path(base, mask_root) if mask_root is not None else images
    return build_file_source(
        annotations, images, f"openimages {split} from metadata {meta}", check_files=check_files, on_error=on_error,
        mask_root=masks, apply_exif_orientation=apply_exif_orientation, alpha=alpha, box_tolerance=box_tolerance,
        max_image_pixels=max_image_pixels,
    )
