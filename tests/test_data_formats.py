"""Golden tests of every ground-truth format reader and the registered real-data factories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
from PIL import Image

from wsol.conf import yaml_data_options
from wsol.data.datasets import DATASETS, build_source
from wsol.data.formats import (
    devkit_ids_to_labels,
    infer_devkit_id_map,
    read_blacklist,
    read_cub,
    read_devkit_id_map,
    read_devkit_mat,
    read_devkit_xml,
    read_kaggle_csv,
    read_synsets,
    read_train_folder,
)
from wsol.data.images import ImageLoadError
from wsol.data.metadata import AnnotationError, read_metadata


def _options(name: str, **overrides: Any) -> dict[str, Any]:
    """The factory options of ``configs/data/<name>.yaml`` (their one home), ``on_error="raise"``, and ``overrides``."""
    return {**yaml_data_options(name), "on_error": "raise", **overrides}


#: The readers' options as a run passes them (the format's configs/data/<name>.yaml, their one home).
ILSVRC_READ = {"box_tolerance": yaml_data_options("ilsvrc")["box_tolerance"]}
CUB_READ = {"box_tolerance": yaml_data_options("cub")["box_tolerance"]}
METADATA_READ = {k: yaml_data_options("wsol_metadata")[k] for k in ("box_tolerance", "max_image_pixels")}


# Four classes in a deliberately unsorted devkit order: devkit id 1 is the LAST class in sorted order.
WNIDS = ["n01440764", "n01443537", "n02119789", "n09999999"]
DEVKIT_ORDER = {1: "n02119789", 2: "n01443537", 3: "n09999999", 4: "n01440764"}
DEVKIT_TO_LABEL = {1: 2, 2: 1, 3: 3, 4: 0}


def _xml(filename: str, size: tuple[int, int], objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    parts = "".join(
        f"<object><name>{wnid}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for wnid, b in objects
    )
    return (
        f"<annotation><folder>val</folder><filename>{filename}</filename><source><database>ILSVRC_2012</database>"
        f"</source><size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
        f"<segmented>0</segmented>{parts}</annotation>"
    )


def _synsets(path: Path) -> Path:
    # File order unsorted on purpose: labels must follow the sorted WNIDs regardless.
    path.write_text("n09999999 zzz\nn01440764 tench, Tinca tinca\nn02119789 kit fox\nn01443537 goldfish\n")
    return path


def test_synsets_sorted_and_devkit_map(tmp_path: Path) -> None:
    wnids, names = read_synsets(_synsets(tmp_path / "LOC_synset_mapping.txt"))
    assert wnids == WNIDS and names[0] == "tench, Tinca tinca"
    (tmp_path / "map_clsloc.txt").write_text("".join(f"{w} {i} name_{i}\n" for i, w in DEVKIT_ORDER.items()))
    assert read_devkit_id_map(tmp_path / "map_clsloc.txt") == DEVKIT_ORDER
    assert devkit_ids_to_labels(DEVKIT_ORDER, WNIDS) == DEVKIT_TO_LABEL
    # meta_clsloc.mat layout: struct array synsets with ILSVRC2014_ID and WNID (+ non-leaf ids > 1000 ignored).
    synsets = np.zeros((1, 5), dtype=[("ILSVRC2014_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    for index, (devkit_id, wnid) in enumerate([*DEVKIT_ORDER.items(), (1001, "n00001740")]):
        synsets[0, index] = (np.array([[devkit_id]], dtype=np.uint16), np.array([wnid]), np.array([[0]]))
    scipy.io.savemat(tmp_path / "meta_clsloc.mat", {"synsets": synsets})
    assert read_devkit_id_map(tmp_path / "meta_clsloc.mat") == DEVKIT_ORDER
    (tmp_path / "bad.txt").write_text("n01440764 1 a\nn01443537 1 b\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: duplicate devkit id 1"):
        read_devkit_id_map(tmp_path / "bad.txt")


def _xml_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "Annotations" / "CLS-LOC" / "val"
    folder.mkdir(parents=True)
    (folder / "ILSVRC2012_val_00000001.xml").write_text(_xml("ILSVRC2012_val_00000001", (500, 375), [("n02119789", (111, 108, 441, 193))]))
    (folder / "ILSVRC2012_val_00000002.xml").write_text(
        _xml("ILSVRC2012_val_00000002", (50, 40), [("n01443537", (0, 0, 49, 39)), ("n01443537", (3, 4, 5, 6))])
    )
    return folder


def test_devkit_xml_golden(tmp_path: Path) -> None:
    annotations = read_devkit_xml(_xml_folder(tmp_path), WNIDS, **ILSVRC_READ)
    first, second = annotations.records
    assert (first.image_id, first.label, first.size) == ("val/ILSVRC2012_val_00000001.JPEG", 2, (500, 375))
    np.testing.assert_array_equal(first.boxes, [[111, 108, 441, 193]])
    assert (second.label, len(second.boxes), second.box_labels) == (1, 2, None)
    assert annotations.num_classes == 4


def test_devkit_xml_label_file_cross_check(tmp_path: Path) -> None:
    folder = _xml_folder(tmp_path)
    (tmp_path / "gt.txt").write_text("1\n2\n")  # devkit ids: 1 = n02119789, 2 = n01443537
    annotations = read_devkit_xml(folder, WNIDS, label_file=tmp_path / "gt.txt", id_to_label=DEVKIT_TO_LABEL,
                                  **ILSVRC_READ)
    assert [r.label for r in annotations.records] == [2, 1]
    # A label file read with the wrong class order (labels used as if sorted) is caught, image by image.
    (tmp_path / "wrong.txt").write_text("3\n2\n")
    with pytest.raises(AnnotationError, match=r"ILSVRC2012_val_00000001.xml: error: label file says class 3 \(n09999999\)"):
        read_devkit_xml(folder, WNIDS, label_file=tmp_path / "wrong.txt", id_to_label=DEVKIT_TO_LABEL, **ILSVRC_READ)


def test_devkit_xml_bad_objects(tmp_path: Path) -> None:
    folder = _xml_folder(tmp_path)
    (folder / "ILSVRC2012_val_00000003.xml").write_text(_xml("ILSVRC2012_val_00000003", (50, 40), [("n01440764", (10, 0, 5, 5))]))
    (folder / "ILSVRC2012_val_00000004.xml").write_text(_xml("ILSVRC2012_val_00000004", (50, 40), [("n01440764", (0, 0, 80, 5))]))
    (folder / "ILSVRC2012_val_00000005.xml").write_text(_xml("ILSVRC2012_val_00000005", (50, 40), [("n07777777", (0, 0, 5, 5))]))
    (folder / "ILSVRC2012_val_00000006.xml").write_text(_xml("ILSVRC2012_val_00000006", (50, 40), []))
    (folder / "ILSVRC2012_val_00000007.xml").write_text(
        _xml("ILSVRC2012_val_00000007", (50, 40), [("n01440764", (0, 0, 5, 5)), ("n01443537", (0, 0, 5, 5))])
    )
    annotations = read_devkit_xml(folder, WNIDS, on_error="skip", **ILSVRC_READ)
    assert len(annotations) == 2
    skipped = annotations.skipped
    assert "inverted" in skipped["val/ILSVRC2012_val_00000003.JPEG"]
    assert "outside the 50x40 image" in skipped["val/ILSVRC2012_val_00000004.JPEG"]
    assert "class 'n07777777' is not in the class list" in skipped["val/ILSVRC2012_val_00000005.JPEG"]
    assert "no object" in skipped["val/ILSVRC2012_val_00000006.JPEG"]
    assert "label ambiguous" in skipped["val/ILSVRC2012_val_00000007.JPEG"]
    assert all("ILSVRC2012_val_0000000" in reason and ".xml" in reason for reason in skipped.values())


def test_kaggle_csv_golden_and_errors(tmp_path: Path) -> None:
    csv_path = tmp_path / "LOC_val_solution.csv"
    csv_path.write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00000002,n01443537 0 0 49 39 n01443537 3 4 5 6 \n"
        "ILSVRC2012_val_00000001,n02119789 111 108 441 193 \n"
    )
    wnids = read_synsets(_synsets(tmp_path / "LOC_synset_mapping.txt"))[0]
    annotations = read_kaggle_csv(csv_path, wnids, **ILSVRC_READ)
    assert [r.image_id for r in annotations.records] == ["val/ILSVRC2012_val_00000001.JPEG", "val/ILSVRC2012_val_00000002.JPEG"]
    assert [r.label for r in annotations.records] == [2, 1]
    np.testing.assert_array_equal(annotations.records[1].boxes, [[0, 0, 49, 39], [3, 4, 5, 6]])
    # Same content as the XML reader gives.
    xml = read_devkit_xml(_xml_folder(tmp_path), WNIDS, **ILSVRC_READ)
    for a, b in zip(annotations.records, xml.records):
        assert a.image_id == b.image_id and a.label == b.label
        np.testing.assert_array_equal(a.boxes, b.boxes)
    csv_path.write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00000001,n02119789 111 108 441 193\n"
        "ILSVRC2012_val_00000001,n02119789 1 1 2 2\n"
        "ILSVRC2012_val_00000003,n02119789 1 1 2\n"
        "ILSVRC2012_val_00000004,n02119789 1 1 2 2 n01440764 1 1 2 2\n"
        "ILSVRC2012_val_00000005,n02119789 10 10 2 2\n"
    )
    annotations = read_kaggle_csv(csv_path, wnids, sizes={"val/ILSVRC2012_val_00000001.JPEG": (400, 300)},
                                  on_error="skip", **ILSVRC_READ)
    assert len(annotations) == 0
    assert "duplicate ImageId" in annotations.skipped["val/ILSVRC2012_val_00000001.JPEG"]
    assert "LOC_val_solution.csv:2" in annotations.skipped["val/ILSVRC2012_val_00000001.JPEG"]  # box beyond 400 px
    assert "LOC_val_solution.csv:4" in annotations.skipped["val/ILSVRC2012_val_00000003.JPEG"]
    assert "several classes" in annotations.skipped["val/ILSVRC2012_val_00000004.JPEG"]
    assert "inverted" in annotations.skipped["val/ILSVRC2012_val_00000005.JPEG"]


def _write_cache_mat(path: Path, images: list[list[tuple[int, tuple[int, int, int, int]]]]) -> None:
    """A .mat in the devkit's cache_groundtruth layout: rec(1,N).objects(1,M).{label, bbox}, uint16."""
    rec = np.zeros((1, len(images)), dtype=[("objects", "O")])
    for index, objects in enumerate(images):
        array = np.zeros((1, len(objects)), dtype=[("label", "O"), ("bbox", "O")])
        for j, (label, box) in enumerate(objects):
            array[0, j] = (np.array([[label]], dtype=np.uint16), np.array([box], dtype=np.uint16))
        rec[0, index] = (array if objects else np.zeros((0, 0)),)
    scipy.io.savemat(path, {"rec": rec})


def test_devkit_mat_golden_and_mapping(tmp_path: Path) -> None:
    mat = tmp_path / "cache_groundtruth.mat"
    _write_cache_mat(mat, [[(1, (111, 108, 441, 193))], [(2, (0, 0, 49, 39)), (2, (3, 4, 5, 6))], [(4, (1, 2, 3, 4))]])
    annotations = read_devkit_mat(mat, DEVKIT_TO_LABEL, num_classes=4, **ILSVRC_READ)
    assert [r.image_id for r in annotations.records] == [f"val/ILSVRC2012_val_{i:08d}.JPEG" for i in (1, 2, 3)]
    assert [r.label for r in annotations.records] == [2, 1, 0]  # devkit ids 1, 2, 4 in sorted-WNID order
    np.testing.assert_array_equal(annotations.records[1].boxes, [[0, 0, 49, 39], [3, 4, 5, 6]])
    # Inferring the id map against the XML-derived annotations of the same images gives the same map.
    reference = read_devkit_xml(_xml_folder(tmp_path), WNIDS, **ILSVRC_READ)
    assert infer_devkit_id_map(mat, reference) == {1: 2, 2: 1}
    # Unmapped ids, images without objects and inconsistent pairings are errors.
    _write_cache_mat(mat, [[(9, (1, 1, 2, 2))], [], [(2, (1, 1, 2, 2))]])
    skipped = read_devkit_mat(mat, DEVKIT_TO_LABEL, num_classes=4, on_error="skip", **ILSVRC_READ).skipped
    assert "devkit id 9 not in the id map" in skipped["val/ILSVRC2012_val_00000001.JPEG"]
    assert "rec(2) has no object" in skipped["val/ILSVRC2012_val_00000002.JPEG"]
    _write_cache_mat(mat, [[(1, (1, 1, 2, 2))], [(1, (1, 1, 2, 2))]])
    with pytest.raises(ValueError, match="not one class order"):
        infer_devkit_id_map(mat, reference)


def test_blacklist(tmp_path: Path) -> None:
    (tmp_path / "bl.txt").write_text("2\n\n36\n")
    assert read_blacklist(tmp_path / "bl.txt") == {"val/ILSVRC2012_val_00000002.JPEG", "val/ILSVRC2012_val_00000036.JPEG"}
    (tmp_path / "bl.txt").write_text("2\nx\n")
    with pytest.raises(ValueError, match="bl.txt:2"):
        read_blacklist(tmp_path / "bl.txt")
    annotations = read_devkit_xml(_xml_folder(tmp_path), WNIDS, **ILSVRC_READ,
                                  blacklist={"val/ILSVRC2012_val_00000002.JPEG", "val/ILSVRC2012_val_00000036.JPEG"})
    assert annotations.blacklist == {"val/ILSVRC2012_val_00000002.JPEG"}  # only ids of this split


def _cub_root(tmp_path: Path) -> Path:
    root = tmp_path / "CUB_200_2011"
    root.mkdir()
    # The first five lines of the real CUB-200-2011 files (public values).
    (root / "images.txt").write_text(
        "1 001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg\n"
        "2 001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg\n"
        "3 001.Black_footed_Albatross/Black_Footed_Albatross_0002_55.jpg\n"
        "4 001.Black_footed_Albatross/Black_Footed_Albatross_0074_59.jpg\n"
        "5 001.Black_footed_Albatross/Black_Footed_Albatross_0014_89.jpg\n"
    )
    (root / "image_class_labels.txt").write_text("1 1\n2 1\n3 1\n4 1\n5 1\n")
    (root / "train_test_split.txt").write_text("1 0\n2 1\n3 0\n4 1\n5 1\n")
    (root / "bounding_boxes.txt").write_text(
        "1 60.0 27.0 325.0 304.0\n2 139.0 30.0 153.0 264.0\n3 14.0 112.0 388.0 186.0\n4 112.0 90.0 255.0 242.0\n5 70.0 50.0 134.0 303.0\n"
    )
    return root


def test_cub_text_golden(tmp_path: Path) -> None:
    root = _cub_root(tmp_path)
    test = read_cub(root, "test", **CUB_READ)
    assert [r.image_id.split("/")[1] for r in test.records] == ["Black_Footed_Albatross_0046_18.jpg", "Black_Footed_Albatross_0002_55.jpg"]
    np.testing.assert_array_equal(test.records[0].boxes, [[60, 27, 385, 331]])  # x1 = x + w
    assert test.records[0].label == 0 and test.num_classes == 200
    assert len(read_cub(root, "train", **CUB_READ)) == 3 and len(read_cub(root, "all", **CUB_READ)) == 5
    (root / "image_class_labels.txt").write_text("1 1\n2 201\n3 1\n4 1\n")
    (root / "bounding_boxes.txt").write_text("1 60.0 27.0 -5.0 304.0\n2 139.0 30.0 153.0 264.0\n3 14 112 388 186\n4 1 1 1 1\n5 1 1 1 1\n")
    bad = read_cub(root, "all", on_error="skip", **CUB_READ)
    assert [r.image_id.split("_")[-2] for r in bad.records] == ["0002", "0074"]
    assert "class id 201" in bad.skipped["001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg"]
    assert "bounding_boxes.txt:1" in bad.skipped["001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg"]
    assert "missing from ['image_class_labels']" in bad.skipped["001.Black_footed_Albatross/Black_Footed_Albatross_0014_89.jpg"]


def test_cub_text_matches_wsolevaluation_metadata(shared_data: Path, tmp_path: Path) -> None:
    """The x y w h -> xyxy choice reproduces wsolevaluation's localization.txt for the same images."""
    converted = read_cub(_cub_root(tmp_path), "all", **CUB_READ)
    reference = {}
    for split in ("train", "test"):
        for r in read_metadata(shared_data / "wsolevaluation_metadata" / "CUB" / split, num_classes=200,
                               **METADATA_READ).records:
            reference[r.image_id] = r
    for record in converted.records:
        assert record.label == reference[record.image_id].label
        np.testing.assert_array_equal(record.boxes, reference[record.image_id].boxes)


def test_train_folder_is_torchvision_order(tmp_path: Path) -> None:
    train = tmp_path / "train"
    for wnid in ("n02119789", "n01440764", "n01443537"):
        (train / wnid).mkdir(parents=True)
        for name in ("b.JPEG", "a.jpeg", "notes.txt"):
            (train / wnid / name).write_bytes(b"x")
    annotations = read_train_folder(train)
    assert annotations.class_names == ["n01440764", "n01443537", "n02119789"]
    assert [(r.image_id, r.label) for r in annotations.records[:3]] == [
        ("train/n01440764/a.jpeg", 0), ("train/n01440764/b.JPEG", 0), ("train/n01443537/a.jpeg", 1)
    ]
    assert len(annotations) == 6 and all(len(r.boxes) == 0 for r in annotations.records)
    try:
        from torchvision.datasets import ImageFolder
    except ImportError:  # pragma: no cover
        return
    folder = ImageFolder(str(train), loader=lambda p: p)
    assert [(Path(p).relative_to(tmp_path).as_posix(), c) for p, c in folder.samples] == [(r.image_id, r.label) for r in annotations.records]
    with pytest.raises(ValueError, match="differ from the class list"):
        read_train_folder(train, wnids=WNIDS)


# ---------------------------------------------------------------------------------------------------
# Factories
# ---------------------------------------------------------------------------------------------------


def _dataset(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    (root / "images" / "val").mkdir(parents=True)
    (root / "metadata").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(root / "images" / "val" / f"{name}.jpg")
    (root / "metadata" / "image_ids.txt").write_text("val/a.jpg\nval/b.jpg\nval/c.jpg\n")
    (root / "metadata" / "class_labels.txt").write_text("val/a.jpg,0\nval/b.jpg,1\nval/c.jpg,1\n")
    (root / "metadata" / "image_sizes.txt").write_text("val/a.jpg,40,30\nval/b.jpg,40,30\nval/c.jpg,40,30\n")
    (root / "metadata" / "localization.txt").write_text("val/a.jpg,0,0,39,29\nval/b.jpg,1,1,5,5\nval/c.jpg,2,2,9,9\n")
    return root


def test_wsol_metadata_factory_loads(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    source = build_source("wsol_metadata", **_options("wsol_metadata", split="test", root=root, num_classes=2,
                                                      on_error="raise"))
    assert len(source.annotations) == 3 and source.load(1).size == (40, 30) and source.load(1).mode == "RGB"
    assert {"wsol_metadata", "ilsvrc", "cub", "openimages"} <= set(DATASETS.names())


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: p.unlink(), "file not found"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"garbage" * 50), "not a recognised image format"),
        (lambda p: Image.new("RGB", (30, 40)).save(p), "size 30x40 differs from the metadata size 40x30"),
    ],
)
def test_factory_bad_images_raise_or_skip(tmp_path: Path, damage, reason: str) -> None:
    root = _dataset(tmp_path)
    damage(root / "images" / "val" / "b.jpg")
    with pytest.raises(AnnotationError, match=reason):
        build_source("wsol_metadata", **_options("wsol_metadata", split="test", root=root, num_classes=2,
                                                 on_error="raise"))
    source = build_source("wsol_metadata", **_options("wsol_metadata", split="test", root=root, num_classes=2,
                                                      on_error="skip"))
    assert [r.image_id for r in source.annotations.records] == ["val/a.jpg", "val/c.jpg"]
    assert list(source.annotations.skipped) == ["val/b.jpg"] and reason in source.annotations.skipped["val/b.jpg"]


def test_truncated_image_found_by_the_default_check_or_at_load(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    path = root / "images" / "val" / "c.jpg"
    path.write_bytes(path.read_bytes()[:-40])
    # The default check reads the header and the JPEG end marker: the truncated file is skipped when the split
    # is built, and listed (metrics.json's "skipped").
    for level in ("header", "decode"):
        source = build_source("wsol_metadata", **_options("wsol_metadata", split="test", root=root, num_classes=2,
                                                          on_error="skip", check_files=level))
        assert list(source.annotations.skipped) == ["val/c.jpg"]
        assert "c.jpg: error: truncated image data" in source.annotations.skipped["val/c.jpg"]
    with pytest.raises(AnnotationError, match="c.jpg: error: truncated image data"):
        build_source("wsol_metadata", **_options("wsol_metadata", split="test", root=root, num_classes=2,
                                                 on_error="raise"))
    # Unchecked files: loading the image fails loudly, naming the file.
    unchecked = build_source("wsol_metadata", **_options("wsol_metadata", split="test", root=root, num_classes=2,
                                                         check_files="none"))
    assert len(unchecked.annotations) == 3
    with pytest.raises(ImageLoadError, match="c.jpg: truncated"):
        unchecked.load(2)


def test_ilsvrc_factory_formats_agree(tmp_path: Path) -> None:
    root = tmp_path / "ILSVRC"
    (root / "val").mkdir(parents=True)
    for wnid in WNIDS:
        (root / "train" / wnid).mkdir(parents=True)
        Image.new("RGB", (8, 6)).save(root / "train" / wnid / f"{wnid}_1.JPEG")
    Image.new("RGB", (500, 375)).save(root / "val" / "ILSVRC2012_val_00000001.JPEG")
    Image.new("RGB", (50, 40)).save(root / "val" / "ILSVRC2012_val_00000002.JPEG")
    xml_dir = _xml_folder(tmp_path)
    (root / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\nILSVRC2012_val_00000001,n02119789 111 108 441 193\n"
        "ILSVRC2012_val_00000002,n01443537 0 0 49 39 n01443537 3 4 5 6\n"
    )
    _synsets(root / "LOC_synset_mapping.txt")
    _write_cache_mat(root / "gt.mat", [[(1, (111, 108, 441, 193))], [(2, (0, 0, 49, 39)), (2, (3, 4, 5, 6))]])
    (root / "map_clsloc.txt").write_text("".join(f"{w} {i} name\n" for i, w in DEVKIT_ORDER.items()))
    (root / "blacklist.txt").write_text("2\n")
    common = dict(split="test", root=root, num_classes=4, blacklist_file="blacklist.txt")
    sources = {
        "devkit_xml": build_source("ilsvrc", **_options("ilsvrc", gt_format="devkit_xml", xml_dir=xml_dir, **common)),
        "kaggle": build_source("ilsvrc", **_options("ilsvrc", gt_format="kaggle", kaggle_csv="LOC_val_solution.csv",
                                                    synsets="LOC_synset_mapping.txt", **common)),
        "devkit_mat": build_source("ilsvrc", **_options("ilsvrc", gt_format="devkit_mat", devkit_mat="gt.mat",
                                                        devkit_meta="map_clsloc.txt", **common)),
    }
    for name, source in sources.items():
        records = source.annotations.records
        assert [r.label for r in records] == [2, 1], name
        assert [r.size for r in records] == [(500, 375), (50, 40)], name  # read from the headers where absent
        assert source.annotations.blacklist == {"val/ILSVRC2012_val_00000002.JPEG"}, name
        assert source.load(0).size == (500, 375)
    train = build_source("ilsvrc", **_options("ilsvrc", split="train", root=root, num_classes=4))
    assert [r.label for r in train.annotations.records] == [0, 1, 2, 3] and train.load(3).size == (8, 6)
    with pytest.raises(FileNotFoundError, match="none of xml_dir"):
        build_source("ilsvrc", **_options("ilsvrc", split="test", root=root, num_classes=4))


def test_openimages_factory_checks_masks(tmp_path: Path) -> None:
    root = tmp_path / "OpenImages"
    (root / "test" / "c").mkdir(parents=True)
    (root / "metadata" / "test").mkdir(parents=True)
    Image.new("RGB", (10, 8)).save(root / "test" / "c" / "x.jpg")
    Image.new("L", (10, 8)).save(root / "test" / "c" / "x_m.png")
    meta = root / "metadata" / "test"
    (meta / "image_ids.txt").write_text("test/c/x.jpg\n")
    (meta / "class_labels.txt").write_text("test/c/x.jpg,3\n")
    (meta / "image_sizes.txt").write_text("")
    (meta / "localization.txt").write_text("test/c/x.jpg,test/c/x_m.png,test/c/x_ignore.png\n")
    with pytest.raises(AnnotationError, match="x_ignore.png: error: mask file not found"):
        build_source("openimages", **_options("openimages", split="test", root=root, num_classes=100))
    Image.new("L", (10, 8)).save(root / "test" / "c" / "x_ignore.png")
    source = build_source("openimages", **_options("openimages", split="test", root=root, num_classes=100))
    assert source.mask_root == root and source.annotations.records[0].size == (10, 8)


@pytest.mark.parametrize(("subset", "count"), [("acuity227", 217), ("original", 20)])
def test_shared_mini_sets_through_factory(shared_data: Path, subset: str, count: int) -> None:
    source = build_source("wsol_metadata", **_options("wsol_metadata", split="test", num_classes=1000,
                                                      root=shared_data / "ilsvrc_val_mini" / subset))
    assert len(source.annotations) == count and not source.annotations.skipped
    image = source.load(0)
    assert image.mode == "RGB" and image.size == source.annotations.records[0].size


def test_shared_cub_and_openimages_factories(shared_data: Path) -> None:
    root = shared_data / "wsolevaluation_metadata"
    cub = build_source("cub", **_options("cub", split="test", root=root, metadata_dir="CUB/{split}", num_classes=200,
                                         check_files="none"))
    assert len(cub.annotations) == 5794
    images = build_source("openimages", **_options(
        "openimages", split="test", root=root, metadata_dir="OpenImages_excerpt/{split}", num_classes=100,
        on_error="skip", check_files="none"))
    assert len(images.annotations) == 217 and len(images.annotations.skipped) == 83


@pytest.mark.slow
def test_shared_devkit_mat_equals_wsolevaluation_test_metadata(shared_data: Path) -> None:
    """All 50,000 ILSVRC val images: the mapped devkit .mat == wsolevaluation ILSVRC/test (labels and boxes)."""
    reference = read_metadata(shared_data / "wsolevaluation_metadata" / "ILSVRC" / "test", num_classes=1000,
                              **METADATA_READ)
    mat = shared_data / "cam_repo" / "ilsvrc2014_devkit_val_cache_groundtruth.mat"
    id_map = infer_devkit_id_map(mat, reference)
    assert len(id_map) == 1000 and sorted(id_map.values()) == list(range(1000))
    # The inferred map agrees with the devkit's published map_clsloc.txt head: 1 kit fox, 2 English setter,
    # 3 Siberian husky, whose sorted-WNID labels are read from categories1000.mat.
    wnids = read_synsets(shared_data / "cam_repo" / "categories1000.mat")[0]
    assert [id_map[i] for i in (1, 2, 3)] == [wnids.index(w) for w in ("n02119789", "n02100735", "n02110185")] == [278, 212, 250]
    converted = read_devkit_mat(mat, id_map, **ILSVRC_READ)
    assert len(converted) == len(reference) == 50000
    boxes = 0
    for a, b in zip(converted.records, reference.records):
        assert (a.image_id, a.label) == (b.image_id, b.label)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        boxes += len(a.boxes)
    assert boxes == 80477


COMMON_DATA_KEYS = {"name", "root", "num_classes", "train_split", "val_split", "test_split", "image_size",
                    "crop_size", "resize_size", "hflip", "on_error"}


@pytest.mark.parametrize("name", ["wsol_metadata", "ilsvrc", "cub", "openimages", "synthetic"])
def test_data_configs_compose_and_build(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each data config composes with the evaluate config, its options are top-level keys that are exactly the
    registered factory's options, and ``source_from_cfg`` builds it (on a tiny metadata data set)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from wsol.config import source_from_cfg
    from wsol.conf import register_configs
    from wsol.data.datasets import dataset_options

    register_configs()  # the schemas the configs' defaults name (else this test passes only after test_config)
    monkeypatch.setenv("WSOL_DATA", str(tmp_path))
    config_dir = str(Path(__file__).resolve().parents[1] / "configs")
    overrides = [f"data={name}"] + (["data.root=/x", "data.num_classes=2"] if name == "wsol_metadata" else [])
    overrides += ["data.num_images={test:3}"] if name == "synthetic" else []
    with initialize_config_dir(version_base="1.3", config_dir=config_dir):
        cfg = compose(config_name="evaluate", overrides=overrides)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert data["name"] == name and data["on_error"] == "raise"
    assert data["image_size"] == (64 if name == "synthetic" else 224)
    assert COMMON_DATA_KEYS <= set(data) and "kwargs" not in data
    # Every option of the factory is spelled in the YAML (Hydra refuses unknown override keys without "+").
    assert set(data) - COMMON_DATA_KEYS == set(dataset_options(name))
    if name == "synthetic":
        source = source_from_cfg(cfg.data, data["test_split"])
        assert len(source.annotations) == 3 and source.load(0).size == (64, 64)
        return
    if name != "wsol_metadata":
        assert data["root"].startswith(str(tmp_path))
    root = _dataset(tmp_path)
    # wsolevaluation-style layout for the metadata-based factories: metadata/<split>/.
    (root / "metadata" / "test").mkdir()
    for file in list((root / "metadata").glob("*.txt")):
        file.rename(root / "metadata" / "test" / file.name)
    if name == "openimages":
        meta = root / "metadata" / "test"
        (meta / "localization.txt").write_text("".join(f"val/{n}.jpg,val/{n}.jpg,\n" for n in "abc"))
    cfg.data.root = str(root)
    source = source_from_cfg(cfg.data, data["test_split"])
    assert len(source.annotations) == 3


def test_readers_read_only_the_selected_images(tmp_path: Path) -> None:
    """``select`` skips the other images' lines unchecked (a subset out of 50,000, as data=imagenette reads)."""
    def only_first(image_id: str) -> bool:
        return image_id.endswith("_00000001.JPEG")

    folder = _xml_folder(tmp_path)
    (folder / "ILSVRC2012_val_00000003.xml").write_text("broken")  # never parsed
    xml = read_devkit_xml(folder, WNIDS, select=only_first, **ILSVRC_READ)
    assert [r.image_id for r in xml.records] == ["val/ILSVRC2012_val_00000001.JPEG"]
    csv_path = tmp_path / "LOC_val_solution.csv"
    csv_path.write_text("ImageId,PredictionString\nILSVRC2012_val_00000002,n07777777 1 2 3\n"
                        "ILSVRC2012_val_00000001,n02119789 111 108 441 193\n")
    kaggle = read_kaggle_csv(csv_path, WNIDS, select=only_first, **ILSVRC_READ)
    assert [(r.image_id, r.label) for r in kaggle.records] == [("val/ILSVRC2012_val_00000001.JPEG", 2)]
    mat = tmp_path / "gt.mat"
    _write_cache_mat(mat, [[(1, (111, 108, 441, 193))], [(99, (9, 9, 1, 1))]])  # record 2: unknown id, inverted box
    assert len(read_devkit_mat(mat, DEVKIT_TO_LABEL, num_classes=4, select=only_first, **ILSVRC_READ)) == 1
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "image_ids.txt").write_text("val/ILSVRC2012_val_00000002.JPEG\nval/ILSVRC2012_val_00000001.JPEG\n")
    (meta / "class_labels.txt").write_text("val/ILSVRC2012_val_00000002.JPEG,x\nval/ILSVRC2012_val_00000001.JPEG,2\n")
    (meta / "image_sizes.txt").write_text("val/ILSVRC2012_val_00000002.JPEG,0,0\nval/ILSVRC2012_val_00000001.JPEG,500,375\n")
    (meta / "localization.txt").write_text("val/ILSVRC2012_val_00000002.JPEG,9,9,1,1\n"
                                           "val/ILSVRC2012_val_00000001.JPEG,111,108,441,193\n")
    with pytest.raises(AnnotationError):
        read_metadata(meta, **METADATA_READ)
    selected = read_metadata(meta, select=only_first, **METADATA_READ)
    assert [(r.image_id, r.label, r.size) for r in selected.records] == [("val/ILSVRC2012_val_00000001.JPEG", 2, (500, 375))]
    with pytest.raises(AnnotationError, match="no image id selected"):
        read_metadata(meta, select=lambda image_id: False, **METADATA_READ)
