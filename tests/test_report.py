"""Report: collecting runs, grouping by sweep and config, seed aggregation, rounding, the summary headline,
the no-overwrite rule, and the failure breakdown (golden boxes for every category and its boundaries)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wsol.report import (add_paper_columns, aggregate_runs, classify_failure, collect_runs, failure_breakdown,
                         failure_categories, format_mean_std, format_summary, format_value, main, mean_std,
                         parse_boxes, read_predictions)

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, row: dict, overrides: list[str] | None = None, mtime: float | None = None) -> None:
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps(row))
    if overrides is not None:
        (path / ".hydra").mkdir()
        (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if mtime is not None:
        os.utime(path / "metrics.json", (mtime, mtime))


def _sweep(root: Path, jobs: list[tuple[dict, list[str]]], mtime: float) -> None:
    """A Hydra multirun dir: ``multirun.yaml`` and one numbered job dir per (row, overrides)."""
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    for i, (row, overrides) in enumerate(jobs):
        _write(root / str(i), row, overrides, mtime)


BASE = {"dataset": "synthetic", "split": "test", "arch": "small_cnn", "protocol": "paper", "n_images": 600}


# ----------------------------------------------------------------------------- collecting, paper columns
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
    assert "paper_top1_loc_err" in md and "| 56.40 | 43.00 |" in md  # Table 2 GoogLeNet-GAP top-1, top-5
    assert "| 58.10 |" in md  # rounded as the paper prints: 2 decimals, trailing zero kept


def test_collect_runs_empty(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        collect_runs([tmp_path])


def test_config_is_overrides_minus_seed_and_sweep_is_the_multirun_dir(tmp_path: Path) -> None:
    _sweep(tmp_path / "mr" / "2026-01-01_10-00-00",
           [({**BASE, "pool": "gmp", "seed": 1}, ["seed=1", "model.pool=gmp", "sweep=gap_vs_gmp"])], 1e9)
    _write(tmp_path / "single", {**BASE, "pool": "gap", "seed": 0}, ["++seed=0"])
    df = collect_runs([tmp_path]).set_index("run_dir")
    job = df.loc[str(tmp_path / "mr" / "2026-01-01_10-00-00" / "0")]
    assert job["config"] == "model.pool=gmp sweep=gap_vs_gmp"  # sorted, seed dropped
    assert job["sweep"] == str(tmp_path / "mr" / "2026-01-01_10-00-00")
    single = df.loc[str(tmp_path / "single")]
    assert single["config"] == "" and single["sweep"] == str(tmp_path / "single")


# ----------------------------------------------------------------------------- aggregation, rounding
def test_mean_std_golden() -> None:
    # 70, 71.5, 69: mean 70.1667; sample std sqrt(3.1667 / 2) = 1.2583 (population std would be 1.0274)
    mean, std = mean_std([70.0, 71.5, 69.0])
    assert mean == pytest.approx(70.166666666667, abs=1e-9)
    assert std == pytest.approx(1.258305739212, abs=1e-9)
    assert format_mean_std("top1_loc_err", mean, std) == "70.17 ± 1.26"
    one_mean, one_std = mean_std([69.0])
    assert one_mean == 69.0 and math.isnan(one_std)
    assert format_mean_std("top1_loc_err", one_mean, one_std) == "69.00"  # n = 1: std blank


def test_rounding_as_the_paper() -> None:
    assert format_value("top5_loc_err", 43.0) == "43.00"
    assert format_value("top1_loc_err", 56.4) == "56.40"
    assert format_value("boxacc_at_tau", 31.333333) == "31.33"  # a percentage despite its name
    assert format_value("tau", 0.165) == "0.165" and format_value("oracle_tau", 0.17) == "0.170"
    assert format_value("maxboxacc_tau_mean", 0.5) == "0.500"
    assert format_value("seed", 2) == "2" and format_value("n_images", 600.0) == "600"
    assert format_value("tau", [0.16, 0.17]) == "0.160, 0.170" and format_value("tau", float("nan")) == ""


def _gap_gmp_runs(tmp_path: Path) -> tuple[Path, Path]:
    """Two sweeps of the same config (gap/gmp x seeds) with different numbers; B is the newer."""
    a, b = tmp_path / "multirun" / "run" / "2026-01-01_10-00-00", tmp_path / "multirun" / "run" / "2026-01-02_09-00-00"
    jobs_a = [({**BASE, "pool": pool, "seed": seed, "top1_loc_err": err},
               [f"model.pool={pool}", f"seed={seed}", "sweep=gap_vs_gmp"])
              for pool, seed, err in (("gap", 0, 70.0), ("gap", 1, 71.5), ("gap", 2, 69.0),
                                      ("gmp", 0, 60.0), ("gmp", 1, 50.0), ("gmp", 2, 55.0))]
    jobs_b = [({**BASE, "pool": "gap", "seed": seed, "top1_loc_err": err},
               ["model.pool=gap", f"seed={seed}", "sweep=gap_vs_gmp"]) for seed, err in ((0, 40.0), (1, 42.0))]
    _sweep(a, jobs_a, mtime=1_700_000_000)
    _sweep(b, jobs_b, mtime=1_700_100_000)
    return a, b


def test_two_sweeps_of_one_config_stay_apart(tmp_path: Path) -> None:
    a, b = _gap_gmp_runs(tmp_path)
    agg = aggregate_runs(collect_runs([tmp_path / "multirun" / "run"])).set_index(["sweep", "pool"])
    assert len(agg) == 3  # A gap, A gmp, B gap: the two "gap seed 0" runs are not pooled
    ag = agg.loc[(str(a), "gap")]
    assert ag["n"] == 3 and ag["seeds"] == "0,1,2"
    assert ag["top1_loc_err_mean"] == pytest.approx(70.1666666667) and ag["top1_loc_err_std"] == pytest.approx(
        1.2583057392)
    assert agg.loc[(str(a), "gmp"), "top1_loc_err_mean"] == pytest.approx(55.0)
    assert agg.loc[(str(a), "gmp"), "top1_loc_err_std"] == pytest.approx(5.0)
    bg = agg.loc[(str(b), "gap")]
    assert bg["n"] == 2 and bg["top1_loc_err_mean"] == pytest.approx(41.0)
    assert bg["top1_loc_err_std"] == pytest.approx(math.sqrt(2.0))


def test_report_groups_rounds_and_picks_latest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a, b = _gap_gmp_runs(tmp_path)
    main([str(tmp_path / "multirun" / "run"), "--out", str(tmp_path / "all")])
    out = capsys.readouterr().out
    assert "2 sweeps" in out and str(a) in out and str(b) in out
    md = (tmp_path / "all.md").read_text()
    assert "Overrides shared by every run: `sweep=gap_vs_gmp`" in md
    assert "| 70.17 ± 1.26 |" in md and "| 55.00 ± 5.00 |" in md and "| 41.00 ± 1.41 |" in md
    assert "## Per run" in md and "| 71.50 |" in md  # per-run rows rounded in markdown ...
    per_run = pd.read_csv(tmp_path / "all.csv")
    assert len(per_run) == 8 and per_run["top1_loc_err"].tolist()[:3] == [70.0, 71.5, 69.0]  # ... and full in CSV
    summary = pd.read_csv(tmp_path / "all_summary.csv")
    assert summary["n"].tolist() == [3, 3, 2]
    assert summary["top1_loc_err_std"].iloc[0] == pytest.approx(1.258305739212)  # full precision

    main([str(tmp_path / "multirun" / "run"), "--latest", "--out", str(tmp_path / "latest")])
    out = capsys.readouterr().out
    assert f"using {b} (2 runs); left out {a} (6 runs)" in out
    latest = pd.read_csv(tmp_path / "latest_summary.csv")
    assert latest["sweep"].tolist() == [str(b)] and latest["n"].tolist() == [2]


def test_crossfold_list_of_taus_is_kept_not_averaged(tmp_path: Path) -> None:
    row = {**BASE, "protocol": "wsolevaluation", "pool": "gap", "tau_policy": "crossfold", "boxacc_at_tau": 30.0,
           "tau": [0.16, 0.17, 0.18], "maxboxacc": 31.0}
    _write(tmp_path / "r0", {**row, "seed": 0})
    _write(tmp_path / "r1", {**row, "seed": 1, "boxacc_at_tau": 32.0})
    agg = aggregate_runs(collect_runs([tmp_path]))
    assert agg["n"].tolist() == [1, 1]  # single runs: each its own sweep
    main([str(tmp_path), "--out", str(tmp_path / "rep")])
    md = (tmp_path / "rep.md").read_text()
    assert "0.160, 0.170, 0.180" in md and "| 32.00 |" in md


# ----------------------------------------------------------------------------- safety
def test_existing_outputs_are_never_overwritten_without_force(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    _write(tmp_path / "runs" / "r", {**BASE, "pool": "gap", "seed": 0, "top1_loc_err": 50.0})
    out = tmp_path / "results" / "study"
    main([str(tmp_path / "runs"), "--out", str(out)])
    committed = (tmp_path / "results" / "study.md").read_bytes()
    (tmp_path / "runs" / "r" / "metrics.json").write_text(json.dumps({**BASE, "pool": "gap", "seed": 0,
                                                                      "top1_loc_err": 99.0}))
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "runs"), "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite" in err and "study.csv" in err and "--force" in err
    assert (tmp_path / "results" / "study.md").read_bytes() == committed
    # only one of the outputs exists: still refused, and nothing else is written
    (tmp_path / "results" / "study.md").unlink()
    (tmp_path / "results" / "study_summary.csv").unlink()
    with pytest.raises(SystemExit):
        main([str(tmp_path / "runs"), "--out", str(out)])
    assert not (tmp_path / "results" / "study.md").exists()
    main([str(tmp_path / "runs"), "--out", str(out), "--force"])
    assert "| 99.00 |" in (tmp_path / "results" / "study.md").read_text()


def test_readme_report_commands_are_safe() -> None:
    readme = (REPO / "README.md").read_text()
    for line in readme.splitlines():
        if "wsol-report" in line and "--out results/" in line and "--force" not in line:
            pytest.fail(f"README command would write into the committed results/: {line.strip()}")


@pytest.mark.parametrize("module", ["wsol.report", "wsol.report.visualize_cli"])
def test_help_imports_neither_torch_nor_matplotlib(module: str) -> None:
    code = (f"import sys\nfrom {module} import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('torch', 'matplotlib') if m in sys.modules)\nprint('HEAVY', heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout[-500:]


# ----------------------------------------------------------------------------- the console summary
WSOL_ROW = {"dataset": "synthetic", "split": "test", "n_images": 600, "arch": "small_cnn", "pool": "gap",
            "protocol": "wsolevaluation", "seed": 0, "top1_cls_err": 16.1667, "top5_cls_err": 1.5,
            "maxboxacc": 31.6667, "maxboxacc_tau": 0.169, "maxboxacc_v2": 36.61, "oracle_tau": 0.169}


def _lines(text: str) -> list[str]:
    return text.splitlines()[2:]  # below the identity and the rule


def test_format_summary_lists_present_metrics() -> None:
    text = format_summary({"dataset": "synthetic", "split": "test", "n_images": 3, "arch": "small_cnn",
                           "pool": "gap", "protocol": "paper", "seed": 0, "top1_loc_err": 12.345})
    assert "top1_loc_err         12.35" in text and "maxboxacc" not in text and "upper bound" not in text


def test_summary_headline_heldout() -> None:
    text = format_summary({**WSOL_ROW, "tau_policy": "heldout", "tau": 0.165,
                           "boxacc_at_tau": 31.3333})
    lines = _lines(text)
    assert lines[0].split()[:2] == ["boxacc_at_tau", "31.33"]  # the policy's number leads
    assert "tau=0.165 chosen on the held-out split" in lines[0] and "tau_policy=heldout" in lines[0]
    oracle = next(line for line in lines if line.split()[0] == "maxboxacc")
    assert "31.67" in oracle and "upper bound (oracle tau=0.169)" in oracle


def test_summary_headline_fixed() -> None:
    text = format_summary({**WSOL_ROW, "tau_policy": "fixed", "tau": 0.2,
                           "boxacc_at_tau": 28.5})
    lines = _lines(text)
    assert lines[0].split()[:2] == ["boxacc_at_tau", "28.50"]
    assert "tau=0.200 fixed in advance (eval.tau)" in lines[0]
    assert any("maxboxacc " in line and "upper bound (oracle tau=0.169)" in line for line in lines[1:])


def test_summary_headline_oracle_is_labelled_upper_bound() -> None:
    text = format_summary({**WSOL_ROW, "tau_policy": "oracle", "tau": 0.169,
                           "boxacc_at_tau": 31.6667})
    lines = _lines(text)
    assert lines[0].split()[:2] == ["maxboxacc", "31.67"]
    assert "upper bound (oracle tau=0.169" in lines[0]
    assert sum(line.split()[0] == "maxboxacc" for line in lines) == 1  # not printed twice


def test_summary_headline_crossfold_lists_taus_per_fold() -> None:
    text = format_summary({**WSOL_ROW, "tau_policy": "crossfold", "tau": [0.16, 0.17, 0.165],
                           "boxacc_at_tau": 30.9})
    first = _lines(text)[0]
    assert first.split()[:2] == ["boxacc_at_tau", "30.90"]
    assert "tau per fold 0.160, 0.170, 0.165" in first and "other folds" in first


# ----------------------------------------------------------------------------- failure categories
G = np.array([[10, 10, 29, 29]], dtype=float)  # 20 x 20 = 400 pixels (inclusive)
TWO = np.array([[0, 0, 9, 9], [20, 0, 29, 9]], dtype=float)  # two 10 x 10 instances, 10 px apart


@pytest.mark.parametrize("pred, gts, expected", [
    # clear cases
    ([12, 12, 21, 21], G, "too_small"),  # 100 px inside the object (IoU 0.25)
    ([0, 0, 39, 39], G, "too_large"),  # holds the whole object, 4x its area (IoU 0.25)
    ([50, 50, 69, 69], G, "misplaced"),  # no overlap
    ([20, 20, 39, 39], G, "misplaced"),  # same size, a quarter overlapping
    ([0, 0, 29, 9], TWO, "several_instances"),  # one box over both instances (IoU 1/3 with each)
    # boundaries (exactly half counts; one pixel less does not; inclusive-pixel areas)
    ([20, 0, 49, 49], G, "too_large"),  # 10 x 20 = 200 = half of the GT inside, box larger
    ([21, 0, 49, 49], G, "misplaced"),  # 9 x 20 = 180 < 200
    ([20, 10, 39, 19], G, "too_small"),  # 100 of its 200 pixels inside, box smaller
    ([21, 10, 40, 19], G, "misplaced"),  # 90 < 100
    ([20, 10, 39, 29], G, "misplaced"),  # same area, half inside each way: neither larger nor smaller
    ([5, 0, 24, 9], TWO, "several_instances"),  # exactly half of each instance
    ([6, 0, 24, 9], TWO, "too_large"),  # 45% of the first: not several; best-IoU GT is the SECOND, half inside
    # G* is the best-IoU box (IoU 0.11, half of the box inside it: too small), not the best-covered one (a
    # 5 x 5 instance wholly inside the box, IoU 0.06: judged against it, the box would be "too large")
    ([0, 0, 19, 19], np.array([[0, 0, 4, 4], [10, 0, 49, 39.0]]), "too_small"),
])
def test_classify_failure_golden(pred: list[int], gts: np.ndarray, expected: str) -> None:
    assert classify_failure(np.array(pred, dtype=float), gts) == expected


def test_classify_failure_rejects_no_box() -> None:
    with pytest.raises(ValueError, match="no GT box"):
        classify_failure(np.array([0, 0, 1, 1.0]), np.zeros((0, 4)))


def _prediction_rows() -> pd.DataFrame:
    """One image per outcome: 2 correct, 1 excluded, 1 per failure category (7 scored, 5 errors)."""
    def row(image_id: str, box: list[int], gts: str, cls: int, loc: float, pred1: int = 3) -> dict:
        return {"image_id": image_id, "label": 3, "width": 64, "height": 64, "pred1": pred1, "pred2": 1,
                "prob1": 0.5, "box_x0": box[0], "box_y0": box[1], "box_x1": box[2], "box_y1": box[3],
                "box_iou": 0.1, "gt_known_x0": 0, "gt_known_y0": 0, "gt_known_x1": 5, "gt_known_y1": 5,
                "gt_known_iou": 0.1, "gt_boxes": gts, "top1_cls_correct": cls, "top1_loc_correct": loc,
                "gt_known_correct": 0}
    g, two = "10 10 29 29", "0 0 9 9;20 0 29 9"
    return pd.DataFrame([
        row("ok1", [10, 10, 29, 29], g, 1, 1), row("ok2", [10, 10, 28, 29], g, 1, 1),
        row("blacklisted", [0, 0, 5, 5], g, 1, float("nan")),
        row("wrong", [10, 10, 29, 29], g, 0, 0, pred1=5),
        row("several", [0, 0, 29, 9], two, 1, 0), row("large", [0, 0, 39, 39], g, 1, 0),
        row("small", [12, 12, 21, 21], g, 1, 0), row("off", [50, 50, 60, 60], g, 1, 0),
    ])


def test_failure_breakdown_sums_to_top1_loc_err() -> None:
    pred = _prediction_rows()
    outcome = failure_categories(pred)
    assert outcome.tolist() == ["correct", "correct", "excluded", "wrong_class", "several_instances",
                                "too_large", "too_small", "misplaced"]
    table = failure_breakdown(pred)
    assert table.attrs == {"n_loc_images": 7, "n_errors": 5, "n_excluded": 1}
    assert table["count"].tolist() == [1, 1, 1, 1, 1]
    assert table["pct_images"].tolist() == pytest.approx([100 / 7] * 5)
    assert table["pct_images"].sum() == pytest.approx(500 / 7)  # = top-1 loc error over the 7 scored images
    assert table["pct_errors"].tolist() == pytest.approx([20.0] * 5)


def test_read_predictions_checks_columns_and_flags(tmp_path: Path) -> None:
    pred = _prediction_rows()
    pred.to_csv(tmp_path / "predictions.csv", index=False)
    back = read_predictions(tmp_path / "predictions.csv")
    assert back["gt_boxes"].iloc[4] == "0 0 9 9;20 0 29 9" and math.isnan(back["top1_loc_correct"].iloc[2])
    pred.drop(columns=["box_iou"]).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(ValueError, match=r"a\.csv: missing columns \['box_iou'\]"):
        read_predictions(tmp_path / "a.csv")
    pred.assign(top1_cls_correct=[1, 1, 1, 2, 1, 1, 1, 1]).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(ValueError, match=r"b\.csv: column top1_cls_correct must hold a share in \[0, 1\].*'wrong'"):
        read_predictions(tmp_path / "b.csv")
    with pytest.raises(FileNotFoundError, match="no predictions.csv"):
        read_predictions(tmp_path / "none.csv")


def test_parse_boxes() -> None:
    assert parse_boxes("1 2 3 4;5 6 7.5 8").tolist() == [[1, 2, 3, 4], [5, 6, 7.5, 8]]
    assert parse_boxes("").shape == (0, 4) and parse_boxes(float("nan")).shape == (0, 4)
    with pytest.raises(ValueError, match="not a box"):
        parse_boxes("1 2 3")
    with pytest.raises(ValueError, match="inverted"):
        parse_boxes("5 0 4 9")


def test_report_writes_failures_and_curves(tmp_path: Path) -> None:
    for seed in (0, 1):
        run = tmp_path / "runs" / f"r{seed}"
        _write(run, {**BASE, "pool": "gap", "seed": seed, "protocol": "wsolevaluation", "tau_policy": "heldout",
                     "tau": 0.5, "boxacc_at_tau": 40.0, "maxboxacc": 45.0}, [f"seed={seed}"])
        (run / "boxacc_curve.csv").write_text("tau,boxacc_v1_iou50\n0.0,10\n0.5,40\n0.99,5\n")
        _prediction_rows().to_csv(run / "predictions.csv", index=False)
    (tmp_path / "runs" / "multirun.yaml").write_text("hydra: {}\n")  # one sweep: the two seeds are one group
    main([str(tmp_path / "runs"), "--out", str(tmp_path / "rep")])
    for suffix in ("_boxacc.png", "_failures.png"):
        assert (tmp_path / f"rep{suffix}").read_bytes()[:4] == b"\x89PNG"
    failures = pd.read_csv(tmp_path / "rep_failures.csv")
    assert len(failures) == 2 and failures["too_small"].tolist() == pytest.approx([100 / 7] * 2)
    assert failures["top1_loc_err"].tolist() == pytest.approx([500 / 7] * 2)
    md = (tmp_path / "rep_failures.md").read_text()
    assert "| 2 | 71.43 ± 0.00 | 14.29 ± 0.00 |" in md


def test_a_result_from_a_dirty_tree_is_refused() -> None:
    from wsol.report.runs import require_clean_commit

    require_clean_commit({"git_commit": "a8d4f34" * 5}, "run")
    for commit in ("a8d4f34-dirty", "unknown", None):
        with pytest.raises(ValueError, match=r"run/metrics.json: made from a tree with uncommitted changes"):
            require_clean_commit({"git_commit": commit}, "run/metrics.json")


def test_committed_rows_fill_the_runs_without_dirs(tmp_path: Path) -> None:
    from wsol.report.runs import committed_rows

    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("run,x,git_commit\nr1,1.5,c1\nr2,2.5,c2\nr1,9.0,c9\n")  # a repeated run: its first row
    second.write_text("run,x,git_commit\nr2,7.0,c7\nr3,,c3\n")
    rows = committed_rows([first, second], have={"r0", "r3x"})
    assert rows == {"r1": {"run": "r1", "x": 1.5, "git_commit": "c1", "source": str(first)},
                    "r2": {"run": "r2", "x": 2.5, "git_commit": "c2", "source": str(first)},
                    "r3": {"run": "r3", "x": None, "git_commit": "c3", "source": str(second)}}
    assert set(committed_rows([first, second], have={"r1", "r2"})) == {"r3"}  # a run dir wins
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        committed_rows([tmp_path / "missing.csv"], have=())
    (tmp_path / "bad.csv").write_text("name,x\nr1,1\n")
    with pytest.raises(ValueError, match="bad.csv: no 'run' column"):
        committed_rows([tmp_path / "bad.csv"], have=())


def test_a_metric_some_runs_lack_says_over_how_many_runs_it_is_averaged(tmp_path: Path) -> None:
    jobs = [({**BASE, "pool": "gap", "seed": 0, "top1_loc_err": 50.0, "top1_cls_err": 10.0},
             ["model.pool=gap", "seed=0"]),
            ({**BASE, "pool": "gap", "seed": 1, "top1_loc_err": 54.0}, ["model.pool=gap", "seed=1"]),  # no cls err
            ({**BASE, "pool": "gap", "seed": 2, "top1_loc_err": 52.0}, ["model.pool=gap", "seed=2"])]
    _sweep(tmp_path / "multirun" / "run" / "s", jobs, mtime=1_700_000_000)
    agg = aggregate_runs(collect_runs([tmp_path / "multirun" / "run"]))
    assert agg["n"].tolist() == [3] and agg["top1_loc_err_n"].tolist() == [3]
    assert agg["top1_cls_err_n"].tolist() == [1] and agg["top1_cls_err_mean"].tolist() == [10.0]
    main([str(tmp_path / "multirun" / "run"), "--out", str(tmp_path / "rep")])
    md = (tmp_path / "rep.md").read_text()
    assert "| 10.00 (n=1) |" in md and "| 52.00 ± 2.00 |" in md  # the group's n is 3


def test_predictions_flags_follow_the_devkit_rule_of_the_metrics(tmp_path: Path) -> None:
    # A two-class image (ILSVRC images may carry boxes of several classes): label 3, boxes of classes 3 and 5. The
    # top-1 guess is class 5 with a box on the class-5 object: the devkit scores it 0 for class 3 and 1 for class 5,
    # i.e. an error of 0.5. The per-image flags must be those shares (they were "any GT class" = 1), and the failure
    # breakdown must add up to the metric.
    import numpy as np
    import torch

    from wsol.data.records import ImageRecord
    from wsol.evaluation.base import CAMBatch
    from wsol.evaluation.localization import PaperLocalizationEvaluator
    from wsol.report import failure_breakdown, read_predictions

    cam = torch.zeros(6, 8)
    cam[3:6, 5:8] = 1.0  # the class-5 object's box: x 5-7, y 3-5
    record = ImageRecord("two", 3, np.array([[0, 0, 2, 2], [5, 3, 7, 5]], dtype=float), size=(8, 6),
                         box_labels=np.array([3, 5]))
    single = ImageRecord("one", 3, np.array([[0, 0, 2, 2]], dtype=float), size=(8, 6))
    ev = PaperLocalizationEvaluator((1,), cam_threshold=0.2)
    ev.process(CAMBatch(records=[record, single], indices=np.arange(2), sizes=[(8, 6)] * 2,
                        classes=np.array([[5, 3], [5, 3]]), scores=np.full((2, 2), 0.5, np.float32),
                        cams=torch.stack([cam, cam])[:, None].repeat(1, 2, 1, 1)))
    metrics = ev.evaluate()
    assert metrics["top1_loc_err"] == 75.0  # (0.5 + 1) / 2
    rows = ev.rows()
    assert rows[0]["top1_cls_correct"] == 0.5 and rows[0]["top1_loc_correct"] == 0.5
    assert rows[1]["top1_cls_correct"] == 0 and rows[1]["top1_loc_correct"] == 0
    path = tmp_path / "predictions.csv"
    pd.DataFrame(rows).drop(columns=["index"]).to_csv(path, index=False)
    table = failure_breakdown(read_predictions(path))
    assert table["pct_images"].sum() == pytest.approx(metrics["top1_loc_err"])
    assert table.loc["wrong_class", "count"] == 1.0 and table["count"].sum() == 1.5
