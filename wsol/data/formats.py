"""Readers of the ILSVRC box ground truth users actually have, each producing the shared ``Annotations``.

Formats: the devkit's XML folder (``read_devkit_xml``), Kaggle's ``LOC_val_solution.csv`` (``read_kaggle_csv``), the
ILSVRC2014 devkit's cached ground truth ``.mat`` (``read_devkit_mat``, with ``infer_devkit_id_map`` when no id map is
at hand). Their class lists, devkit id maps, blacklists and label files are read by ``wsol.data.devkit``; CUB's
text files by ``wsol.data.cub``; wsolevaluation's metadata by ``wsol.data.metadata``; one dispatcher picks among them
(``wsol.data.ground_truth``). Class order: sorted WNIDs (``wsol.data.devkit``).

Image ids follow wsolevaluation: the path relative to the data set's image root
(``val/ILSVRC2012_val_00000001.JPEG``, ``train/n01440764/n01440764_10026.JPEG``).

Box values are taken verbatim from every ILSVRC source (XML, Kaggle CSV, cached ``.mat``): they are the
inclusive pixel coordinates wsolevaluation's ``localization.txt`` holds (checked on all 50,000 val images
for the ``.mat``).

Readers collect ``Problem``s (file + line) and apply the ``on_error`` policy through
``wsol.data.validation.finalize_annotations``. The names of ``wsol.data.devkit`` and ``wsol.data.cub`` are
re-exported here, where callers have long imported them from.
"""

from __future__ import annotations

import csv
import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

from wsol.data.cub import read_cub  # noqa: F401  (re-exported)
from wsol.data.devkit import (  # noqa: F401  (re-exported: the names callers import from this module)
    ILSVRC_NUM_CLASSES,
    ILSVRC_VAL_ID_TEMPLATE,
    IMAGE_EXTENSIONS,
    check_template,
    devkit_ids_to_labels,
    load_mat,
    read_blacklist,
    read_devkit_id_map,
    read_label_file,
    read_synsets,
    read_train_folder,
    walk_image_files,
)
from wsol.data.records import Annotations, ImageRecord
from wsol.data.validation import (  # noqa: F401  (match_blacklist re-exported)
    OnError,
    Problem,
    box_problem,
    check_box_tolerance,
    check_on_error,
    finalize_annotations,
    label_problem,
    match_blacklist,
    parse_float,
    read_text,
)
from wsol.io import unsafe_path_message

_TRAILING_NUMBER = re.compile(r"(\d+)$")


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
    box_tolerance: float,
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
        box_tolerance: pixels a box may overshoot its image (``data.box_tolerance``).
        select: when given, only the XML files whose image id (``id_template`` applied to the XML file's stem,
            which the devkit names after its image, with an empty ``{folder}``) it accepts are parsed.

    Returns:
        ``Annotations`` sorted by image id, sizes from ``<size>``.
    """
    check_on_error(on_error)
    check_box_tolerance(box_tolerance)
    check_template(id_template, filename="x", folder="x")
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
    box_tolerance: float,
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
        box_tolerance: pixels a box may overshoot its image (``data.box_tolerance``).
        select: when given, only the rows whose image id it accepts are read; the others are skipped unchecked.

    Returns:
        ``Annotations`` sorted by image id.
    """
    check_on_error(on_error)
    check_box_tolerance(box_tolerance)
    check_template(id_template, "x", wnid="x")
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
    data = load_mat(path, squeeze_me=True, struct_as_record=False)
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
    box_tolerance: float,
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
        box_tolerance: pixels a box may overshoot its image (``data.box_tolerance``).
        select: when given, only the images whose id it accepts are kept; the others are skipped unchecked.
        objects: the file's content when already read by ``read_devkit_mat_objects`` (it takes seconds).

    Returns:
        ``Annotations`` in val-index order.
    """
    check_on_error(on_error)
    check_box_tolerance(box_tolerance)
    check_template(id_template, 1)
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
