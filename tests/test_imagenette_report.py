"""scripts/imagenette_report.py: run dirs and committed rows together, failure groups never half re-made, moved numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import load_script
from test_report import _prediction_rows

CATS = ["wrong_class", "several_instances", "too_large", "too_small", "misplaced"]


@pytest.fixture(scope="module")
def report():
    return load_script("imagenette_report")


def _run(out: Path, name: str, loc: float, commit: str = "c0", drop: int = 0) -> None:
    """A finished run dir: paper metrics, wsolevaluation metrics and curve, predictions (the first ``drop``
    failing images made correct)."""
    run = out / name
    (run / "wsoleval").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({
        "top1_cls_err": 2.0, "top5_cls_err": 0.2, "top1_loc_err": loc, "top5_loc_err": loc, "gt_known_loc_err": loc,
        "train_seconds": 60.0, "eval_seconds": 6.0, "git_commit": commit, "image_size": 224}))
    (run / "wsoleval" / "metrics.json").write_text(json.dumps({
        "boxacc_at_tau": 60.0, "maxboxacc": 61.0, "boxacc_v2_at_tau": 58.0, "maxboxacc_v2": 59.0,
        "tau_per_fold": [0.2, 0.3], "oracle_tau": 0.25, "eval_seconds": 1.0, "git_commit": commit}))
    (run / "wsoleval" / "boxacc_curve.csv").write_text("tau,boxacc_v1_iou50\n0.0,10\n0.5,60\n0.99,5\n")
    pred = _prediction_rows()
    failing = pred.index[pred.top1_loc_correct == 0][:drop]
    pred.loc[failing, "top1_loc_correct"] = 1  # one image fewer in its failure category
    pred.to_csv(run / "predictions.csv", index=False)


def _committed(dest: Path, runs: list[tuple[str, float, str]], failures: list[dict]) -> Path:
    dest.mkdir(parents=True)
    pd.DataFrame([{"run": name, "input": 224, "top1_cls_err": 2.0, "top5_cls_err": 0.2, "top1_loc_err": loc,
                   "top5_loc_err": loc, "gt_known_loc_err": loc, "boxacc_at_tau": 60.0, "maxboxacc": 61.0,
                   "boxacc_v2_at_tau": 58.0, "maxboxacc_v2": 59.0, "oracle_tau": 0.25, "train_seconds": 9.0,
                   "eval_seconds": 1.0, "wsoleval_seconds": 1.0, "git_commit": commit}
                  for name, loc, commit in runs]).to_csv(dest / "runs.csv", index=False)
    pd.DataFrame(failures).to_csv(dest / "failures.csv", index=False)
    return dest


SVM = {"label": "lite0 svm GAP (224 px)", "n": 1, "runs": "lite0_svm_gap_s0", **dict(zip(CATS, [1.0, 2.0, 3.0, 4.0, 5.0])),
       **{f"{c}_std": float("nan") for c in CATS}, "total": 15.0}


def test_run_dirs_and_committed_rows_make_one_report(report, tmp_path: Path, capsys) -> None:
    out, dest = tmp_path / "out", tmp_path / "dest"
    _run(out, "lite0_head_gap_s0", 40.0)
    _run(out, "lite0_head_gap_s1", 41.0, drop=1)  # its wrong-class failure made correct
    committed = _committed(tmp_path / "committed", [("lite0_head_gap_s0", 40.6, "old"),  # made again: moved
                                                    ("lite0_head_gap_s1", 41.0, "old"),  # made again: same
                                                    ("lite0_svm_gap_s0", 44.6, "c1")], [SVM])
    report.main(out, dest, committed)
    printed = capsys.readouterr().out
    assert "2 runs made again beside their committed rows; 3 numbers moved" in printed
    for col in ("top1_loc_err", "top5_loc_err", "gt_known_loc_err"):
        assert f"lite0_head_gap_s0: {col} 40.6 -> 40.0 (committed old, now c0)" in printed
    runs = pd.read_csv(dest / "runs.csv").set_index("run")
    assert runs.source.to_dict() == {"lite0_head_gap_s0": "run folder", "lite0_head_gap_s1": "run folder",
                                     "lite0_svm_gap_s0": str(committed / "runs.csv")}
    assert runs.loc["lite0_svm_gap_s0", "top1_loc_err"] == 44.6
    fails = pd.read_csv(dest / "failures.csv").set_index("label")
    head = fails.loc["lite0 head GAP (224 px)"]
    # seed 0: one failure of each kind in 7 scored images (100/7 each); seed 1: no wrong-class failure
    assert head[CATS].tolist() == pytest.approx([50 / 7, 100 / 7, 100 / 7, 100 / 7, 100 / 7])
    assert head.wrong_class_std == pytest.approx((100 / 7) / 2 ** 0.5) and head.too_large_std == 0.0
    assert head.total == pytest.approx(450 / 7) and head.runs == "lite0_head_gap_s0 lite0_head_gap_s1"
    assert fails.loc["lite0 svm GAP (224 px)", CATS].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]  # carried as committed
    assert "| lite0 svm GAP (224 px) (n=1) | 1.00 | 2.00 | 3.00 | 4.00 | 5.00 | 15.00 |" in \
        (dest / "failures.md").read_text()
    assert "| lite0 | svm | gap | 224 | 1 | 2.00 | 0.20 | 44.60 |" in (dest / "imagenette.md").read_text()
    assert (dest / "boxacc_lite0_head.png").read_bytes()[:4] == b"\x89PNG"
    assert (dest / "failures.png").read_bytes()[:4] == b"\x89PNG"


def test_a_group_is_never_half_made_again(report, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(out, "lite0_head_gap_s0", 40.0)
    committed = _committed(tmp_path / "committed", [("lite0_head_gap_s1", 41.0, "c1")],
                           [{**SVM, "label": "lite0 head GAP (224 px)", "n": 2,
                             "runs": "lite0_head_gap_s0 lite0_head_gap_s1"}])
    with pytest.raises(SystemExit, match=r"lite0 head GAP \(224 px\): lite0_head_gap_s0 have run dirs, "
                                         r"lite0_head_gap_s1 only committed rows"):
        report.main(out, tmp_path / "dest", committed)


def test_committed_rows_need_a_clean_commit_and_their_failure_row(report, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(out, "lite0_head_gap_s0", 40.0)
    dirty = _committed(tmp_path / "dirty", [("lite0_svm_gap_s0", 44.6, "c1-dirty")], [SVM])
    with pytest.raises(ValueError, match=r"row lite0_svm_gap_s0.*uncommitted"):
        report.main(out, tmp_path / "dest", dirty)
    other = _committed(tmp_path / "other", [("lite0_svm_gap_s0", 44.6, "c1")], [{**SVM, "runs": "lite0_svm_gap_s9"}])
    with pytest.raises(SystemExit, match=r"lite0 svm GAP \(224 px\): no run dirs and no row of .*failures.csv"):
        report.main(out, tmp_path / "dest", other)
