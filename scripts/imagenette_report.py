"""Tables and figures of the Imagenette study from its run dirs (``scripts/imagenette_study.sh report``).

    python scripts/imagenette_report.py outputs/imagenette results/imagenette [--committed results/imagenette]

Each run dir ``<OUT>/<name>`` holds the paper-protocol ``metrics.json`` (+ ``predictions.csv``, the CAM store) and
``wsoleval/metrics.json`` (the stored CAMs re-scored under wsolevaluation). Run names are
``<arch>_<recipe>_<pool>[_448]_s<seed>``, ``<arch>_<recipe>_<pool>_test<N>_s<seed>`` (that run's trained model
evaluated with ``data.image_size=N``; the study's ``test2x`` phase) and ``baseline_<arch>``. Writes into the results dir:
``imagenette.md`` / ``imagenette.csv`` (mean ± std over seeds, per arch x recipe x pool), ``runs.csv`` (every run,
with its ``git_commit`` and ``cpu_threads``: a CPU run's float reductions, hence the last bits of what it trains,
depend on the thread count), ``gap_vs_gmp.md`` (the difference against the seed spread), ``boxacc_<arch>.png`` (GAP
and GMP on one plot), ``failures.{md,csv,png}`` (top-1 localization errors by cause) and ``overlays_{gap,gmp}.png``.
A run made from a tree with uncommitted changes is refused (``wsol.report.runs.require_clean_commit``).

With ``--committed DIR`` (the results dir as committed), a run with no run dir under ``outputs`` counts through its
row of ``DIR/runs.csv`` (``wsol.report.runs.committed_rows``; the ``source`` column says which rows), so an earlier
session's runs need not be made again. What needs the run dirs themselves is made from them where a group has all of
its run dirs, and otherwise taken as committed: a failure-breakdown group from ``DIR/failures.csv`` (only when none
of its runs has a run dir: a group is never half re-made), a BoxAcc curve or overlay figure by keeping the file.
Runs present both as run dirs and as committed rows are compared, and every number that moved is printed.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from wsol.report import FAILURE_CATEGORIES, failure_breakdown, read_predictions
from wsol.report.runs import committed_rows, mean_std, require_clean_commit
from wsol.report.overlays import write_overlay_grid
from wsol.visualize import BoxAccCurves, draw_boxacc_curves, draw_failure_breakdown, save_figure

NAME = re.compile(r"(?P<arch>lite\d)_(?P<recipe>head|svm|last_stage|full)_(?P<pool>gap|gmp)(?:_(?P<size>\d+))?(?:_test(?P<test>\d+))?_s(?P<seed>\d+)")
PAPER = ["top1_cls_err", "top5_cls_err", "top1_loc_err", "top5_loc_err", "gt_known_loc_err"]
WSOL = ["boxacc_at_tau", "maxboxacc", "boxacc_v2_at_tau", "maxboxacc_v2"]
HEADERS = {"top1_cls_err": "top-1 cls err", "top5_cls_err": "top-5 cls err", "top1_loc_err": "top-1 loc err",
           "top5_loc_err": "top-5 loc err", "gt_known_loc_err": "GT-known loc err",
           "boxacc_at_tau": "BoxAcc @ crossfold τ", "maxboxacc": "MaxBoxAcc (oracle τ, upper bound)",
           "boxacc_v2_at_tau": "BoxAccV2 @ crossfold τ", "maxboxacc_v2": "MaxBoxAccV2 (oracle)"}


ROW_COLUMNS = PAPER + WSOL + ["tau_per_fold", "oracle_tau", "train_seconds", "eval_seconds", "wsoleval_seconds",
                              "train_acc", "git_commit", "device_name", "cpu_threads"]
FOLDER = "run folder"  # the source of a row read from its run dir


def identity(name: str, image_size: int | None) -> dict | None:
    """arch, recipe, pool, seed and input of a run, from its name; None for a name outside the study."""
    if m := NAME.fullmatch(name):
        recipe = m["recipe"] + (f", evaluated at {m['test']} px" if m["test"] else "")
        return {"arch": m["arch"], "recipe": recipe, "pool": m["pool"], "seed": int(m["seed"]),
                "input": image_size or int(m["test"] or m["size"] or 0)}
    if name.startswith("baseline_"):
        return {"arch": name.split("_", 1)[1], "recipe": "none (1000-class)", "pool": "gap", "seed": 0,
                "input": image_size}
    return None


def collect(out: Path, committed: Path | None = None) -> pd.DataFrame:
    """One row per run: the run dirs under ``out``, and (``committed``: a results dir) the rows of its ``runs.csv``
    for the runs without a run dir."""
    rows = []
    for run in sorted(p for p in out.iterdir() if (p / "metrics.json").is_file()):
        paper = json.loads((run / "metrics.json").read_text())
        wsol = json.loads((run / "wsoleval" / "metrics.json").read_text()) if (run / "wsoleval" / "metrics.json").is_file() else {}
        ident = identity(run.name, paper.get("image_size"))
        if ident is None:
            continue
        require_clean_commit(paper, run / "metrics.json")  # a committed row must come from a commit
        if wsol:
            require_clean_commit(wsol, run / "wsoleval" / "metrics.json")
        rows.append({"run": run.name, **ident, **{k: paper.get(k) for k in PAPER}, **{k: wsol.get(k) for k in WSOL},
                     "tau_per_fold": wsol.get("tau_per_fold"), "oracle_tau": wsol.get("oracle_tau"),
                     "train_seconds": paper.get("train_seconds", 0.0), "eval_seconds": paper.get("eval_seconds", 0.0),
                     "wsoleval_seconds": wsol.get("eval_seconds", 0.0), "train_acc": paper.get("train_acc"),
                     "git_commit": paper.get("git_commit"), "device_name": paper.get("device_name"),
                     "cpu_threads": paper.get("cpu_threads"), "source": FOLDER})
    if committed is not None:
        for name, row in committed_rows([committed / "runs.csv"], {r["run"] for r in rows}).items():
            size = row.get("input")
            ident = identity(name, None if size is None else int(size))
            if ident is None:
                continue
            require_clean_commit(row, f"{row['source']} (row {name})")
            rows.append({"run": name, **ident, **{k: row.get(k) for k in ROW_COLUMNS}, "source": row["source"]})
    if not rows:
        raise SystemExit(f"no finished runs under {out}")
    return pd.DataFrame(rows).sort_values("run", ignore_index=True)


def moved(df: pd.DataFrame, committed: Path) -> tuple[int, list[str]]:
    """The runs made again (a run dir here, a row in ``committed/runs.csv``), and every number of them that differs
    from the committed row: ``run: metric committed -> now``."""
    before = pd.read_csv(committed / "runs.csv").drop_duplicates("run").set_index("run")
    remade = df[(df.source == FOLDER) & df.run.isin(before.index)]
    lines = []
    for _, r in remade.iterrows():
        old = before.loc[r.run]
        for col in PAPER + WSOL + ["oracle_tau", "train_acc"]:
            a, b = old.get(col), r[col]
            if pd.isna(a) and pd.isna(b):
                continue
            if pd.isna(a) or pd.isna(b) or not np.isclose(float(a), float(b), rtol=0, atol=1e-9):
                lines.append(f"{r.run}: {col} {a} -> {b} (committed {old.get('git_commit')}, now {r.git_commit})")
    return len(remade), lines


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    out = []
    for key, g in df.groupby(["arch", "recipe", "pool", "input"], sort=True):
        row = dict(zip(["arch", "recipe", "pool", "input"], key))
        row["n"] = len(g)
        for col in PAPER + WSOL:
            mean, std = mean_std(g[col].astype(float).tolist())
            row[col], row[f"{col}_std"] = mean, std
        out.append(row)
    return pd.DataFrame(out)


def cell(mean: float, std: float, n: int) -> str:
    if mean is None or np.isnan(mean):
        return "—"
    return f"{mean:.2f}" if n < 2 or np.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def markdown(agg: pd.DataFrame) -> str:
    cols = PAPER + WSOL
    lines = ["| arch | recipe | pool | input | n | " + " | ".join(HEADERS[c] for c in cols) + " |",
             "|" + "---|" * (5 + len(cols))]
    for _, r in agg.iterrows():
        lines.append(f"| {r.arch} | {r.recipe} | {r.pool} | {r.input} | {r.n} | "
                     + " | ".join(cell(r[c], r[f'{c}_std'], r.n) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def gap_vs_gmp(df: pd.DataFrame) -> str:
    """Per arch x recipe: GAP minus GMP (mean over seeds), against the seed spread (sample std of each)."""
    lines = ["| arch | recipe | metric | GAP | GMP | GAP − GMP | larger seed std | verdict |", "|---|---|---|---|---|---|---|---|"]
    better_low = set(PAPER)
    for (arch, recipe), g in df[df.recipe.isin(["head", "last_stage", "svm"])].groupby(["arch", "recipe"]):
        gap, gmp = g[g.pool == "gap"], g[g.pool == "gmp"]
        if gap.empty or gmp.empty:
            continue
        for col in ("top1_loc_err", "gt_known_loc_err", "top1_cls_err", "boxacc_at_tau", "maxboxacc_v2"):
            a, sa = mean_std(gap[col].astype(float).tolist())
            b, sb = mean_std(gmp[col].astype(float).tolist())
            d = a - b
            spread = np.nanmax([sa, sb]) if len(gap) > 1 and len(gmp) > 1 else float("nan")
            gap_better = d < 0 if col in better_low else d > 0
            if np.isnan(spread):
                verdict = "one seed: no spread"
            elif abs(d) <= 2 * spread:
                verdict = "within 2 × seed std"
            else:
                verdict = ("GAP" if gap_better else "GMP") + " better"
            lines.append(f"| {arch} | {recipe} | {HEADERS[col]} | {cell(a, sa, len(gap))} | {cell(b, sb, len(gmp))} | "
                         f"{d:+.2f} | {spread:.2f} | {verdict} |")
    return "\n".join(lines) + "\n"


def curves(out: Path, df: pd.DataFrame, dest: Path) -> list[Path]:
    """BoxAcc vs tau, GAP and GMP on one plot, per arch x recipe (head, last_stage); made only where every run of
    the plot has its run dir (otherwise the file is kept)."""
    written = []
    for (arch, recipe), g in df[df.recipe.isin(["head", "last_stage"]) & (df.input != 448)].groupby(["arch", "recipe"]):
        path = dest / f"boxacc_{arch}_{recipe}.png"
        if (g.source != FOLDER).any():
            print(f"kept {path}: no run dir for {', '.join(g.run[g.source != FOLDER])}")
            continue
        groups = []
        for pool in ("gap", "gmp"):
            runs = g[g.pool == pool]
            accs, taus, chosen = [], None, []
            for name in runs.run:
                c = pd.read_csv(out / name / "wsoleval" / "boxacc_curve.csv")
                accs.append(c["boxacc_v1_iou50"].to_numpy())
                taus = c["tau"].to_numpy()
                m = json.loads((out / name / "wsoleval" / "metrics.json").read_text())
                chosen += list(m.get("tau_per_fold") or [])
            if accs:
                groups.append(BoxAccCurves(f"{arch} {recipe} {pool.upper()}", taus, np.stack(accs), chosen))
        if groups:
            save_figure(draw_boxacc_curves(groups), path)
            written.append(path)
    return written


def failures(out: Path, df: pd.DataFrame, dest: Path, committed: Path | None = None) -> str:
    """Top-1 localization errors by cause (``wsol.report.failure_breakdown``), mean over seeds, per arch x recipe x
    pool x input: from the runs' predictions where the group has all of its run dirs, else the group's row of
    ``committed/failures.csv`` (when none of its runs has a run dir and the row lists the same runs). Writes
    ``failures.csv`` and ``failures.png``; returns the markdown."""
    cats = list(FAILURE_CATEGORIES)
    before = pd.read_csv(committed / "failures.csv").set_index("label") \
        if committed is not None and (committed / "failures.csv").is_file() else None
    rows = []
    for (arch, recipe, pool, size), g in df.groupby(["arch", "recipe", "pool", "input"]):
        label = f"{arch} {recipe} {pool.upper()}" + ("" if "evaluated at" in recipe else f" ({size} px)")
        runs = " ".join(sorted(g.run))
        local = g.source == FOLDER
        if local.all():
            tables = [failure_breakdown(read_predictions(out / name / "predictions.csv")) for name in g.run]
            pct = np.stack([t["pct_images"].to_numpy() for t in tables])  # [seeds, categories]
            std = pct.std(0, ddof=1) if len(pct) > 1 else np.full(pct.shape[1], np.nan)  # one run: no spread
            rows.append({"label": label, "n": len(g), "runs": runs, **dict(zip(cats, pct.mean(0))),
                         **{f"{c}_std": v for c, v in zip(cats, std)}, "total": pct.sum(1).mean()})
        elif local.any():
            raise SystemExit(f"{label}: {', '.join(g.run[local])} have run dirs, {', '.join(g.run[~local])} only "
                             "committed rows; the failure breakdown needs every run's predictions: make the rest again")
        elif before is not None and label in before.index and before.loc[label, "runs"] == runs:
            rows.append({"label": label, **before.loc[label].to_dict()})
        else:
            raise SystemExit(f"{label}: no run dirs and no row of {committed}/failures.csv for the runs {runs}")
    if not rows:
        return ""
    table = pd.DataFrame(rows)
    table.to_csv(dest / "failures.csv", index=False)
    means, stds = table[cats].to_numpy(float), table[[f"{c}_std" for c in cats]].to_numpy(float)
    save_figure(draw_failure_breakdown(table.label.tolist(), means, stds), dest / "failures.png")
    head = "| run | " + " | ".join(cats) + " | total = top-1 loc err |\n|" + "---|" * (len(cats) + 2)
    blocks = [f"| {r.label} (n={r.n}) | " + " | ".join(cell(r[c], r[f'{c}_std'], r.n) for c in cats)
              + f" | {r.total:.2f} |" for _, r in table.iterrows()]
    return ("Top-1 localization errors by cause, % of the 500 test images (mean ± std over seeds where n > 1); "
            "the causes sum to the top-1 localization error.\n\n" + head + "\n" + "\n".join(blocks) + "\n")


def main(out: Path, dest: Path, committed: Path | None = None) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    df = collect(out, committed)
    if committed is not None:  # before runs.csv is overwritten: what a run made again changed
        remade, changes = moved(df, committed)
        print(f"{remade} runs made again beside their committed rows; {len(changes)} numbers moved"
              + "".join(f"\n  {line}" for line in changes))
    fails = failures(out, df, dest, committed)  # reads committed/failures.csv before it is overwritten
    df.to_csv(dest / "runs.csv", index=False)
    agg = aggregate(df)
    agg.to_csv(dest / "imagenette.csv", index=False)
    (dest / "imagenette.md").write_text(markdown(agg))
    (dest / "gap_vs_gmp.md").write_text(gap_vs_gmp(df))
    (dest / "failures.md").write_text(fails)
    curves(out, df, dest)
    for pool in ("gap", "gmp"):
        run = out / f"lite0_head_{pool}_s0"
        if (run / "cams" / "index.json").is_file():
            write_overlay_grid(run, dest / f"overlays_{pool}.png", n=12, select="random", seed=0)
        else:
            print(f"kept {dest / f'overlays_{pool}.png'}: no CAM store in {run}")
    total = df[["train_seconds", "eval_seconds", "wsoleval_seconds"]].astype(float).sum()
    print(f"{len(df)} runs ({int((df.source == FOLDER).sum())} from run dirs); "
          f"train {total.train_seconds / 60:.1f} min, evaluation {total.eval_seconds / 60:.1f} min, "
          f"wsolevaluation re-scoring {total.wsoleval_seconds / 60:.1f} min (as recorded)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="the study's output folder (run dirs)")
    parser.add_argument("dest", type=Path, help="where the tables and figures go (results/imagenette)")
    parser.add_argument("--committed", type=Path, metavar="DIR",
                        help="the results dir as committed (runs.csv, failures.csv): its rows count for the runs "
                             "without a run dir")
    args = parser.parse_args()
    main(args.out, args.dest, args.committed)
