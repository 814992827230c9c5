"""fast.ai's Imagenette2 / Imagewoof2 as a leak-free localization benchmark (``data=imagenette``).

Facts this module rests on:
    * Imagenette2 (10 easy ImageNet classes) and Imagewoof2 (10 dog breeds) share one layout,
      ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``, at several resolutions (full size, 320 px, 160 px, or
      squashed copies such as the 224x224 one of the GitHub repository thunderInfy/imagenette).
    * Each holds ILSVRC2012 *validation* images of its classes, named ``ILSVRC2012_val_<8 digits>.JPEG``, some
      under ``train/`` and some under ``val/`` (Imagenette2: all 500 of its classes, 366 in train/, 134 in val/).
      Every other file is an ImageNet *train* image (``<wnid>_<n>.JPEG``), for which no box is published here.

Splits (image ids are paths relative to ``root``, e.g. ``train/n01440764/n01440764_10026.JPEG``):
    * ``test``: every ``ILSVRC2012_val_*`` file under ``train/`` and ``val/``, with its official label and boxes
      from the ILSVRC2012 val ground truth (any format the suite reads).
    * ``val``: for model selection, carved deterministically from the ImageNet-train files: per class, the
      ``round(val_fraction * n)`` files with the smallest SHA-256 of their file name. The choice depends on file
      names only, so it is the same at every resolution and in any directory order. Labels only: no boxes.
    * ``train``: the other ImageNet-train files. No ``ILSVRC2012_val_*`` file can enter ``train`` or ``val``
      (``check_no_val_leak`` enforces it by name and ``check_no_val_copies`` by content — no byte-identical copy of a
      test image under another name — when either split is built). A file name may occur once in the tree
      (``check_unique_names``): a copy would be scored, or trained on, twice.

Labels: by default ``0..9`` in sorted-WNID order of the variant's classes (``class_names`` = class names); with
``imagenet_labels=True`` the ImageNet-1k index (sorted-WNID order of the 1000 ILSVRC classes, torchvision's
``ImageFolder`` order) and ``num_classes = 1000``, so an unmodified ImageNet classifier is scored as it is.

Box mapping, stated once here: the ground truth's boxes are inclusive ``xyxy`` pixels of the ORIGINAL image
``(W, H)``; in the stored file of size ``(w', h')`` a box maps per axis as ``x' = x * w' / W``, ``y' = y * h' / H``,
computed in float64 as ``(x * w') / W`` (wsolevaluation's ``resize_bbox`` arithmetic, without its ``int()``).
``(W, H)`` comes from the ground truth (``image_sizes.txt``, XML ``<size>``) or, for formats without sizes, from
``original_sizes``; ``(w', h')`` from the stored file's header. The stored size must be explainable: identical to
the original, a squashed square copy (``w' == h'``), or an aspect-preserving resize (``|w' - W h'/H| <= 1`` or
``|h' - H w'/W| <= 1``); anything else is an error naming the file and both sizes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from wsol.boxes import resize_boxes
from wsol.data.datasets import DATASETS
from wsol.data.devkit import ILSVRC_NUM_CLASSES, read_blacklist, read_devkit_id_map, walk_image_files
from wsol.data.files import CheckLevel, FileImageSource, PathLike, build_file_source
from wsol.data.ground_truth import GtFormat, LabelSpace, detect_gt_format, read_ilsvrc_ground_truth
from wsol.data.images import DEFAULT_MAX_IMAGE_PIXELS, AlphaPolicy, ImageLoadError, check_image, read_image_size
from wsol.data.metadata import IMAGE_IDS, read_metadata
from wsol.data.records import Annotations, ImageRecord
from wsol.data.validation import (
    OnError,
    Problem,
    box_problem,
    check_on_error,
    finalize_annotations,
    resolve_path,
)

logger = logging.getLogger(__name__)

Variant = Literal["auto", "imagenette", "imagewoof"]
SPLITS = ("train", "val", "test")
SPLIT_FOLDERS = ("train", "val")


@dataclass(frozen=True)
class ImageNetClass:
    """One class of a subset of ImageNet-1k.

    Attributes:
        wnid: the WordNet id (the class folder's name).
        imagenet_index: its index among the 1000 sorted ILSVRC2012 CLS-LOC WNIDs (the ImageNet-1k label).
        name: the first synonym of its ImageNet class name.
    """

    wnid: str
    imagenet_index: int
    name: str


# The classes of each variant, in sorted-WNID order (= label order 0..9). The ImageNet-1k indices are checked in
# tests against categories1000.mat and the official val labels (wsolevaluation metadata/ILSVRC/test).
IMAGENETTE_CLASSES = (
    ImageNetClass("n01440764", 0, "tench"),
    ImageNetClass("n02102040", 217, "English springer"),
    ImageNetClass("n02979186", 482, "cassette player"),
    ImageNetClass("n03000684", 491, "chain saw"),
    ImageNetClass("n03028079", 497, "church"),
    ImageNetClass("n03394916", 566, "French horn"),
    ImageNetClass("n03417042", 569, "garbage truck"),
    ImageNetClass("n03425413", 571, "gas pump"),
    ImageNetClass("n03445777", 574, "golf ball"),
    ImageNetClass("n03888257", 701, "parachute"),
)
IMAGEWOOF_CLASSES = (
    ImageNetClass("n02086240", 155, "Shih-Tzu"),
    ImageNetClass("n02087394", 159, "Rhodesian ridgeback"),
    ImageNetClass("n02088364", 162, "beagle"),
    ImageNetClass("n02089973", 167, "English foxhound"),
    ImageNetClass("n02093754", 182, "Border terrier"),
    ImageNetClass("n02096294", 193, "Australian terrier"),
    ImageNetClass("n02099601", 207, "golden retriever"),
    ImageNetClass("n02105641", 229, "Old English sheepdog"),
    ImageNetClass("n02111889", 258, "Samoyed"),
    ImageNetClass("n02115641", 273, "dingo"),
)
VARIANTS: dict[str, tuple[ImageNetClass, ...]] = {"imagenette": IMAGENETTE_CLASSES, "imagewoof": IMAGEWOOF_CLASSES}

# ILSVRC2012 validation images keep their ImageNet name in Imagenette2 / Imagewoof2.
VAL_PREFIX = "ILSVRC2012_val_"
_VAL_NAME = re.compile(r"^ILSVRC2012_val_\d{8}\.JPEG$")


def is_val_image_name(name: str) -> bool:
    """True when a file name marks an ILSVRC2012 validation image (``ILSVRC2012_val_*``, any case)."""
    return name.upper().startswith(VAL_PREFIX.upper())


def detect_variant(wnids: Iterable[str], variant: Variant = "auto") -> str:
    """The variant whose classes the class folders ``wnids`` are.

    Args:
        wnids: the class-folder names found under ``train/`` and ``val/``.
        variant: ``"imagenette"`` / ``"imagewoof"`` to state it (every folder must then belong to it), or
            ``"auto"``.

    Returns:
        ``"imagenette"`` or ``"imagewoof"``.

    Raises:
        ValueError: a folder that is not a class of the (stated or any) variant, naming it; folders of both
            variants; no folder at all.
    """
    found = sorted(set(wnids))
    if variant != "auto":
        if variant not in VARIANTS:
            raise ValueError(f"variant must be 'auto', 'imagenette' or 'imagewoof', got {variant!r}")
        known = {c.wnid for c in VARIANTS[variant]}
        stray = [wnid for wnid in found if wnid not in known]
        if stray:
            raise ValueError(f"class folder(s) {stray} are not {variant} WNIDs (expected {sorted(known)})")
        return variant
    if not found:
        raise ValueError("no class folder")
    matches = [name for name, classes in VARIANTS.items() if set(found) <= {c.wnid for c in classes}]
    if matches:
        return matches[0]
    every = {c.wnid for classes in VARIANTS.values() for c in classes}
    stray = [wnid for wnid in found if wnid not in every]
    if stray:
        raise ValueError(f"class folder(s) {stray} are not Imagenette or Imagewoof WNIDs")
    raise ValueError(f"class folders {found} mix Imagenette and Imagewoof classes")


@dataclass(frozen=True)
class ImagenetteFile:
    """One image file of the tree: ``image_id`` relative to the root, its class folder, whether it is a val image."""

    image_id: str
    wnid: str
    is_val_image: bool

    @property
    def name(self) -> str:
        return PurePosixPath(self.image_id).name


def scan_tree(root: PathLike) -> list[ImagenetteFile]:
    """Every image file under ``root/train/<wnid>/`` and ``root/val/<wnid>/``, without opening any of them.

    Files are walked recursively in sorted order; only the extensions torchvision reads count (case-insensitive).
    Class folders are not checked here (see ``detect_variant``).

    Raises:
        FileNotFoundError: ``root``, ``root/train`` or ``root/val`` missing.
        ValueError: a file named ``ILSVRC2012_val_*`` that is not ``ILSVRC2012_val_<8 digits>.JPEG``.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"Imagenette root not found: {base}")
    files: list[ImagenetteFile] = []
    for top in SPLIT_FOLDERS:
        folder = base / top
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: missing (the Imagenette2 / Imagewoof2 layout has train/ and val/)")
        for wnid in sorted(entry.name for entry in os.scandir(folder) if entry.is_dir()):
            for path in walk_image_files(folder / wnid):
                val = is_val_image_name(path.name)
                if val and not _VAL_NAME.match(path.name):
                    raise ValueError(f"{path}: named like an ILSVRC2012 val image but not "
                                     f"ILSVRC2012_val_<8 digits>.JPEG; its ground truth cannot be found")
                files.append(ImagenetteFile(path.relative_to(base).as_posix(), wnid, val))
    check_unique_names(files, base)
    return files


def check_unique_names(files: Iterable[ImagenetteFile], base: Path) -> None:
    """Refuse two files of the tree with the same file stem (a copy in another folder, a nested folder): a val image
    would be scored twice, a training image trained on twice.

    Raises:
        ValueError: naming the first duplicated stems and their files.
    """
    seen: dict[str, list[str]] = {}
    for file in files:
        seen.setdefault(PurePosixPath(file.name).stem, []).append(file.image_id)
    duplicated = {stem: ids for stem, ids in seen.items() if len(ids) > 1}
    if duplicated:
        examples = "; ".join(f"{stem}: {', '.join(ids)}" for stem, ids in list(duplicated.items())[:3])
        raise ValueError(f"{base}: {len(duplicated)} image name(s) occur more than once under train/ and val/ "
                         f"(each image must be there once): {examples}")


def check_no_val_copies(base: Path, training: Iterable[ImagenetteFile], test: Iterable[ImagenetteFile],
                        split: str) -> None:
    """Refuse a training file that is a byte-identical copy of a test image (the leak check by content, not name).

    Only files whose byte size equals a test image's are hashed (SHA-256), so the check costs a ``stat`` per file.

    Raises:
        ValueError: naming each training file and the test image it copies.
    """
    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    by_size: dict[int, list[ImagenetteFile]] = {}
    for file in test:
        by_size.setdefault((base / file.image_id).stat().st_size, []).append(file)
    hashes: dict[str, str] = {}
    copies = []
    for file in training:
        size = (base / file.image_id).stat().st_size
        if size not in by_size:
            continue
        for val in by_size[size]:
            if val.image_id not in hashes:
                hashes[val.image_id] = digest(base / val.image_id)
        own = digest(base / file.image_id)
        copies += [f"{file.image_id} = {val.image_id}" for val in by_size[size] if hashes[val.image_id] == own]
    if copies:
        raise ValueError(f"split {split!r} would train on copies of test images (byte-identical files under other "
                         f"names): {'; '.join(copies[:5])}{' ...' if len(copies) > 5 else ''} ({len(copies)} in all)")


def carve_val(files: Iterable[ImagenetteFile], fraction: float) -> frozenset[str]:
    """The image ids of the ``val`` split: per class, ``round(fraction * n)`` of its ``n`` ImageNet-train files.

    The files with the smallest SHA-256 of their file name (ties by name) are chosen, so the split depends
    only on the names: the same at every resolution of the data set and in any directory order.

    Args:
        files: the tree's files (val images are ignored).
        fraction: in ``[0, 1)``.

    Returns:
        The chosen image ids.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    by_class: dict[str, list[ImagenetteFile]] = {}
    for file in files:
        if not file.is_val_image:
            by_class.setdefault(file.wnid, []).append(file)
    chosen: set[str] = set()
    for members in by_class.values():
        ranked = sorted(members, key=lambda f: (hashlib.sha256(f.name.encode()).hexdigest(), f.name))
        count = int(np.floor(fraction * len(ranked) + 0.5))  # round half up (Python's round() halves to even)
        chosen.update(f.image_id for f in ranked[:count])
    return frozenset(chosen)


def check_no_val_leak(records: Iterable[ImageRecord], split: str) -> None:
    """Raise if an ILSVRC2012 validation image is among ``records`` of a training split.

    Raises:
        ValueError: naming the offending image ids.
    """
    leaked = [r.image_id for r in records if is_val_image_name(PurePosixPath(r.image_id).name)]
    if leaked:
        raise ValueError(f"split {split!r} would train on ILSVRC2012 val images, which the test split scores: "
                         f"{leaked[:5]}{' ...' if len(leaked) > 5 else ''} ({len(leaked)} in all)")


def explain_stored_size(original: tuple[int, int], stored: tuple[int, int]) -> str | None:
    """How a stored image of size ``stored`` was made from an original of size ``original`` (``(w, h)`` each).

    Returns:
        ``"original"`` (same size), ``"squashed"`` (a square copy, aspect not kept), ``"resized"`` (aspect kept
        within 1 px on one axis), or ``None`` when no such resize gives ``stored``.
    """
    (W, H), (w, h) = original, stored
    if (w, h) == (W, H):
        return "original"
    if w == h:
        return "squashed"
    if abs(w - W * h / H) <= 1 or abs(h - H * w / W) <= 1:
        return "resized"
    return None


def map_boxes(boxes: np.ndarray, original: tuple[int, int], stored: tuple[int, int]) -> np.ndarray:
    """Boxes of the original image in the pixels of the stored file: ``x * w' / W``, ``y * h' / H``.

    ``wsol.boxes.resize_boxes(..., truncate=False)``: float64 ``(x * w') / W`` (wsolevaluation's ``resize_bbox``
    arithmetic, without its ``int()``).

    Args:
        boxes: float ``[N, 4]`` inclusive ``xyxy`` in ``original`` pixels.
        original: ``(W, H)``.
        stored: ``(w', h')``.

    Returns:
        float64 ``[N, 4]``.
    """
    return resize_boxes(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), original, stored, truncate=False)


def _stem(image_id: str) -> str:
    """The file name of an image id without its extension (string operations: this runs on 230k GT lines)."""
    name = image_id.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name[1:] else name


def _original_sizes_from(
    source: Path, stems: frozenset[str], select: Callable[[str], bool], box_tolerance: float
) -> dict[str, tuple[int, int]]:
    """``{stem: (W, H)}`` of the original val images, from a metadata folder or a folder of the original files."""
    if (source / IMAGE_IDS).is_file():
        # sizes of the ORIGINAL files (never loaded here): only Pillow's own limit applies
        records = read_metadata(source, num_classes=None, box_tolerance=box_tolerance,
                                max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS, select=select).records
        return {_stem(r.image_id): r.size for r in records if r.size is not None}
    if not source.is_dir():
        raise FileNotFoundError(f"original_sizes: {source} is neither a metadata folder nor a folder of images")
    sizes: dict[str, tuple[int, int]] = {}
    for path in walk_image_files(source):
        stem = _stem(path.name)
        if stem in stems:
            # As the sizes a ground truth states: the stored pixels of the original file (the devkit's <size>
            # ignores EXIF), under Pillow's own limit only (never loaded, see read_metadata above).
            sizes[stem] = read_image_size(path, apply_exif_orientation=False, max_pixels=DEFAULT_MAX_IMAGE_PIXELS)
    return sizes


def read_val_ground_truth(
    gt: Path,
    gt_format: GtFormat,
    stems: frozenset[str],
    classes: tuple[ImageNetClass, ...],
    *,
    devkit_meta: Path | None,
    id_map_reference: Path | None,
    on_error: OnError,
    box_tolerance: float,
) -> tuple[dict[str, ImageRecord], str]:
    """The official records of the val images whose file stems are ``stems``, labels as ImageNet-1k indices.

    Reads with the suite's one dispatcher (``wsol.data.ground_truth``), keeping only the wanted images (the other
    49,500 are skipped unchecked). XML and Kaggle ground truth name classes by WNID and are read against the variant's
    ``classes`` (an object of any other class is an error of that image); metadata and the devkit ``.mat`` (through
    ``devkit_meta``, restricted to the variant's classes, or ``id_map_reference``) give sorted-WNID labels directly.

    Returns:
        ``({stem: record}, format used)``; record labels are ImageNet-1k indices, sizes original or ``None``.

    Raises:
        AnnotationError: problems in the wanted records (``on_error="raise"``), naming file and line.
        ValueError: a missing companion file, two records of one image.
    """
    chosen = detect_gt_format(gt) if gt_format == "auto" else gt_format

    def select(image_id: str) -> bool:
        return _stem(image_id) in stems

    index = {c.wnid: c.imagenet_index for c in classes}
    labels = LabelSpace(
        wnids=lambda: [c.wnid for c in classes],  # sorted: label i of a WNID-named reader is classes[i]
        # devkit id -> WNID -> ImageNet-1k index of the class constants: right also for a partial id map (sorting the
        # map's own WNIDs would number a partial map 0..k-1). Ids of other classes stay out of the map, so an object
        # of another class is an error of its image.
        devkit_labels=lambda meta: {i: index[wnid] for i, wnid in read_devkit_id_map(meta).items() if wnid in index},
        relabel=[c.imagenet_index for c in classes])
    # The sizes a metadata ground truth states are the ORIGINAL images' (never loaded here): only Pillow's own
    # limit applies to them, not the data config's limit on the stored files.
    annotations = read_ilsvrc_ground_truth(
        chosen, gt, labels, num_classes=ILSVRC_NUM_CLASSES, on_error=on_error, box_tolerance=box_tolerance,
        max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS, devkit_meta=devkit_meta, id_map_reference=id_map_reference,
        select=select)
    by_stem: dict[str, ImageRecord] = {}
    for record in annotations.records:
        stem = _stem(record.image_id)
        if stem in by_stem:
            raise ValueError(f"{gt}: two records for {stem} ({by_stem[stem].image_id}, {record.image_id})")
        if record.box_labels is not None:
            raise ValueError(f"{gt}: {record.image_id} has boxes of several classes; an ILSVRC val image has one")
        by_stem[stem] = ImageRecord(record.image_id, record.label, record.boxes, record.size)
    for image_id, reason in annotations.skipped.items():
        logger.warning("ground truth of %s skipped: %s", image_id, reason)
    return by_stem, chosen


@DATASETS.register("imagenette")
def imagenette(
    split: str,
    root: PathLike,
    *,
    gt: PathLike | None = None,
    gt_format: GtFormat = "auto",
    variant: Variant = "auto",
    imagenet_labels: bool = False,
    val_fraction: float = 0.1,
    devkit_meta: PathLike | None = None,
    id_map_reference: PathLike | None = None,
    original_sizes: PathLike | None = None,
    blacklist_file: PathLike | None = None,
    test_per_class: int | None = None,
    on_error: OnError = "raise",
    num_classes: int | None = None,
    check_files: CheckLevel,
    train_check_files: CheckLevel,
    apply_exif_orientation: bool,
    alpha: AlphaPolicy,
    box_tolerance: float,
    max_image_pixels: int,
) -> FileImageSource:
    """Imagenette2 / Imagewoof2 at any resolution: train/val on ImageNet-train files, test on the ILSVRC2012 val
    images with their official boxes (see the module docstring for the splits and the box mapping).

    The file checks and the image and box options are required: their one home is ``configs/data/imagenette.yaml``.

    Args:
        split: ``"train"``, ``"val"`` (carved from the training files) or ``"test"`` (the val images).
        root: the folder holding ``train/`` and ``val/``.
        gt: the ILSVRC2012 val ground truth (needed for ``test`` only): a wsolevaluation metadata folder
            (``metadata/ILSVRC/test``), the devkit XML folder (``Annotations/CLS-LOC/val``), Kaggle's
            ``LOC_val_solution.csv``, or the ILSVRC2014 devkit's cached ground truth ``.mat``. Relative paths
            (here and below) are relative to ``root``.
        gt_format: ``"auto"`` (told from ``gt``), ``"metadata"``, ``"devkit_xml"``, ``"kaggle"`` or ``"devkit_mat"``.
        variant: ``"auto"`` (from the class folders), ``"imagenette"`` or ``"imagewoof"``.
        imagenet_labels: ImageNet-1k labels and 1000 classes instead of ``0..9``.
        val_fraction: share of each class's ImageNet-train files in the ``val`` split, in ``[0, 1)``.
        devkit_meta: ``devkit_mat``: the devkit's ``meta_clsloc.mat`` / ``map_clsloc.txt`` (devkit ids -> WNIDs).
        id_map_reference: ``devkit_mat`` without ``devkit_meta``: a metadata folder to infer the id map from.
        original_sizes: for ground truth without image sizes (``kaggle``, ``devkit_mat``): a folder of the
            original ILSVRC2012 val images or a metadata folder (its ``image_sizes.txt``), or ``"stored"`` when the
            files under ``root`` are at original resolution (full-size Imagenette2).
        blacklist_file: ``ILSVRC2014_clsloc_validation_blacklist.txt`` (devkit protocol) or None.
        test_per_class: the test split keeps the first ``N`` val images of each class (sorted by file name; the
            class of the folder): a fixed, documented subset for maps too costly for all images (Score-CAM).
            None: every val image.
        on_error: ``"raise"``: any bad val image is an error naming its file; ``"skip"``: dropped and listed.
        num_classes: ``None`` or the class count the labels give (10, or 1000 with ``imagenet_labels``).
        check_files: the test split's images: ``"header"`` (read anyway, for the box mapping) or ``"decode"``.
        train_check_files: train/val images: ``"none"`` (a bad file raises naming it when loaded), ``"header"``
            or ``"decode"`` (every file opened when the split is built).
        apply_exif_orientation, alpha: see ``wsol.data.images.load_rgb``.
        box_tolerance: pixels a mapped box may overshoot its image.
        max_image_pixels: larger images are refused before decoding (``wsol.data.images``).

    Returns:
        A ``FileImageSource`` whose image ids are paths relative to ``root``.

    Raises:
        ValueError: a class folder that is not a WNID of the variant, a ``num_classes`` the labels do not give,
            ILSVRC2012 val images in a training split; ``AnnotationError`` (a ``ValueError``) for a val image
            missing from the ground truth, whose folder disagrees with its label, or whose stored size the box
            mapping cannot explain, each naming the file.
    """
    check_on_error(on_error)
    for key, level in (("check_files", check_files), ("train_check_files", train_check_files)):
        if level not in ("none", "header", "decode"):
            raise ValueError(f"{key} must be 'none', 'header' or 'decode', got {level!r}")
    if split not in SPLITS:
        raise ValueError(f"imagenette split must be one of {SPLITS}, got {split!r}")
    base = Path(os.path.expanduser(str(root)))
    files = scan_tree(base)
    try:
        chosen_variant = detect_variant({f.wnid for f in files} | _class_folders(base), variant)
    except ValueError as error:
        raise ValueError(f"{base}: {error}") from None
    classes = VARIANTS[chosen_variant]
    missing = sorted({c.wnid for c in classes} - {f.wnid for f in files})
    if missing:
        logger.warning("%s: no image of class(es) %s of %s", base, missing, chosen_variant)
    expected = ILSVRC_NUM_CLASSES if imagenet_labels else len(classes)
    if num_classes is not None and num_classes != expected:
        raise ValueError(f"imagenette with imagenet_labels={imagenet_labels} gives {expected} classes, but "
                         f"num_classes={num_classes}: set data.num_classes={expected} (or null)")
    label_of = {c.wnid: (c.imagenet_index if imagenet_labels else i) for i, c in enumerate(classes)}
    class_names = None if imagenet_labels else [c.name for c in classes]
    common = dict(on_error=on_error, mask_root=None, apply_exif_orientation=apply_exif_orientation, alpha=alpha,
                  box_tolerance=box_tolerance, max_image_pixels=max_image_pixels)

    if split in ("train", "val"):
        carved = carve_val(files, val_fraction)
        chosen = [f for f in files if not f.is_val_image and ((f.image_id in carved) == (split == "val"))]
        kept = [ImageRecord(f.image_id, label_of[f.wnid]) for f in chosen]
        check_no_val_leak(kept, split)
        check_no_val_copies(base, chosen, [f for f in files if f.is_val_image], split)
        description = (f"{chosen_variant} {split} ({len(kept)} ImageNet-train files under {base}, "
                       f"val_fraction={val_fraction})")
        return build_file_source(Annotations(records=kept, num_classes=expected, class_names=class_names), base,
                                 description, check_files=train_check_files, **common)  # type: ignore[arg-type]

    if gt is None:
        raise ValueError("the imagenette test split needs gt: the ILSVRC2012 val ground truth (data.gt=...)")
    val_files = [f for f in files if f.is_val_image]
    if not val_files:
        raise ValueError(f"{base}: no ILSVRC2012_val_* file under train/ or val/: nothing to localize")
    if test_per_class is not None:
        if isinstance(test_per_class, bool) or int(test_per_class) != test_per_class or test_per_class < 1:
            raise ValueError(f"test_per_class must be an integer >= 1 or null, got {test_per_class!r}")
        by_class: dict[str, list[ImagenetteFile]] = {}
        for file in sorted(val_files, key=lambda f: f.name):
            by_class.setdefault(file.wnid, []).append(file)
        keep = {f.image_id for members in by_class.values() for f in members[:test_per_class]}
        val_files = [f for f in val_files if f.image_id in keep]
    stems = frozenset(Path(f.name).stem for f in val_files)
    gt_path = resolve_path(base, gt)
    assert gt_path is not None
    truth, used_format = read_val_ground_truth(
        gt_path, gt_format, stems, classes, devkit_meta=resolve_path(base, devkit_meta),
        id_map_reference=resolve_path(base, id_map_reference), on_error=on_error, box_tolerance=box_tolerance)
    original_size = _original_size_lookup(base, gt_path, used_format, original_sizes, stems, box_tolerance)
    records: list[ImageRecord] = []
    problems: list[Problem] = []
    for file in val_files:
        record, problem = _val_image_record(base, file, truth.get(Path(file.name).stem), gt_path, classes, label_of,
                                            original_size, apply_exif_orientation, alpha, box_tolerance,
                                            max_image_pixels)
        if record is not None:
            records.append(record)
        if problem is not None:
            problems.append(problem)
    blacklist_path = resolve_path(base, blacklist_file)
    blacklisted = read_blacklist(blacklist_path) if blacklist_path is not None else frozenset()
    annotations = finalize_annotations(
        records, problems, num_classes=expected, on_error=on_error, class_names=class_names,
        blacklist=blacklisted, source=str(base))  # matched to the val images by file stem (match_blacklist)
    # Headers and end markers were read for the box mapping; "decode" still decodes every image up front.
    level: CheckLevel = "decode" if check_files == "decode" else "none"
    description = (f"{chosen_variant} test ({len(annotations)} ILSVRC2012 val images under {base}, {used_format} "
                   f"ground truth {gt_path})")
    return build_file_source(annotations, base, description, check_files=level, **common)  # type: ignore[arg-type]


def _original_size_lookup(
    base: Path, gt: Path, used_format: str, original_sizes: PathLike | None, stems: frozenset[str], box_tolerance: float
) -> Callable[[str, ImageRecord, tuple[int, int]], tuple[int, int] | None]:
    """``(stem, ground-truth record, stored size) -> original (W, H)`` for the ground truth's format.

    Metadata and XML state sizes; Kaggle's CSV and the devkit ``.mat`` do not, and need ``original_sizes``.
    """
    if used_format in ("metadata", "devkit_xml"):
        if original_sizes is not None:
            raise ValueError(f"original_sizes is for ground truth without image sizes (kaggle, devkit_mat); the "
                             f"{used_format} ground truth {gt} states every image's size")
        return lambda stem, record, stored: record.size
    if original_sizes is None:
        raise ValueError(
            f"the {used_format} ground truth {gt} holds no image sizes, and a box maps onto a stored file through "
            "its original size: set original_sizes to a folder of the original ILSVRC2012 val images or a "
            "wsolevaluation metadata folder, or to 'stored' if the files under root are at original resolution "
            "(full-size Imagenette2)")
    if str(original_sizes) == "stored":
        return lambda stem, record, stored: stored
    source = resolve_path(base, original_sizes)
    assert source is not None
    sizes = _original_sizes_from(source, stems, lambda image_id: _stem(image_id) in stems, box_tolerance)
    return lambda stem, record, stored: sizes.get(stem)


def _val_image_record(
    base: Path,
    file: ImagenetteFile,
    truth: ImageRecord | None,
    gt: Path,
    classes: tuple[ImageNetClass, ...],
    label_of: dict[str, int],
    original_size: Callable[[str, ImageRecord, tuple[int, int]], tuple[int, int] | None],
    apply_exif_orientation: bool,
    alpha: AlphaPolicy,
    box_tolerance: float,
    max_image_pixels: int,
) -> tuple[ImageRecord | None, Problem | None]:
    """The test record of one val image (boxes mapped onto the stored file), or the problem that prevents it.

    The file's header gives its stored size; ``check_image`` reads it, and the end-of-file marker, so a truncated
    JPEG is found here (and skipped with ``on_error="skip"``) rather than when a batch is loaded.
    """
    path = base / file.image_id

    def problem(message: str) -> tuple[None, Problem]:
        return None, Problem(str(path), None, message, file.image_id)

    if truth is None:
        return problem(f"{file.name} is not in the ground truth {gt}")
    folder_index = next(c.imagenet_index for c in classes if c.wnid == file.wnid)
    if truth.label != folder_index:
        return problem(f"in class folder {file.wnid} (ImageNet-1k label {folder_index}) but the ground truth {gt} "
                       f"labels it {truth.label} ({_wnid_of(truth.label)})")
    try:
        stored = check_image(path, apply_exif_orientation=apply_exif_orientation, alpha=alpha,
                             max_pixels=max_image_pixels)
    except ImageLoadError as error:
        return None, Problem(error.path, None, error.reason, file.image_id)
    stem = Path(file.name).stem
    original = original_size(stem, truth, stored)
    if original is None:
        return problem(f"no original size for {stem} in original_sizes")
    if explain_stored_size(original, stored) is None:
        return problem(f"stored size {stored[0]}x{stored[1]} cannot come from the original {original[0]}x{original[1]} "
                       "(not the original size, not a square copy, not an aspect-preserving resize within 1 px): "
                       "its boxes cannot be mapped")
    boxes = map_boxes(truth.boxes, original, stored)
    reasons = [reason for reason in (box_problem(box, stored, box_tolerance) for box in boxes) if reason]
    if reasons:
        return problem(f"mapped box: {reasons[0]}")
    return ImageRecord(file.image_id, label_of[file.wnid], boxes, stored), None


def _class_folders(base: Path) -> set[str]:
    """Names of the class folders under ``train/`` and ``val/`` (also empty ones, which must be WNIDs too)."""
    return {entry.name for top in SPLIT_FOLDERS for entry in os.scandir(base / top) if entry.is_dir()}


def _wnid_of(imagenet_index: int) -> str:
    """The WNID of an ImageNet-1k index when it is an Imagenette/Imagewoof class, else a phrase saying it is not."""
    for classes in VARIANTS.values():
        for c in classes:
            if c.imagenet_index == imagenet_index:
                return c.wnid
    return "not an Imagenette or Imagewoof class"
