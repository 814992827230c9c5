"""``wsol-report``: a study's tables and figures from its run dirs (conventions in ``wsol.report``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from wsol.report.failures import FAILURE_CATEGORIES, failure_row, read_predictions
from wsol.report.runs import (AGGREGATED, GROUP_COLUMNS, ID_COLUMNS, add_paper_columns, aggregate_runs, collect_runs,
                              describe_sweeps, group_runs, key_value, latest_sweeps, mean_std, shared_overrides,
                              varying_config)
from wsol.report.summary import METRICS, chosen_taus, format_mean_std, format_value, is_missing, markdown_table

if TYPE_CHECKING:
    from wsol.visualize import BoxAccCurves

#: Threshold-policy columns (wsolevaluation protocol), shown after the metrics when present.
POLICY_COLUMNS = ["tau_policy", "boxacc_at_tau", "tau", "oracle_tau", "maxboxacc_tau"]


# ----------------------------------------------------------------------------- writing a study
def _at(out: Path, suffix: str) -> Path:
    """``out`` + ``suffix`` (``results/x`` -> ``results/x_summary.csv``; a dot in ``out``'s name is kept)."""
    return out.with_name(out.name + suffix)


def _planned_outputs(out: Path, *, curves: bool, failures: bool, overlays: bool) -> list[Path]:
    """Every path ``write_study`` would write, checked for existence before anything is written."""
    paths = [_at(out, ".csv"), _at(out, ".md"), _at(out, "_summary.csv")]
    if curves:
        paths.append(_at(out, "_boxacc.png"))
    if failures:
        paths += [_at(out, s) for s in ("_failures.csv", "_failures.md", "_failures.png")]
    if overlays:
        paths.append(_at(out, "_overlays"))
    return paths


def _display_columns(df: pd.DataFrame, candidates: Sequence[str]) -> list[str]:
    return [c for c in candidates if c in df and df[c].map(lambda v: not is_missing(v) and v != "").any()]


def _labels(agg: pd.DataFrame, shared: Sequence[str]) -> list[str]:
    """Short legend labels for groups: what differs between them.

    The sweep's name (when several), the overrides not shared by every group, and the identity columns that
    differ (``pool=gmp``) unless an override already says it (``model.pool=gmp``).
    """
    parts: list[list[str]] = [[] for _ in range(len(agg))]
    if agg["sweep"].nunique() > 1:
        for i, sweep in enumerate(agg["sweep"]):
            parts[i].append(Path(sweep).name)
    varying = [varying_config(c, shared) for c in agg["config"]]
    if len(set(varying)) > 1:
        for i, v in enumerate(varying):
            parts[i].append(v)
    for col in GROUP_COLUMNS:
        if col in agg and agg[col].map(key_value).nunique(dropna=False) > 1:
            for i, v in enumerate(agg[col]):
                text = format_value(col, v)
                if not any(o.endswith(f"={text}") for o in varying[i].split()):
                    parts[i].append(f"{col}={text}")
    return [", ".join(p) or f"{r.get('arch')} ({r.get('pool')})" for p, (_, r) in zip(parts, agg.iterrows())]


def _aggregate_markdown(agg: pd.DataFrame, shared: Sequence[str]) -> str:
    ident = ["sweep", "config"] + _display_columns(agg, GROUP_COLUMNS)
    metrics = [c for c in AGGREGATED if f"{c}_mean" in agg and agg[f"{c}_mean"].notna().any()]
    paper = [c for c in agg if c.startswith("paper_") and agg[c].notna().any()]
    rows = []
    for _, r in agg.iterrows():
        cells = {c: format_value(c, r.get(c)) for c in ident}
        cells["config"] = varying_config(r["config"], shared)
        cells.update(n=str(r["n"]), seeds=r["seeds"])
        cells.update({c: format_mean_std(c, r[f"{c}_mean"], r[f"{c}_std"]) for c in metrics})
        for c in metrics:  # a metric some runs of the group lack: say over how many runs it is averaged
            if 0 < r.get(f"{c}_n", r["n"]) < r["n"]:
                cells[c] += f" (n={r[f'{c}_n']})"
        cells.update({c: format_value(c, r[c]) for c in paper})
        rows.append(cells)
    return markdown_table(rows, ident + ["n", "seeds"] + metrics + paper)


def _per_run_markdown(df: pd.DataFrame, shared: Sequence[str]) -> str:
    paper = [f"paper_{m}" for m in METRICS]
    cols = _display_columns(df, ID_COLUMNS + list(METRICS) + POLICY_COLUMNS + paper)
    rows = []
    for _, r in df.iterrows():
        cells = {"sweep": r["sweep"], "config": varying_config(r["config"], shared)}
        cells.update({c: format_value(c, r.get(c)) for c in cols})
        rows.append(cells)
    return markdown_table(rows, ["sweep", "config"] + cols)


_NOTE = ("Percentages with 2 decimals, thresholds tau with 3; mean ± sample std (ddof=1) over the n runs "
         "(seeds) of a group; the std is blank for n = 1. `maxboxacc`, `maxboxacc_v2`: the best tau of the "
         "scored split itself (wsolevaluation's oracle), an upper bound; `boxacc_at_tau`: BoxAcc (IoU 0.5) "
         "at the tau chosen by `tau_policy`.")


def _boxacc_groups(df: pd.DataFrame, labels: Sequence[str], key: str) -> list[BoxAccCurves]:
    """A ``wsol.visualize.BoxAccCurves`` per group whose runs have ``boxacc_curve.csv``."""
    from wsol.visualize import BoxAccCurves

    out = []
    for positions, label in zip(group_runs(df), labels):
        part = df.iloc[positions]
        paths = [Path(d) / "boxacc_curve.csv" for d in part["run_dir"]]
        have = [(p, r) for p, (_, r) in zip(paths, part.iterrows()) if p.is_file()]
        if not have:
            continue
        tau, accs, chosen = None, [], []
        for path, row in have:
            curve = pd.read_csv(path)
            if "tau" not in curve or key not in curve:
                raise ValueError(f"{path}: no columns 'tau' and {key!r} (has {list(curve.columns)})")
            if tau is None:
                tau = curve["tau"].to_numpy(np.float64)
            elif len(curve) != len(tau) or not np.allclose(curve["tau"], tau):
                raise ValueError(f"{path}: threshold grid differs from {have[0][0]} (same group, other step?)")
            accs.append(curve[key].to_numpy(np.float64))
            taus = chosen_taus(row)
            if not taus and not is_missing(row.get("maxboxacc_tau")):
                taus = [float(row["maxboxacc_tau"])]  # rows from before the threshold policy
            chosen += taus
        out.append(BoxAccCurves(label=label, tau=tau, acc=np.stack(accs), chosen_taus=sorted(set(chosen))))
    return out


def write_study(df: pd.DataFrame, out: Path, *, force: bool = False, overlays: int = 0,
                overlay_select: str = "random", seed: int = 0) -> list[Path]:
    """Write a study's tables and figures next to ``out`` (a path without suffix); returns what was written.

    Files: ``<out>.csv`` (every run, full precision), ``<out>_summary.csv`` (one row per group: mean, std, n;
    full precision), ``<out>.md`` (the group table, then the per-run table, rounded), ``<out>_boxacc.png``
    (runs with curves), ``<out>_failures.{csv,md,png}`` (runs with ``predictions.csv``), and with
    ``overlays > 0`` ``<out>_overlays/<run>.png`` for each run with ``predictions.csv``. Every input but the
    overlays' images and CAMs (drawn last) is read and checked before the first file is written.

    Raises:
        FileExistsError: one of those outputs exists and ``force`` is false; nothing is written then.
        ValueError: unreadable curves or predictions (named).
    """
    has_curves = any((Path(d) / "boxacc_curve.csv").is_file() for d in df["run_dir"])
    pred_runs = [d for d in df["run_dir"] if (Path(d) / "predictions.csv").is_file()]
    planned = _planned_outputs(out, curves=has_curves, failures=bool(pred_runs),
                               overlays=overlays > 0 and bool(pred_runs))
    existing = [p for p in planned if p.exists()]
    if existing and not force:
        raise FileExistsError(f"refusing to overwrite {', '.join(map(str, existing))} "
                              "(pass --force to replace them, or choose another --out)")
    df = add_paper_columns(df)
    agg = add_paper_columns(aggregate_runs(df))
    shared = shared_overrides(df["config"])
    labels = _labels(agg, shared)
    curves = _boxacc_groups(df, labels, "boxacc_v1_iou50") if has_curves else []
    failures = pd.DataFrame([{"run_dir": r["run_dir"], "sweep": r["sweep"], "config": r["config"],
                              **failure_row(read_predictions(Path(r["run_dir"]) / "predictions.csv"))}
                             for _, r in df.iterrows() if r["run_dir"] in pred_runs])

    out.parent.mkdir(parents=True, exist_ok=True)
    written = [_at(out, ".csv"), _at(out, "_summary.csv"), _at(out, ".md")]
    df.drop(columns=["results_mtime", "root"], errors="ignore").to_csv(written[0], index=False)
    agg.to_csv(written[1], index=False)
    md = [f"Sweeps: {describe_sweeps(df)}.", ""]
    if shared:
        md += [f"Overrides shared by every run: `{' '.join(shared)}`.", ""]
    md += [_NOTE, "", "## Mean ± std over seeds", "", _aggregate_markdown(agg, shared), "",
           "## Per run", "", _per_run_markdown(df, shared), ""]
    written[2].write_text("\n".join(md))
    if curves:
        from wsol.visualize import draw_boxacc_curves, save_figure

        png = _at(out, "_boxacc.png")
        save_figure(draw_boxacc_curves(curves), png)
        written.append(png)
    if pred_runs:
        written += _write_failures(failures, agg, labels, out)
    if overlays > 0 and pred_runs:
        from wsol.report.overlays import write_overlay_grid  # loads torch and the data stack: only when asked

        folder = _at(out, "_overlays")
        folder.mkdir(exist_ok=True)
        for run_dir, name in zip(pred_runs, _run_names(pred_runs)):
            png = folder / f"{name}.png"
            for note in write_overlay_grid(Path(run_dir), png, n=overlays, select=overlay_select, seed=seed):
                print(f"wsol-report: {run_dir}: {note}", file=sys.stderr)
            written.append(png)
    return written


def _run_names(run_dirs: Sequence[str]) -> list[str]:
    """File-name stems for run dirs: their paths below the common parent, ``/`` -> ``_``."""
    resolved = [Path(d).resolve() for d in run_dirs]
    common = Path(os.path.commonpath(resolved)) if len(resolved) > 1 else resolved[0].parent
    return ["_".join(p.relative_to(common).parts) or p.name for p in resolved]


def _write_failures(runs: pd.DataFrame, agg: pd.DataFrame, labels: Sequence[str], out: Path) -> list[Path]:
    """Per-run failure rows (CSV), per-group mean ± std (markdown) and a bar chart of the group means."""
    from wsol.visualize import draw_failure_breakdown, save_figure

    paths = [_at(out, s) for s in ("_failures.csv", "_failures.md", "_failures.png")]
    runs.to_csv(paths[0], index=False)
    md_rows, means, stds, bar_labels = [], [], [], []
    by_dir = {d: i for i, d in enumerate(runs["run_dir"])}
    for (_, g), label in zip(agg.iterrows(), labels):
        idx = [by_dir[d] for d in g["run_dirs"].split(";") if d in by_dir]
        if not idx:
            continue
        part = runs.iloc[idx]
        cells = {"group": label, "n": str(len(part))}
        stats = {col: mean_std(part[col].to_numpy(np.float64)) for col in ("top1_loc_err", *FAILURE_CATEGORIES)}
        cells.update({col: format_mean_std(col, *ms) for col, ms in stats.items()})
        md_rows.append(cells)
        means.append([stats[c][0] for c in FAILURE_CATEGORIES])
        stds.append([stats[c][1] for c in FAILURE_CATEGORIES])
        bar_labels.append(label)
    note = ("Top-1 localization errors by cause, in percent of the images scored for localization (the causes "
            "sum to top1_loc_err); mean ± sample std over the runs of a group. Categories "
            "(wsol.report.classify_failure): wrong_class = top-1 class not a class of the image; for the right "
            "class with IoU < 0.5: several_instances = the box holds >= 50% of each of >= 2 GT boxes; too_large "
            "= it holds >= 50% of the best-IoU GT box and is larger; too_small = >= 50% of it lies inside that "
            "box and it is smaller; misplaced = the rest.")
    table = markdown_table(md_rows, ["group", "n", "top1_loc_err", *FAILURE_CATEGORIES])
    paths[1].write_text("\n".join([note, "", table, ""]))
    save_figure(draw_failure_breakdown(bar_labels, np.array(means), np.array(stds)), paths[2])
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    """``wsol-report RUN_DIR... --out PATH``: study tables (per run and mean ± std over seeds) and figures."""
    parser = argparse.ArgumentParser(
        prog="wsol-report", description=(main.__doc__ or "").replace("``", ""),
        epilog="Runs are grouped by sweep (the Hydra multirun dir) and config (overrides minus seed). Existing "
               "outputs are never replaced without --force. Example: wsol-report multirun/run --latest "
               "--out outputs/reports/gap_vs_gmp")
    parser.add_argument("roots", nargs="+", help="run or multirun dirs to search for metrics.json")
    parser.add_argument("--out", required=True,
                        help="output path without suffix: writes PATH.csv, PATH.md, PATH_summary.csv and figures")
    parser.add_argument("--latest", action="store_true",
                        help="under each root, keep only the newest sweep (the one with the most recent result)")
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    parser.add_argument("--overlays", type=int, default=0, metavar="N",
                        help="also draw N CAM overlays per run with predictions.csv (PATH_overlays/<run>.png)")
    parser.add_argument("--overlay-select", default="random", choices=("worst", "best", "random", "failures"),
                        help="which images the overlays show (default: random)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --overlay-select random")
    args = parser.parse_args(argv)
    try:
        df = collect_runs(args.roots)
        n_sweeps = df["sweep"].nunique()
        if args.latest:
            kept = latest_sweeps(df)
            dropped = df[~df["sweep"].isin(set(kept["sweep"]))]
            print(f"wsol-report: --latest: using {describe_sweeps(kept)}"
                  + (f"; left out {describe_sweeps(dropped)}" if len(dropped) else ""))
            df = kept
        else:
            print(f"wsol-report: {n_sweeps} sweep{'s' * (n_sweeps != 1)}: {describe_sweeps(df)}"
                  + (" (never pooled; --latest keeps only the newest)" if n_sweeps > 1 else ""))
        written = write_study(df, Path(args.out), force=args.force, overlays=args.overlays,
                              overlay_select=args.overlay_select, seed=args.seed)
    except (OSError, ValueError) as err:  # a missing run dir, an existing, read-only or full --out, a bad file
        from wsol.cli import error_message

        if isinstance(err, OSError) and err.strerror and err.filename is None:  # a buffered write names no file
            err.filename = f"{args.out}.*"
        print(f"wsol-report: error: {error_message(err)}", file=sys.stderr)
        raise SystemExit(2) from err
    agg = aggregate_runs(df)
    shared = shared_overrides(df["config"])
    print(_aggregate_markdown(agg, shared))
    for path in written:
        print(f"wrote {path}")
