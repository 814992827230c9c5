"""``wsol-evaluate`` (also ``torchrun ... -m wsol.evaluate``): score a checkpoint, a pretrained model, or stored CAMs.

The evaluators, the inference loop and the CAM store are in ``wsol.evaluation``; this module turns the config into
that call and nothing else.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from wsol import CONFIG_DIR
from wsol.cli import hydra_entry
from wsol.conf import register_configs

register_configs()
log = logging.getLogger(__name__)


def _resume_command(out_dir: Path) -> str | None:
    """The command that continues this evaluation from its CAM store's finished shards (None without a store)."""
    from hydra.core.hydra_config import HydraConfig

    from wsol.cli import resume_command

    cams = out_dir / "cams"
    if not ((cams / "index.json").is_file() or any(cams.glob("journal_r*.json"))):
        return None
    return resume_command(str(out_dir), list(HydraConfig.get().overrides.task), key="hydra.run.dir")


def _evaluate(cfg: DictConfig, out_dir: Path) -> None:
    from hydra.core.hydra_config import HydraConfig

    from wsol.cli import failure_hint
    from wsol.config import provenance, save_run_files
    from wsol.engine.distributed import get_dist
    from wsol.jobs import completed_row, evaluate_job, prepare_job, rescore_job
    from wsol.report import format_summary

    hc = HydraConfig.get()
    done = completed_row(out_dir, cfg)
    if done is not None:
        print(format_summary(done))
        print(f"already complete (same config): {out_dir / 'metrics.json'}")
        return
    # a Ctrl-C or a failed write (disk full) says how to continue from the CAM store's finished shards
    with failure_hint(lambda: None if cfg.cams else _resume_command(out_dir)):
        if cfg.cams:
            overridden = any(o.lstrip("+").startswith("data") for o in hc.overrides.task)
            row = rescore_job(cfg, out_dir, data_overridden=overridden)
        else:
            job = prepare_job(cfg, out_dir, train=False, evaluate=True, checkpoint=cfg.checkpoint)
            if cfg.checkpoint and (job.spec["name"], job.spec["pool"]) != (cfg.model.name, cfg.model.pool.value):
                log.info("the checkpoint's model %s/%s replaces model=%s", job.spec["name"], job.spec["pool"],
                         cfg.model.name)
            row = evaluate_job(job)
            if cfg.checkpoint:
                row["checkpoint"] = str(cfg.checkpoint)
        row.update(provenance())
        save_run_files(out_dir, cfg, row)
    if get_dist().is_main:
        print(format_summary(row))
        print(f"run dir: {out_dir}")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    """``wsol-evaluate``: Hydra app over ``configs/evaluate.yaml``."""
    from hydra.core.hydra_config import HydraConfig

    from wsol.cli import cli_guard

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    cli_guard(lambda: _evaluate(cfg, out_dir), run_dir=out_dir)


cli = hydra_entry(main)  # the console script: composition errors exit 2 like other user errors

if __name__ == "__main__":
    cli()
