"""Reports: a run's console summary, study tables over run dirs (``wsol-report``), the failure breakdown.

What a run dir holds (written by ``wsol-run`` / ``wsol-evaluate``): ``metrics.json`` (one flat row),
``config.yaml``, ``.hydra/overrides.yaml`` (the job's command-line overrides), curve CSVs
(``boxacc_curve.csv``), with the paper protocol ``predictions.csv`` (one row per scored image) and, with
``eval.save_cams=true``, a CAM store ``cams/``.

Grouping, stated once here:
    * **sweep**: the Hydra multirun dir of a job (the dir holding ``multirun.yaml``, i.e.
      ``multirun/<task>/<timestamp>``), or the run dir itself for a single run;
    * **config**: the job's overrides minus ``seed``, sorted (``model.pool=gmp sweep=gap_vs_gmp``);
    * a **group** is the runs sharing sweep, config and identity (dataset, data_root, split, arch, pool,
      protocol, tau_policy; identity keeps runs apart even without ``.hydra/overrides.yaml``). Its seeds are
      aggregated: mean, sample standard deviation (``ddof=1``; blank for a single run) and ``n``.

Rounding, as the CAM paper prints its tables: percentages (errors, accuracies) with 2 decimals, trailing
zeros kept (43.00, 56.40); thresholds tau with 3 decimals (the finest wsolevaluation grid is 0.001);
counts as integers. CSV files keep full precision; markdown and the console are rounded.

Modules: ``summary`` (``format_summary``, rounding), ``runs`` (collecting, grouping, aggregating),
``failures`` (``predictions.csv``, the failure causes; ``classify_failure`` itself is box geometry, ``wsol.boxes``),
``study`` (``write_study``, the ``wsol-report`` main), ``overlays`` (the images and CAMs of a run's overlay grid) and
``visualize_cli`` (the ``wsol-visualize`` main). None imports torch or matplotlib at import time (``wsol-report
--help`` stays fast): figures are drawn by ``wsol.visualize`` (which imports nothing of the report), imported when a
figure is drawn.
"""

from wsol.report.failures import (FAILURE_CATEGORIES, PREDICTION_COLUMNS, classify_failure, failure_breakdown,
                                  failure_categories, failure_row, parse_boxes, read_predictions)
from wsol.report.runs import (AGGREGATED, GROUP_COLUMNS, ID_COLUMNS, PAPER_ILSVRC_VAL, add_paper_columns,
                              aggregate_runs, collect_runs, config_of, describe_sweeps, group_runs, latest_sweeps,
                              mean_std, read_overrides, shared_overrides, sweep_of, varying_config)
from wsol.report.study import POLICY_COLUMNS, main, write_study
from wsol.report.summary import (METRICS, TAU_POLICY_MEANINGS, chosen_taus, decimals, format_mean_std, format_summary,
                                 format_value)

__all__ = [
    "AGGREGATED", "FAILURE_CATEGORIES", "GROUP_COLUMNS", "ID_COLUMNS", "METRICS", "PAPER_ILSVRC_VAL",
    "POLICY_COLUMNS", "PREDICTION_COLUMNS", "TAU_POLICY_MEANINGS", "add_paper_columns", "aggregate_runs", "chosen_taus",
    "classify_failure", "collect_runs", "config_of", "decimals", "describe_sweeps", "failure_breakdown",
    "failure_categories", "failure_row", "format_mean_std", "format_summary", "format_value", "group_runs",
    "latest_sweeps", "main", "mean_std", "parse_boxes", "read_overrides", "read_predictions", "shared_overrides",
    "sweep_of", "varying_config", "write_study",
]
