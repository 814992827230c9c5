"""Tables and figures of the Imagenette study from its run dirs (``scripts/imagenette_study.sh report``).

    python scripts/imagenette_report.py outputs/imagenette results/imagenette

Each run dir ``<OUT>/<name>`` holds the paper-protocol ``metrics.json`` (+ ``predictions.csv``, the CAM store) and
``wsoleval/metrics.json`` (the stored CAMs re-scored under wsolevaluation). Run names are
``<arch>_<recipe>_<pool>[_448]_s<seed>``, ``<arch>_<recipe>_<pool>_test<N>_s<seed>`` (that run's trained model
evaluated with ``data.image_size=N``; the study's ``test2x`` phase) and ``baseline_<arch>``. Writes into the results dir:
``imagenette.md`` / ``imagenette.csv`` (mean ± std over seeds, per arch x recipe x pool), ``runs.csv`` (every run),
``gap_vs_gmp.md`` (the difference against the seed spread), ``boxacc_<arch>.png`` (GAP and GMP on one plot),
``failures.{md,png}`` (top-1 localization errors by cause) and ``overlays_{gap,gmp}.png``. A run made from a tree with
uncommitted changes is refused (``wsol.report.runs.require_clean_commit``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from wsol.report import failure_breakdown, read_predictions
from wsol.report.runs import mean_std, require_clean_commit
from wsol.report.overlays import write_overlay_grid
from wsol.visualize import BoxAccCurves, draw_boxacc_curves, draw_failure_breakdown, save_figure

NAME = re.compile(r"(?P<arch>lite\d)_(?P<recipe>head|svm|last_stage|full)_(?P<pool>gap|gmp)(?:_(?P<size>\d+))?(?:_test(?P<test>\d+))?_s(?P<seed>\d+)")
PAPER = ["top1_cls_err", "top5_cls_err", "top1_loc_err", "top5_loc_err", "gt_known_loc_err"]
WSOL = ["boxacc_at_tau", "maxboxacc", "boxacc_v2_at_tau", "maxboxacc_v2"]
HEADERS = {"top1_cls_err": "top-1 cls err", "top5_cls_err": "top-5 cls err", "top1_loc_err": "top-1 loc err",
           "top5_loc_err": "top-5 loc err", "gt_known_loc_err": "GT-known loc err",
           "boxacc_at_tau": "BoxAcc @ crossfold τ", "maxboxacc": "MaxBoxAcc (oracle τ, upper bound)",
           "boxacc_v2_at_tau": "BoxAccV2 @ crossfold τ", "maxboxacc_v2": "MaxBoxAccV2 (oracle)"}


def collect(out: Path) -> pd.DataFrame:
    rows = []
    for run in sorted(p for p in out.iterdir() if (p / "metrics.json").is_file()):
        paper = json.loads((run / "metrics.json").read_text())
        wsol = json.loads((run / "wsoleval" / "metrics.json").read_text()) if (run / "wsoleval" / "metrics.json").is_file() else {}
        require_clean_commit(paper, run / "metrics.json")  # a committed row must come from a commit
        if wsol:
            require_clean_commit(wsol, run / "wsoleval" / "metrics.json")
        m = NAME.fullmatch(run.name)
        if m:
            recipe = m["recipe"] + (f", evaluated at {m['test']} px" if m["test"] else "")
            ident = {"arch": m["arch"], "recipe": recipe, "pool": m["pool"], "seed": int(m["seed"]),
                     "input": paper.get("image_size") or int(m["test"] or m["size"] or 0)}
        elif run.name.startswith("baseline_"):
            ident = {"arch": run.name.split("_", 1)[1], "recipe": "none (1000-class)", "pool": "gap", "seed": 0,
                     "input": paper.get("image_size")}
        else:
            continue
        row = {"run": run.name, **ident, **{k: paper.get(k) for k in PAPER}, **{k: wsol.get(k) for k in WSOL},
               "tau_per_fold": wsol.get("tau_per_fold"), "oracle_tau": wsol.get("oracle_tau"),
               "train_seconds": paper.get("train_seconds", 0.0), "eval_seconds": paper.get("eval_seconds", 0.0),
               "wsoleval_seconds": wsol.get("eval_seconds", 0.0), "train_acc": paper.get("train_acc"),
               "git_commit": paper.get("git_commit"), "device_name": paper.get("device_name")}
        rows.append(row)
    if not rows:
        raise SystemExit(f"no finished runs under {out}")
    return pd.DataFrame(rows)


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
    written = []
    for (arch, recipe), g in df[df.recipe.isin(["head", "last_stage"]) & (df.input != 448)].groupby(["arch", "recipe"]):
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
            path = dest / f"boxacc_{arch}_{recipe}.png"
            save_figure(draw_boxacc_curves(groups), path)
            written.append(path)
    return written


def failures(out: Path, df: pd.DataFrame, dest: Path) -> str:
    """Top-1 localization errors by cause (``wsol.report.failure_breakdown``), mean over seeds, per arch x recipe x
    pool x input."""
    labels, means, stds, blocks = [], [], [], []
    for (arch, recipe, pool, size), g in df.groupby(["arch", "recipe", "pool", "input"]):
        tables = [failure_breakdown(read_predictions(out / name / "predictions.csv")) for name in g.run]
        pct = np.stack([t["pct_images"].to_numpy() for t in tables])  # [seeds, categories]
        label = f"{arch} {recipe} {pool.upper()}" + ("" if "evaluated at" in recipe else f" ({size} px)")
        labels.append(label)
        means.append(pct.mean(0))
        stds.append(pct.std(0, ddof=1) if len(pct) > 1 else np.full(pct.shape[1], np.nan))  # one run: no spread
        cats = list(tables[0].index)
        blocks.append(f"| {label} (n={len(tables)}) | " + " | ".join(
            cell(m, s, len(tables)) for m, s in zip(means[-1], stds[-1])) + f" | {pct.sum(1).mean():.2f} |")
    if not labels:
        return ""
    save_figure(draw_failure_breakdown(labels, np.stack(means), np.stack(stds)), dest / "failures.png")
    head = "| run | " + " | ".join(cats) + " | total = top-1 loc err |\n|" + "---|" * (len(cats) + 2)
    return ("Top-1 localization errors by cause, % of the 500 test images (mean ± std over seeds where n > 1); "
            "the causes sum to the top-1 localization error.\n\n" + head + "\n" + "\n".join(blocks) + "\n")


def main(out: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    df = collect(out)
    df.to_csv(dest / "runs.csv", index=False)
    agg = aggregate(df)
    agg.to_csv(dest / "imagenette.csv", index=False)
    (dest / "imagenette.md").write_text(markdown(agg))
    (dest / "gap_vs_gmp.md").write_text(gap_vs_gmp(df))
    (dest / "failures.md").write_text(failures(out, df, dest))
    curves(out, df, dest)
    for pool in ("gap", "gmp"):
        run = out / f"lite0_head_{pool}_s0"
        if (run / "cams" / "index.json").is_file():
            write_overlay_grid(run, dest / f"overlays_{pool}.png", n=12, select="random", seed=0)
    total = df[["train_seconds", "eval_seconds", "wsoleval_seconds"]].sum()
    print(f"{len(df)} runs; train {total.train_seconds / 60:.1f} min, evaluation {total.eval_seconds / 60:.1f} min, "
          f"wsolevaluation re-scoring {total.wsoleval_seconds / 60:.1f} min (as recorded in metrics.json)")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
