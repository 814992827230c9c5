"""wsol-score CLI on tiny metadata directories built in tmp_path; numbers counted by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wsol.score import main


def _metadata(root: Path, rows: list[tuple[str, int, tuple[int, int], list[list[float]]]]) -> Path:
    meta = root / "metadata"
    meta.mkdir(parents=True)
    (meta / "image_ids.txt").write_text("".join(f"{i}\n" for i, *_ in rows))
    (meta / "class_labels.txt").write_text("".join(f"{i},{label}\n" for i, label, *_ in rows))
    (meta / "image_sizes.txt").write_text("".join(f"{i},{w},{h}\n" for i, _, (w, h), _ in rows))
    (meta / "localization.txt").write_text(
        "".join(f"{i},{','.join(str(v) for v in b)}\n" for i, _, _, boxes in rows for b in boxes)
    )
    return root


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else {}), out.err


def test_devkit_hand_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = _metadata(
        tmp_path / "gt",
        [
            ("a.jpg", 3, (100, 100), [[0, 0, 9, 9], [50, 50, 59, 59]]),
            ("b.jpg", 1, (100, 100), [[10, 10, 19, 19]]),
            ("c.jpg", 2, (100, 100), [[0, 0, 99, 99]]),
        ],
    )
    pred = tmp_path / "pred.txt"
    pred.write_text(
        "3 50 50 59 54 1 0 0 9 9\n"  # top-1: class ok, IoU 50/100 with the 2nd box -> correct
        "0 10 10 19 19 1 10 10 19 19 2 0 0 1 1\n"  # class 1 second: cls top-1 wrong, loc top-2 ok
        "5 0 0 99 99 4 0 0 99 99 2 0 0 99 99 2 0 0 0 0 2 0 0 0 0 7 0 0 1 1\n"  # 6th group ignored
    )
    code, out, _ = _run(capsys, ["devkit", "--pred", str(pred), "--gt", str(gt)])
    assert code == 0
    assert out["top1_cls_err"] == pytest.approx(200 / 3) and out["top1_loc_err"] == pytest.approx(200 / 3)
    assert out["top2_cls_err"] == pytest.approx(100 / 3) and out["top2_loc_err"] == pytest.approx(100 / 3)
    assert out["top3_cls_err"] == 0.0 and out["top5_loc_err"] == 0.0
    blacklist = tmp_path / "bl.txt"
    blacklist.write_text("b.jpg\n")  # an image id
    code, out, _ = _run(capsys, ["devkit", "--pred", str(pred), "--gt", str(gt), "--blacklist", str(blacklist)])
    assert out["top1_cls_err"] == pytest.approx(200 / 3)  # classification still counts b.jpg
    assert out["top1_loc_err"] == pytest.approx(50.0) and out["top2_loc_err"] == pytest.approx(50.0)
    assert out["n_loc_images"] == 2


def test_devkit_blacklist_numbers_name_ilsvrc_val_images_not_lines(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # a subset of ILSVRC2012 val: the devkit's blacklist number N is ILSVRC2012_val_<N> (as wsol-evaluate reads it),
    # not the N-th image of the subset; numbers of images the subset does not hold do not apply
    ids = ["val/ILSVRC2012_val_00000005.JPEG", "val/ILSVRC2012_val_00000007.JPEG", "val/ILSVRC2012_val_00049999.JPEG"]
    gt = _metadata(tmp_path / "gt", [(i, 0, (100, 100), [[0, 0, 9, 9]]) for i in ids])
    pred = tmp_path / "pred.txt"
    pred.write_text("0 0 0 9 9\n0 50 50 59 59\n0 0 0 9 9\n")  # the 2nd image's box is wrong
    blacklist = tmp_path / "ILSVRC2014_clsloc_validation_blacklist.txt"
    blacklist.write_text("2\n7\n49999\n")  # "2" was the 2nd line (image 7) before; 49999 was refused
    code, out, err = _run(capsys, ["devkit", "--pred", str(pred), "--gt", str(gt), "--blacklist", str(blacklist)])
    assert code == 0, err
    assert out["n_loc_images"] == 1 and out["top1_loc_err"] == 0.0  # only image 5 is scored for localization
    code, out, _ = _run(capsys, ["devkit", "--pred", str(pred), "--gt", str(gt)])
    assert out["n_loc_images"] == 3 and out["top1_loc_err"] == pytest.approx(100 / 3)
    # one reader for every tool: the ILSVRC data set and Imagenette read the same file the same way
    from wsol.data.formats import match_blacklist, read_blacklist

    assert match_blacklist(read_blacklist(blacklist), ids) == ids[1:]
    assert match_blacklist(read_blacklist(blacklist), ["val/n01440764/ILSVRC2012_val_00000007.JPEG"]) == [
        "val/n01440764/ILSVRC2012_val_00000007.JPEG"]
    blacklist.write_text("0\n")
    code, _, err = _run(capsys, ["devkit", "--pred", str(pred), "--gt", str(gt), "--blacklist", str(blacklist)])
    assert code == 2 and "ILSVRC2014_clsloc_validation_blacklist.txt:1: expected a 1-based ILSVRC2012 val image" in err


def test_devkit_gt_root_finds_the_split_folder_as_wsol_evaluate_does(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    meta = _metadata(tmp_path / "gt", [("a.jpg", 0, (10, 10), [[0, 0, 9, 9]])])
    root = tmp_path / "dataset"
    (root / "metadata").mkdir(parents=True)
    (meta / "metadata").rename(root / "metadata" / "val")
    pred = tmp_path / "pred.txt"
    pred.write_text("0 0 0 9 9\n")
    code, out, err = _run(capsys, ["devkit", "--pred", str(pred), "--gt", str(root), "--split", "val"])
    assert code == 0 and out["top1_loc_err"] == 0.0, err
    code, _, err = _run(capsys, ["devkit", "--pred", str(pred), "--gt", str(root)])  # no metadata/test
    assert code == 2 and "metadata/test" in err


def test_devkit_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = _metadata(tmp_path / "gt", [("a.jpg", 0, (10, 10), [[0, 0, 9, 9]]), ("b.jpg", 1, (10, 10), [[0, 0, 9, 9]])])
    pred = tmp_path / "pred.txt"
    pred.write_text("0 0 0 9 9\n")
    code, _, err = _run(capsys, ["devkit", "--pred", str(pred), "--gt", str(gt)])
    assert code == 2 and "pred.txt" in err and "1 lines" in err
    pred.write_text("0 0 0 9 9\n1 0 0 9\n")
    code, _, err = _run(capsys, ["devkit", "--pred", str(pred), "--gt", str(gt)])
    assert code == 2 and "pred.txt:2" in err
    pred.write_text("0 0 0 9 9\nx 0 0 9 9\n")
    code, _, err = _run(capsys, ["devkit", "--pred", str(pred), "--gt", str(gt)])
    assert code == 2 and "pred.txt:2" in err and "malformed" in err


def test_scoremaps_hand_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Image size 224x224, so the GT boxes are not rescaled; the maps are the 4x5 maps of
    # test_metrics.test_boxacc_evaluator_hand_counted in the corner of a zero 224x224 map (same contours).
    gt = _metadata(
        tmp_path / "gt",
        [("x/a.jpg", 0, (224, 224), [[2, 2, 4, 3]]), ("x/b.jpg", 0, (224, 224), [[0, 0, 1, 1]])],
    )
    maps = tmp_path / "maps"
    (maps / "x").mkdir(parents=True)
    unimodal = np.zeros((224, 224))
    unimodal[1, 1:4] = 0.2
    unimodal[2, 1:4] = [0.2, 1.0, 0.6]
    np.save(maps / "x" / "a.jpg.npy", unimodal)
    np.save(maps / "x" / "b.jpg.npy", np.zeros((224, 224), dtype=np.float32))
    argv = ["scoremaps", "--scoremap-root", str(maps), "--gt", str(gt), "--cam-curve-interval", "0.25"]
    code, out, _ = _run(capsys, argv)
    assert code == 0
    assert out["maxboxacc"] == 50.0 and out["maxboxacc_v2"] == 50.0
    assert out["maxboxacc_v2_iou70_tau"] == 0.25 and out["n_images"] == 2
    # --gt may also name the metadata folder itself.
    code, again, _ = _run(capsys, [*argv[:4], str(gt / "metadata"), *argv[5:]])
    assert code == 0 and again == out
    (maps / "x" / "b.jpg.npy").unlink()
    code, _, err = _run(capsys, argv)
    assert code == 2 and "b.jpg.npy" in err and "not found" in err
    np.save(maps / "x" / "b.jpg.npy", np.full((224, 224), np.nan))
    code, _, err = _run(capsys, argv)
    assert code == 2 and "b.jpg.npy" in err and "NaN" in err


def test_scoremaps_rescale_gt_boxes_from_image_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 448x112 image: its box (100, 20, 299, 59) lands on int(x * 224 / 448), int(y * 224 / 112) = (50, 40,
    149, 118) of the 224 grid; a map lighting exactly that rectangle scores 100, one lighting the unscaled box
    (the 'forgot to resize' bug) scores 0 at IoU 0.5."""
    gt = _metadata(tmp_path / "gt", [("a.jpg", 0, (448, 112), [[100, 20, 299, 59]])])
    maps = tmp_path / "maps"
    maps.mkdir()
    argv = ["scoremaps", "--scoremap-root", str(maps), "--gt", str(gt), "--cam-curve-interval", "0.5"]
    right = np.zeros((224, 224))
    right[40:119, 50:150] = 1.0
    np.save(maps / "a.jpg.npy", right)
    code, out, _ = _run(capsys, argv)
    assert code == 0 and out["maxboxacc"] == 100.0 and out["maxboxacc_v2_iou70"] == 100.0
    wrong = np.zeros((224, 224))
    wrong[20:60, 100:224] = 1.0
    np.save(maps / "a.jpg.npy", wrong)
    code, out, _ = _run(capsys, argv)
    assert code == 0 and out["maxboxacc"] == 0.0


def test_scoremaps_refuse_what_wsol_evaluate_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One reader: ground truth that wsol-prepare check / wsol-evaluate refuse is refused, naming file and line."""
    gt = _metadata(tmp_path / "gt", [("a.jpg", 0, (10, 10), [[0, 0, 9, 9]]), ("b.jpg", 1, (10, 10), [[5, 5, 2, 2]])])
    maps = tmp_path / "maps"
    maps.mkdir()
    for name in ("a", "b"):
        np.save(maps / f"{name}.jpg.npy", np.zeros((224, 224)))
    code, _, err = _run(capsys, ["scoremaps", "--scoremap-root", str(maps), "--gt", str(gt)])
    assert code == 2 and "localization.txt:2: error: 'b.jpg': box (5, 5, 2, 2) is inverted" in err
    pred = tmp_path / "pred.txt"
    pred.write_text("0 0 0 9 9\n1 0 0 9 9\n")
    code, _, err = _run(capsys, ["devkit", "--pred", str(pred), "--gt", str(gt)])
    assert code == 2 and "localization.txt:2" in err and "inverted" in err


@pytest.mark.parametrize("subset", ["acuity227", "crop224"])
def test_shared_reference_metadata_scores(shared_data: Path, subset: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The reference suite's own files keep reading (float boxes of rescaled images included): each image's own
    GT box, drawn as a 0/1 map on the 224 grid, scores 100 MaxBoxAcc; the devkit mode scores perfect guesses 0."""
    from wsol.conf import yaml_data_options
    from wsol.data.metadata import read_metadata
    from wsol.boxes import resize_boxes

    root = shared_data / "ilsvrc_val_mini" / subset
    options = yaml_data_options("wsol_metadata")
    records = read_metadata(root / "metadata", box_tolerance=options["box_tolerance"],
                            max_image_pixels=options["max_image_pixels"]).records
    maps = tmp_path / "maps"
    for record in records:
        scoremap = np.zeros((224, 224), dtype=np.float32)
        x0, y0, x1, y1 = resize_boxes(record.boxes[:1], record.size, (224, 224), truncate=True)[0]
        scoremap[y0:y1 + 1, x0:x1 + 1] = 1.0
        path = maps / f"{record.image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, scoremap)
    code, out, err = _run(capsys, ["scoremaps", "--scoremap-root", str(maps), "--gt", str(root), "--num-classes",
                                   "1000", "--cam-curve-interval", "0.5"])
    assert code == 0, err
    assert out["n_images"] == len(records) and out["maxboxacc"] == 100.0
    pred = tmp_path / "pred.txt"
    pred.write_text("".join(f"{r.label} {' '.join(str(v) for v in r.boxes[0])}\n" for r in records))
    code, out, err = _run(capsys, ["devkit", "--pred", str(pred), "--gt", str(root), "--num-classes", "1000"])
    assert code == 0, err
    assert out["top1_cls_err"] == 0.0 and out["top1_loc_err"] == 0.0
