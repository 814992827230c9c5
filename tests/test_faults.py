"""Kill tests: real subprocesses SIGKILLed in the middle of a checkpoint write and of a CAM-shard write, then
resumed; the result equals an uninterrupted run (weights, metrics, log), and the work lost is at most the work since
the last checkpoint or shard. The kill is injected by ``WSOL_KILL_DURING_WRITE`` (``wsol.io``): half the bytes
reach the temporary file, then the process SIGKILLs itself, before the rename."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TINY = ["data.num_images={train:64,val:16,test:32}", "data.image_size=32", "data.resize_size=32", "data.crop_size=32",
        "data.render_size=32", "train.epochs=3", "train.batch_size=16", "train.log_every=1", "+model.kwargs.width=4",
        "device=cpu", "train.checkpoint_every=2", "eval.save_cams=true", "eval.shard_size=8"]
METRICS = ("top1_cls_err", "top5_cls_err", "top1_loc_err", "top5_loc_err", "gt_known_loc_err")


def _run(module: str, *args: str, kill: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if kill:
        env["WSOL_KILL_DURING_WRITE"] = kill
    return subprocess.run([sys.executable, "-m", f"wsol.{module}", *args], capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = _run("run", f"hydra.run.dir={out}", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _same_run(a: Path, b: Path) -> None:
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    for key in METRICS:
        assert ma[key] == mb[key], key
    wa, wb = (torch.load(d / "model.pt", weights_only=True)["model"] for d in (a, b))
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    assert (a / "train_log.csv").read_text() == (b / "train_log.csv").read_text()


def test_kill_during_a_checkpoint_write_then_resume(reference: Path, tmp_path: Path) -> None:
    killed = _run("run", f"hydra.run.dir={tmp_path}", *TINY, kill="last.pt:3")  # 3rd checkpoint: step 6 of 12
    assert killed.returncode == -signal.SIGKILL
    assert list((tmp_path / "checkpoints").glob(".last.pt.tmp*"))  # the half-written file is there ...
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 4  # ... and the previous checkpoint is intact: at most 2 steps of work lost
    resumed = _run("run", *TINY, f"train.resume={tmp_path}")  # the run dir is found from train.resume
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _same_run(reference, tmp_path)


def test_kill_during_a_shard_write_then_resume(reference: Path, tmp_path: Path) -> None:
    args = [f"checkpoint={reference / 'model.pt'}", *TINY[:5], "device=cpu", "eval.save_cams=true",
            "eval.shard_size=8", f"hydra.run.dir={tmp_path}"]
    killed = _run("evaluate", *args, kill="shard_r000:2")  # 2nd shard of 4 (8 images each)
    assert killed.returncode == -signal.SIGKILL and not (tmp_path / "cams" / "index.json").exists()
    resumed = _run("evaluate", *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "8 images scored from the store's finished shards, 24 to compute" in resumed.stdout + resumed.stderr
    a = json.loads((reference / "metrics.json").read_text())
    b = json.loads((tmp_path / "metrics.json").read_text())
    for key in METRICS:
        assert a[key] == b[key], key
    assert (reference / "predictions.csv").read_text() == (tmp_path / "predictions.csv").read_text()


@pytest.mark.slow
def test_interrupted_sweep_skips_finished_jobs_and_resumes_the_other(tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    sweep = ["-m", "model.pool=gap,gmp", *TINY]
    assert _run("run", *sweep, f"hydra.sweep.dir={ref}").returncode == 0
    # job 0 writes 6 checkpoints; the 9th write of last.pt is job 1's 3rd
    killed = _run("run", *sweep, f"hydra.sweep.dir={tmp_path / 's'}", "train.resume=auto", kill="last.pt:9")
    assert killed.returncode == -signal.SIGKILL and (tmp_path / "s" / "0" / "metrics.json").is_file()
    again = _run("run", *sweep, f"hydra.sweep.dir={tmp_path / 's'}", "train.resume=auto")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already complete" in again.stdout
    for job in ("0", "1"):
        _same_run(ref / job, tmp_path / "s" / job)


def test_ctrl_c_says_where_the_checkpoint_is_and_how_to_resume(tmp_path: Path) -> None:
    import shlex
    import time

    args = [*TINY[:10], "train.epochs=50", "train.checkpoint_every=2", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.Popen([sys.executable, "-m", "wsol.train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    log = tmp_path / "train_log.csv"
    deadline = time.time() + 300
    while time.time() < deadline and (not log.is_file() or log.read_text().count("\n") < 6):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("interrupted at step ") and "last checkpoint: step" in line, line
    command = line.split("resume with: ", 1)[1]
    assert command.startswith("python -m wsol.train ") and f"train.resume={tmp_path}" in command
    step = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert f"last checkpoint: step {step} " in line
    # the printed command resumes the run (shortened to 1 more epoch is not allowed: settings must not change)
    resumed = subprocess.run([sys.executable, "-m", "wsol.train", *shlex.split(command)[3:],
                              "train.epochs=51"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 2 and "the run's settings changed" in resumed.stderr
