"""Readable summaries of runs, and collecting run dirs into study tables (``wsol-report``)."""

from __future__ import annotations

import argparse
import json
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

#: Identifying columns of a result row, first in every table.
ID_COLUMNS = ["dataset", "split", "arch", "pool", "protocol", "seed", "n_images"]


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
    rows = []
    for root in roots:
        for path in sorted(Path(root).rglob("metrics.json")):
            row = json.loads(path.read_text())
            row["run_dir"] = str(path.parent)
            rows.append(row)
    if not rows:
        raise FileNotFoundError(f"no metrics.json under {', '.join(map(str, roots))}")
    df = pd.DataFrame(rows)
    first = [c for c in ID_COLUMNS if c in df] + [c for c in METRICS if c in df]
    return df[first + [c for c in df.columns if c not in first]]


def main(argv: Sequence[str] | None = None) -> None:
    """``wsol-report RUN_DIR... --out results/<study>``: writes ``<study>.csv`` and ``<study>.md``."""
    parser = argparse.ArgumentParser(prog="wsol-report", description=main.__doc__)
    parser.add_argument("roots", nargs="+", help="run or multirun dirs to search for metrics.json")
    parser.add_argument("--out", required=True, help="output path without suffix, e.g. results/arch_pool")
    args = parser.parse_args(argv)
    df = collect_runs(args.roots)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out.with_suffix(".csv"), index=False)
    cols = [c for c in ID_COLUMNS + list(METRICS) if c in df]
    out.with_suffix(".md").write_text(df[cols].to_markdown(index=False, floatfmt=".2f") + "\n")
    print(df[cols].to_string(index=False))
