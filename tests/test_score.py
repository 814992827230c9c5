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
    blacklist.write_text("2\n")  # 1-based index, as the devkit's file: b.jpg
    code, out, _ = _run(capsys, ["devkit", "--pred", str(pred), "--gt", str(gt), "--blacklist", str(blacklist)])
    assert out["top1_cls_err"] == pytest.approx(200 / 3)  # classification still counts b.jpg
    assert out["top1_loc_err"] == pytest.approx(50.0) and out["top2_loc_err"] == pytest.approx(50.0)
    assert out["n_loc_images"] == 2


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
    # image size 224x224, so the GT boxes are not rescaled; the maps are small (wsolevaluation does not check).
    gt = _metadata(
        tmp_path / "gt",
        [("x/a.jpg", 0, (224, 224), [[2, 2, 4, 3]]), ("x/b.jpg", 0, (224, 224), [[0, 0, 1, 1]])],
    )
    maps = tmp_path / "maps"
    (maps / "x").mkdir(parents=True)
    unimodal = np.zeros((4, 5))
    unimodal[1, 1:4] = 0.2
    unimodal[2, 1:4] = [0.2, 1.0, 0.6]
    np.save(maps / "x" / "a.jpg.npy", unimodal)
    np.save(maps / "x" / "b.jpg.npy", np.zeros((4, 5), dtype=np.float32))
    argv = ["scoremaps", "--scoremap-root", str(maps), "--gt", str(gt), "--cam-curve-interval", "0.25"]
    code, out, _ = _run(capsys, argv)
    assert code == 0
    # same maps as test_metrics.test_boxacc_evaluator_hand_counted
    assert out["maxboxacc"] == 50.0 and out["maxboxacc_v2"] == 50.0
    assert out["maxboxacc_v2_iou70_tau"] == 0.25 and out["n_images"] == 2
    (maps / "x" / "b.jpg.npy").unlink()
    code, _, err = _run(capsys, argv)
    assert code == 2 and "b.jpg.npy" in err and "not found" in err
    np.save(maps / "x" / "b.jpg.npy", np.full((4, 5), np.nan))
    code, _, err = _run(capsys, argv)
    assert code == 2 and "b.jpg.npy" in err and "NaN" in err
