"""The wsol-prepare command line: conversions into metadata and the dataset check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsol.conf import yaml_data_options
from wsol.data.metadata import read_metadata
from wsol.prepare import main

#: read_metadata's options as a run passes them (configs/data/wsol_metadata.yaml, their one home)
METADATA_READ = {k: yaml_data_options("wsol_metadata")[k] for k in ("box_tolerance", "max_image_pixels")}

XML = (
    "<annotation><folder>val</folder><filename>{name}</filename><size><width>{w}</width><height>{h}</height></size>"
    "<object><name>{wnid}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
    "</annotation>"
)


def _ilsvrc(tmp_path: Path) -> Path:
    root = tmp_path / "ILSVRC"
    (root / "xml").mkdir(parents=True)
    (root / "val").mkdir()
    (root / "synsets.txt").write_text("n01440764 tench\nn01443537 goldfish\n")
    for index, (wnid, box) in enumerate([("n01443537", (1, 2, 30, 20)), ("n01440764", (0, 0, 39, 29))], start=1):
        name = f"ILSVRC2012_val_{index:08d}"
        (root / "xml" / f"{name}.xml").write_text(XML.format(name=name, w=40, h=30, wnid=wnid, b=box))
        Image.new("RGB", (40, 30)).save(root / "val" / f"{name}.JPEG")
    return root


def test_devkit_xml_to_metadata_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _ilsvrc(tmp_path)
    (root / "blacklist.txt").write_text("2\n")
    out = root / "metadata" / "test"
    assert main(["devkit-xml", "--xml-dir", str(root / "xml"), "--synsets", str(root / "synsets.txt"),
                 "--blacklist", str(root / "blacklist.txt"), "--out", str(out)]) == 0
    assert "2 images, 2 boxes" in capsys.readouterr().out
    assert (out / "localization.txt").read_text() == "val/ILSVRC2012_val_00000001.JPEG,1,2,30,20\nval/ILSVRC2012_val_00000002.JPEG,0,0,39,29\n"
    assert (out / "class_labels.txt").read_text() == "val/ILSVRC2012_val_00000001.JPEG,1\nval/ILSVRC2012_val_00000002.JPEG,0\n"
    assert read_metadata(out, num_classes=2, **METADATA_READ).blacklist == {"val/ILSVRC2012_val_00000002.JPEG"}
    assert main(["check", "--root", str(root), "--images-dir", str(root), "--num-classes", "2", "--level", "decode"]) == 0
    assert "0 error(s)" in capsys.readouterr().out


def test_check_reports_every_problem_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _ilsvrc(tmp_path)
    meta = root / "metadata"
    meta.mkdir()
    (meta / "image_ids.txt").write_text(
        "val/ILSVRC2012_val_00000001.JPEG\nval/ILSVRC2012_val_00000002.JPEG\nval/missing.JPEG\nval/ILSVRC2012_val_00000001.JPEG\n"
    )
    (meta / "class_labels.txt").write_text(
        "val/ILSVRC2012_val_00000001.JPEG,1\nval/ILSVRC2012_val_00000002.JPEG,5\nval/missing.JPEG,0\n"
    )
    (meta / "image_sizes.txt").write_text(
        "val/ILSVRC2012_val_00000001.JPEG,40,30\nval/ILSVRC2012_val_00000002.JPEG,40,31\nval/missing.JPEG,40,30\n"
    )
    (meta / "localization.txt").write_text(
        "val/ILSVRC2012_val_00000001.JPEG,1,2,30,20\nval/ILSVRC2012_val_00000002.JPEG,0,0,39,29\nval/missing.JPEG,0,0,60,9\n"
    )
    assert main(["check", "--root", str(root), "--images-dir", str(root), "--num-classes", "2"]) == 1
    err = capsys.readouterr().err
    assert "image_ids.txt:4: error: duplicate image id" in err
    assert "class_labels.txt:2: error: 'val/ILSVRC2012_val_00000002.JPEG': label 5 outside [0, 1]" in err
    assert "localization.txt:3: error: 'val/missing.JPEG': box (0, 0, 60, 9) lies outside the 40x30 image" in err
    # Files are checked for the images whose annotations are fine; here the size of image 2 is wrong too,
    # but its label error already excludes it. A missing file on an otherwise good line:
    (meta / "class_labels.txt").write_text(
        "val/ILSVRC2012_val_00000001.JPEG,1\nval/ILSVRC2012_val_00000002.JPEG,1\nval/missing.JPEG,0\n"
    )
    (meta / "localization.txt").write_text(
        "val/ILSVRC2012_val_00000001.JPEG,1,2,30,20\nval/ILSVRC2012_val_00000002.JPEG,0,0,39,29\nval/missing.JPEG,0,0,6,9\n"
    )
    (meta / "image_ids.txt").write_text("val/ILSVRC2012_val_00000001.JPEG\nval/ILSVRC2012_val_00000002.JPEG\nval/missing.JPEG\n")
    assert main(["check", "--root", str(root), "--images-dir", str(root), "--num-classes", "2"]) == 1
    err = capsys.readouterr().err
    assert f"{root / 'val' / 'missing.JPEG'}: error: file not found" in err
    assert "ILSVRC2012_val_00000002.JPEG: error: size 40x30 differs from the metadata size 40x31" in err


def test_kaggle_needs_sizes_from_images_and_skip_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _ilsvrc(tmp_path)
    (root / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\nILSVRC2012_val_00000001,n01443537 1 2 30 20\nILSVRC2012_val_00000002,n01440764 0 0 45 29\n"
    )
    args = ["kaggle", "--csv", str(root / "LOC_val_solution.csv"), "--synsets", str(root / "synsets.txt"),
            "--images-dir", str(root), "--out", str(tmp_path / "out")]
    # Image 2's box reaches x = 45 in a 40-pixel-wide image (known only from the image header).
    assert main(args) == 1
    assert "lies outside the 40x30 image" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main([*args, "--skip-bad"]) == 0
    annotations = read_metadata(tmp_path / "out", num_classes=2, **METADATA_READ)
    assert [r.image_id for r in annotations.records] == ["val/ILSVRC2012_val_00000001.JPEG"]
    assert annotations.records[0].size == (40, 30)


def test_cub_conversion(tmp_path: Path) -> None:
    root = tmp_path / "CUB_200_2011"
    (root / "images" / "001.A").mkdir(parents=True)
    Image.new("RGB", (50, 40)).save(root / "images" / "001.A" / "x.jpg")
    Image.new("RGB", (50, 40)).save(root / "images" / "001.A" / "y.jpg")
    (root / "images.txt").write_text("1 001.A/x.jpg\n2 001.A/y.jpg\n")
    (root / "image_class_labels.txt").write_text("1 1\n2 1\n")
    (root / "train_test_split.txt").write_text("1 0\n2 1\n")
    (root / "bounding_boxes.txt").write_text("1 10.0 5.0 39.0 34.0\n2 0 0 1 1\n")
    assert main(["cub", "--cub-root", str(root), "--split", "test", "--out", str(tmp_path / "out")]) == 0
    annotations = read_metadata(tmp_path / "out", num_classes=200, **METADATA_READ)
    assert len(annotations) == 1 and annotations.records[0].size == (50, 40)
    np.testing.assert_array_equal(annotations.records[0].boxes, [[10, 5, 49, 39]])


def test_devkit_mat_conversion_with_reference(tmp_path: Path) -> None:
    root = _ilsvrc(tmp_path)
    assert main(["devkit-xml", "--xml-dir", str(root / "xml"), "--synsets", str(root / "synsets.txt"), "--out", str(root / "ref")]) == 0
    import scipy.io

    rec = np.zeros((1, 2), dtype=[("objects", "O")])
    for index, (devkit_id, box) in enumerate([(7, (1, 2, 30, 20)), (3, (0, 0, 39, 29))]):
        objects = np.zeros((1, 1), dtype=[("label", "O"), ("bbox", "O")])
        objects[0, 0] = (np.array([[devkit_id]], dtype=np.uint16), np.array([box], dtype=np.uint16))
        rec[0, index] = (objects,)
    scipy.io.savemat(root / "gt.mat", {"rec": rec})
    assert main(["devkit-mat", "--mat", str(root / "gt.mat"), "--reference", str(root / "ref"), "--num-classes", "2",
                 "--out", str(root / "out")]) == 0
    assert (root / "out" / "localization.txt").read_text() == (root / "ref" / "localization.txt").read_text()
    assert (root / "out" / "class_labels.txt").read_text() == (root / "ref" / "class_labels.txt").read_text()
    assert main(["devkit-mat", "--mat", str(root / "gt.mat"), "--out", str(root / "o2")]) == 1


def test_check_shared_mini_set(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--root", str(shared_data / "ilsvrc_val_mini" / "original"), "--num-classes", "1000"]) == 0
    assert "20 images, 29 boxes" in capsys.readouterr().out


def test_rerun_into_the_same_out_needs_force_and_leaves_no_stale_blacklist(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = _ilsvrc(tmp_path)
    (root / "blacklist.txt").write_text("2\n")
    out = root / "metadata" / "test"
    base = ["devkit-xml", "--xml-dir", str(root / "xml"), "--synsets", str(root / "synsets.txt"), "--out", str(out)]
    assert main(base + ["--blacklist", str(root / "blacklist.txt")]) == 0
    assert (out / "blacklist.txt").is_file()
    capsys.readouterr()
    # again without the blacklist: refused without --force (nothing changed) ...
    assert main(base) == 1
    assert f"error: {out} already holds metadata (image_ids.txt, class_labels.txt, image_sizes.txt, " \
           "localization.txt, blacklist.txt); pass --force to replace it" in capsys.readouterr().err
    assert read_metadata(out, num_classes=2, **METADATA_READ).blacklist == {"val/ILSVRC2012_val_00000002.JPEG"}
    # ... and with --force the folder is the new conversion: the old blacklist would have dropped image 2
    assert main(base + ["--force"]) == 0
    assert not (out / "blacklist.txt").exists()
    assert read_metadata(out, num_classes=2, **METADATA_READ).blacklist == frozenset()


def test_unwritable_out_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _ilsvrc(tmp_path)
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "metadata"  # under a regular file: cannot be created (as root too)
    assert main(["devkit-xml", "--xml-dir", str(root / "xml"), "--synsets", str(root / "synsets.txt"),
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {out}:") and "Traceback" not in err
