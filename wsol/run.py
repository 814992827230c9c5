"""``wsol-run`` (also ``torchrun ... -m wsol.run``): train -> CAMs -> boxes -> scores -> summary, in one run dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from wsol import CONFIG_DIR
from wsol.cli import hydra_entry
from wsol.conf import register_configs
from wsol.train import resume_hint, run_dir_is_named

register_configs()


def _headline(row: dict[str, Any]) -> float:
    for key in ("top1_loc_err", "boxacc_at_tau", "maxboxacc_v2"):
        if row.get(key) is not None:
            return float(row[key])
    return float("nan")


def _run(cfg: DictConfig, out_dir: Path) -> float:
    from wsol.config import provenance, save_run_files
    from wsol.engine.distributed import get_dist
    from wsol.jobs import completed_row, evaluate_job, prepare_job, train_job
    from wsol.report import format_summary

    done = completed_row(out_dir, cfg)
    if done is not None:
        print(format_summary(done))
        print(f"already complete (same config): {out_dir / 'metrics.json'}")
        return _headline(done)
    job = prepare_job(cfg, out_dir, train=True, evaluate=True, named=run_dir_is_named(cfg))
    with resume_hint(out_dir):  # after training too: resuming the finished run evaluates it again
        result = train_job(job)
        row = evaluate_job(job)
        row.update({"recipe": job.settings.recipe, "train_steps": result.steps,
                    "train_epochs": round(result.epochs, 3), "train_final_loss": round(result.final_loss, 4),
                    "train_acc": round(100 * result.train_acc, 2), "train_seconds": round(result.seconds, 1),
                    "n_train_skipped": len(result.skipped), "train_skipped": result.skipped, **provenance()})
        save_run_files(out_dir, cfg, row)
    if get_dist().is_main:
        print(format_summary(row))
        print(f"run dir: {out_dir}")
    return _headline(row)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="run")
def main(cfg: DictConfig) -> float:
    """Train, evaluate, write ``metrics.json`` + ``config.yaml``, print the summary table.

    Returns the headline error/accuracy (top-1 loc error; BoxAcc under the tau policy), for Hydra sweepers.
    """
    from hydra.core.hydra_config import HydraConfig

    from wsol.cli import cli_guard

    out_dir = Path(HydraConfig.get().runtime.output_dir)

    def after_failure() -> str | None:
        if (out_dir / "model.pt").is_file() and not (out_dir / "metrics.json").is_file():
            return (f"training finished and {out_dir / 'model.pt'} is saved; re-score it with:\n  wsol-evaluate "
                    f"checkpoint={out_dir / 'model.pt'} "
                    + " ".join(o for o in HydraConfig.get().overrides.task if o.startswith(("data", "eval", "cam"))))
        return None

    return cli_guard(lambda: _run(cfg, out_dir), after_failure=after_failure, run_dir=out_dir)


cli = hydra_entry(main)  # the console script: composition errors exit 2 like other user errors

if __name__ == "__main__":
    cli()
