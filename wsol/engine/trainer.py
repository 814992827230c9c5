"""The training loop: exact resume, gradient accumulation, AMP, DDP — one epoch at a time.

Exactness, stated once here: a run interrupted at any checkpoint and resumed gives the same weights as an
uninterrupted one, because
    * the data order is a permutation seeded by ``(seed, epoch)`` that can start mid-epoch (``pos``);
    * every image's augmentation is seeded by ``(seed, epoch, index)``, not by which worker or rank loads it;
    * the checkpoint holds the model, optimizer, scheduler, counters, logged history and every rank's RNG states.
Under ``torchrun`` (DDP) the global batch of ``batch_size`` images is the same as in one process and is split
evenly over the ranks (``batch_size`` must divide by ``world_size x accumulate_grad_batches``); DDP averages the
gradients, so without batch statistics (BatchNorm in train mode) or dropout the update equals the one-process
update. Rank 0 writes checkpoints and logs; logged loss/accuracy are summed over ranks first.
"""

from __future__ import annotations

import csv
import logging
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from wsol.data.datasets import collate_skipping
from wsol.engine.checkpoint import (fingerprint_diff, get_rng_state, load_checkpoint, save_checkpoint,
                                    set_rng_state)
from wsol.engine.distributed import DistInfo, all_gather_objects, all_reduce_sum, barrier, get_dist
from wsol.io import add_note
from wsol.methods.base import method_random

log = logging.getLogger(__name__)

__all__ = ["LoopSettings", "TrainResult", "Trainer", "TrainingInterrupted", "EpochSampler", "SeededAugmentation",
           "seed_everything", "resolve_device", "steps_per_epoch", "make_dataset_items", "load_resumable"]

LOG_COLUMNS = ("step", "epoch", "lr", "loss", "acc")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; carries the last checkpoint's step for the one-line message."""

    def __init__(self, step: int, checkpoint_step: int | None, checkpoint: Path) -> None:
        super().__init__(f"interrupted at step {step}")
        self.step, self.checkpoint_step, self.checkpoint = step, checkpoint_step, checkpoint


# ----------------------------------------------------------------------------- data order and seeding
class EpochSampler(Sampler):
    """This rank's ``(epoch, index)`` items: a permutation seeded by ``(seed, epoch)`` from ``start`` on, cut into
    global batches of ``batch_size`` of which rank ``r`` takes the ``r``-th contiguous slice.

    ``start`` lets a resumed run continue mid-epoch at exactly the next image. The incomplete last global batch is
    dropped (as ``drop_last``), so every rank yields the same number of items.
    """

    def __init__(self, num_samples: int, seed: int, epoch: int, *, batch_size: int, start: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by the world size {world_size}")
        self.num_samples, self.seed, self.epoch, self.start = num_samples, seed, epoch, start
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.num_samples, generator=g).tolist()
        per_rank = self.batch_size // self.world_size
        for b in range(self.start, self.num_samples - self.batch_size + 1, self.batch_size):
            lo = b + self.rank * per_rank
            yield from ((self.epoch, i) for i in perm[lo:lo + per_rank])

    def __len__(self) -> int:
        return (self.num_samples - self.start) // self.batch_size * (self.batch_size // self.world_size)


class SeededAugmentation(Dataset):
    """Wraps a dataset so that item ``(epoch, index)`` is transformed under a seed of its own."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        # The CPU generator only: torch.manual_seed would also queue a CUDA seeding call, which on a CUDA build
        # without an initialised GPU records a Python traceback each time (~3 ms an item, measured).
        torch.default_generator.manual_seed((self.seed * 1_000_003 + epoch) * 10_000_019 + index)
        return self.dataset[index]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available (this rank's GPU under torchrun), else CPU; anything else as given."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
    return torch.device(device)


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    """Optimizer steps in one epoch (the incomplete last batch is dropped)."""
    return num_images // batch_size


# ----------------------------------------------------------------------------- settings and result
@dataclass(frozen=True)
class LoopSettings:
    """How the loop runs (the optimisation itself is the optimizer + scheduler given to ``Trainer``).

    Every field is required: the run settings' one home is ``configs/train/*.yaml`` (``recipes.train_model`` passes
    them).

    Attributes:
        total_steps: optimizer steps of the whole run.
        batch_size: images per optimizer step over all ranks and micro-batches.
        accumulate_grad_batches: micro-batches per step and rank.
        seed: data order and augmentation seed.
        amp: bfloat16 autocast (CUDA only; ignored on CPU).
        channels_last: NHWC memory format.
        num_workers: DataLoader workers per rank.
        checkpoint_every: steps between resumable checkpoints (also written at every epoch end and at the end).
        snapshot_every: if set, keep the weights every this many steps (``snapshots/model_step<N>.pt``).
        log_every: steps between log rows.
    """

    total_steps: int
    batch_size: int
    accumulate_grad_batches: int
    seed: int
    amp: bool
    channels_last: bool
    num_workers: int
    checkpoint_every: int
    snapshot_every: int | None
    log_every: int

    def __post_init__(self) -> None:
        for name in ("total_steps", "batch_size", "accumulate_grad_batches", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"train.{name} must be an integer >= 1, got {value!r}")
        if self.snapshot_every is not None and self.snapshot_every < 1:
            raise ValueError(f"train.snapshot_every must be null or >= 1, got {self.snapshot_every!r}")
        if self.num_workers < 0:
            raise ValueError(f"train.num_workers must be >= 0, got {self.num_workers!r}")


@dataclass
class TrainResult:
    """Summary of a finished (or stopped) training run."""

    steps: int
    epochs: float
    final_loss: float
    train_acc: float
    seconds: float  # training wall time up to the last step, over every process of a resumed run (each up to its
    # last checkpoint; the steps an interrupted process redid after it are not counted twice)
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # training images dropped under data.on_error=skip


def load_resumable(path: str | Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint of this loop whose settings are ``fingerprint``'s; ValueError naming what changed otherwise."""
    state = load_checkpoint(path)
    diff = fingerprint_diff(state["fingerprint"], fingerprint)
    if diff:
        raise ValueError(f"{path}: cannot resume, the run's settings changed:\n  " + "\n  ".join(diff)
                         + "\nStart a new run (train.resume=null) or restore these settings.")
    return state


# ----------------------------------------------------------------------------- the loop
class Trainer:
    """Trains ``model`` on ``dataset`` (items ``(input, label, index)``) with a given optimizer and schedule.

    Args:
        model: ``model(inputs, labels, rng) -> (logits [B, C], loss)`` (a ``wsol.methods.MethodNet``); ``rng`` is
            the micro-batch's ``MethodRandom`` (seeded by seed, step, rank and micro-batch: exact on resume).
        dataset: training items; ``len(dataset)`` images.
        run_dir: where ``checkpoints/``, ``snapshots/`` and ``train_log.csv`` go.
        settings: ``LoopSettings``.
        optimizer, scheduler: built by ``wsol.engine.optim``; the scheduler is stepped once per optimizer step.
        state_extra: saved into every checkpoint (e.g. ``spec``, the architecture of ``model.pt``).
        fingerprint: settings a resume must not change; a checkpoint with another fingerprint is refused.
        device: ``torch.device``.
        frozen: modules kept in eval mode while training (frozen trunk: no BatchNorm statistics updates).
        state_module: the module whose state is checkpointed and restored (default ``model``; the whole
            ``CAMNet`` when ``model`` is a head trained on cached features).
        dist: the process group (``get_dist()`` by default).
    """

    def __init__(self, model: nn.Module, dataset: Dataset, run_dir: str | Path, *, settings: LoopSettings,
                 optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                 state_extra: dict[str, Any], fingerprint: dict[str, Any], device: torch.device,
                 frozen: tuple[nn.Module, ...] = (), state_module: nn.Module | None = None,
                 dist: DistInfo | None = None) -> None:
        self.dist = dist or get_dist()
        self.state_module = model if state_module is None else state_module
        self.model, self.dataset, self.run_dir = model, dataset, Path(run_dir)
        self.settings, self.optimizer, self.scheduler = settings, optimizer, scheduler
        self.state_extra, self.fingerprint, self.device, self.frozen = state_extra, fingerprint, device, frozen
        self.n = len(dataset)  # type: ignore[arg-type]
        if self.n == 0:
            raise ValueError("the training set is empty")
        per_step = self.dist.world_size * settings.accumulate_grad_batches
        if settings.batch_size % per_step:
            raise ValueError(f"train.batch_size {settings.batch_size} must be divisible by world_size x "
                             f"accumulate_grad_batches = {self.dist.world_size} x "
                             f"{settings.accumulate_grad_batches}")
        self.micro = settings.batch_size // per_step
        if steps_per_epoch(self.n, settings.batch_size) == 0:
            raise ValueError(f"the training set has {self.n} images, fewer than one batch of {settings.batch_size}")
        self.ckpt_path = self.run_dir / "checkpoints" / "last.pt"
        self.step, self.epoch, self.pos = 0, 0, 0
        self.history: list[dict[str, float]] = []
        self.last_checkpoint_step: int | None = None
        self.resumed_from: int | None = None
        self.seconds_before = 0.0  # training seconds of the earlier processes of a resumed run (to their checkpoint)
        self._t0 = time.time()
        self.skipped: dict[str, str] = {}  # image id -> load error, images dropped under on_error="skip"
        self._ddp: nn.Module | None = None

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, finished: bool) -> dict[str, Any]:
        rngs = all_gather_objects(get_rng_state()) if self.dist.enabled else [get_rng_state()]
        return {"model": self.state_module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": self.step, "epoch": self.epoch, "pos": self.pos,
                "rng": rngs, "fingerprint": self.fingerprint, "history": list(self.history), "finished": finished,
                "seconds": self.seconds_before + time.time() - self._t0,
                "skipped": self._all_skipped(), **self.state_extra}

    def _all_skipped(self) -> dict[str, str]:
        """The images every rank has dropped so far (each rank loads its own share)."""
        if not self.dist.enabled:
            return dict(self.skipped)
        return {k: v for part in all_gather_objects(self.skipped) for k, v in part.items()}

    def _note_skipped(self, items: list[Any]) -> None:
        for item in items:
            if item.image_id not in self.skipped:
                log.warning("training image skipped (data.on_error=skip): %s", item.reason)
                self.skipped[item.image_id] = item.reason

    def checkpoint(self, finished: bool = False) -> None:
        """Write ``checkpoints/last.pt`` (rank 0) and record its step.

        Ctrl-C is held back until both are done, so the step a ``TrainingInterrupted`` names is the step of the file
        on disk (a Ctrl-C between the rename and the bookkeeping made them differ).

        Raises:
            OSError: the write failed (disk full ...), with a note saying which checkpoint is kept.
        """
        with _sigint_deferred():
            state = self.state_dict(finished)  # every rank: gathers the RNG states
            if self.dist.is_main:
                try:
                    save_checkpoint(self.ckpt_path, state)
                except OSError as err:
                    raise add_note(err, "no checkpoint was written yet" if self.last_checkpoint_step is None else
                                   f"the previous checkpoint (step {self.last_checkpoint_step}) is kept")
            barrier()
            self.last_checkpoint_step = self.step

    def resume(self, path: str | Path) -> None:
        """Load a checkpoint written by this loop; refuse one made with other settings (``fingerprint``)."""
        state = load_resumable(path, self.fingerprint)
        rngs = state["rng"]
        if len(rngs) != self.dist.world_size:
            raise ValueError(f"{path}: written by {len(rngs)} process(es), resumed by {self.dist.world_size}; "
                             "exact resume needs the same world size")
        self.state_module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch, self.pos = int(state["step"]), int(state["epoch"]), int(state["pos"])
        self.history = list(state["history"])
        self.skipped = dict(state.get("skipped", {}))
        self.seconds_before = float(state.get("seconds", 0.0))
        set_rng_state(rngs[self.dist.rank])
        self.last_checkpoint_step = self.resumed_from = self.step
        log.info("resumed from %s at step %d (epoch %d, image %d of it)", path, self.step, self.epoch, self.pos)

    # ------------------------------------------------------------------ logging
    def _open_log(self) -> tuple[Any, Any]:
        """``train_log.csv``: rewritten up to the resumed step, so a resume never duplicates rows."""
        if not self.dist.is_main:
            return None, None
        path = self.run_dir / "train_log.csv"
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            f = open(path, "w", newline="")
            writer = csv.writer(f)
            writer.writerow(LOG_COLUMNS)
            for row in self.history:
                writer.writerow([row[k] for k in LOG_COLUMNS])
            f.flush()
        except OSError as err:  # a buffered write fails without the file's name: name it
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        return f, writer

    # ------------------------------------------------------------------ training
    def _wrapped_model(self) -> nn.Module:
        if self._ddp is None:
            if self.dist.enabled:
                from torch.nn.parallel import DistributedDataParallel as DDP

                ids = [self.device.index] if self.device.type == "cuda" else None
                self._ddp = DDP(self.model, device_ids=ids)
            else:
                self._ddp = self.model
        return self._ddp

    def _train_mode(self) -> None:
        self.model.train()
        for m in self.frozen:
            m.eval()

    def train_one_epoch(self, limit: int, bar: Any = None, csv_writer: Any = None, csv_file: Any = None) -> None:
        """Run the optimizer steps of the current epoch from ``self.pos`` on, until the epoch's data is used up or
        ``limit`` steps are done."""
        s = self.settings
        net = self._wrapped_model()
        sampler = EpochSampler(self.n, s.seed, self.epoch, batch_size=s.batch_size, start=self.pos,
                               rank=self.dist.rank, world_size=self.dist.world_size)
        loader = DataLoader(SeededAugmentation(self.dataset, s.seed), batch_size=self.micro, sampler=sampler,
                            num_workers=s.num_workers, drop_last=True, pin_memory=self.device.type == "cuda",
                            persistent_workers=False, collate_fn=collate_skipping)
        use_amp = s.amp and self.device.type == "cuda"
        # Starting an iteration draws the workers' base seed from the global CPU generator (unused here:
        # SeededAugmentation seeds every item). An uninterrupted run draws it at each epoch's start, before the
        # checkpoints of that epoch; a run resumed mid-epoch must not draw it again, or this process's RNG stream
        # (dropout, with DataLoader workers) shifts. Restoring the state keeps uninterrupted runs as they were.
        before = torch.get_rng_state() if self.pos > 0 else None
        it = iter(loader)
        if before is not None:
            torch.set_rng_state(before)
        sums = [0.0, 0.0, 0.0]  # loss * n, correct, n since the last log row (this rank)
        while self.step < limit:
            self.optimizer.zero_grad(set_to_none=True)
            micro_batches = [next(it, None) for _ in range(s.accumulate_grad_batches)]
            if micro_batches[-1] is None:
                break  # end of the epoch (the sampler yields whole global batches only)
            for j, (batch, skipped) in enumerate(micro_batches):
                self._note_skipped(skipped)
                if batch is None:  # nothing to learn from; under DDP the other ranks would wait for its gradients
                    raise RuntimeError(f"every image of a training batch failed to load at step {self.step}: "
                                       + "; ".join(item.reason for item in skipped))
                inputs, labels, _ = batch
                inputs = inputs.to(self.device, non_blocking=True)
                labels = labels.to(self.device, non_blocking=True)
                if s.channels_last and inputs.ndim == 4:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                # DDP all-reduces gradients on the last micro-batch only. no_sync() makes a context manager that can
                # be entered once: a fresh one for the forward pass and one for the backward pass.
                sync = j == len(micro_batches) - 1 or not self.dist.enabled
                no_sync = nullcontext if sync else net.no_sync  # type: ignore[operator]
                rng = method_random(s.seed, self.step, self.dist.rank, j)  # the method's draws (wsol.methods)
                with no_sync(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
                    logits, loss = net(inputs, labels, rng)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.step}")
                with no_sync():
                    (loss / s.accumulate_grad_batches).backward()
                sums[0] += loss.item() * len(labels)
                sums[1] += int((logits.argmax(1) == labels).sum())
                sums[2] += len(labels)
            lr = self.optimizer.param_groups[0]["lr"]
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            self.pos += s.batch_size
            if bar is not None:
                bar.update(1)
            if self.step % s.log_every == 0 or self.step == s.total_steps:
                total = all_reduce_sum(np.array(sums, dtype=np.float64))
                row = {"step": self.step, "epoch": self.epoch + self.pos / self.n, "lr": lr,
                       "loss": float(total[0] / total[2]), "acc": float(total[1] / total[2])}
                self.history.append(row)
                sums = [0.0, 0.0, 0.0]
                if csv_writer is not None:
                    try:
                        csv_writer.writerow([row[k] for k in LOG_COLUMNS])
                        csv_file.flush()
                    except OSError as err:  # a buffered write fails without the file's name: name it
                        raise OSError(err.errno, err.strerror or str(err), csv_file.name) from err
                if bar is not None:
                    bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['acc']:.3f}")
                log.info("step %d/%d epoch %.2f lr %.4g loss %.4f acc %.3f", self.step, s.total_steps,
                         row["epoch"], lr, row["loss"], row["acc"])
            if self.step % s.checkpoint_every == 0 and self.step < s.total_steps:
                self.checkpoint()
            if s.snapshot_every and self.step % s.snapshot_every == 0 and self.dist.is_main:
                save_checkpoint(self.run_dir / "snapshots" / f"model_step{self.step}.pt",
                                {"model": self.state_module.state_dict(), "step": self.step, **self.state_extra})

    def fit(self, resume: str | Path | None = None, stop_after: int | None = None) -> TrainResult:
        """Train to ``settings.total_steps`` (or ``stop_after`` steps, checkpointing there).

        Args:
            resume: a checkpoint to continue from (``Trainer.resume``), or None.
            stop_after: stop once this many optimizer steps are done (time-boxed jobs, resume tests).

        Raises:
            TrainingInterrupted: on Ctrl-C, after saying which checkpoint is the last one.
        """
        from tqdm import tqdm

        if resume is not None:
            self.resume(resume)
        s = self.settings
        self._t0 = time.time()
        done = self.step >= s.total_steps
        bar = None if done or not self.dist.is_main else tqdm(total=s.total_steps, initial=self.step, desc="train",
                                                               unit="step", dynamic_ncols=True, disable=None)
        csv_file, csv_writer = self._open_log()
        self._train_mode()
        limit = s.total_steps if stop_after is None else min(stop_after, s.total_steps)
        try:
            while self.step < limit:
                self.train_one_epoch(limit, bar, csv_writer, csv_file)
                if self.step >= limit:
                    break
                self.epoch, self.pos = self.epoch + 1, 0  # the epoch's data is used up
                self.checkpoint()
        except KeyboardInterrupt as err:
            raise TrainingInterrupted(self.step, self.last_checkpoint_step, self.ckpt_path) from err
        finally:
            if bar is not None:
                bar.close()
            if csv_file is not None:
                csv_file.close()
        finished = self.step >= s.total_steps
        if not done or self.last_checkpoint_step != self.step:
            self.checkpoint(finished=finished)
        last = self.history[-1] if self.history else {"loss": float("nan"), "acc": float("nan")}
        return TrainResult(self.step, self.epoch + self.pos / self.n, last["loss"], last["acc"],
                           self.seconds_before + time.time() - self._t0,
                           list(self.history), self.resumed_from, self._all_skipped())


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) during the block and raise ``KeyboardInterrupt`` after it; a second Ctrl-C raises
    at once. Only where Python's own handler is in place (the main thread, nobody else's handler)."""
    import signal
    import threading

    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        if pending:
            raise KeyboardInterrupt
        pending.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


def make_dataset_items(inputs: torch.Tensor, labels: torch.Tensor) -> Dataset:
    """A ``Dataset`` of ``(inputs[i], labels[i], i)`` (cached features)."""
    return _TensorItems(inputs, labels)


class _TensorItems(Dataset):
    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        if len(inputs) != len(labels):
            raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        return self.inputs[index], int(self.labels[index]), index

