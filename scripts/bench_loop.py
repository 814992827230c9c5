"""Benchmark: wsol's training loop against a plain PyTorch AMP loop, images/s per architecture, same model and batch.

    python scripts/bench_loop.py --root DIR [--device cuda]
        [--models resnet50 vgg16_gap googlenet_gap efficientnet_lite0]
        [--data tensors pipeline] [--batch-size 128] [--warmup 16] [--steps 48] [--workers 16]
        [--loops wsol peer wsol+benchmark] [--extra googlenet_gap:pipeline:64:wsol ...] [--tiny] [--json OUT]

``DIR/train/<class>/*.JPEG``: an ILSVRC train-folder layout (1000 class folders; ``scripts/gpu_check.py make-data``
makes one) holding at least ``(warmup + steps + 1) x batch`` images.

Loops (each run is a fresh model, same seed, random weights: ImageNet weights change nothing in the timing):

- ``wsol``: ``wsol.jobs.prepare_job`` + ``train_job``, exactly what ``wsol-train`` runs, composed from the configs as
  ``wsol-train model=ARCH model.pretrained=false data=ilsvrc data.root=DIR train=cam_paper train.amp=true
  train.channels_last=true train.num_workers=W train.batch_size=B train.max_iters=N`` (the paper's recipe: SGD,
  bf16 autocast on CUDA, 224 crops of the image resized to 256x256, mirroring). wsol leaves
  ``torch.backends.cudnn.benchmark`` at PyTorch's default (off), so it is off for this loop.
- ``peer``: the loop of torchvision's classification reference script (``references/classification/train.py``,
  ``train_one_epoch``): ``image.to(device)``, autocast forward + cross-entropy, ``zero_grad``, backward, SGD step,
  top-1/top-5 accuracy and ``.item()`` of loss and accuracies every step (its MetricLogger), with
  ``cudnn.benchmark = True`` as that script sets it; the same ``build_model`` network, batch, bf16 autocast and
  channels_last (model and input; the reference script has no channels_last option).
- ``wsol+benchmark``: ``wsol`` with ``cudnn.benchmark = True``: separates the flag from the loop.

Data:

- ``tensors``: one batch made on the device, fed as every batch (wsol: the trainer's DataLoader replaced by it;
  nothing else of the loop changes);
- ``pipeline``: the JPEG files decoded and augmented by ``--workers`` DataLoader workers into pinned memory. wsol:
  its ilsvrc train split (``data=ilsvrc``) and training transform; peer: torchvision ``ImageFolder`` over the same
  folder with that same transform (``wsol.data.transforms.build_train_transform``), ``RandomSampler``.

Timing: a forward pre-hook on the network counts the steps (one forward per step); the device is synchronised at
the start of step ``warmup`` and of step ``warmup + steps`` and nowhere else, and images/s = steps x batch / the time
between. Peak device memory: ``torch.cuda.max_memory_allocated`` over the run (warm-up included). wsol's final
checkpoint write comes after the timed steps. ``--tiny``: 64 px crops of 72 px images, for a CPU dry run.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

MODELS = ("resnet50", "vgg16_gap", "googlenet_gap", "efficientnet_lite0")


class StepClock:
    """Times steps ``warmup .. warmup + steps - 1`` of a loop from a forward pre-hook on its network.

    The forward of step ``k`` starts after step ``k - 1``'s optimizer step was issued; synchronising the device there
    (at ``k = warmup`` and ``k = warmup + steps`` only) brackets exactly ``steps`` whole steps.
    """

    def __init__(self, model: nn.Module, warmup: int, steps: int, device: torch.device) -> None:
        self.warmup, self.steps, self.device = warmup, steps, device
        self.calls = 0
        self.marks: list[float] = []
        self.handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, args: Any) -> None:
        if self.calls in (self.warmup, self.warmup + self.steps):
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.marks.append(time.perf_counter())
        self.calls += 1

    @property
    def done(self) -> bool:
        return len(self.marks) == 2

    def seconds(self) -> float:
        if not self.done:
            raise RuntimeError(f"only {self.calls} steps ran; {self.warmup + self.steps + 1} are needed")
        return self.marks[1] - self.marks[0]

    def remove(self) -> None:
        self.handle.remove()


@contextlib.contextmanager
def resident_batches(x: torch.Tensor, y: torch.Tensor) -> Iterator[None]:
    """Inside the block, the trainer's DataLoader yields ``(x, y)`` (already on the device) as every micro-batch."""
    import wsol.engine.trainer as trainer

    original = trainer.DataLoader

    def loader(dataset: Any, *, batch_size: int, sampler: Any, **_: Any) -> list:
        if batch_size != len(x):
            raise ValueError(f"micro-batch {batch_size} != the resident batch {len(x)}")
        return [((x, y, torch.arange(batch_size)), [])] * (len(sampler) // batch_size)

    trainer.DataLoader = loader
    try:
        yield
    finally:
        trainer.DataLoader = original


def compose_train_config(arch: str, root: Path, batch: int, iters: int, workers: int, device: str,
                         tiny: bool) -> Any:
    """The ``wsol-train`` config of the benchmark (the paper's recipe on ``root``, random weights)."""
    from hydra import compose, initialize_config_dir

    from wsol import CONFIG_DIR
    from wsol.conf import register_configs

    register_configs()
    overrides = [f"model={arch}", "model.pretrained=false", "data=ilsvrc", f"data.root={root}", "train=cam_paper",
                 "train.amp=true", "train.channels_last=true", f"train.num_workers={workers}",
                 f"train.batch_size={batch}", f"train.max_iters={iters}", "train.checkpoint_every=100000000",
                 "train.snapshot_every=null", f"device={device}"]
    if tiny:
        overrides += ["data.resize_size=72", "data.crop_size=64", "data.image_size=64"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=overrides)


def run_wsol(arch: str, data: str, args: argparse.Namespace, batch: int, device: torch.device) -> dict[str, Any]:
    from wsol.jobs import prepare_job, train_job

    iters = args.warmup + args.steps + 1
    cfg = compose_train_config(arch, args.root, batch, iters, args.workers, device.type, args.tiny)
    out = Path(tempfile.mkdtemp(prefix=f"bench_loop_{arch}_"))
    job = prepare_job(cfg, out, train=True, evaluate=False, named=True)
    if len(job.train_source.annotations) < iters * batch:
        raise ValueError(f"{args.root}/train holds {len(job.train_source.annotations)} images; "
                         f"{iters} steps of {batch} need {iters * batch}")
    clock = StepClock(job.model, args.warmup, args.steps, device)
    feed = contextlib.nullcontext()
    if data == "tensors":
        crop = cfg.data.crop_size
        x = torch.randn(batch, 3, crop, crop, device=device)
        y = torch.randint(0, cfg.data.num_classes, (batch,), device=device)
        feed = resident_batches(x, y)
    try:
        with feed:
            train_job(job)
    finally:
        clock.remove()
        shutil.rmtree(out, ignore_errors=True)  # the run's checkpoints (hundreds of MB for vgg16_gap)
    return {"seconds": clock.seconds(), "cudnn_benchmark": torch.backends.cudnn.benchmark}


def reference_loop(model: nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], optimizer: Any,
                   device: torch.device, n: int) -> None:
    """``n`` steps of torchvision's reference ``train_one_epoch`` (bf16 autocast and channels_last added)."""
    model.train()
    for _ in range(n):
        image, target = next(batches)
        image, target = image.to(device), target.to(device)
        image = image.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            output = model(image)
            loss = F.cross_entropy(output, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.inference_mode():  # references/classification/utils.py accuracy()
            _, pred = output.topk(5, 1, True, True)
            correct = pred.t().eq(target[None])
            acc1 = correct[:1].flatten().sum(dtype=torch.float32) * (100.0 / len(target))
            acc5 = correct[:5].flatten().sum(dtype=torch.float32) * (100.0 / len(target))
        loss.item(), acc1.item(), acc5.item()  # MetricLogger.update, every step


def run_peer(arch: str, data: str, args: argparse.Namespace, batch: int, device: torch.device) -> dict[str, Any]:
    from torch.utils.data import DataLoader, RandomSampler
    from torchvision.datasets import ImageFolder

    from wsol.config import train_transform_from_cfg
    from wsol.models import build_model

    iters = args.warmup + args.steps + 1
    cfg = compose_train_config(arch, args.root, batch, iters, args.workers, device.type, args.tiny)
    torch.manual_seed(0)
    model = build_model(arch, num_classes=cfg.data.num_classes).to(device).to(memory_format=torch.channels_last)
    opt = cfg.train.optimizer
    optimizer = torch.optim.SGD(model.parameters(), lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
    clock = StepClock(model, args.warmup, args.steps, device)
    if data == "tensors":
        crop = cfg.data.crop_size
        x = torch.randn(batch, 3, crop, crop, device=device)
        y = torch.randint(0, cfg.data.num_classes, (batch,), device=device)
        batches: Iterator = iter([(x, y)] * iters)
        reference_loop(model, batches, optimizer, device, iters)
    else:
        dataset = ImageFolder(str(args.root / "train"), transform=train_transform_from_cfg(cfg.data, model))
        loader = DataLoader(dataset, batch_size=batch, sampler=RandomSampler(dataset), num_workers=args.workers,
                            pin_memory=device.type == "cuda", drop_last=True)
        batches = iter(loader)
        reference_loop(model, batches, optimizer, device, iters)
        del batches  # stops the workers
    clock.remove()
    return {"seconds": clock.seconds(), "cudnn_benchmark": torch.backends.cudnn.benchmark}


def run_one(arch: str, data: str, batch: int, loop: str, args: argparse.Namespace,
            device: torch.device) -> dict[str, Any]:
    row: dict[str, Any] = {"model": arch, "data": data, "batch": batch, "loop": loop, "warmup": args.warmup,
                           "steps": args.steps, "workers": args.workers if data == "pipeline" else 0}
    # process-wide flag: set for each run (the peer's script turns it on; wsol never touches it)
    torch.backends.cudnn.benchmark = loop in ("peer", "wsol+benchmark")
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    try:
        timing = (run_peer if loop == "peer" else run_wsol)(arch, data, args, batch, device)
        row.update(timing, img_s=args.steps * batch / timing["seconds"],
                   step_ms=1e3 * timing["seconds"] / args.steps, error="")
    except Exception as err:  # noqa: BLE001 -- one failed run is reported, the others still run
        traceback.print_exc()
        row.update(error=f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}")
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    if device.type == "cuda":
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    gc.collect()
    print(json.dumps(row), flush=True)
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    peers = {(r["model"], r["data"], r["batch"]): r for r in rows if r["loop"] == "peer" and not r["error"]}
    print("\n| model | data | batch | loop | images/s | ms/step | / peer | peak GiB | cudnn.benchmark |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["error"]:
            print(f"| {r['model']} | {r['data']} | {r['batch']} | {r['loop']} | failed: {r['error']} |||||")
            continue
        peer = peers.get((r["model"], r["data"], r["batch"]))
        ratio = f"{r['img_s'] / peer['img_s']:.3f}" if peer else "-"
        mem = f"{r['peak_mem_gib']:.2f}" if "peak_mem_gib" in r else "-"
        print(f"| {r['model']} | {r['data']} | {r['batch']} | {r['loop']} | {r['img_s']:.1f} | {r['step_ms']:.1f} "
              f"| {ratio} | {mem} | {r['cudnn_benchmark']} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="folder with train/<class>/*.JPEG")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--data", nargs="+", default=["tensors", "pipeline"], choices=("tensors", "pipeline"))
    parser.add_argument("--loops", nargs="+", default=["wsol", "peer"], choices=("wsol", "peer", "wsol+benchmark"))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--extra", nargs="*", default=[], metavar="MODEL:DATA:BATCH:LOOP",
                        help="more runs, e.g. googlenet_gap:pipeline:64:wsol (the paper recipe's batch)")
    parser.add_argument("--tiny", action="store_true", help="64 px crops (CPU dry run)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    runs = [(m, d, args.batch_size, loop) for d in args.data for m in args.models for loop in args.loops]
    for spec in args.extra:
        m, d, b, loop = spec.split(":")
        runs.append((m, d, int(b), loop))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {name}; python {sys.version.split()[0]}; {len(runs)} runs", flush=True)
    rows = []
    for arch, data, batch, loop in runs:
        rows.append(run_one(arch, data, batch, loop, args, device))
        if args.json is not None:  # after every run: a time-out keeps what was measured
            args.json.write_text(json.dumps(rows, indent=1))
    print_table(rows)
    return 1 if any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
