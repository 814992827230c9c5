"""``wsol-run``: the main job — train -> CAMs -> boxes -> scores -> summary, in one Hydra run dir."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from wsol import CONFIG_DIR
from wsol.config import save_run_files
from wsol.evaluate import run_evaluation
from wsol.report import format_summary
from wsol.train import run_training

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="run")
def main(cfg: DictConfig) -> float:
    """Train, evaluate, write ``metrics.json`` + ``config.yaml``, print the summary table.

    Returns the top-1 localization error (or MaxBoxAccV2 for wsolevaluation), so a Hydra sweeper
    can optimise it.
    """
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    model, result = run_training(cfg, out_dir)
    row = run_evaluation(cfg, model, cfg.model.name, out_dir)
    row.update({"train_steps": result.steps, "train_epochs": round(result.epochs, 3),
                "train_final_loss": round(result.final_loss, 4), "train_acc": round(100 * result.train_acc, 2),
                "train_seconds": round(result.seconds, 1)})
    save_run_files(out_dir, cfg, row)
    print(format_summary(row))
    print(f"run dir: {out_dir}")
    return float(row.get("top1_loc_err", row.get("maxboxacc_v2", float("nan"))))


if __name__ == "__main__":
    main()
