"""``torch.distributed`` set-up shared by training and evaluation — nothing home-made.

The processes are started by ``torchrun`` (one node or ``--nnodes``) or by SLURM through Hydra's submitit launcher
(``hydra/launcher=slurm``: one task per GPU). torchrun sets PyTorch's environment variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); under SLURM they are derived from the job's
``SLURM_*`` variables by submitit's own ``TorchDistributedEnvironment``. Either way
``init_process_group(init_method="env://")`` joins the job. Without them the job is a single process and every
helper here degrades to the identity. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "export_slurm_env", "get_dist", "barrier", "all_reduce_sum", "all_gather_objects",
           "broadcast_object", "shard_indices"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group described by the environment (``torchrun``/SLURM), once; single process otherwise.

    Args:
        device: the job's device setting; ``cuda`` (or ``auto`` with CUDA present) selects NCCL and binds this
            process to GPU ``LOCAL_RANK``; otherwise gloo.
    """
    export_slurm_env()
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistInfo()
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device != "cpu"
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://")
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def export_slurm_env() -> bool:
    """Under a multi-task SLURM job without torchrun's variables, export them from SLURM's (via submitit).

    Returns:
        True when the variables were exported.

    Raises:
        RuntimeError: a multi-task SLURM job without submitit installed (``pip install hydra-submitit-launcher``).
    """
    if "RANK" in os.environ or _env_int("SLURM_NTASKS", 1) <= 1 or "SLURM_PROCID" not in os.environ:
        return False
    try:
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError as err:
        raise RuntimeError("a multi-task SLURM job needs submitit to set up torch.distributed: "
                           "pip install hydra-submitit-launcher (the 'slurm' extra)") from err
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return True


def get_dist() -> DistInfo:
    """The current process's ``DistInfo`` (single process when no group is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if get_dist().enabled:
        dist.barrier()


def all_reduce_sum(values: np.ndarray) -> np.ndarray:
    """Element-wise sum over ranks of a float64/int64 array (exact for integer counts and float64 sums)."""
    values = np.asarray(values)
    if not get_dist().enabled:
        return values
    t = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64 if values.dtype.kind == "f" else np.int64))
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy().astype(values.dtype, copy=False)


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    info = get_dist()
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not get_dist().enabled:
        return obj
    box = [obj if get_dist().rank == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def shard_indices(n: int, rank: int, world_size: int) -> range:
    """A contiguous block of ``range(n)`` for ``rank``: every index exactly once over the ranks, none padded.

    (``DistributedSampler`` pads the last batch with repeated images, which would count them twice in a metric.)
    The first ``n % world_size`` ranks get one image more.
    """
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))
