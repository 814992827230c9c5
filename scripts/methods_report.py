"""The method table of the Imagenette study (``scripts/imagenette_study.sh report_methods``) -> ``results/methods/``.

    python scripts/methods_report.py outputs/imagenette results/methods \
        [--committed results/methods/runs.csv --committed results/imagenette/runs.csv]

Reads the study's run dirs (each: the paper-protocol ``metrics.json`` + ``predictions.csv`` + the CAM store, and
``wsoleval/metrics.json``, the stored maps re-scored under wsolevaluation with the crossfold τ):

* training-time methods: ``lite0_last_stage_gap_s<seed>`` (CAM) and ``lite0_last_stage_<method>_s<seed>``
  (``method=<method>``), EfficientNet-Lite0, ``last_stage`` recipe, GAP;
* post-hoc maps: ``posthoc_<model run>_<cam.method>``, the model of ``<model run>`` evaluated with ``cam.method=...``
  (the model run's own row is its CAM);
* the centre baseline: ``posthoc_<model run>_center``;
* maps too costly for all test images (Score-CAM): ``posthoc_<model run>_<cam.method>_sub<N>``, on the first N test
  images of each class, beside ``posthoc_<model run>_cam_sub<N>`` (the model's CAM on the same images).

Writes ``methods.md`` (the tables: every method as its value and its difference from CAM, ± the seed std, in the form
of wsolevaluation's main table), ``methods.csv`` (one row per method x model: ``method``, ``kind``, ``model``, ``n``,
mean and std of every metric, the difference from CAM), ``runs.csv`` (every run) and ``overlays.png`` (the same test
images, one column per method: the map of the ground-truth class, its box at the paper's 20 % threshold and its IoU).
With ``--committed RUNS_CSV`` (repeatable), a run with no run dir under ``outputs`` counts through the row of a
committed runs table: this report's own ``runs.csv`` (runs of earlier sessions whose dirs are not on this machine)
and the Imagenette study's (its CAM seeds and trained models: the same runs, scored the same way), so finished runs
are not trained again; the ``source`` column says where each row came from (``run folder`` or the table), and
``git_commit`` the commit it was made with. The overlay grid needs every column's CAM store: when one is missing, an
existing ``overlays.png`` is kept (and the report says so).
Refuses runs made from a dirty tree (``git_commit`` ending in ``-dirty``): a committed number must come from a commit.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from wsol.report.runs import committed_rows, mean_std, require_clean_commit

TRAINING = ("cam", "has", "acol", "spg", "adl", "cutmix")
POSTHOC = ("gradcam", "gradcampp", "xgradcam", "layercam", "scorecam", "center")
LABELS = {"cam": "CAM", "has": "HaS", "acol": "ACoL", "spg": "SPG", "adl": "ADL", "cutmix": "CutMix",
          "gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "xgradcam": "XGrad-CAM", "layercam": "LayerCAM",
          "scorecam": "Score-CAM", "center": "centre baseline"}
# headline first: BoxAccV2 at the crossfold tau (wsolevaluation's MaxBoxAccV2 with tau chosen without the scored
# images), then its oracle upper bound, then the paper's errors
METRICS = ("boxacc_v2_at_tau", "maxboxacc_v2", "boxacc_at_tau", "maxboxacc", "top1_loc_err", "gt_known_loc_err",
           "top1_cls_err")
HEADERS = {"boxacc_v2_at_tau": "MaxBoxAccV2 @ crossfold τ", "maxboxacc_v2": "MaxBoxAccV2 (oracle τ)",
           "boxacc_at_tau": "BoxAcc IoU 0.5 @ crossfold τ", "maxboxacc": "MaxBoxAcc (oracle)",
           "top1_loc_err": "top-1 loc err", "gt_known_loc_err": "GT-known loc err", "top1_cls_err": "top-1 cls err"}
HIGHER_IS_BETTER = {"boxacc_v2_at_tau", "maxboxacc_v2", "boxacc_at_tau", "maxboxacc"}
TRAINED = re.compile(r"(?P<arch>lite\d)_last_stage_(?P<method>gap|" + "|".join(TRAINING[1:]) + r")_s(?P<seed>\d+)")
POSTHOC_RUN = re.compile(r"posthoc_(?P<model>.+)_(?P<method>cam|" + "|".join(POSTHOC) + r")(?:_sub(?P<sub>\d+))?")
MODEL_RUN = re.compile(r"(?P<arch>lite\d)_(?P<recipe>head|last_stage)_gap_s(?P<seed>\d+)")


PAPER_COLUMNS = ("top1_cls_err", "top5_cls_err", "top1_loc_err", "top5_loc_err", "gt_known_loc_err")
WSOL_COLUMNS = ("boxacc_at_tau", "maxboxacc", "boxacc_v2_at_tau", "maxboxacc_v2", "oracle_tau")
ROW_COLUMNS = PAPER_COLUMNS + WSOL_COLUMNS + ("train_seconds", "eval_seconds", "wsoleval_seconds", "git_commit",
                                              "cam_method", "n_images", "source")


def _row(run: Path) -> dict:
    """One run dir's numbers: the paper protocol's ``metrics.json`` and wsolevaluation's ``wsoleval/metrics.json``."""
    paper = json.loads((run / "metrics.json").read_text())
    wsol_path = run / "wsoleval" / "metrics.json"
    if not wsol_path.is_file():
        raise SystemExit(f"{run}: no wsoleval/metrics.json (re-score the CAM store under wsolevaluation first)")
    wsol = json.loads(wsol_path.read_text())
    for name, m in (("metrics.json", paper), ("wsoleval/metrics.json", wsol)):
        require_clean_commit(m, run / name)
    row = {k: paper.get(k) for k in PAPER_COLUMNS} | {k: wsol.get(k) for k in WSOL_COLUMNS}
    row.update(train_seconds=paper.get("train_seconds", 0.0), eval_seconds=paper.get("eval_seconds"),
               wsoleval_seconds=wsol.get("eval_seconds"), git_commit=paper.get("git_commit"),
               cam_method=paper.get("cam_method", "cam"), n_images=paper.get("n_images"), source="run folder")
    return row


def _model_label(arch: str, recipe: str, seed: int, sub: str | None) -> str:
    """The post-hoc table's model: one trained model (its seed), on all test images or a per-class subset."""
    return f"{arch} {recipe}, seed-{seed} model" + (f", first {sub} test images per class" if sub else "")


def collect(out: Path, committed: list[Path] | tuple[Path, ...] = ()) -> pd.DataFrame:
    """Every training-time-method and post-hoc run, with its method, kind and model.

    The runs are the run dirs under ``out`` and, for the runs without one, the rows of the ``committed`` runs
    tables (``wsol.report.runs.committed_rows``: this report's own ``runs.csv``, the Imagenette study's ``runs.csv``).
    Training-time rows (``kind == "training"``) are grouped as ``lite0 last_stage`` over seeds. Post-hoc rows are
    grouped per trained model (``<arch> <recipe>, seed-<s> model``); each such group gets that model's own CAM
    (its run, or ``posthoc_<run>_cam_sub<N>`` on a subset) as its ``cam`` row (``kind == "reference"``). Every row
    used must come from a clean commit.
    """
    found = {run.name: run for run in sorted(out.iterdir()) if (run / "metrics.json").is_file()}
    tables = committed_rows(committed, found)
    cache: dict[str, dict] = {}

    def numbers(name: str) -> dict:
        if name not in cache:
            if name in found:
                cache[name] = _row(found[name])
            else:
                row = tables[name]
                require_clean_commit(row, f"{row['source']} (row {name})")
                cache[name] = {k: row.get(k) for k in ROW_COLUMNS} | {"cam_method": row.get("cam_method") or "cam"}
        return cache[name]

    rows, references = [], {}
    for name in sorted(set(found) | set(tables)):
        if m := TRAINED.fullmatch(name):
            method = "cam" if m["method"] == "gap" else m["method"]
            rows.append({"method": method, "kind": "training", "model": f"{m['arch']} last_stage",
                         "seed": int(m["seed"]), "run": name, **numbers(name)})
        elif m := POSTHOC_RUN.fullmatch(name):
            model = MODEL_RUN.fullmatch(m["model"])
            if model is None:
                continue
            label = _model_label(model["arch"], model["recipe"], int(model["seed"]), m["sub"])
            kind = {"center": "baseline", "cam": "reference"}.get(m["method"], "post-hoc")
            rows.append({"method": m["method"], "kind": kind, "model": label, "seed": int(model["seed"]),
                         "model_run": m["model"], "run": name, **numbers(name)})
            if not m["sub"]:
                references[label] = (m["model"], int(model["seed"]))
    for label, (name, seed) in sorted(references.items()):  # each post-hoc model's own CAM, on the same images
        if name not in found and name not in tables:
            raise SystemExit(f"{out}: post-hoc maps of {name}, but its own CAM run is neither a run dir there nor a "
                             f"row of {', '.join(map(str, committed)) or 'a committed table (--committed)'}")
        rows.append({"method": "cam", "kind": "reference", "model": label, "seed": seed, "model_run": name,
                     "run": name, **numbers(name)})
    if not rows:
        raise SystemExit(f"no method runs under {out}")
    return pd.DataFrame(rows)


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std over seeds per method x model, and the difference of the means from CAM's."""
    out = []
    for (model, method), g in df.groupby(["model", "method"], sort=False):
        row = {"method": method, "kind": g.kind.iloc[0], "model": model, "n": len(g),
               "seeds": " ".join(str(s) for s in sorted(g.seed))}
        for col in METRICS:
            row[col], row[f"{col}_std"] = mean_std(g[col].astype(float).tolist())
        out.append(row)
    agg = pd.DataFrame(out)
    for col in METRICS:
        cam = agg[agg.method == "cam"].set_index("model")[col]
        agg[f"{col}_vs_cam"] = [r[col] - cam.get(r.model, np.nan) for _, r in agg.iterrows()]
    order = {m: i for i, m in enumerate(TRAINING + POSTHOC)}
    return agg.sort_values(["model", "method"], key=lambda s: s.map(order) if s.name == "method" else s)


def _cell(mean: float, std: float, n: int, delta: float, is_cam: bool) -> str:
    if mean is None or np.isnan(mean):
        return "—"
    text = f"{mean:.2f}" + (f" ± {std:.2f}" if n > 1 and not np.isnan(std) else "")
    return text if is_cam or np.isnan(delta) else f"{text} ({delta:+.2f})"


def table(agg: pd.DataFrame, models: list[str]) -> str:
    lines = ["| model | method | n | " + " | ".join(HEADERS[c] for c in METRICS) + " |",
             "|" + "---|" * (3 + len(METRICS))]
    for _, r in agg[agg.model.isin(models)].iterrows():
        lines.append(f"| {r.model} | {LABELS[r.method]} | {r.n} | " + " | ".join(
            _cell(r[c], r[f'{c}_std'], r.n, r[f'{c}_vs_cam'], r.method == 'cam') for c in METRICS) + " |")
    return "\n".join(lines) + "\n"


def verdicts(agg: pd.DataFrame, df: pd.DataFrame) -> str:
    """Which training-time method beats CAM beyond the seed spread (|difference| > 2 x the larger seed std).

    A method with one seed is judged against CAM's seed std alone (the recipe's seed spread as CAM shows it), and
    says so; with one CAM seed there is no spread to judge against.
    """
    lines = ["| method | seeds | MaxBoxAccV2 @ τ − CAM | seed std judged against | verdict |", "|---|---|---|---|---|"]
    col = "boxacc_v2_at_tau"
    cam = df[(df.method == "cam") & (df.kind == "training") & (df.model == "lite0 last_stage")][col].astype(float)
    _, cam_std = mean_std(cam.tolist())
    for _, r in agg[(agg.kind == "training") & (agg.model == "lite0 last_stage") & (agg.method != "cam")].iterrows():
        d = r[f"{col}_vs_cam"]
        if len(cam) < 2:
            spread, source = float("nan"), "—"
        elif r.n < 2:
            spread, source = cam_std, f"{cam_std:.2f} (CAM's; one seed of {LABELS[r.method]})"
        else:
            spread = float(np.nanmax([cam_std, r[f"{col}_std"]]))
            source = f"{spread:.2f} (the larger of CAM's and {LABELS[r.method]}'s)"
        if np.isnan(spread):
            verdict = "one CAM seed: no spread to judge against"
        elif abs(d) <= 2 * spread:
            verdict = "within 2 × seed std: no difference shown"
        else:
            verdict = "better than CAM" if d > 0 else "worse than CAM"
        lines.append(f"| {LABELS[r.method]} | {r.seeds} | {d:+.2f} | {source} | {verdict} |")
    return "\n".join(lines) + "\n"


def overlays(out: Path, df: pd.DataFrame, dest: Path, n_images: int = 6, seed: int = 0) -> Path | None:
    """The same ``n_images`` random test images (seeded), one column per method, GT class's map and box."""
    from wsol.report import read_predictions
    from wsol.report.overlays import load_overlay_panels
    from wsol.visualize import draw_overlay_grid, save_figure

    runs = []
    for method in TRAINING:
        name = "lite0_last_stage_gap_s0" if method == "cam" else f"lite0_last_stage_{method}_s0"
        runs.append((LABELS[method], out / name))
    for method in POSTHOC:
        if method != "scorecam":  # Score-CAM ran on a subset: not on every image of the grid
            runs.append((LABELS[method] + " (CAM model)", out / f"posthoc_lite0_last_stage_gap_s0_{method}"))
    missing = [str(run) for _, run in runs if not (run / "cams" / "index.json").is_file()]
    path = dest / "overlays.png"
    if missing and path.is_file():
        print(f"kept {path}: no CAM store in {', '.join(missing)}")
        return None
    runs = [(label, run) for label, run in runs if (run / "cams" / "index.json").is_file()]
    if not runs:
        return None
    ids = read_predictions(runs[0][1] / "predictions.csv")["image_id"].sample(n_images, random_state=seed).tolist()
    columns = []
    for label, run in runs:
        preds = read_predictions(run / "predictions.csv").set_index("image_id", drop=False).loc[ids]
        panels, _ = load_overlay_panels(run, preds, which="gt_known")
        for p in panels:  # the column's method on top; the image's number in the first column only
            p.title = label if columns else f"val {Path(p.title).stem[-5:]}: {label}"
        columns.append(panels)
    grid = [columns[c][i] for i in range(len(ids)) for c in range(len(columns))]
    save_figure(draw_overlay_grid(grid, ncols=len(columns), panel_inches=1.9), path, dpi=64)
    return path


def main(out: Path, dest: Path, committed: list[Path] | tuple[Path, ...] = ()) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    df = collect(out, committed)
    df.to_csv(dest / "runs.csv", index=False)
    agg = aggregate(df)
    agg.to_csv(dest / "methods.csv", index=False)
    trained = ["lite0 last_stage"]
    posthoc_models = sorted(m for m in agg.model.unique() if m not in trained)
    text = ["## Training-time methods (EfficientNet-Lite0, last_stage recipe, GAP; 500 test images)\n",
            "Value ± sample std over seeds (n), and (difference from CAM's mean). BoxAcc in %, higher is better; "
            "errors in %, lower is better.\n", table(agg, trained),
            "\n### Against the seed spread\n", verdicts(agg, df),
            "\n## Post-hoc maps of trained models (each model's CAM row is its own CAM, on the same images)\n",
            table(agg, posthoc_models)]
    (dest / "methods.md").write_text("\n".join(text))
    overlays(out, df, dest)
    unique = df.drop_duplicates("run")  # a model run is both a training row and a post-hoc reference
    total = unique[["train_seconds", "eval_seconds", "wsoleval_seconds"]].astype(float).sum()
    print(f"{len(unique)} runs; train {total.train_seconds / 60:.1f} min, evaluation {total.eval_seconds / 60:.1f} min, "
          f"wsolevaluation re-scoring {total.wsoleval_seconds / 60:.1f} min (as recorded in metrics.json)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="the study's output folder (run dirs)")
    parser.add_argument("dest", type=Path, help="where the tables and figure go (results/methods)")
    parser.add_argument("--committed", type=Path, action="append", default=[], metavar="RUNS_CSV",
                        help="a committed runs table whose rows count for the runs without a run dir (repeatable; "
                             "the first table naming a run wins)")
    args = parser.parse_args()
    main(args.out, args.dest, args.committed)
