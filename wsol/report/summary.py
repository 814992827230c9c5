"""One run's console summary, and the rounding every report uses (see ``wsol.report``)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

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

#: What the tau of each ``eval.tau_policy`` is (the keys are ``wsol.choices.TAU_POLICIES``, in that order).
TAU_POLICY_MEANINGS = {
    "oracle": "the best tau of the scored split itself",
    "fixed": "fixed in advance (eval.tau)",
    "heldout": "chosen on the held-out split (best tau there)",
    "crossfold": "k-fold over the scored split, each fold scored at the tau chosen on the other folds",
}


# ----------------------------------------------------------------------------- formatting
def decimals(column: str) -> int:
    """Decimals a column is printed with: 3 for thresholds (``tau``, ``*_tau``, ``cam_threshold``), else 2."""
    base = column.removesuffix("_mean").removesuffix("_std")
    if base == "boxacc_at_tau":  # a percentage, despite its name
        return 2
    return 3 if base in ("tau", "cam_threshold", "cam_curve_interval") or base.endswith("_tau") else 2


def is_missing(value: Any) -> bool:
    """None or a float NaN (a blank cell)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_value(column: str, value: Any) -> str:
    """One table cell: blank for missing, integers as such, floats rounded (``decimals``), lists joined."""
    if is_missing(value):
        return ""
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(format_value(column, v) for v in value)
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if column in ("seed", "n", "n_images", "n_loc_images") and float(value).is_integer():
            return str(int(value))
        return f"{float(value):.{decimals(column)}f}"
    return str(value)


def format_mean_std(column: str, mean: Any, std: Any) -> str:
    """``"70.17 ± 1.26"``, or the mean alone when the std is missing (a single run)."""
    if is_missing(mean):
        return ""
    if is_missing(std):
        return format_value(column, mean)
    return f"{format_value(column, mean)} ± {format_value(column, std)}"


def markdown_table(rows: list[dict[str, str]], columns: list[str]) -> str:
    """A GitHub markdown table of pre-formatted cells (numbers right-aligned)."""
    def numeric(col: str) -> bool:
        cells = [r[col] for r in rows if r[col] != ""]
        return bool(cells) and all(re.fullmatch(r"[-+]?\d+(\.\d+)?( ± \d+(\.\d+)?)?", c) for c in cells)

    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---:" if numeric(c) else ":---" for c in columns) + "|"
    body = ["| " + " | ".join(r[c] for c in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


# ----------------------------------------------------------------------------- one run's summary
def chosen_taus(row: Mapping[str, Any]) -> list[float]:
    """The tau(s) a row's policy chose: one, or one per fold (crossfold rows carry a list)."""
    for key in ("tau_per_fold", "tau"):
        value = row.get(key)
        if isinstance(value, (list, tuple)):
            return [float(v) for v in value]
    tau = row.get("tau")
    return [] if is_missing(tau) else [float(tau)]


def _policy_headline(row: Mapping[str, Any]) -> tuple[str, str, float] | None:
    """(key, description, value) of the number the threshold policy asked for, or None."""
    policy = row.get("tau_policy")
    if policy is None or is_missing(row.get("boxacc_at_tau")):
        return None
    taus = chosen_taus(row)
    tau_text = ", ".join(f"{t:.3f}" for t in taus)
    if policy == "oracle":
        return ("maxboxacc", f"MaxBoxAcc, IoU 0.5 (%): upper bound (oracle tau={tau_text}, "
                             f"{TAU_POLICY_MEANINGS['oracle']}; tau_policy=oracle)", float(row["boxacc_at_tau"]))
    if policy == "crossfold":
        where = f"tau per fold {tau_text}: {TAU_POLICY_MEANINGS['crossfold']}"
    elif policy == "heldout":
        split = row.get("heldout_split")
        where = f"tau={tau_text} chosen on the held-out split" + (f" {split!r}" if split else "")
    elif policy in TAU_POLICY_MEANINGS:
        where = f"tau={tau_text} {TAU_POLICY_MEANINGS[policy]}"
    else:  # a row of a policy this version does not know: say so rather than guess where its tau came from
        where = f"tau={tau_text} (unknown policy)"
    return "boxacc_at_tau", f"BoxAcc, IoU 0.5 (%) at {where} (tau_policy={policy})", float(row["boxacc_at_tau"])


def format_summary(row: Mapping[str, Any]) -> str:
    """A small fixed-width table of one run's metrics, with its identity on top.

    For the wsolevaluation protocol the first line is the number the threshold policy asked for: BoxAcc at
    the chosen tau (``fixed``, ``heldout``, ``crossfold``), with the tau and where it came from; MaxBoxAcc
    is then labelled "upper bound (oracle tau=...)". Under ``tau_policy=oracle`` the first line is MaxBoxAcc
    itself, labelled as the upper bound it is. Other protocols: the metrics in ``METRICS`` order.
    """
    method = row.get("cam_method", "cam")  # a post-hoc map is named; the CAM (and rows made before) is not
    maps = "" if method == "cam" else f" | cam.method={method}"
    head = (f"{row.get('dataset')} [{row.get('split')}, {row.get('n_images')} images] | "
            f"{row.get('arch')} ({row.get('pool')}) | protocol={row.get('protocol')}"
            f"{''.join('+' + str(p) for p in row.get('also') or [])}{maps} | seed={row.get('seed')}")
    lines = [head, "-" * len(head)]
    headline = _policy_headline(row)
    if headline is not None:
        key, desc, value = headline
        lines.append(f"  {key:<18} {value:7.2f}   {desc}")
    for key, desc in METRICS.items():
        if key not in row or is_missing(row[key]):
            continue
        if headline is not None and key == headline[0]:
            continue  # already the first line
        if row.get("tau_policy") is not None and key == "maxboxacc":
            oracle = row.get("oracle_tau", row.get("maxboxacc_tau"))
            desc += f": upper bound (oracle tau={format_value('tau', oracle)})"
        elif row.get("tau_policy") is not None and key == "maxboxacc_v2":
            desc += ": upper bound (oracle tau per IoU)"
        lines.append(f"  {key:<18} {float(row[key]):7.2f}   {desc}")
    extra = [f"{k}={row[k]}" for k in ("n_loc_images", "n_skipped", "train_acc", "train_seconds", "eval_seconds")
             if k in row]
    if extra:
        lines.append("  " + "  ".join(extra))
    return "\n".join(lines)
