"""The ILSVRC devkit's side files and the ImageNet train folder: class lists, devkit id maps, blacklists, label files.

Class order: ILSVRC labels are the index of the WNID in the SORTED list of the 1000 CLS-LOC WNIDs, which is
torchvision's ``ImageFolder`` order and wsolevaluation's. Devkit files number classes differently (the
``ILSVRC2012_ID`` / ``ILSVRC2014_ID`` of the devkit's ``meta.mat`` / ``meta_clsloc.mat``, e.g. ID 1 is
``n02119789`` kit fox, sorted label 278); every devkit id goes through ``devkit_ids_to_labels``.

The box ground truth itself (devkit XML, Kaggle CSV, cached ``.mat``) is read by ``wsol.data.formats``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import scipy.io

from wsol.data.records import Annotations, ImageRecord
from wsol.data.validation import Problem, read_text

__all__ = ["ILSVRC_NUM_CLASSES", "ILSVRC_VAL_ID_TEMPLATE", "IMAGE_EXTENSIONS", "check_template", "devkit_ids_to_labels",
           "load_mat", "read_blacklist", "read_devkit_id_map", "read_label_file", "read_synsets", "read_train_folder",
           "walk_image_files"]

ILSVRC_NUM_CLASSES = 1000
ILSVRC_VAL_ID_TEMPLATE = "val/ILSVRC2012_val_{:08d}.JPEG"
# torchvision.datasets.folder.IMG_EXTENSIONS, compared case-insensitively as torchvision does.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_WNID = re.compile(r"^n\d{8}$")


def check_template(template: str, *args: object, **kwargs: object) -> None:
    """Raise ``ValueError`` unless ``template.format(*args, **kwargs)`` works (a user's ``--id-template``)."""
    try:
        template.format(*args, **kwargs)
    except (KeyError, IndexError, ValueError, AttributeError) as error:
        fields = ", ".join([*("{}" for _ in args), *(f"{{{k}}}" for k in kwargs)])
        raise ValueError(f"id template {template!r} cannot be filled ({type(error).__name__}: {error}); its "
                         f"fields are {fields}") from None


def load_mat(path: Path, **options: bool) -> dict:
    """``scipy.io.loadmat`` with every failure (empty, truncated, not MATLAB) naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found" if not path.exists() else f"{path}: not a regular file")
    try:
        return scipy.io.loadmat(path, **options)
    except Exception as error:  # scipy raises ValueError, TypeError, OSError, zlib.error... without the path
        raise ValueError(f"{path}: not a readable MATLAB .mat file ({type(error).__name__}: {error})") from None


def read_synsets(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """WNIDs and names from a synset list, in SORTED-WNID order (the class order of every ILSVRC label).

    Accepts ``LOC_synset_mapping.txt`` / ``synset_words.txt`` (``n01440764 tench, Tinca tinca`` per line),
    a bare WNID list, or the CAM repository's ``categories1000.mat`` (the same lines in a cell array).

    Args:
        path: the file.

    Returns:
        ``(wnids, names)``, sorted by WNID, index = label.

    Raises:
        ValueError: a line without a WNID or a duplicate WNID, naming the file and line.
    """
    path = Path(path)
    if path.suffix.lower() == ".mat":
        data = load_mat(path, squeeze_me=True)
        cells = next(value for key, value in data.items() if not key.startswith("__"))
        lines = [str(cell) for cell in np.atleast_1d(cells)]
    else:
        lines = read_text(path)
    entries: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        wnid, _, name = text.partition(" ")
        if not _WNID.match(wnid):
            raise ValueError(f"{path}:{number}: expected a WNID like n01440764 at the start, got {text!r}")
        if wnid in entries:
            raise ValueError(f"{path}:{number}: duplicate WNID {wnid}")
        entries[wnid] = name.strip()
    wnids = sorted(entries)
    return wnids, [entries[wnid] for wnid in wnids]


def read_devkit_id_map(path: str | os.PathLike[str]) -> dict[int, str]:
    """Devkit class id -> WNID, from the ILSVRC devkit.

    Accepts ``data/meta_clsloc.mat`` (ILSVRC2014 devkit: struct ``synsets`` with ``ILSVRC2014_ID``,
    ``WNID``), ``data/meta.mat`` (ILSVRC2012 devkit: ``ILSVRC2012_ID``, ``WNID``; only ids 1..1000, the
    leaf classes, are kept), or ``data/map_clsloc.txt`` (``n02119789 1 kit_fox`` per line).

    Args:
        path: the file.

    Returns:
        ``{devkit_id: wnid}`` for the 1000 classification classes.

    Raises:
        ValueError: unreadable layout, duplicate ids or WNIDs.
    """
    path = Path(path)
    mapping: dict[int, str] = {}
    if path.suffix.lower() == ".mat":
        data = load_mat(path, squeeze_me=True, struct_as_record=False)
        if "synsets" not in data:
            raise ValueError(f"{path}: no 'synsets' struct (expected the devkit's meta.mat / meta_clsloc.mat)")
        for index, synset in enumerate(np.atleast_1d(data["synsets"]), start=1):
            id_field = next((f for f in ("ILSVRC2014_ID", "ILSVRC2012_ID") if hasattr(synset, f)), None)
            if id_field is None or not hasattr(synset, "WNID"):
                raise ValueError(f"{path}: synsets({index}) has no ILSVRC201x_ID / WNID field")
            devkit_id = int(getattr(synset, id_field))
            if 1 <= devkit_id <= ILSVRC_NUM_CLASSES:
                if devkit_id in mapping:
                    raise ValueError(f"{path}: synsets({index}): duplicate {id_field} {devkit_id}")
                mapping[devkit_id] = str(synset.WNID)
    else:
        for number, line in enumerate(read_text(path), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2 or not _WNID.match(fields[0]) or not fields[1].isdigit():
                raise ValueError(f"{path}:{number}: expected 'WNID id name', got {line!r}")
            devkit_id = int(fields[1])
            if devkit_id in mapping:
                raise ValueError(f"{path}:{number}: duplicate devkit id {devkit_id}")
            mapping[devkit_id] = fields[0]
    if len(set(mapping.values())) != len(mapping):
        raise ValueError(f"{path}: a WNID appears under two devkit ids")
    return mapping


def devkit_ids_to_labels(id_to_wnid: Mapping[int, str], wnids: list[str]) -> dict[int, int]:
    """Compose devkit id -> WNID with the class order: devkit id -> 0-based sorted-WNID label.

    Args:
        id_to_wnid: from ``read_devkit_id_map``.
        wnids: the class order (sorted WNIDs, e.g. from ``read_synsets``); sorted here again for safety.

    Returns:
        ``{devkit_id: label}``.

    Raises:
        ValueError: a devkit WNID missing from ``wnids``.
    """
    index = {wnid: label for label, wnid in enumerate(sorted(wnids))}
    missing = sorted(wnid for wnid in id_to_wnid.values() if wnid not in index)
    if missing:
        raise ValueError(f"{len(missing)} devkit WNIDs are not in the class list, e.g. {missing[:5]}")
    return {devkit_id: index[wnid] for devkit_id, wnid in id_to_wnid.items()}


def read_blacklist(path: str | os.PathLike[str], id_template: str = ILSVRC_VAL_ID_TEMPLATE) -> frozenset[str]:
    """A blacklist file, THE reader of every tool: the devkit's ``ILSVRC2014_clsloc_validation_blacklist.txt`` or ids.

    Each non-empty line is either a 1-based ILSVRC2012 validation image NUMBER, as in the devkit's file (``N`` names
    ``ILSVRC2012_val_{N:08d}``, whatever images a subset holds), or an image id. Match the result against a data
    set's ids with ``match_blacklist``.

    Args:
        path: the file.
        id_template: formats a number into an image id.

    Returns:
        The blacklisted image ids.

    Raises:
        ValueError: a number < 1, or a line that is neither a number nor one file name with an image extension,
            naming the file and line.
    """
    path = Path(path)
    ids = set()
    for number, line in enumerate(read_text(path), start=1):
        text = line.strip()
        if not text:
            continue
        if text.isascii() and text.lstrip("+-").isdigit():
            if int(text) < 1:
                raise ValueError(f"{path}:{number}: expected a 1-based ILSVRC2012 val image number, got {text!r}")
            ids.add(id_template.format(int(text)))
        elif len(text.split()) == 1 and Path(text).suffix.lower() in IMAGE_EXTENSIONS:
            ids.add(text)
        else:
            raise ValueError(f"{path}:{number}: expected a 1-based ILSVRC2012 val image number or an image id (a file "
                             f"name with an image extension), got {text!r}")
    return frozenset(ids)


def read_label_file(path: str | os.PathLike[str], id_to_label: Mapping[int, int]) -> tuple[dict[int, int], list[Problem]]:
    """The devkit's val ground-truth label file: line ``i`` holds the devkit class id of val image ``i``.

    Args:
        path: ``ILSVRC2012_validation_ground_truth.txt`` or ``ILSVRC2014_clsloc_validation_ground_truth.txt``.
        id_to_label: devkit id -> sorted-WNID label (``devkit_ids_to_labels``).

    Returns:
        ``({1-based image index: label}, problems)``.
    """
    path = Path(path)
    labels: dict[int, int] = {}
    problems: list[Problem] = []
    for number, line in enumerate(read_text(path), start=1):
        text = line.strip()
        if not text:
            continue
        if not (text.isascii() and text.isdigit()) or int(text) not in id_to_label:
            problems.append(Problem(str(path), number, f"devkit class id {text!r} is not in the devkit id map"))
            continue
        labels[number] = id_to_label[int(text)]
    return labels, problems


# ------------------------------------------------------------------------------------------------ train folder
def walk_image_files(folder: Path) -> Iterator[Path]:
    """Image files under ``folder``, recursively, in sorted order (folders, then names), following symbolic links.

    Links are followed because clusters link image folders to shared storage. A folder reached twice (a link to
    an ancestor, or two links to one folder) is an error: its images would be read twice, or forever.

    Raises:
        ValueError: naming the folder reached twice and where it was first seen.
    """
    seen: dict[tuple[int, int], str] = {}
    found: list[tuple[str, list[str]]] = []
    for directory, _, names in os.walk(folder, followlinks=True):
        stat = os.stat(directory)
        key = (stat.st_dev, stat.st_ino)
        if key in seen:
            raise ValueError(f"{directory} is the folder {seen[key]} again (a symbolic link): its images would be read "
                             "twice; remove the link or the loop")
        seen[key] = directory
        found.append((directory, names))
    for directory, names in sorted(found):
        for name in sorted(names):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                yield Path(directory) / name


def read_train_folder(
    train_dir: str | os.PathLike[str], *, image_prefix: str = "train/", wnids: list[str] | None = None
) -> Annotations:
    """The ImageNet train folder layout (``n*/`` synset folders), labelled exactly as torchvision does.

    Classes are the sorted sub-folder names (torchvision ``find_classes``); files are walked recursively
    in sorted order and kept when their extension is in ``IMAGE_EXTENSIONS`` (case-insensitive).

    Args:
        train_dir: folder holding one sub-folder per class.
        image_prefix: prepended to ``<wnid>/<file>`` to form the image id (relative to the image root).
        wnids: the expected class list; the folders must match it exactly.

    Returns:
        ``Annotations`` without boxes or sizes, ``class_names`` = the WNIDs.

    Raises:
        FileNotFoundError: ``train_dir`` missing. ValueError: no class folder, or folders differ from ``wnids``.
    """
    root = Path(train_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"training folder not found: {root}")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise ValueError(f"{root}: no class sub-folder")
    if wnids is not None and classes != sorted(wnids):
        extra, missing = sorted(set(classes) - set(wnids)), sorted(set(wnids) - set(classes))
        raise ValueError(f"{root}: class folders differ from the class list: extra {extra[:5]}, missing {missing[:5]}")
    records: list[ImageRecord] = []
    for label, wnid in enumerate(classes):
        for path in walk_image_files(root / wnid):
            records.append(ImageRecord(image_id=f"{image_prefix}{path.relative_to(root).as_posix()}", label=label))
    return Annotations(records=records, num_classes=len(classes), class_names=classes)
