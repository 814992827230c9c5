"""Readable summaries of runs, and collecting run dirs into study tables (``wsol-report``)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

#: Metric keys (literature names) in display order, with their descriptions.
METRICS = {
    "top1_cls_err": "top-1 classification error (%)",
    "top5_cls_err": "top-5 classification error (%)",
    "top1_loc_err": "top-1 localization error (%)",
    "top5_loc_err": "top-5 localization error (%)",
    "gt_known_loc_err": "GT-known localization error (%)",
    "maxboxacc": "MaxBoxAcc, IoU 0.5 (%)",
    "maxboxacc_v2": "MaxBoxAccV2, IoU {.3,.5,.7} (%)",
    "pxap": "PxAP (%)",
}

#: Threshold-policy columns (wsolevaluation protocol), shown after the metrics when present.
POLICY_COLUMNS = ["maxboxacc_tau", "tau_policy", "tau", "boxacc_at_tau"]

#: Identifying columns of a result row, first in every table.
ID_COLUMNS = ["dataset", "data_root", "split", "arch", "pool", "protocol", "seed", "n_images"]


#: The CAM paper's ILSVRC val numbers (Zhou et al. 2016, Tables 1 and 2), keyed by (arch, pool):
#: error (%) of the paper's networks, for placing our runs beside them. Table 3 (ILSVRC *test*, e.g.
#: GoogLeNet-GAP 37.1 top-5 with the heuristics) cannot be compared: the test labels are not public.
PAPER_ILSVRC_VAL: dict[tuple[str, str], dict[str, float]] = {
    ("googlenet_gap", "gap"): {"top1_cls_err": 35.0, "top5_cls_err": 13.2, "top1_loc_err": 56.40, "top5_loc_err": 43.00},
    ("vgg16_gap", "gap"): {"top1_cls_err": 33.4, "top5_cls_err": 12.2, "top1_loc_err": 57.20, "top5_loc_err": 45.14},
    ("alexnet_star_gap", "gap"): {"top1_cls_err": 44.9, "top5_cls_err": 20.9, "top1_loc_err": 63.75,
                                  "top5_loc_err": 49.53},
    ("alexnet_gap", "gap"): {"top1_cls_err": 51.1, "top5_cls_err": 26.3, "top1_loc_err": 67.19, "top5_loc_err": 52.16},
    ("googlenet_gap", "gmp"): {"top1_cls_err": 35.6, "top5_cls_err": 13.9, "top1_loc_err": 57.78, "top5_loc_err": 45.26},
}


def add_paper_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``paper_<metric>`` columns to rows comparable with the paper's Tables 1-2.

    Comparable: ILSVRC, the 50,000 val images (``split == "test"`` in wsolevaluation's naming), the paper
    protocol, and one of the paper's networks. Other rows get NaN.
    """
    df = df.copy()
    for metric in ("top1_cls_err", "top5_cls_err", "top1_loc_err", "top5_loc_err"):
        values = []
        for _, row in df.iterrows():
            ref = PAPER_ILSVRC_VAL.get((row.get("arch"), row.get("pool")))
            ok = ref is not None and row.get("dataset") == "ilsvrc" and row.get("split") == "test" \
                and row.get("protocol") == "paper"
            values.append(ref[metric] if ok else float("nan"))
        df[f"paper_{metric}"] = values
    return df


def format_summary(row: dict[str, Any]) -> str:
    """A small fixed-width table of one run's metrics, with its identity on top."""
    head = (f"{row.get('dataset')} [{row.get('split')}, {row.get('n_images')} images] | "
            f"{row.get('arch')} ({row.get('pool')}) | protocol={row.get('protocol')} | seed={row.get('seed')}")
    lines = [head, "-" * len(head)]
    for key, desc in METRICS.items():
        if key in row and row[key] is not None:
            lines.append(f"  {key:<18} {float(row[key]):7.2f}   {desc}")
    extra = [f"{k}={row[k]}" for k in ("n_loc_images", "n_skipped", "train_acc", "train_seconds", "eval_seconds")
             if k in row]
    if extra:
        lines.append("  " + "  ".join(extra))
    return "\n".join(lines)


def collect_runs(roots: Sequence[str | Path]) -> pd.DataFrame:
    """Every ``metrics.json`` under ``roots`` as one DataFrame (one row per run, ``run_dir`` column)."""
    def natural(path: Path) -> list:  # multirun job 2 before job 10
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]

    rows = []
    for root in roots:
        for path in sorted(Path(root).rglob("metrics.json"), key=natural):
            row = json.loads(path.read_text())
            row["run_dir"] = str(path.parent)
            rows.append(row)
    if not rows:
        raise FileNotFoundError(f"no metrics.json under {', '.join(map(str, roots))}")
    df = pd.DataFrame(rows)
    first = [c for c in ID_COLUMNS if c in df] + [c for c in METRICS if c in df]
    return df[first + [c for c in df.columns if c not in first]]


def plot_boxacc_curves(roots: Sequence[str | Path], out_png: str | Path) -> int:
    """Plot every ``boxacc_curve.csv`` under ``roots`` (BoxAcc vs CAM threshold tau, one line per run and
    IoU) into ``out_png``; returns the number of runs plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = sorted(p for root in roots for p in Path(root).rglob("boxacc_curve.csv"))
    if not paths:
        return 0
    fig, ax = plt.subplots(figsize=(6, 4))
    for path in paths:
        curve = pd.read_csv(path)
        meta = json.loads((path.parent / "metrics.json").read_text()) if (path.parent / "metrics.json").is_file() else {}
        data = Path(str(meta.get("data_root") or meta.get("dataset", ""))).name
        name = f"{path.parent.name}: {meta.get('arch', '')} ({meta.get('pool', '')}), {data}"
        for col, style in (("boxacc_v1_iou50", "-"), ("boxacc_v2_iou70", ":")):
            if col in curve:
                ax.plot(curve["tau"], curve[col], style, label=f"{name}: {col}")
    ax.set_xlabel("CAM threshold tau")
    ax.set_ylabel("BoxAcc (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return len(paths)


def main(argv: Sequence[str] | None = None) -> None:
    """``wsol-report RUN_DIR... --out results/<study>``: writes ``<study>.csv`` and ``<study>.md``."""
    parser = argparse.ArgumentParser(prog="wsol-report", description=main.__doc__)
    parser.add_argument("roots", nargs="+", help="run or multirun dirs to search for metrics.json")
    parser.add_argument("--out", required=True, help="output path without suffix, e.g. results/arch_pool")
    args = parser.parse_args(argv)
    df = add_paper_columns(collect_runs(args.roots))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out.with_suffix(".csv"), index=False)
    paper = [f"paper_{m}" for m in METRICS]
    cols = [c for c in ID_COLUMNS + list(METRICS) + POLICY_COLUMNS + paper if c in df and df[c].notna().any()]
    table = df[cols].astype(object).where(df[cols].notna(), None)  # empty cells, not "nan"
    floatfmt = tuple(".3f" if c in ("tau", "maxboxacc_tau") else ".2f" for c in cols)  # tau on a 0.001 grid
    out.with_suffix(".md").write_text(table.to_markdown(index=False, floatfmt=floatfmt, missingval="") + "\n")
    if plot_boxacc_curves(args.roots, out.parent / f"{out.name}_boxacc.png"):
        print(f"wrote {out.parent / (out.name + '_boxacc.png')}")
    print(df[cols].to_string(index=False))
