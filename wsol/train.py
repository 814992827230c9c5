"""``wsol-train`` (also ``torchrun ... -m wsol.train``): training only, into a Hydra run dir.

Writes ``model.pt``, ``checkpoints/last.pt``, ``train_log.csv``, ``config.yaml`` and ``metrics.json``. The work is in
``wsol.jobs`` / ``wsol.engine``; this module turns the config into that call and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from wsol import CONFIG_DIR
from wsol.cli import hydra_entry
from wsol.conf import register_configs

register_configs()


def run_dir_is_named(cfg: DictConfig) -> bool:
    """Whether this job's run dir is a stable, user-chosen place (``name=``, ``hydra.run.dir=``, a sweep job)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    explicit = any(o.split("=", 1)[0].lstrip("+") in ("hydra.run.dir", "hydra.sweep.dir")
                   for o in hc.overrides.hydra)
    return bool(cfg.get("name")) or explicit or hc.mode == RunMode.MULTIRUN or \
        cfg.get("train", {}).get("resume") not in (None, "", "auto")


def train_with_resume_hint(job: Any, out_dir: Path) -> Any:
    """``wsol.jobs.train_job``; on Ctrl-C the error carries the exact command that resumes this run."""
    from hydra.core.hydra_config import HydraConfig

    from wsol.cli import resume_command
    from wsol.engine.trainer import TrainingInterrupted
    from wsol.jobs import train_job

    try:
        return train_job(job)
    except TrainingInterrupted as err:
        err.resume_hint = resume_command(str(out_dir), list(HydraConfig.get().overrides.task))  # type: ignore
        raise


def _train(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from wsol.config import save_run_files
    from wsol.engine.distributed import get_dist
    from wsol.jobs import completed_row, prepare_job

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    if completed_row(out_dir, cfg) is not None:
        print(f"already complete (same config): {out_dir / 'metrics.json'}")
        return
    job = prepare_job(cfg, out_dir, train=True, evaluate=False, named=run_dir_is_named(cfg))
    result = train_with_resume_hint(job, out_dir)
    save_run_files(out_dir, cfg, {"task": "train", "dataset": cfg.data.name, "arch": job.arch, "pool": job.model.pool,
                                  "recipe": job.settings.recipe, "seed": cfg.seed, "steps": result.steps,
                                  "epochs": round(result.epochs, 3), "final_loss": result.final_loss,
                                  "train_acc": result.train_acc, "train_seconds": round(result.seconds, 1),
                                  "n_train_skipped": len(result.skipped), "train_skipped": result.skipped})
    if get_dist().is_main:
        print(f"trained {result.steps} steps in {result.seconds:.0f}s; final loss {result.final_loss:.4f}, "
              f"train acc {100 * result.train_acc:.1f}%; weights: {out_dir / 'model.pt'}")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    """``wsol-train``: Hydra app over ``configs/train.yaml``."""
    from wsol.cli import cli_guard

    cli_guard(lambda: _train(cfg))


cli = hydra_entry(main)  # the console script: composition errors exit 2 like other user errors

if __name__ == "__main__":
    cli()
