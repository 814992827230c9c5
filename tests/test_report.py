"""Report: collecting runs, paper columns, the summary table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from wsol.report import add_paper_columns, collect_runs, format_summary, main


def _write(path: Path, row: dict) -> None:
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps(row))


def test_collect_and_paper_columns(tmp_path: Path) -> None:
    base = {"split": "test", "protocol": "paper", "seed": 0, "n_images": 50000, "top1_loc_err": 58.1}
    _write(tmp_path / "a", {**base, "dataset": "ilsvrc", "arch": "googlenet_gap", "pool": "gap"})
    _write(tmp_path / "b", {**base, "dataset": "ilsvrc", "arch": "googlenet_gap", "pool": "gmp"})
    _write(tmp_path / "c", {**base, "dataset": "synthetic", "arch": "googlenet_gap", "pool": "gap"})
    _write(tmp_path / "d", {**base, "dataset": "ilsvrc", "arch": "googlenet_gap", "pool": "gap",
                            "protocol": "wsolevaluation"})
    df = add_paper_columns(collect_runs([tmp_path])).set_index("run_dir")
    assert df.loc[str(tmp_path / "a"), "paper_top1_loc_err"] == 56.40  # Table 2, GoogLeNet-GAP
    assert df.loc[str(tmp_path / "b"), "paper_top5_loc_err"] == 45.26  # Table 2, GoogLeNet-GMP
    assert math.isnan(df.loc[str(tmp_path / "c"), "paper_top1_loc_err"])  # not ILSVRC
    assert math.isnan(df.loc[str(tmp_path / "d"), "paper_top1_loc_err"])  # other protocol
    main([str(tmp_path), "--out", str(tmp_path / "out" / "study")])
    md = (tmp_path / "out" / "study.md").read_text()
    assert "paper_top1_loc_err" in md and "56.40" in md


def test_collect_runs_empty(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        collect_runs([tmp_path])


def test_format_summary_lists_present_metrics() -> None:
    text = format_summary({"dataset": "synthetic", "split": "test", "n_images": 3, "arch": "small_cnn",
                           "pool": "gap", "protocol": "paper", "seed": 0, "top1_loc_err": 12.345})
    assert "top1_loc_err         12.35" in text and "maxboxacc" not in text


def test_boxacc_curves_are_plotted(tmp_path: Path) -> None:
    from wsol.report import plot_boxacc_curves

    run = tmp_path / "r"
    _write(run, {"arch": "small_cnn", "pool": "gap", "dataset": "synthetic"})
    (run / "boxacc_curve.csv").write_text("tau,boxacc_v1_iou50,boxacc_v2_iou70\n0.0,10,5\n0.5,40,20\n")
    assert plot_boxacc_curves([tmp_path], tmp_path / "c.png") == 1
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert plot_boxacc_curves([tmp_path / "r" / "none"], tmp_path / "d.png") == 0
