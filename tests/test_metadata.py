"""wsolevaluation metadata: reading, every validation rule with its file:line message, the skip policy, writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wsol.conf import yaml_data_options
from wsol.data.metadata import AnnotationError, collect_metadata, read_metadata, write_metadata
from wsol.data.records import Annotations, ImageRecord

#: read_metadata's options as a run passes them (configs/data/wsol_metadata.yaml, their one home)
METADATA_READ = {k: yaml_data_options("wsol_metadata")[k] for k in ("box_tolerance", "max_image_pixels")}


def _write(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    defaults = {
        "image_ids": "a/1.jpg\na/2.jpg\nb/3.jpg\n",
        "class_labels": "a/1.jpg,0\na/2.jpg,0\nb/3.jpg,2\n",
        "image_sizes": "a/1.jpg,10,8\na/2.jpg,20,10\nb/3.jpg,5,5\n",
        "localization": "a/1.jpg,0,0,9,7\na/2.jpg,1.5,2,3.25,4\na/2.jpg,10,0,19,9\nb/3.jpg,0,0,0,0\n",
    }
    for name, content in {**defaults, **files}.items():
        (folder / f"{name}.txt").write_text(content)
    return folder


def test_reads_boxes_sizes_labels(tmp_path: Path) -> None:
    annotations = read_metadata(_write(tmp_path / "m"), num_classes=3, **METADATA_READ)
    assert [r.image_id for r in annotations.records] == ["a/1.jpg", "a/2.jpg", "b/3.jpg"]
    assert [r.label for r in annotations.records] == [0, 0, 2]
    assert annotations.records[1].size == (20, 10)
    np.testing.assert_array_equal(annotations.records[1].boxes, [[1.5, 2, 3.25, 4], [10, 0, 19, 9]])
    assert annotations.records[1].boxes.dtype == np.float64
    assert annotations.num_classes == 3 and not annotations.skipped


def test_crlf_blank_lines_and_missing_trailing_newline(tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", image_ids="a/1.jpg\r\n\r\na/2.jpg\r\nb/3.jpg", class_labels="a/1.jpg,0\r\na/2.jpg,0\r\nb/3.jpg,2")
    assert len(read_metadata(folder, num_classes=3, **METADATA_READ)) == 3


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"image_ids": "a/1.jpg\na/2.jpg\nb/3.jpg\na/1.jpg\n"}, r"image_ids.txt:4: error: duplicate image id 'a/1.jpg' \(first on line 1\)"),
        ({"class_labels": "a/1.jpg,0\na/2.jpg,0\n"}, r"class_labels.txt: error: no label for 'b/3.jpg' \(line 3 of image_ids.txt\)"),
        ({"class_labels": "a/1.jpg,0\na/2.jpg,0\nb/3.jpg,3\n"}, r"class_labels.txt:3: error: 'b/3.jpg': label 3 outside \[0, 2\]"),
        ({"class_labels": "a/1.jpg,0\na/2.jpg,0\nb/3.jpg,-1\n"}, r"class_labels.txt:3: error: 'b/3.jpg': label -1 outside"),
        ({"class_labels": "a/1.jpg,0\na/2.jpg,x\nb/3.jpg,2\n"}, r"class_labels.txt:2: error: label 'x' of 'a/2.jpg' is not an integer"),
        ({"class_labels": "a/1.jpg,0\na/2.jpg,0\nb/3.jpg,2\na/1.jpg,1\n"}, r"class_labels.txt:4: error: 'a/1.jpg' labelled 1 here but 0 on line 1"),
        ({"localization": "a/1.jpg,0,0,9,7\na/2.jpg,5,2,3,4\nb/3.jpg,0,0,0,0\n"}, r"localization.txt:2: error: 'a/2.jpg': box \(5, 2, 3, 4\) is inverted"),
        ({"localization": "a/1.jpg,0,0,11.5,7\na/2.jpg,1,2,3,4\nb/3.jpg,0,0,0,0\n"}, r"localization.txt:1: error: 'a/1.jpg': box \(0, 0, 11.5, 7\) lies outside the 10x8 image by more than 1 px"),
        ({"localization": "a/1.jpg,0,0,9,7\na/2.jpg,1,2,3,4\nb/3.jpg,-2,0,0,0\n"}, r"localization.txt:3: error: 'b/3.jpg': box \(-2, 0, 0, 0\) lies outside"),
        ({"localization": "a/1.jpg,0,0,9,7\nb/3.jpg,0,0,0,0\n"}, r"localization.txt: error: no box for 'a/2.jpg'"),
        ({"localization": "a/1.jpg,0,0,9,nan\na/2.jpg,1,2,3,4\nb/3.jpg,0,0,0,0\n"}, r"localization.txt:1: error: box of 'a/1.jpg' has a non-numeric or non-finite"),
        ({"localization": "a/1.jpg,0,0,9\na/2.jpg,1,2,3,4\nb/3.jpg,0,0,0,0\n"}, r"expected 'id,x0,y0,x1,y1' or 'id,mask,ignore'"),
        ({"image_sizes": "a/1.jpg,10,8\nb/3.jpg,5,5\n"}, r"image_sizes.txt: error: no size for 'a/2.jpg'"),
        ({"image_sizes": "a/1.jpg,10,0\na/2.jpg,20,10\nb/3.jpg,5,5\n"}, r"image_sizes.txt:1: error: size of 'a/1.jpg' must be two positive integers"),
        ({"image_ids": "a/1.jpg\na,2.jpg\n"}, r"image_ids.txt:2: error: image id 'a,2.jpg' contains a comma"),
    ],
)
def test_each_problem_raises_with_file_and_line(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    folder = _write(tmp_path / "m", **files)
    with pytest.raises(AnnotationError, match=expected):
        read_metadata(folder, num_classes=3, **METADATA_READ)


def test_skip_policy_drops_whole_image_and_records_reason(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "m",
        image_ids="a/1.jpg\na/2.jpg\nb/3.jpg\nb/4.jpg\nb/4.jpg\n",
        class_labels="a/1.jpg,0\na/2.jpg,0\nb/3.jpg,7\nb/4.jpg,1\n",
        image_sizes="a/1.jpg,10,8\na/2.jpg,20,10\nb/3.jpg,5,5\nb/4.jpg,5,5\n",
        # a/2.jpg has one good and one inverted box: the whole image goes, not just the box.
        localization="a/1.jpg,0,0,9,7\na/2.jpg,1,2,3,4\na/2.jpg,9,0,1,9\nb/3.jpg,0,0,0,0\nb/4.jpg,0,0,1,1\n",
    )
    annotations = read_metadata(folder, num_classes=3, on_error="skip", **METADATA_READ)
    assert [r.image_id for r in annotations.records] == ["a/1.jpg"]
    assert sorted(annotations.skipped) == ["a/2.jpg", "b/3.jpg", "b/4.jpg"]
    assert "localization.txt:3" in annotations.skipped["a/2.jpg"] and "inverted" in annotations.skipped["a/2.jpg"]
    assert "label 7 outside [0, 2]" in annotations.skipped["b/3.jpg"]
    assert "duplicate image id" in annotations.skipped["b/4.jpg"]


def test_unattributable_problem_raises_even_when_skipping(tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", image_ids="a/1.jpg\na,2.jpg\n", class_labels="a/1.jpg,0\n", image_sizes="", localization="")
    with pytest.raises(AnnotationError, match="contains a comma"):
        read_metadata(folder, on_error="skip", **METADATA_READ)


def test_warnings_do_not_fail(tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", class_labels="a/1.jpg,0\na/2.jpg,0\nb/3.jpg,2\nz/9.jpg,1\n")
    records, problems, _ = collect_metadata(folder, num_classes=3, box_tolerance=1.0, max_image_pixels=10**8)
    assert len(records) == 3
    assert [(p.severity, p.line) for p in problems] == [("warning", 4)]
    assert len(read_metadata(folder, num_classes=3, **METADATA_READ)) == 3


def test_train_split_with_empty_files_and_inferred_classes(tmp_path: Path) -> None:
    annotations = read_metadata(_write(tmp_path / "m", image_sizes="", localization=""), **METADATA_READ)
    assert annotations.num_classes == 3  # max label 2 + 1
    assert all(r.size is None and len(r.boxes) == 0 for r in annotations.records)


def test_masks_with_one_ignore_per_image(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "m",
        image_sizes="",
        localization="a/1.jpg,a/1_m1.png,a/1_ignore.png\na/1.jpg,a/1_m2.png,\na/2.jpg,a/2_m.png,\nb/3.jpg,b/3_m.png,b/3_ig.png\n",
    )
    annotations = read_metadata(folder, num_classes=3, **METADATA_READ)
    first, second, third = annotations.records
    assert first.mask_paths == ("a/1_m1.png", "a/1_m2.png") and first.ignore_path == "a/1_ignore.png"
    assert second.mask_paths == ("a/2_m.png",) and second.ignore_path is None
    assert third.ignore_path == "b/3_ig.png"
    bad = _write(tmp_path / "n", image_sizes="", localization="a/1.jpg,m1.png,i1.png\na/1.jpg,m2.png,i2.png\na/2.jpg,m,\nb/3.jpg,m,\n")
    with pytest.raises(AnnotationError, match=r"localization.txt:2: error: 'a/1.jpg' has a second ignore mask"):
        read_metadata(bad, num_classes=3, **METADATA_READ)


def test_missing_required_file(tmp_path: Path) -> None:
    folder = _write(tmp_path / "m")
    (folder / "class_labels.txt").unlink()
    with pytest.raises(FileNotFoundError, match="class_labels.txt"):
        read_metadata(folder, **METADATA_READ)


def test_write_read_round_trip(tmp_path: Path) -> None:
    annotations = Annotations(
        records=[
            ImageRecord("x/1.jpg", 4, np.array([[9.1, 105.9, 50.4, 176.8], [0, 0, 226, 226]]), (227, 227)),
            ImageRecord("x/2.jpg", 0, np.array([[1.0, 2.0, 3.0, 4.0]]), (10, 10)),
        ],
        num_classes=5,
        blacklist=frozenset({"x/2.jpg"}),
    )
    write_metadata(annotations, tmp_path / "out")
    assert (tmp_path / "out" / "localization.txt").read_text().splitlines()[0] == "x/1.jpg,9.1,105.9,50.4,176.8"
    assert (tmp_path / "out" / "localization.txt").read_text().splitlines()[2] == "x/2.jpg,1,2,3,4"
    back = read_metadata(tmp_path / "out", num_classes=5, **METADATA_READ)
    assert back.blacklist == frozenset({"x/2.jpg"})
    for a, b in zip(annotations.records, back.records):
        assert (a.image_id, a.label, a.size) == (b.image_id, b.label, b.size)
        np.testing.assert_array_equal(a.boxes, b.boxes)
    with pytest.raises(ValueError, match="per-box classes"):
        write_metadata(Annotations([ImageRecord("y.jpg", 1, np.array([[0.0, 0, 1, 1]]), (5, 5), np.array([2]))], 3), tmp_path / "bad")


@pytest.mark.parametrize(("subset", "images", "boxes"), [("acuity227", 217, 395), ("original", 20, 29), ("crop224", 9, 12)])
def test_shared_ilsvrc_val_mini(shared_data: Path, subset: str, images: int, boxes: int) -> None:
    annotations = read_metadata(shared_data / "ilsvrc_val_mini" / subset / "metadata", num_classes=1000,
                                **METADATA_READ)
    assert len(annotations) == images and sum(len(r.boxes) for r in annotations.records) == boxes
    assert annotations.records[0].image_id.startswith("val/ILSVRC2012_val_")
    if subset == "acuity227":
        # Rescaled float boxes overshoot the last pixel (226) by up to 0.6 px: accepted within tolerance,
        # kept unchanged, and rejected when the tolerance is removed.
        assert max(r.boxes[:, 2].max() for r in annotations.records) > 226
        with pytest.raises(AnnotationError, match="lies outside the 227x227 image by more than 0 px"):
            read_metadata(shared_data / "ilsvrc_val_mini" / subset / "metadata", num_classes=1000,
                          **{**METADATA_READ, "box_tolerance": 0.0})


def test_shared_wsolevaluation_cub_and_openimages(shared_data: Path) -> None:
    root = shared_data / "wsolevaluation_metadata"
    counts = {split: len(read_metadata(root / "CUB" / split, num_classes=200, **METADATA_READ))
              for split in ("train", "val", "test")}
    assert counts == {"train": 5994, "val": 1000, "test": 5794}
    excerpt = read_metadata(root / "OpenImages_excerpt" / "test", num_classes=100, on_error="skip", **METADATA_READ)
    # The excerpt keeps the first 300 lines of each file, so 83 of the 300 ids lost their masks.
    assert len(excerpt) == 217 and len(excerpt.skipped) == 83
    assert all("no mask for" in reason for reason in excerpt.skipped.values())
    assert all(r.mask_paths and r.size is None for r in excerpt.records)
    with pytest.raises(AnnotationError, match="no mask for"):
        read_metadata(root / "OpenImages_excerpt" / "test", num_classes=100, **METADATA_READ)


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("+7", 7), ("-3", -3), ("007", 7), ("1e3", None), ("1_000", None),
                                             ("\u0663", None), ("1.0", None), ("", None), (" 1", None)])
def test_parse_int_takes_ascii_decimal_only(text: str, value: int | None) -> None:
    from wsol.data.metadata import parse_int

    assert parse_int(text) == value


@pytest.mark.parametrize(("text", "value"), [("1.5", 1.5), ("-2", -2.0), (".5", 0.5), ("3.", 3.0), ("1e3", 1000.0),
                                             ("2.5E-1", 0.25), ("nan", None), ("inf", None), ("1e400", None),
                                             ("1_0", None), ("0x10", None), ("\u0663", None), ("", None)])
def test_parse_float_takes_finite_ascii_numbers_only(text: str, value: float | None) -> None:
    from wsol.data.metadata import parse_float

    assert parse_float(text) == value


def test_read_text_line_ends_bom_and_bad_bytes(tmp_path: Path) -> None:
    from wsol.data.metadata import read_text

    path = tmp_path / "f.txt"
    path.write_bytes(b"\xef\xbb\xbfa\r\nb\rc\n\nd")
    assert read_text(path) == ["a", "b", "c", "", "d"]
    path.write_bytes(b"ok\nsecond \xff line\n")
    with pytest.raises(AnnotationError, match=r"f.txt:2: error: not UTF-8 text: byte 0xff at column 8"):
        read_text(path)
    with pytest.raises(FileNotFoundError, match="missing.txt: file not found"):
        read_text(tmp_path / "missing.txt")
    with pytest.raises(AnnotationError, match="is a directory"):
        read_text(tmp_path)


def test_rules_without_sizes_and_without_a_class_count(tmp_path: Path) -> None:
    """No image_sizes.txt: a box left of / above the image is still an error; num_classes unknown: labels must
    still fit an int32 class index (a label of 2**31 would make a classifier of 2**31 classes)."""
    folder = _write(tmp_path / "m", image_sizes="", localization="a/1.jpg,-3,0,9,7\na/2.jpg,1,2,3,4\nb/3.jpg,0,0,0,0\n")
    with pytest.raises(AnnotationError, match=r"localization.txt:1: error: 'a/1.jpg': box \(-3, 0, 9, 7\) has a "
                                              r"negative coordinate beyond the 1 px tolerance"):
        read_metadata(folder, **METADATA_READ)
    folder = _write(tmp_path / "n", image_sizes="", class_labels="a/1.jpg,0\na/2.jpg,2147483647\nb/3.jpg,2147483648\n")
    with pytest.raises(AnnotationError, match=r"class_labels.txt:3: error: 'b/3.jpg': label 2147483648 outside "
                                              r"\[0, 2147483647\] \(num_classes unknown"):
        read_metadata(folder, **METADATA_READ)
    skipped = read_metadata(folder, on_error="skip", **METADATA_READ)
    assert skipped.num_classes == 2**31 and list(skipped.skipped) == ["b/3.jpg"]


def test_unsafe_ids_raise_under_every_policy_and_cannot_be_written(tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", image_ids="a/1.jpg\n../2.jpg\nb/3.jpg\n")
    for on_error in ("raise", "skip"):
        with pytest.raises(AnnotationError, match=r"image_ids.txt:2: error: image id '../2.jpg' is not a relative "
                                                  r"path inside the image root: it climbs out"):
            read_metadata(folder, on_error=on_error, **METADATA_READ)
    with pytest.raises(ValueError, match=r"image id 'C:/x.jpg' is not a relative path .* drive letter"):
        write_metadata(Annotations([ImageRecord("C:/x.jpg", 0)], num_classes=1), tmp_path / "out")
