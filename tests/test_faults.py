"""Kill tests: real subprocesses SIGKILLed in the middle of a checkpoint write and of a CAM-shard write, then
resumed; the result equals an uninterrupted run (weights, metrics, log), and the work lost is at most the work since
the last checkpoint or shard. The kill is injected by ``WSOL_KILL_DURING_WRITE`` (``wsol.io``): half the bytes
reach the temporary file, then the process SIGKILLs itself, before the rename.

Disk-full tests: the real commands with ``wsol.io.atomic_write`` patched (``_run_patched``) so that the n-th write of
a file raises ENOSPC after its first byte, as a full disk does; each failure is one line saying what is kept and the
command that continues, and that command finishes the run. Ctrl-C tests: SIGINT at a chosen moment (after the first
checkpoints, inside a checkpoint's write), and a simulated Ctrl-C (``KeyboardInterrupt``) in the evaluation loop.
Run-dir lock: a second job on a run dir in use is refused, naming the first."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

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


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    """Poll ``condition`` until it holds; fail (not hang) if ``proc`` ends first or ``timeout`` passes."""
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the process ended (rc {proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_ctrl_c_says_where_the_checkpoint_is_and_how_to_resume(tmp_path: Path) -> None:
    import shlex

    args = [*TINY[:10], "train.epochs=50", "train.checkpoint_every=2", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.Popen([sys.executable, "-m", "wsol.train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    log, ckpt = tmp_path / "train_log.csv", tmp_path / "checkpoints" / "last.pt"
    # the SIGINT handler exists from the interpreter's start; training has begun once a checkpoint is on disk and
    # the log holds 5 steps. A Ctrl-C landing inside a checkpoint write is held until the write is recorded
    # (Trainer.checkpoint), so the step the message names is the file's (the race that made this test flaky:
    # test_ctrl_c_inside_a_checkpoint_write_names_the_checkpoint_on_disk sends it there on purpose)
    _wait_for(lambda: ckpt.is_file() and log.is_file() and log.read_text().count("\n") >= 6, proc,
              "the first checkpoints")
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


def test_ctrl_c_inside_a_checkpoint_write_names_the_checkpoint_on_disk(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The race behind the flaky Ctrl-C test, made deterministic: SIGINT arrives right after a checkpoint's rename,
    before the trainer recorded its step. The message must name the step of the file on disk."""
    from dataclasses import replace

    import wsol.io as io
    from test_engine import SETTINGS, _train
    from wsol.engine.trainer import TrainingInterrupted

    real, renamed = io.fsync_dir, []

    def ctrl_c_after_the_rename(path: Any) -> None:  # atomic_write: rename, then fsync of the folder
        real(path)
        if Path(path).name == "checkpoints":
            renamed.append(path)
            if len(renamed) == 2:  # the 2nd checkpoint (step 4) is on disk
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(io, "fsync_dir", ctrl_c_after_the_rename)
    with pytest.raises(TrainingInterrupted) as raised:
        _train(tmp_path, settings=replace(SETTINGS, checkpoint_every=2))
    on_disk = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert on_disk == 4 and raised.value.checkpoint_step == on_disk


# ----------------------------------------------------------------------------- full disk, Ctrl-C, one line each
def _run_patched(module: str, args: list[str], patch: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The command ``module`` (as ``wsol-<module>``) in a fresh interpreter, after running ``patch`` there."""
    code = textwrap.dedent(patch) + textwrap.dedent(f"""
        import sys
        from wsol.{module} import cli
        sys.argv = ["wsol-{module}", *{args!r}]
        cli()
        """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def _disk_full(name_part: str, nth: int) -> str:
    """Patch code: from the ``nth`` atomic write of a file whose name contains ``name_part`` on, the write fails
    after its first byte with ENOSPC (no file name in the error, as the kernel's)."""
    return f"""
        import errno
        import wsol.io as io
        real, count = io.atomic_write, [0]

        def atomic_write(path, write):
            if {name_part!r} in str(path):
                count[0] += 1
                if count[0] >= {nth}:
                    def full(f):
                        f.write(b"x")
                        raise OSError(errno.ENOSPC, "No space left on device")
                    return real(path, full)
            return real(path, write)

        io.atomic_write = atomic_write
        """


def _error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def test_disk_full_during_a_checkpoint_keeps_the_previous_one_and_says_how_to_resume(reference: Path,
                                                                                      tmp_path: Path) -> None:
    import shlex

    args = [f"hydra.run.dir={tmp_path}", *TINY]
    line = _error_line(_run_patched("run", args, _disk_full("last.pt", 3)))  # 3rd checkpoint: step 6
    assert line.startswith(f"error: {tmp_path / 'checkpoints' / 'last.pt'}: No space left on device; "
                           "the previous checkpoint (step 4) is kept; resume with: wsol-run "), line
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"] == 4
    assert not list((tmp_path / "checkpoints").glob(".last.pt.tmp*"))
    command = shlex.split(line.split("resume with: ", 1)[1])
    assert command[-1] == f"train.resume={tmp_path}"
    resumed = _run("run", *command[1:])  # the printed command, space freed
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _same_run(reference, tmp_path)


def test_disk_full_during_a_cam_shard_keeps_the_finished_shards(reference: Path, tmp_path: Path) -> None:
    import shlex

    args = [f"checkpoint={reference / 'model.pt'}", *TINY[:5], "device=cpu", "eval.save_cams=true",
            "eval.shard_size=8", f"hydra.run.dir={tmp_path}"]
    line = _error_line(_run_patched("evaluate", args, _disk_full("shard_r000", 2)))
    assert line.startswith(f"error: {tmp_path / 'cams' / 'shard_r000_00001.pt'}: No space left on device; 1 finished "
                           f"CAM shard(s) are kept in {tmp_path / 'cams'}; "), line
    command = shlex.split(line.split("resume with: ", 1)[1])
    assert command[0] == "wsol-evaluate" and command[-1] == f"hydra.run.dir={tmp_path}"
    resumed = _run("evaluate", *command[1:])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "8 images scored from the store's finished shards, 24 to compute" in resumed.stdout + resumed.stderr
    assert (reference / "predictions.csv").read_text() == (tmp_path / "predictions.csv").read_text()


def test_disk_full_writing_metrics_says_model_pt_is_kept(tmp_path: Path) -> None:
    args = [f"hydra.run.dir={tmp_path}", *TINY[:-2], "train.epochs=1"]
    proc = _run_patched("run", args, _disk_full("metrics.json", 1))
    line = _error_line(proc)
    assert line.startswith(f"error: {tmp_path / 'metrics.json'}: No space left on device; resume with: wsol-run "), line
    assert f"training finished and {tmp_path / 'model.pt'} is saved" in proc.stderr
    assert not (tmp_path / "metrics.json").exists() and not list(tmp_path.glob(".metrics.json.tmp*"))


def test_ctrl_c_during_an_evaluation_says_what_is_kept(reference: Path, tmp_path: Path) -> None:
    args = [f"checkpoint={reference / 'model.pt'}", *TINY[:5], "device=cpu", "eval.save_cams=true",
            "eval.shard_size=8", "eval.batch_size=8", f"hydra.run.dir={tmp_path}"]
    ctrl_c = """
        import wsol.evaluation.inference as inference
        real, count = inference._process, [0]

        def process(*args, **kwargs):  # Ctrl-C while the 3rd batch of 8 is scored (its shard is written)
            count[0] += 1
            if count[0] == 3:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        inference._process = process
        """
    proc = _run_patched("evaluate", args, ctrl_c)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"interrupted; 3 finished CAM shard(s) are kept in {tmp_path / 'cams'}; the same command in "
                           "this run dir continues from them (eval.resume=true); resume with: wsol-evaluate "), line


def test_a_read_only_run_dir_and_report_out_are_one_line(reference: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Read-only folders, simulated (the tests may run as root, for whom permissions are not enforced)."""
    import pandas as pd

    from wsol.cli import cli_guard
    from wsol.report import main as report_main

    real = Path.write_bytes

    def read_only(self: Path, data: bytes) -> int:
        if self.parent == tmp_path / "ro":
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", read_only)
    with pytest.raises(SystemExit) as raised:
        cli_guard(lambda: pytest.fail("the body ran"), run_dir=tmp_path / "ro")
    err = capsys.readouterr().err
    assert raised.value.code == 2 and err.startswith(f"error: the run dir: cannot write in {tmp_path / 'ro'} "
                                                     "(Read-only file system)\n"), err

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    with pytest.raises(SystemExit) as raised:
        report_main([str(reference), "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert raised.value.code == 2 and err == f"wsol-report: error: {tmp_path / 'report'}.*: No space left on device\n"


def test_the_resume_hint_under_torchrun_is_the_torchrun_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """A torchrun worker is ``python -m wsol.train``; resumed that way, its checkpoint (world size 2) is refused."""
    import types

    from wsol.cli import resume_command

    monkeypatch.setattr(sys, "argv", ["/x/wsol/train.py", "seed=1"])
    monkeypatch.setitem(sys.modules, "__main__", types.SimpleNamespace(__spec__=types.SimpleNamespace(
        name="wsol.train")))
    assert resume_command("out/r", ["seed=1"]) == "python -m wsol.train seed=1 train.resume=out/r"
    for key, value in {"TORCHELASTIC_RUN_ID": "none", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
                       "GROUP_WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)
    assert resume_command("out/r", ["seed=1", "train.resume=auto"]) == \
        "torchrun --nproc_per_node=2 -m wsol.train seed=1 train.resume=out/r"
    monkeypatch.setenv("GROUP_WORLD_SIZE", "2")
    assert resume_command("out/r", []).startswith("torchrun --nnodes=2 --nproc_per_node=2 ")


# ----------------------------------------------------------------------------- one job per run dir
def test_a_second_job_on_a_run_dir_in_use_is_refused_naming_the_first(tmp_path: Path) -> None:
    first = subprocess.Popen([sys.executable, "-m", "wsol.train", *TINY[:10], "train.epochs=5000",
                              f"hydra.run.dir={tmp_path}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        log, lock = tmp_path / "train_log.csv", tmp_path / ".wsol.lock"
        # training has started, so the run dir is locked (first thing in the job, before anything is built)
        _wait_for(lambda: log.is_file() and log.read_text().count("\n") >= 2, first, "the first job's training")
        overrides = (tmp_path / ".hydra" / "overrides.yaml").read_text()
        second = _run("run", f"hydra.run.dir={tmp_path}", *TINY, "seed=7")
        assert second.returncode == 2, second.stderr[-3000:]
        line = _error_line(second)
        assert line.startswith(f"error: the run dir {tmp_path} is in use by another job (pid {first.pid} on "
                               f"{socket.gethostname()}, started "), line
        assert "-m wsol.train" in line or "wsol/train.py" in line
        assert (tmp_path / ".hydra" / "overrides.yaml").read_text() == overrides  # the first job's, not seed=7
        assert not (tmp_path / "metrics.json").exists()
        from wsol.io import lock_run_dir

        with lock_run_dir(tmp_path, rank=1):  # under torchrun only rank 0 locks: the job's other ranks pass
            pass
    finally:
        first.kill()  # SIGKILL: no clean-up runs, the kernel releases the lock
        first.wait()
    with lock_run_dir(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "pid" not in json.loads(lock.read_text())  # released: nobody is named as the holder
