"""scripts/methods_report.py: grouping, seed statistics, differences from CAM, the committed CAM seeds, verdicts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from conftest import load_script

@pytest.fixture(scope="module")
def report():
    return load_script("methods_report")


def _run(out: Path, name: str, v2_at_tau: float, loc: float, commit: str = "abc123") -> None:
    run = out / name
    (run / "wsoleval").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({
        "top1_cls_err": 2.0, "top5_cls_err": 0.2, "top1_loc_err": loc, "top5_loc_err": loc - 1, "gt_known_loc_err": loc,
        "train_seconds": 60.0, "eval_seconds": 6.0, "git_commit": commit, "n_images": 500}))
    (run / "wsoleval" / "metrics.json").write_text(json.dumps({
        "boxacc_at_tau": v2_at_tau + 1, "maxboxacc": v2_at_tau + 2, "boxacc_v2_at_tau": v2_at_tau,
        "maxboxacc_v2": v2_at_tau + 1, "oracle_tau": 0.2, "eval_seconds": 1.0, "git_commit": commit}))


def _committed(path: Path, rows: list[tuple[str, float, str]]) -> Path:
    pd.DataFrame([{"run": run, "top1_cls_err": 2.0, "top5_cls_err": 0.2, "top1_loc_err": 41.0, "top5_loc_err": 40.0,
                   "gt_known_loc_err": 41.0, "boxacc_at_tau": v + 1, "maxboxacc": v + 2, "boxacc_v2_at_tau": v,
                   "maxboxacc_v2": v + 1, "oracle_tau": 0.2, "train_seconds": 60.0, "eval_seconds": 6.0,
                   "wsoleval_seconds": 1.0, "git_commit": commit} for run, v, commit in rows]).to_csv(path, index=False)
    return path


def test_committed_cam_seed_counts_and_run_dirs_win(report, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(out, "lite0_last_stage_gap_s0", 56.0, 41.0)
    _run(out, "lite0_last_stage_adl_s0", 61.0, 40.0)
    _run(out, "lite0_last_stage_adl_s1", 63.0, 38.0)
    # s0 is also in the table (another value): the run dir wins; s1 only in the table: it counts; a head row is no CAM seed
    table = _committed(tmp_path / "runs.csv", [("lite0_last_stage_gap_s0", 99.0, "c0"),
                                                ("lite0_last_stage_gap_s1", 58.0, "c1"),
                                                ("lite0_head_gap_s0", 10.0, "c2")])
    df = report.collect(out, [table])
    cam = df[df.method == "cam"].sort_values("seed")
    assert cam.boxacc_v2_at_tau.tolist() == [56.0, 58.0]
    assert cam.source.tolist() == ["run folder", str(table)]
    agg = report.aggregate(df).set_index("method")
    # CAM mean 57, sample std sqrt(2); ADL mean 62, std sqrt(2); difference +5
    assert agg.loc["cam", "boxacc_v2_at_tau"] == pytest.approx(57.0)
    assert agg.loc["cam", "boxacc_v2_at_tau_std"] == pytest.approx(math.sqrt(2))
    assert agg.loc["adl", "boxacc_v2_at_tau_vs_cam"] == pytest.approx(5.0)
    assert agg.loc["adl", "top1_loc_err_vs_cam"] == pytest.approx(39.0 - 41.0)
    assert agg.loc["adl", "n"] == 2 and agg.loc["adl", "seeds"] == "0 1"
    # |+5| > 2 x sqrt(2) = 2.83: beyond the spread
    assert "| ADL | 0 1 | +5.00 | 1.41 (the larger of CAM's and ADL's) | better than CAM |" in \
        report.verdicts(agg.reset_index(), df)


def test_within_spread_and_one_seed_verdicts(report, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for seed, v in ((0, 56.0), (1, 60.0)):
        _run(out, f"lite0_last_stage_gap_s{seed}", v, 41.0)
    _run(out, "lite0_last_stage_has_s0", 55.0, 50.0)
    _run(out, "lite0_last_stage_has_s1", 59.0, 50.0)
    _run(out, "lite0_last_stage_spg_s0", 70.0, 30.0)
    df = report.collect(out)
    text = report.verdicts(report.aggregate(df), df)
    assert "| HaS | 0 1 | -1.00 | 2.83 (the larger of CAM's and HaS's) | within 2 × seed std: no difference shown |" in text
    # one SPG seed: judged against CAM's std (2.83): +12 > 5.66
    assert "| SPG | 0 | +12.00 | 2.83 (CAM's; one seed of SPG) | better than CAM |" in text
    _run(out, "lite0_last_stage_acol_s0", 61.0, 41.0)  # +3 is within 2 x 2.83
    assert "| ACoL | 0 | +3.00 | 2.83 (CAM's; one seed of ACoL) | within 2 × seed std: no difference shown |" in \
        report.verdicts(report.aggregate(report.collect(out)), report.collect(out))


def test_one_cam_seed_judges_nothing(report, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(out, "lite0_last_stage_gap_s0", 56.0, 41.0)
    _run(out, "lite0_last_stage_adl_s0", 66.0, 41.0)
    _run(out, "lite0_last_stage_adl_s1", 66.0, 41.0)
    df = report.collect(out)
    assert "| ADL | 0 1 | +10.00 | — | one CAM seed: no spread to judge against |" in report.verdicts(report.aggregate(df), df)


def test_dirty_rows_are_refused(report, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(out, "lite0_last_stage_gap_s0", 56.0, 41.0)
    table = _committed(tmp_path / "runs.csv", [("lite0_last_stage_gap_s1", 58.0, "c1-dirty")])
    with pytest.raises(ValueError, match=r"row lite0_last_stage_gap_s1.*uncommitted"):
        report.collect(out, [table])
    _run(out, "lite0_last_stage_adl_s0", 61.0, 40.0, commit="abc-dirty")
    with pytest.raises(ValueError, match="lite0_last_stage_adl_s0"):
        report.collect(out)


def test_committed_tables_fill_runs_without_dirs(report, tmp_path: Path) -> None:
    """Post-hoc runs and their model's own CAM from committed tables; the first table naming a run wins; a dirty row
    counts against the report only when it is used."""
    out = tmp_path / "out"
    _run(out, "posthoc_lite1_head_gap_s0_gradcam", 50.0, 45.0)  # a new post-hoc run of a model whose dir is gone
    mine = _committed(tmp_path / "methods_runs.csv", [("posthoc_lite0_last_stage_gap_s0_center", 40.0, "c3"),
                                                      ("lite0_last_stage_gap_s0", 57.0, "c4"),
                                                      ("lite0_last_stage_has_s0", 52.0, "c5")])
    study = _committed(tmp_path / "study_runs.csv", [("lite0_last_stage_gap_s0", 11.0, "c6"),  # the first table wins
                                                     ("lite1_head_gap_s0", 53.0, "c7"),
                                                     ("lite2_head_gap_s0", 1.0, "c8-dirty")])  # never used
    df = report.collect(out, [mine, study])
    by = {(r.method, r.kind, r.model): r for r in df.itertuples()}
    ref = by[("cam", "reference", "lite1 head, seed-0 model")]
    assert (ref.boxacc_v2_at_tau, ref.source, ref.git_commit) == (53.0, str(study), "c7")
    assert by[("gradcam", "post-hoc", "lite1 head, seed-0 model")].source == "run folder"
    assert by[("cam", "training", "lite0 last_stage")].boxacc_v2_at_tau == 57.0
    assert by[("cam", "reference", "lite0 last_stage, seed-0 model")].boxacc_v2_at_tau == 57.0
    center = by[("center", "baseline", "lite0 last_stage, seed-0 model")]
    assert (center.boxacc_v2_at_tau, center.source) == (40.0, str(mine))
    agg = report.aggregate(df).set_index(["model", "method"])
    assert agg.loc[("lite1 head, seed-0 model", "gradcam"), "boxacc_v2_at_tau_vs_cam"] == pytest.approx(-3.0)
    # the model's own CAM in no table and no run dir: said, not silently dropped
    with pytest.raises(SystemExit, match="lite1_head_gap_s0"):
        report.collect(out, [mine])
    # the same model's row made from a dirty tree: refused, because it is used
    dirty = _committed(tmp_path / "dirty.csv", [("lite1_head_gap_s0", 53.0, "c9-dirty")])
    with pytest.raises(ValueError, match=r"row lite1_head_gap_s0.*uncommitted"):
        report.collect(out, [dirty])
