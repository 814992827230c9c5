"""Collecting run dirs into a DataFrame, grouping by sweep and config, aggregating seeds (``wsol.report``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wsol.report.summary import METRICS, is_missing

#: Identifying columns of a result row, first in every table.
ID_COLUMNS = ["dataset", "data_root", "split", "arch", "pool", "protocol", "seed", "n_images"]

#: Identity shared by every run of a group (besides sweep and config).
GROUP_COLUMNS = ["dataset", "data_root", "split", "arch", "pool", "protocol", "tau_policy"]

#: Numeric columns aggregated over the seeds of a group, in display order: the policy's number first
#: among the wsolevaluation ones, the oracle (upper-bound) numbers after it.
AGGREGATED = ["top1_cls_err", "top5_cls_err", "top1_loc_err", "top5_loc_err", "gt_known_loc_err",
              "boxacc_at_tau", "tau", "maxboxacc", "maxboxacc_tau", "maxboxacc_v2", "pxap"]

#: The CAM paper's ILSVRC val numbers (Zhou et al. 2016, Tables 1 and 2), keyed by (arch, pool):
#: error (%) of the paper's networks, for placing our runs beside them. Table 3 (ILSVRC *test*, e.g.
#: GoogLeNet-GAP 37.1 top-5 with the heuristics) cannot be compared: the test labels are not public.
PAPER_ILSVRC_VAL: dict[tuple[str, str], dict[str, float]] = {
    ("googlenet_gap", "gap"): {"top1_cls_err": 35.0, "top5_cls_err": 13.2, "top1_loc_err": 56.40,
                               "top5_loc_err": 43.00},
    ("vgg16_gap", "gap"): {"top1_cls_err": 33.4, "top5_cls_err": 12.2, "top1_loc_err": 57.20, "top5_loc_err": 45.14},
    ("alexnet_star_gap", "gap"): {"top1_cls_err": 44.9, "top5_cls_err": 20.9, "top1_loc_err": 63.75,
                                  "top5_loc_err": 49.53},
    ("alexnet_gap", "gap"): {"top1_cls_err": 51.1, "top5_cls_err": 26.3, "top1_loc_err": 67.19, "top5_loc_err": 52.16},
    ("googlenet_gap", "gmp"): {"top1_cls_err": 35.6, "top5_cls_err": 13.9, "top1_loc_err": 57.78,
                               "top5_loc_err": 45.26},
}


# ----------------------------------------------------------------------------- collecting runs
def _natural(path: Path) -> list:
    """Sort key: multirun job 2 before job 10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def sweep_of(run_dir: Path) -> Path:
    """The sweep a run belongs to: its Hydra multirun dir (holding ``multirun.yaml``), else the run dir."""
    parent = run_dir.parent
    return parent if (parent / "multirun.yaml").is_file() else run_dir


def read_overrides(run_dir: Path) -> list[str] | None:
    """The job's overrides (``.hydra/overrides.yaml``), or None when the run dir has none."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    import yaml  # PyYAML comes with hydra-core/omegaconf; imported here to keep start-up light

    try:
        overrides = yaml.safe_load(path.read_text()) or []
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: unreadable Hydra overrides ({err})") from err
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ValueError(f"{path}: expected a YAML list of 'key=value' strings, got {overrides!r:.200}")
    return overrides


def config_of(overrides: Sequence[str] | None) -> str:
    """The overrides that define a config: all but ``seed`` (also ``+seed``/``++seed``), sorted, space-joined."""
    if not overrides:
        return ""
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != "seed"]
    return " ".join(sorted(kept))


def collect_runs(roots: Sequence[str | Path]) -> pd.DataFrame:
    """Every ``metrics.json`` under ``roots`` as one DataFrame (one row per run).

    Added columns: ``run_dir``, ``sweep`` (``sweep_of``), ``config`` (``config_of`` its overrides) and
    ``results_mtime`` (modification time of its ``metrics.json``, used by ``latest_sweeps``).

    Raises:
        FileNotFoundError: no ``metrics.json`` under any root.
        ValueError: an unreadable ``metrics.json`` or overrides file (named).
    """
    rows = []
    for root in roots:
        for path in sorted(Path(root).rglob("metrics.json"), key=_natural):
            try:
                row = json.loads(path.read_text())
            except (OSError, ValueError) as err:
                raise ValueError(f"{path}: unreadable metrics.json ({err})") from err
            if not isinstance(row, dict):
                raise ValueError(f"{path}: expected a JSON object (one flat result row)")
            run_dir = path.parent
            row.update(run_dir=str(run_dir), sweep=str(sweep_of(run_dir)),
                       config=config_of(read_overrides(run_dir)), results_mtime=path.stat().st_mtime,
                       root=str(root))
            rows.append(row)
    if not rows:
        raise FileNotFoundError(f"no metrics.json under {', '.join(map(str, roots))}")
    df = pd.DataFrame(rows)
    first = [c for c in ID_COLUMNS if c in df] + [c for c in METRICS if c in df]
    return df[first + [c for c in df.columns if c not in first]]


def latest_sweeps(df: pd.DataFrame) -> pd.DataFrame:
    """Only the newest sweep under each root: the one whose latest ``metrics.json`` is the most recent."""
    newest = df.groupby(["root", "sweep"], sort=False)["results_mtime"].max().reset_index()
    keep = newest.loc[newest.groupby("root", sort=False)["results_mtime"].idxmax(), "sweep"]
    return df[df["sweep"].isin(set(keep))].reset_index(drop=True)


def describe_sweeps(df: pd.DataFrame) -> str:
    """``"multirun/run/A (6 runs), multirun/run/B (2 runs)"``, in order of appearance."""
    counts = df.groupby("sweep", sort=False).size()
    return ", ".join(f"{sweep} ({n} run{'s' * (n != 1)})" for sweep, n in counts.items())


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


# ----------------------------------------------------------------------------- aggregation
def key_value(value: Any) -> Any:
    """A hashable stand-in for a grouping value (NaN/None -> None, lists -> tuples)."""
    if is_missing(value):
        return None
    return tuple(value) if isinstance(value, list) else value


def group_runs(df: pd.DataFrame) -> list[list[int]]:
    """Row positions of each group (same sweep, config and ``GROUP_COLUMNS``), in order of first appearance."""
    cols = ["sweep", "config"] + [c for c in GROUP_COLUMNS if c in df]
    groups: dict[tuple, list[int]] = {}
    for i, (_, row) in enumerate(df.iterrows()):
        groups.setdefault(tuple(key_value(row.get(c)) for c in cols), []).append(i)
    return list(groups.values())


def _numeric(values: Iterable[Any]) -> np.ndarray | None:
    """float64 array of the non-missing values, or None if any is not a real number (e.g. a list of taus)."""
    out = []
    for v in values:
        if is_missing(v):
            continue
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            return None
        out.append(float(v))
    return np.array(out, dtype=np.float64)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``); the std is NaN for fewer than 2 values."""
    arr = np.asarray(values, dtype=np.float64)
    if len(arr) == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else float("nan")


def aggregate_runs(df: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per group (``group_runs``): its identity, ``n``, ``seeds``, and ``<col>_mean``/``<col>_std``.

    Args:
        df: runs, as from ``collect_runs``.
        columns: numeric columns to aggregate (default ``AGGREGATED``, those present). A column whose values
            in a group are not all real numbers (e.g. crossfold's list of taus) is left out for that group.

    Returns:
        Columns ``sweep, config, <GROUP_COLUMNS present>, n, seeds, run_dirs``, then ``<col>_mean``,
        ``<col>_std`` and ``<col>_n`` per aggregated column. The mean and std are over the ``<col>_n`` runs where
        the column is present (fewer than ``n`` when some runs lack it); ``std`` uses ``ddof=1`` and is NaN for one
        value.
    """
    columns = [c for c in (AGGREGATED if columns is None else columns) if c in df]
    ident = ["sweep", "config"] + [c for c in GROUP_COLUMNS if c in df]
    rows = []
    for positions in group_runs(df):
        part = df.iloc[positions]
        first = part.iloc[0]
        out: dict[str, Any] = {c: first.get(c) for c in ident}
        out["n"] = len(part)
        seeds = sorted({int(s) for s in part["seed"] if not is_missing(s)}) if "seed" in part else []
        out["seeds"] = ",".join(map(str, seeds))
        out["run_dirs"] = ";".join(part["run_dir"]) if "run_dir" in part else ""
        for col in columns:
            values = _numeric(part[col])
            if values is None or len(values) == 0:
                out[f"{col}_mean"], out[f"{col}_std"], out[f"{col}_n"] = float("nan"), float("nan"), 0
                continue
            out[f"{col}_mean"], out[f"{col}_std"] = mean_std(values)
            out[f"{col}_n"] = len(values)  # the runs that have it: a group's n may be larger
        rows.append(out)
    return pd.DataFrame(rows)


def shared_overrides(configs: Iterable[str]) -> list[str]:
    """The overrides common to every config (space-separated override lists), sorted."""
    sets = [set(c.split()) for c in configs]
    return sorted(set.intersection(*sets)) if sets else []


def varying_config(config: str, shared: Sequence[str]) -> str:
    """``config`` without the overrides every group shares."""
    common = set(shared)
    return " ".join(o for o in config.split() if o not in common)


def require_clean_commit(metrics: dict[str, Any], where: str | Path) -> None:
    """Refuse a result made from a tree with uncommitted changes (or an unknown one): a committed number must be
    reproducible from the commit it names.

    Raises:
        ValueError: ``metrics["git_commit"]`` ends in ``-dirty``, is ``unknown`` or is missing.
    """
    commit = str(metrics.get("git_commit") or "unknown")
    if commit.endswith("-dirty") or commit == "unknown":
        raise ValueError(f"{where}: made from a tree with uncommitted changes or an unknown commit ({commit}); "
                         "re-run it from a commit")


def committed_rows(tables: Sequence[str | Path], have: Iterable[str], key: str = "run") -> dict[str, dict[str, Any]]:
    """Rows of committed per-run tables (``runs.csv`` files with a ``key`` column) for the runs not in ``have``.

    A study's report reads its run dirs; a run made in an earlier session whose dir is not on this machine counts
    through the table that session committed (the same run, scored the same way). The first table naming a run
    wins, and the first row of it where a table repeats a run. Each row gets ``source`` (the table's path). The
    caller checks with ``require_clean_commit`` the rows it uses: an unused row may come from anywhere.

    Raises:
        FileNotFoundError: a table does not exist (named).
        ValueError: a table has no ``key`` column (named).
    """
    have = set(have)
    found: dict[str, dict[str, Any]] = {}
    for table in tables:
        path = Path(table)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such committed runs table")
        df = pd.read_csv(path)
        if key not in df:
            raise ValueError(f"{path}: no {key!r} column (columns: {', '.join(map(str, df.columns))})")
        for _, row in df.iterrows():
            name = str(row[key])
            if name in have or name in found:
                continue
            found[name] = {k: (None if is_missing(v) else v) for k, v in row.items()} | {"source": str(path)}
    return found
