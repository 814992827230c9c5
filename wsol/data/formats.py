"""Readers for the annotation formats users actually have, each producing the shared ``Annotations``.

Class order: ILSVRC labels are the index of the WNID in the SORTED list of the 1000 CLS-LOC WNIDs, which is
torchvision's ``ImageFolder`` order and wsolevaluation's. Devkit files number classes differently (the
``ILSVRC2012_ID`` / ``ILSVRC2014_ID`` of the devkit's ``meta.mat`` / ``meta_clsloc.mat``, e.g. ID 1 is
``n02119789`` kit fox, sorted label 278); every devkit id goes through ``devkit_ids_to_labels``.

Image ids follow wsolevaluation: the path relative to the data set's image root
(``val/ILSVRC2012_val_00000001.JPEG``, ``train/n01440764/n01440764_10026.JPEG``,
``001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg``).

Box values are taken verbatim from every ILSVRC source (XML, Kaggle CSV, cached ``.mat``): they are the
inclusive pixel coordinates wsolevaluation's ``localization.txt`` holds (checked on all 50,000 val images
for the ``.mat``). CUB's ``x y w h`` go through ``geometry.xywh_to_xyxy(count_pixels=False)``.

Readers collect ``Problem``s (file + line) and apply the ``on_error`` policy through
``metadata.finalize_annotations``.
"""

from __future__ import annotations

import csv
import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import scipy.io

from wsol.data.geometry import xywh_to_xyxy
from wsol.data.metadata import (
    match_blacklist,
    DEFAULT_BOX_TOLERANCE,
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
from wsol.data.records import Annotations, ImageRecord
from wsol.io import unsafe_path_message

ILSVRC_NUM_CLASSES = 1000
ILSVRC_VAL_ID_TEMPLATE = "val/ILSVRC2012_val_{:08d}.JPEG"
# torchvision.datasets.folder.IMG_EXTENSIONS, compared case-insensitively as torchvision does.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_WNID = re.compile(r"^n\d{8}$")
_TRAILING_NUMBER = re.compile(r"(\d+)$")


# ----------------------------------------------------------------------------------------------------
# Class lists and devkit id maps
# ----------------------------------------------------------------------------------------------------


def _check_template(template: str, *args: object, **kwargs: object) -> None:
    """Raise ``ValueError`` unless ``template.format(*args, **kwargs)`` works (a user's ``--id-template``)."""
    try:
        template.format(*args, **kwargs)
    except (KeyError, IndexError, ValueError, AttributeError) as error:
        fields = ", ".join([*("{}" for _ in args), *(f"{{{k}}}" for k in kwargs)])
        raise ValueError(f"id template {template!r} cannot be filled ({type(error).__name__}: {error}); its "
                         f"fields are {fields}") from None


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of a UTF-8 CSV file; a malformed line raises ``ValueError`` naming it."""
    reader = csv.reader(read_text(path))  # read_text names the file and line of a byte that is not UTF-8
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # e.g. a field over csv.field_size_limit(), a NUL byte
            raise ValueError(f"{path}:{reader.line_num}: not a readable CSV line ({error})") from None
        yield reader.line_num, row


def _loadmat(path: Path, **options: bool) -> dict:
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
        data = _loadmat(path, squeeze_me=True)
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
        data = _loadmat(path, squeeze_me=True, struct_as_record=False)
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


# ----------------------------------------------------------------------------------------------------
# ILSVRC training folder
# ----------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------
# ILSVRC devkit XML
# ----------------------------------------------------------------------------------------------------


def _image_index(name: str) -> int | None:
    """1-based val index from ``ILSVRC2012_val_00000042`` (trailing digits of the stem)."""
    match = _TRAILING_NUMBER.search(Path(name).stem if "." in name else name)
    return int(match.group(1)) if match else None


def _xml_text(element: ElementTree.Element, path: str) -> str | None:
    found = element.find(path)
    return None if found is None or found.text is None else found.text.strip()


def read_devkit_xml(
    xml_dir: str | os.PathLike[str],
    wnids: list[str],
    *,
    label_file: str | os.PathLike[str] | None = None,
    id_to_label: Mapping[int, int] | None = None,
    id_template: str = "val/{filename}.JPEG",
    blacklist: Iterable[str] = (),
    on_error: OnError = "raise",
    box_tolerance: float = DEFAULT_BOX_TOLERANCE,
    select: Callable[[str], bool] | None = None,
) -> Annotations:
    """The devkit's per-image XML files (``Annotations/CLS-LOC/val/*.xml``), every box of every image.

    The image label comes from ``label_file`` when given (mapped with ``id_to_label``) and must be the
    class of at least one XML object; otherwise it is the class shared by all of the image's objects
    (images whose objects disagree are errors: their label is ambiguous).

    Args:
        xml_dir: folder searched recursively for ``*.xml``.
        wnids: the class order (sorted WNIDs).
        label_file: the devkit's val ground-truth label file (optional cross-check / label source).
        id_to_label: devkit id -> label, required with ``label_file``.
        id_template: image id from the XML's ``<filename>`` (without extension) and ``<folder>``.
        blacklist: image ids excluded from localization scoring.
        on_error: ``"raise"`` or ``"skip"``.
        box_tolerance: pixels a box may overshoot its image.
        select: when given, only the XML files whose image id (``id_template`` applied to the XML file's stem,
            which the devkit names after its image, with an empty ``{folder}``) it accepts are parsed.

    Returns:
        ``Annotations`` sorted by image id, sizes from ``<size>``.
    """
    check_on_error(on_error)
    check_box_tolerance(box_tolerance)
    _check_template(id_template, filename="x", folder="x")
    root = Path(xml_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"XML folder not found: {root}")
    class_index = {wnid: label for label, wnid in enumerate(sorted(wnids))}
    problems: list[Problem] = []
    file_labels: dict[int, int] = {}
    if label_file is not None:
        if id_to_label is None:
            raise ValueError("label_file needs id_to_label (devkit id -> label; see devkit_ids_to_labels)")
        file_labels, label_problems = read_label_file(label_file, id_to_label)
        problems += label_problems
    records: dict[str, ImageRecord] = {}
    xml_files = sorted(root.rglob("*.xml"))
    if not xml_files:
        raise FileNotFoundError(f"{root}: no *.xml file")
    if select is not None:
        xml_files = [path for path in xml_files if select(id_template.format(filename=path.stem, folder=""))]
    for xml_path in xml_files:
        where = str(xml_path)
        first_problem = len(problems)
        try:
            tree = ElementTree.parse(xml_path).getroot()
        except ElementTree.ParseError as error:
            problems.append(Problem(where, None, f"not valid XML: {error}"))
            continue
        filename = _xml_text(tree, "filename") or xml_path.stem
        filename = filename[: -len(Path(filename).suffix)] if Path(filename).suffix.lower() in IMAGE_EXTENSIONS else filename
        image_id = id_template.format(filename=filename, folder=_xml_text(tree, "folder") or "")
        unsafe = unsafe_path_message(image_id, root="the image root")
        if unsafe is not None:  # <filename>/<folder> are free text: never let them leave the image root
            problems.append(Problem(where, None, f"{unsafe} (from <filename>/<folder> and id_template)"))
            continue
        if image_id in records:
            problems.append(Problem(where, None, f"second XML for image {image_id!r}", image_id))
            continue
        width, height = _xml_text(tree, "size/width"), _xml_text(tree, "size/height")
        size = (int(width), int(height)) if width and height and width.isdigit() and height.isdigit() else None
        if size is None or min(size) <= 0:
            problems.append(Problem(where, None, f"missing or invalid <size> ({width!r} x {height!r})", image_id))
            size = None
        boxes: list[list[float]] = []
        box_labels: list[int] = []
        for number, obj in enumerate(tree.findall("object"), start=1):
            wnid = _xml_text(obj, "name") or ""
            coordinates = [_xml_text(obj, f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
            if wnid not in class_index:
                problems.append(Problem(where, None, f"object {number}: class {wnid!r} is not in the class list", image_id))
                continue
            values = [None if c is None else parse_float(c) for c in coordinates]
            if any(v is None for v in values):
                problems.append(Problem(where, None, f"object {number}: bad <bndbox> {coordinates}", image_id))
                continue
            box = np.array(values, dtype=np.float64)
            reason = box_problem(box, size, box_tolerance)
            if reason:
                problems.append(Problem(where, None, f"object {number}: {reason}", image_id))
                continue
            boxes.append(list(box))
            box_labels.append(class_index[wnid])
        classes = sorted(set(box_labels))
        index = _image_index(filename)
        if label_file is not None:
            if index is None or index not in file_labels:
                problems.append(Problem(where, None, f"no line for image index {index} in the label file {label_file}", image_id))
                continue
            label = file_labels[index]
            if classes and label not in classes:
                problems.append(Problem(
                    where, None,
                    f"label file says class {label} ({sorted(wnids)[label]}) but the XML objects are {[sorted(wnids)[c] for c in classes]}"
                    " (class-order mix-up?)", image_id,
                ))
        elif len(classes) == 1:
            label = classes[0]
        elif not classes:
            problems.append(Problem(where, None, "no object: the image has no label and no box", image_id))
            continue
        else:
            problems.append(Problem(where, None, f"objects of several classes {classes} and no label file: label ambiguous", image_id))
            continue
        if not boxes and not any(p.image_id == image_id for p in problems[first_problem:]):
            problems.append(Problem(where, None, "no object box", image_id))
        labels_array = np.array(box_labels, dtype=np.int64)
        records[image_id] = ImageRecord(
            image_id=image_id,
            label=label,
            boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
            size=size,
            box_labels=labels_array if np.any(labels_array != label) else None,
        )
    ordered = [records[key] for key in sorted(records)]
    return finalize_annotations(
        ordered, problems, num_classes=len(wnids), on_error=on_error, class_names=sorted(wnids),
        blacklist=blacklist, source=str(root),
    )


# ----------------------------------------------------------------------------------------------------
# Kaggle LOC_val_solution.csv
# ----------------------------------------------------------------------------------------------------


def read_kaggle_csv(
    csv_path: str | os.PathLike[str],
    wnids: list[str],
    *,
    id_template: str = "val/{}.JPEG",
    sizes: Mapping[str, tuple[int, int]] | None = None,
    blacklist: Iterable[str] = (),
    on_error: OnError = "raise",
    box_tolerance: float = DEFAULT_BOX_TOLERANCE,
    select: Callable[[str], bool] | None = None,
) -> Annotations:
    """Kaggle's ``LOC_val_solution.csv`` (or ``LOC_train_solution.csv``): ``ImageId,PredictionString``.

    ``PredictionString`` is ``wnid x0 y0 x1 y1`` repeated once per box (values as in the devkit XML).
    The image label is the class shared by its boxes (mixed classes are an error). The CSV has no image
    sizes: pass ``sizes`` (e.g. read from the image headers) to check boxes against the image.

    Args:
        csv_path: the CSV.
        wnids: the class order, e.g. from ``read_synsets("LOC_synset_mapping.txt")``.
        id_template: image id from the CSV ``ImageId`` (``"train/{}.JPEG"`` needs the synset folder:
            use ``"train/{wnid}/{}.JPEG"``; ``{wnid}`` is the first box's WNID).
        sizes: ``{image_id: (width, height)}``.
        blacklist: image ids excluded from localization scoring.
        on_error: ``"raise"`` or ``"skip"``.
        box_tolerance: pixels a box may overshoot its image.
        select: when given, only the rows whose image id it accepts are read; the others are skipped unchecked.

    Returns:
        ``Annotations`` sorted by image id.
    """
    check_on_error(on_error)
    check_box_tolerance(box_tolerance)
    _check_template(id_template, "x", wnid="x")
    path = Path(csv_path)
    class_index = {wnid: label for label, wnid in enumerate(sorted(wnids))}
    problems: list[Problem] = []
    records: dict[str, ImageRecord] = {}
    first_line: dict[str, int] = {}
    rows = _csv_rows(path)
    _, header = next(rows, (1, None))
    if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
        raise ValueError(f"{path}:1: expected the header 'ImageId,PredictionString', got {header}")
    for number, row in rows:
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            problems.append(Problem(str(path), number, f"expected 2 columns, got {row}"))
            continue
        name, prediction = row[0].strip(), row[1].split()
        wnid0 = prediction[0] if prediction else ""
        image_id = id_template.format(name, wnid=wnid0)
        if select is not None and not select(image_id):
            continue
        unsafe = unsafe_path_message(image_id, root="the image root")
        if unsafe is not None:
            problems.append(Problem(str(path), number, unsafe))
            continue
        if image_id in first_line:
            problems.append(Problem(str(path), number, f"duplicate ImageId {name!r} (first on line {first_line[image_id]})", image_id))
            continue
        first_line[image_id] = number
        size = sizes.get(image_id) if sizes is not None else None
        if len(prediction) == 0 or len(prediction) % 5:
            problems.append(Problem(str(path), number, f"PredictionString of {name!r} is not groups of 'wnid x0 y0 x1 y1'", image_id))
            continue
        boxes, box_labels, bad = [], [], False
        for start in range(0, len(prediction), 5):
            wnid, *coords = prediction[start : start + 5]
            if wnid not in class_index:
                problems.append(Problem(str(path), number, f"class {wnid!r} of {name!r} is not in the class list", image_id))
                bad = True
                continue
            values = [parse_float(c) for c in coords]
            if any(v is None for v in values):
                problems.append(Problem(str(path), number, f"non-numeric or non-finite box {coords} for {name!r}", image_id))
                bad = True
                continue
            box = np.array(values, dtype=np.float64)
            reason = box_problem(box, size, box_tolerance)
            if reason:
                problems.append(Problem(str(path), number, f"{name!r}: {reason}", image_id))
                bad = True
                continue
            boxes.append(list(box))
            box_labels.append(class_index[wnid])
        if bad:
            continue
        if len(set(box_labels)) != 1:
            problems.append(Problem(str(path), number, f"{name!r} has boxes of several classes {sorted(set(box_labels))}: label ambiguous", image_id))
            continue
        records[image_id] = ImageRecord(
            image_id=image_id, label=box_labels[0], boxes=np.array(boxes, dtype=np.float64), size=size
        )
    ordered = [records[key] for key in sorted(records)]
    return finalize_annotations(
        ordered, problems, num_classes=len(wnids), on_error=on_error, class_names=sorted(wnids),
        blacklist=blacklist, source=str(path),
    )


# ----------------------------------------------------------------------------------------------------
# ILSVRC2014 devkit cached ground truth (.mat)
# ----------------------------------------------------------------------------------------------------


def read_devkit_mat_objects(mat_path: str | os.PathLike[str]) -> list[list[tuple[int, np.ndarray]]]:
    """The raw content of the devkit's cached ground truth: ``rec(i).objects(j).label`` and ``.bbox``.

    Args:
        mat_path: ``cache_groundtruth.mat`` (MATLAB struct array ``rec``, one entry per val image in
            index order; ``bbox`` is ``[x1 y1 x2 y2]`` inclusive; ``label`` an ILSVRC2014 devkit id).

    Returns:
        For each image ``i`` (0-based here, val index ``i + 1``), its ``(devkit_id, bbox float64[4])`` list.

    Raises:
        ValueError: no ``rec`` struct, or objects without ``label``/``bbox``.
    """
    path = Path(mat_path)
    data = _loadmat(path, squeeze_me=True, struct_as_record=False)
    if "rec" not in data:
        raise ValueError(f"{path}: no 'rec' struct array (expected the devkit's cached ground truth)")
    images: list[list[tuple[int, np.ndarray]]] = []
    for index, rec in enumerate(np.atleast_1d(data["rec"]), start=1):
        objects = getattr(rec, "objects", None)
        if objects is None:
            raise ValueError(f"{path}: rec({index}) has no 'objects' field")
        entries = []
        for obj in np.atleast_1d(objects):
            if not hasattr(obj, "label") or not hasattr(obj, "bbox"):
                raise ValueError(f"{path}: rec({index}).objects lacks 'label'/'bbox'")
            entries.append((int(obj.label), np.asarray(obj.bbox, dtype=np.float64).reshape(-1)))
        images.append(entries)
    return images


def read_devkit_mat(
    mat_path: str | os.PathLike[str],
    id_to_label: Mapping[int, int],
    *,
    num_classes: int = ILSVRC_NUM_CLASSES,
    id_template: str = ILSVRC_VAL_ID_TEMPLATE,
    sizes: Mapping[str, tuple[int, int]] | None = None,
    blacklist: Iterable[str] = (),
    on_error: OnError = "raise",
    box_tolerance: float = DEFAULT_BOX_TOLERANCE,
    select: Callable[[str], bool] | None = None,
    objects: list[list[tuple[int, np.ndarray]]] | None = None,
) -> Annotations:
    """The ILSVRC2014 devkit's cached val ground truth with its labels mapped to the sorted-WNID order.

    Record ``i`` (1-based) is the image ``id_template.format(i)``. The image label is the class shared by
    its objects (all objects of a CLS-LOC val image have the image's class).

    Args:
        mat_path: the ``.mat`` file.
        id_to_label: ILSVRC2014 devkit id -> sorted-WNID label: ``devkit_ids_to_labels(
            read_devkit_id_map("meta_clsloc.mat"), wnids)``, or ``infer_devkit_id_map`` against metadata.
        num_classes: the class count.
        id_template: formats the 1-based record index into the image id.
        sizes: ``{image_id: (width, height)}`` to check boxes against (the ``.mat`` holds no sizes).
        blacklist: image ids excluded from localization scoring.
        on_error: ``"raise"`` or ``"skip"``.
        box_tolerance: pixels a box may overshoot its image.
        select: when given, only the images whose id it accepts are kept; the others are skipped unchecked.
        objects: the file's content when already read by ``read_devkit_mat_objects`` (it takes seconds).

    Returns:
        ``Annotations`` in val-index order.
    """
    check_on_error(on_error)
    check_box_tolerance(box_tolerance)
    _check_template(id_template, 1)
    where = str(mat_path)
    problems: list[Problem] = []
    records: list[ImageRecord] = []
    content = read_devkit_mat_objects(mat_path) if objects is None else objects
    for index, image_objects in enumerate(content, start=1):
        image_id = id_template.format(index)
        if select is not None and not select(image_id):
            continue
        size = sizes.get(image_id) if sizes is not None else None
        boxes, labels, bad = [], [], False
        for number, (devkit_id, bbox) in enumerate(image_objects, start=1):
            if devkit_id not in id_to_label:
                problems.append(Problem(where, index, f"rec({index}).objects({number}): devkit id {devkit_id} not in the id map", image_id))
                bad = True
                continue
            reason = box_problem(bbox, size, box_tolerance) if bbox.shape == (4,) else f"bbox {bbox} is not 4 numbers"
            if reason:
                problems.append(Problem(where, index, f"rec({index}).objects({number}): {reason}", image_id))
                bad = True
                continue
            boxes.append(bbox)
            labels.append(id_to_label[devkit_id])
        if bad:
            continue
        if not boxes:
            problems.append(Problem(where, index, f"rec({index}) has no object", image_id))
            continue
        if len(set(labels)) != 1:
            problems.append(Problem(where, index, f"rec({index}) has objects of several classes {sorted(set(labels))}", image_id))
            continue
        reason = label_problem(labels[0], num_classes)
        if reason:
            problems.append(Problem(where, index, f"rec({index}): {reason}", image_id))
            continue
        records.append(ImageRecord(image_id=image_id, label=labels[0], boxes=np.array(boxes, dtype=np.float64), size=size))
    return finalize_annotations(
        records, problems, num_classes=num_classes, on_error=on_error, blacklist=blacklist, source=where
    )


def infer_devkit_id_map(
    mat_path: str | os.PathLike[str],
    reference: Annotations,
    id_template: str = ILSVRC_VAL_ID_TEMPLATE,
    *,
    objects: list[list[tuple[int, np.ndarray]]] | None = None,
) -> dict[int, int]:
    """Derive devkit id -> label by matching the ``.mat`` with reference annotations of the same images.

    For a user without the devkit's ``meta_clsloc.mat``: every image present in both must pair one devkit
    id with one label, and the pairing must be one-to-one; otherwise this raises.

    Args:
        mat_path: the cached ground truth.
        reference: e.g. wsolevaluation's ``ILSVRC/test`` metadata (labels in the sorted-WNID order).
        id_template: formats the 1-based record index into the image id.
        objects: the file's content when already read by ``read_devkit_mat_objects`` (it takes seconds).

    Returns:
        ``{devkit_id: label}``.

    Raises:
        ValueError: no overlap, or an id paired with two labels (or a label with two ids).
    """
    labels = {record.image_id: record.label for record in reference.records}
    mapping: dict[int, int] = {}
    reverse: dict[int, int] = {}
    content = read_devkit_mat_objects(mat_path) if objects is None else objects
    for index, image_objects in enumerate(content, start=1):
        image_id = id_template.format(index)
        if image_id not in labels:
            continue
        for devkit_id, _ in image_objects:
            label = labels[image_id]
            if mapping.setdefault(devkit_id, label) != label or reverse.setdefault(label, devkit_id) != devkit_id:
                raise ValueError(
                    f"{mat_path}: rec({index}) pairs devkit id {devkit_id} with label {label}, but earlier images pair "
                    f"it with {mapping[devkit_id]} / label {label} with id {reverse.get(label)}: not one class order"
                )
    if not mapping:
        raise ValueError(f"{mat_path}: no image in common with the reference annotations")
    return mapping


# ----------------------------------------------------------------------------------------------------
# CUB-200-2011
# ----------------------------------------------------------------------------------------------------


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
    box_tolerance: float = DEFAULT_BOX_TOLERANCE,
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
        box_tolerance: pixels a box may overshoot its image.
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
