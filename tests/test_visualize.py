"""Figures: overlay drawing on arrays, image selection, curves and bars, and ``wsol-visualize`` on a tiny
generated run dir (synthetic images, a CAM store written with CAMStoreWriter, a predictions.csv)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from wsol.report import FAILURE_CATEGORIES
from wsol.report import main as report_main
from wsol.report.overlays import select_predictions
from wsol.report.visualize_cli import main
from wsol.visualize import (BoxAccCurves, OverlayPanel, draw_boxacc_curves, draw_failure_breakdown,
                            draw_overlay_grid, figure_to_array, render_overlay)


def _red(rgb: np.ndarray) -> int:
    return int(((rgb[..., 0] > 200) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)).sum())


def _green(rgb: np.ndarray) -> int:
    return int(((rgb[..., 1] > 180) & (rgb[..., 0] < 80) & (rgb[..., 2] < 80)).sum())


# ----------------------------------------------------------------------------- drawing on arrays
def test_render_overlay_returns_rgb_of_the_asked_size() -> None:
    rng = np.random.default_rng(0)
    image = (rng.random((48, 64, 3)) * 120).astype(np.uint8)  # dark: box colours stand out
    yy, xx = np.mgrid[:48, :64]
    heat = np.exp(-((xx - 20) ** 2 + (yy - 20) ** 2) / 50.0)
    heat = (heat - heat.min()) / (heat.max() - heat.min())
    rgb = render_overlay(image, heat, np.array([[5, 5, 30, 30]]), np.array([10, 12, 25, 28]), 0.42,
                         [("cat", 0.8), ("dog", 0.1)], gt_class="cat", title="img.png", inches=3.0, dpi=100)
    assert rgb.dtype == np.uint8 and rgb.shape == (370, 300, 3)  # (3 + 0.7 in for the text) x 3 in at 100 dpi
    assert _red(rgb) > 50 and _green(rgb) > 50  # the predicted (red) and GT (green) boxes are drawn
    no_boxes = render_overlay(image, None, np.zeros((0, 4)), None, None, [], inches=3.0, dpi=100)
    assert no_boxes.shape == (370, 300, 3) and _green(no_boxes) == 0


@pytest.mark.parametrize("heat, match", [
    (np.zeros((10, 10)), "does not match the image"),
    (np.full((48, 64), 1.5), r"in \[0, 1\]"),
    (np.full((48, 64), np.nan), r"finite"),
])
def test_render_overlay_rejects_bad_heat_maps(heat: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        render_overlay(np.zeros((48, 64, 3), np.uint8), heat, np.zeros((0, 4)), None, None, [])


def test_render_overlay_rejects_non_rgb_images() -> None:
    with pytest.raises(ValueError, match=r"uint8 \[H, W, 3\]"):
        render_overlay(np.zeros((48, 64), np.uint8), None, np.zeros((0, 4)), None, None, [])


def test_overlay_grid_layout() -> None:
    panel = OverlayPanel(np.zeros((20, 30, 3), np.uint8), None, np.array([[1, 1, 5, 5]]), None, None, [("a", None)])
    fig = draw_overlay_grid([panel] * 5, ncols=3, panel_inches=2.0)
    assert len(fig.axes) == 5
    assert tuple(fig.get_size_inches()) == pytest.approx((6.0, 2 * 2.7 + 0.3))
    with pytest.raises(ValueError, match="no panel"):
        draw_overlay_grid([])


def test_boxacc_curves_mark_chosen_tau_and_band() -> None:
    tau = np.linspace(0, 0.99, 100)
    gap = BoxAccCurves("pool=gap", tau, np.stack([50 * np.sin(np.pi * tau), 55 * np.sin(np.pi * tau)]), [0.5])
    gmp = BoxAccCurves("pool=gmp", tau, 40 * np.sin(np.pi * tau)[None], [0.3, 0.4])
    fig = draw_boxacc_curves([gap, gmp])
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 2 + 3  # one mean line per group, one dot per chosen tau
    dot = lines[1]
    assert dot.get_xdata()[0] == pytest.approx(0.5) and dot.get_ydata()[0] == pytest.approx(52.5)  # on the mean
    assert len(ax.collections) == 1  # a std band only for the group with several runs
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["pool=gap (n=2), tau 0.500", "pool=gmp (n=1), tau 0.300, 0.400"]
    assert figure_to_array(fig).ndim == 3
    with pytest.raises(ValueError, match="expected"):
        draw_boxacc_curves([BoxAccCurves("bad", tau, np.zeros((2, 5)))])


def test_failure_breakdown_is_a_readable_table() -> None:
    means = np.arange(10, dtype=float).reshape(2, 5)
    stds = np.full((2, 5), np.nan)
    stds[1, 2] = 0.25
    fig = draw_failure_breakdown(["gap", "gmp"], means, stds)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    # every cell's value (± std only where there is one), and each row's total = the top-1 localization error
    assert texts == ["0.0", "1.0", "2.0", "3.0", "4.0", "10.0", "5.0", "6.0", "7.0 ± 0.2", "8.0", "9.0", "35.0"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["gap", "gmp"]
    assert ax.get_xticklabels()[-1].get_text() == "total = top-1 loc err"
    with pytest.raises(ValueError, match=r"\[2, 5\]"):
        draw_failure_breakdown(["gap", "gmp"], np.zeros((2, 4)))
    # a whole study: the figure grows with the rows instead of squeezing them (about 0.28 in per row)
    fig = draw_failure_breakdown([f"lite{i % 3} head GAP (224 px) run {i}" for i in range(25)], np.ones((25, 5)))
    assert fig.get_size_inches()[1] >= 25 * 0.28 and len(fig.axes[0].get_yticklabels()) == 25


# ----------------------------------------------------------------------------- selection
def _predictions() -> pd.DataFrame:
    return pd.DataFrame({
        "image_id": list("abcde"), "box_iou": [0.9, 0.1, 0.4, float("nan"), 0.1],
        "gt_known_iou": [0.2, 0.8, 0.6, float("nan"), 0.3], "prob1": [0.9, 0.3, 0.8, 0.5, 0.95],
        "top1_loc_correct": [1, 0, 0, float("nan"), 0], "gt_known_correct": [0, 1, 1, 0, 0],
        "top1_cls_correct": [1, 1, 1, 1, 0], "gt_boxes": ["1 1 5 5"] * 3 + [""] + ["1 1 5 5"],
        "box_x0": [1, 1, 1, 1, 1], "box_y0": [1, 1, 1, 1, 1], "box_x1": [5, 2, 3, 5, 5], "box_y1": [5, 2, 3, 5, 5],
    })


def test_select_predictions_orders() -> None:
    df = _predictions()
    assert select_predictions(df, 3, "worst")["image_id"].tolist() == ["b", "e", "c"]  # ties keep file order
    assert select_predictions(df, 2, "best")["image_id"].tolist() == ["a", "c"]
    assert select_predictions(df, 9, "failures")["image_id"].tolist() == ["e", "c", "b"]  # confident first
    assert select_predictions(df, 9, "worst", which="gt_known")["image_id"].tolist() == ["a", "e", "c", "b"]
    assert select_predictions(df, 9, "failures", which="gt_known")["image_id"].tolist() == ["e", "a", "d"]
    sample = select_predictions(df, 3, "random", seed=1)["image_id"].tolist()
    assert len(set(sample)) == 3 and sample == select_predictions(df, 3, "random", seed=1)["image_id"].tolist()
    assert select_predictions(df, 9, "failures", category="too_small")["image_id"].tolist() == ["c", "b"]
    with pytest.raises(ValueError, match="unknown selection"):
        select_predictions(df, 3, "median")
    with pytest.raises(ValueError, match="unknown failure category"):
        select_predictions(df, 3, "failures", category="blurry")


# ----------------------------------------------------------------------------- a tiny run dir
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run dir as the evaluation writes it: config.yaml (the real composed config, val split), metrics.json,
    predictions.csv of 6 val images, and a CAM store of those 6 images (top-2 + GT class, 4x4 CAMs)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from wsol import CONFIG_DIR
    from wsol.boxes import box_iou
    from wsol.conf import yaml_default
    from wsol.evaluation.store import CAMStoreWriter
    from wsol.config import source_from_cfg

    run = tmp_path_factory.mktemp("run")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("run", overrides=["eval.split=val"])
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (run / "metrics.json").write_text(json.dumps({"dataset": "synthetic", "split": "val", "protocol": "paper"}))
    records = source_from_cfg(cfg.data, "val", cfg.data.num_classes).annotations.records
    indices = [0, 1, 2, 3, 4, 5]
    n_classes = cfg.data.num_classes
    labels = np.array([records[i].label for i in indices])
    # top-2 predictions: right for images 0-3, wrong for 4-5; then the GT class
    top1 = np.where(np.arange(6) < 4, labels, (labels + 1) % n_classes)
    classes = np.stack([top1, (top1 + 2) % n_classes, labels], 1)
    scores = np.stack([np.linspace(0.9, 0.4, 6), np.full(6, 0.05), np.full(6, 0.1)], 1)
    cams = torch.zeros(6, 3, 4, 4)
    cams[:, :, 1, 2] = 5.0  # a peak in every map
    with CAMStoreWriter(run / "cams", meta={"topk": 2, "split": "val"},
                        shard_size=yaml_default("eval/default", "shard_size")) as writer:
        writer.add(torch.tensor(indices), torch.tensor([records[i].size for i in indices]), torch.as_tensor(classes),
                   torch.as_tensor(scores, dtype=torch.float32), cams)
    rows = []
    for j, i in enumerate(indices):
        gts = records[i].boxes
        box = np.array([8, 8, 40, 40.0]) if j % 2 else gts[0]  # odd images: a fixed box; even: the GT box
        iou = float(box_iou(box, gts).max())
        cls_ok = int(top1[j] == labels[j])
        rows.append({"image_id": records[i].image_id, "label": labels[j], "width": 64, "height": 64,
                     "pred1": top1[j], "pred2": classes[j, 1], "prob1": scores[j, 0],
                     **dict(zip(("box_x0", "box_y0", "box_x1", "box_y1"), box)), "box_iou": iou,
                     **dict(zip(("gt_known_x0", "gt_known_y0", "gt_known_x1", "gt_known_y1"), gts[0])),
                     "gt_known_iou": 1.0, "gt_boxes": ";".join(" ".join(f"{v:g}" for v in b) for b in gts),
                     "top1_cls_correct": cls_ok, "top1_loc_correct": int(cls_ok and iou >= 0.5),
                     "gt_known_correct": 1})
    pd.DataFrame(rows).to_csv(run / "predictions.csv", index=False)
    return run


def test_visualize_writes_a_grid(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "grid.png"
    main([str(run_dir), "--n", "4", "--select", "worst", "--out", str(out)])
    captured = capsys.readouterr()
    assert f"wrote {out}" in captured.out and "no CAM store" not in captured.err
    with Image.open(out) as png:
        assert png.size == (1320, 480)  # 4 panels of 2.2 in in one row, (2.2 + 0.7 + 0.3) in high, 150 dpi
        rgb = np.asarray(png.convert("RGB"))
    assert _red(rgb) > 100 and _green(rgb) > 100
    with pytest.raises(SystemExit) as exc:  # never replaced without --force
        main([str(run_dir), "--n", "4", "--out", str(out)])
    assert exc.value.code == 2 and "refusing to overwrite" in capsys.readouterr().err
    main([str(run_dir), "--n", "6", "--select", "random", "--which", "gt_known", "--ncols", "3", "--out", str(out),
          "--force"])
    with Image.open(out) as png:
        assert png.size == (990, 2 * 435 + 45)  # 2 rows of 3


def test_visualize_without_cam_store_draws_boxes_only(run_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare, ignore=shutil.ignore_patterns("cams"))
    main([str(bare), "--n", "2", "--select", "failures"])
    captured = capsys.readouterr()
    assert "no CAM store" in captured.err and "drawing boxes only" in captured.err
    assert (bare / "overlays_failures.png").read_bytes()[:4] == b"\x89PNG"


def test_visualize_refuses_a_foreign_cam_store(run_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    pred = pd.read_csv(other / "predictions.csv")
    pred["pred1"] = (pred["pred1"] + 1) % 8
    pred.to_csv(other / "predictions.csv", index=False)
    with pytest.raises(SystemExit):
        main([str(other), "--n", "2", "--out", str(tmp_path / "x.png")])
    assert "is not of this predictions.csv" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_report_overlays_and_failures_of_a_run(run_dir: Path, tmp_path: Path) -> None:
    report_main([str(run_dir), "--out", str(tmp_path / "rep"), "--overlays", "2"])
    grids = list((tmp_path / "rep_overlays").glob("*.png"))
    assert [g.name for g in grids] == [f"{run_dir.name}.png"]
    failures = pd.read_csv(tmp_path / "rep_failures.csv")
    pred = pd.read_csv(run_dir / "predictions.csv")
    expected_err = 100.0 * (1 - pred["top1_loc_correct"].mean())
    assert failures["top1_loc_err"].iloc[0] == pytest.approx(expected_err)
    assert failures["wrong_class"].iloc[0] == pytest.approx(100 * 2 / 6)  # images 4 and 5
    assert sum(failures[c].iloc[0] for c in FAILURE_CATEGORIES) == pytest.approx(expected_err)


def test_overlay_panels_from_the_run(run_dir: Path) -> None:
    from wsol.report.overlays import load_overlay_panels

    pred = pd.read_csv(run_dir / "predictions.csv", dtype={"gt_boxes": str})
    panels, notes = load_overlay_panels(run_dir, pred)
    assert notes == [] and len(panels) == 6
    first = panels[0]
    assert first.image.shape == (64, 64, 3) and first.image.dtype == np.uint8
    heat = first.heatmap
    assert heat is not None and heat.shape == (64, 64) and heat.min() == 0.0 and heat.max() == 1.0
    # the stored 4x4 CAM peaks at row 1, column 2: bilinear x16 puts the peak at rows 23-24, columns 39-40
    rows, cols = np.nonzero(heat == heat.max())
    assert set(rows) <= {23, 24} and set(cols) <= {39, 40}
    assert [p for _, p in first.top_classes] == pytest.approx([0.9, 0.05])  # top-k probabilities from the store
    assert first.title == pred["image_id"][0] and first.gt_boxes.shape[1] == 4
    assert [p.note for p in panels[4:]] == ["wrong class", "wrong class"]  # images 4 and 5: wrong top-1 class
    assert panels[0].note == "correct" and panels[0].iou == pytest.approx(1.0)  # even images: the GT box
    known, _ = load_overlay_panels(run_dir, pred.head(1), which="gt_known")
    gt_known_box = pred.loc[0, ["gt_known_x0", "gt_known_y0", "gt_known_x1", "gt_known_y1"]].tolist()
    assert known[0].note == "" and known[0].pred_box.tolist() == gt_known_box


def test_drawing_does_not_import_the_report_or_the_config() -> None:
    # the report draws through wsol.visualize, never the other way round (no import circle)
    code = ("import sys, wsol.visualize as v; print(sorted(m for m in sys.modules if m.startswith(('wsol.report', "
            "'wsol.config'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]"

