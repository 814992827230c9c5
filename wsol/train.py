"""``wsol-train`` (also ``torchrun ... -m wsol.train``): training only, into a Hydra run dir.

Writes ``model.pt``, ``checkpoints/last.pt``, ``train_log.csv``, ``config.yaml`` and ``metrics.json``. The work is in
``wsol.jobs`` / ``wsol.engine``; this module turns the config into that call and nothing else.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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


@contextmanager
def resume_hint(out_dir: Path) -> Iterator[None]:
    """A Ctrl-C or a failed write (``OSError``: disk full ...) in the block carries the exact command that resumes
    this run (``train.resume=<run dir>``, under torchrun the torchrun command), once a checkpoint exists."""
    from hydra.core.hydra_config import HydraConfig

    from wsol.cli import failure_hint, resume_command

    def command() -> str | None:
        if not (out_dir / "checkpoints" / "last.pt").is_file():
            return None
        return resume_command(str(out_dir), list(HydraConfig.get().overrides.task))

    with failure_hint(command):
        yield


def _train(cfg: DictConfig, out_dir: Path) -> None:
    from wsol.config import provenance, save_run_files
    from wsol.engine.distributed import get_dist
    from wsol.jobs import completed_row, prepare_job, train_job

    if completed_row(out_dir, cfg) is not None:
        print(f"already complete (same config): {out_dir / 'metrics.json'}")
        return
    job = prepare_job(cfg, out_dir, train=True, evaluate=False, named=run_dir_is_named(cfg))
    with resume_hint(out_dir):
        result = train_job(job)
        # train_acc in percent, as every metric (and wsol-run's row)
        save_run_files(out_dir, cfg, {"task": "train", "dataset": cfg.data.name, "arch": job.arch,
                                      "pool": job.model.pool, "recipe": job.settings.recipe, "seed": cfg.seed,
                                      "steps": result.steps, "epochs": round(result.epochs, 3),
                                      "final_loss": result.final_loss, "train_acc": round(100 * result.train_acc, 2),
                                      "train_seconds": round(result.seconds, 1), "n_train_skipped": len(result.skipped),
                                      "train_skipped": result.skipped, **provenance()})
    if get_dist().is_main:
        print(f"trained {result.steps} steps in {result.seconds:.0f}s; final loss {result.final_loss:.4f}, "
              f"train acc {100 * result.train_acc:.1f}%; weights: {out_dir / 'model.pt'}")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    """``wsol-train``: Hydra app over ``configs/train.yaml``."""
    from hydra.core.hydra_config import HydraConfig

    from wsol.cli import cli_guard

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    cli_guard(lambda: _train(cfg, out_dir), run_dir=out_dir)


cli = hydra_entry(main)  # the console script: composition errors exit 2 like other user errors

if __name__ == "__main__":
    cli()
