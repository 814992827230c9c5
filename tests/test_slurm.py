"""SLURM: the launcher config composes, and a multi-task SLURM job gets torch.distributed's variables from SLURM's
(through submitit, as Hydra's submitit launcher runs each task)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from wsol import CONFIG_DIR
from wsol.conf import register_configs

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
register_configs()


def test_slurm_launcher_config_composes() -> None:
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("run", ["hydra/launcher=slurm", "name=study", "hydra.launcher.gpus_per_node=4"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == 4 and launcher.max_num_timeout > 0  # one task per GPU; requeued on timeout


def test_rank_variables_from_a_slurm_task() -> None:
    # task 3 of 4 on the second of two nodes, as SLURM describes it to a submitit-launched task
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    env.update(SUBMITIT_EXECUTOR="slurm", SLURM_JOB_ID="123", SLURM_NTASKS="4", SLURM_PROCID="3", SLURM_LOCALID="1",
               SLURM_JOB_NODELIST="gpu[01-02]", SLURM_JOB_NUM_NODES="2", SLURM_NODEID="1")
    code = ("import os; from wsol.engine.distributed import export_slurm_env; assert export_slurm_env(); "
            "print(*(os.environ[k] for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR')))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["3", "4", "1", "gpu01"]
