"""torch.distributed on CPU (gloo): a 2-process ``torchrun`` equals the 1-process run — training steps, sharded
evaluation with an odd and an even number of images (no image dropped or counted twice), the CAM store of 2 ranks."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from wsol.engine.distributed import DistInfo, shard_indices

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
TINY = ["data.render_size=32", "data.image_size=32", "data.resize_size=32", "data.crop_size=32",
        "train.epochs=2", "train.batch_size=16", "train.log_every=1", "+model.kwargs.width=4", "device=cpu",
        "train.recipe=head", "paths.cache_dir=null", "train.scheduler.warmup_iters=0"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(nproc: int, module: str, *args: str) -> subprocess.CompletedProcess:
    if nproc == 1:
        cmd = [sys.executable, "-m", f"wsol.{module}", *args]
    else:
        cmd = [TORCHRUN, "--standalone", f"--nproc_per_node={nproc}", "-m", f"wsol.{module}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env())


def test_shards_cover_every_image_once() -> None:
    for n in (0, 1, 7, 32, 33):
        for world in (1, 2, 3, 5):
            got = [i for r in range(world) for i in shard_indices(n, r, world)]
            assert got == list(range(n)), (n, world)


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not found")
@pytest.mark.parametrize("n_test", [33, pytest.param(32, marks=pytest.mark.slow)])
def test_two_processes_equal_one(tmp_path: Path, n_test: int) -> None:
    data = f"data.num_images={{train:64,val:16,test:{n_test}}}"
    one = _run(1, "run", f"hydra.run.dir={tmp_path / 'one'}", data, *TINY, "eval.save_cams=true")
    assert one.returncode == 0, one.stderr[-3000:]
    two = _run(2, "run", f"hydra.run.dir={tmp_path / 'two'}", data, *TINY, "eval.save_cams=true")
    assert two.returncode == 0, two.stderr[-3000:]
    a = torch.load(tmp_path / "one" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "two" / "model.pt", weights_only=True)["model"]
    for key in a:  # the same global batches, gradients averaged by DDP: the same weights (to fp32 rounding)
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    ma = json.loads((tmp_path / "one" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert (ma["world_size"], mb["world_size"]) == (1, 2)
    assert ma["n_images"] == mb["n_images"] == ma["n_loc_images"] == mb["n_loc_images"] == n_test
    for key in ("top1_cls_err", "top5_cls_err", "top1_loc_err", "top5_loc_err", "gt_known_loc_err"):
        assert ma[key] == mb[key], key
    # one shard set per rank, one index; per-image rows gathered from both ranks, in image order
    index = json.loads((tmp_path / "two" / "cams" / "index.json").read_text())
    assert sorted(s["file"].split("_")[1] for s in index["shards"]) == ["r000", "r001"]
    assert index["num_images"] == n_test
    rows = (tmp_path / "two" / "predictions.csv").read_text().splitlines()
    assert rows == (tmp_path / "one" / "predictions.csv").read_text().splitlines()

    # the same checkpoint evaluated by 2 processes under wsolevaluation: identical to 1 process
    ev = ["eval.protocol=wsolevaluation", "eval.cam_curve_interval=0.01", f"checkpoint={tmp_path / 'one' / 'model.pt'}",
          data, *TINY[:4], "device=cpu"]
    e1 = _run(1, "evaluate", f"hydra.run.dir={tmp_path / 'e1'}", *ev)
    e2 = _run(2, "evaluate", f"hydra.run.dir={tmp_path / 'e2'}", *ev)
    assert e1.returncode == 0 and e2.returncode == 0, (e1.stderr + e2.stderr)[-3000:]
    m1 = json.loads((tmp_path / "e1" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    for key in ("maxboxacc", "maxboxacc_v2", "top1_cls_err", "n_loc_images"):
        assert m1[key] == m2[key], key
    c1 = np.loadtxt(tmp_path / "e1" / "boxacc_curve.csv", delimiter=",", skiprows=1)
    c2 = np.loadtxt(tmp_path / "e2" / "boxacc_curve.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal(c1, c2)


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not found")
@pytest.mark.parametrize("method", ["spg", pytest.param("has", marks=pytest.mark.slow),
                                    pytest.param("acol", marks=pytest.mark.slow)])
def test_training_methods_run_under_torchrun_and_resume(tmp_path: Path, method: str) -> None:
    # DDP wraps the method's training net (wsol.methods.MethodNet): extra layers get averaged gradients, each rank
    # draws its own masks (seeded by rank), and a re-launch continues the finished run without training again
    args = [f"hydra.run.dir={tmp_path}", "data.num_images={train:64,val:16,test:16}", *TINY[:-3],
            "train.recipe=full", f"method={method}", "train.resume=auto"]
    first = _run(2, "run", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert state["spec"]["method"]["name"] == method
    assert json.loads((tmp_path / "metrics.json").read_text())["world_size"] == 2
    again = _run(2, "run", *args)
    assert again.returncode == 0 and "already complete" in again.stdout, again.stderr[-3000:]


@dataclass(frozen=True)
class OneRankDDP(DistInfo):
    """A one-process job that still trains through DDP (wsol takes world size 1 for no DDP at all): the DDP path of
    the trainer in-process, on the CPU (gloo) here and over NCCL on the GPU (tests/test_gpu.py)."""

    @property
    def enabled(self) -> bool:
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_with_gradient_accumulation_equals_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two micro-batches per step: DDP skips the all-reduce of the first (no_sync, entered for its forward and again
    # for its backward); a one-use context manager entered twice crashed the first step.
    import torch.distributed as dist
    import torch.nn.parallel

    import wsol.engine.trainer as trainer
    from test_engine import SETTINGS, _train

    made: list[Any] = []

    class SpyDDP(torch.nn.parallel.DistributedDataParallel):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    settings = replace(SETTINGS, accumulate_grad_batches=2)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        monkeypatch.setattr(trainer, "get_dist", lambda: OneRankDDP())
        monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", SpyDDP)
        ddp, _ = _train(tmp_path / "ddp", settings=settings)
    finally:
        dist.destroy_process_group()
    monkeypatch.undo()
    plain, _ = _train(tmp_path / "plain", settings=settings)
    assert len(made) == 1
    for (name, a), b in zip(plain.state_dict().items(), ddp.state_dict().values()):
        assert torch.equal(a, b), name
