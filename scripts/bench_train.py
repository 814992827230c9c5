"""Benchmark: images/s of a training step and of the forward pass, per architecture and setting, on CPU.

    python scripts/bench_train.py [--models alexnet_gap vgg16_gap googlenet_gap alexnet_star_gap efficientnet_lite0]
        [--settings fp32 cl bf16 compile cl+compile] [--trainable all] [--batch-size 32] [--image-size 224]
        [--rounds 5] [--warmup 3] [--threads 2] [--cpu-malloc both] [--csv results/bench/train_cpu_malloc.csv]
        [--breakdown N] [--profile]

For every model, each setting gets its own copy of the model (same seed, same weights):

- ``fp32``: eager, float32, NCHW (the baseline);
- ``cl``: channels_last memory format (``model.to(memory_format=torch.channels_last)`` and the input);
- ``bf16``: ``torch.autocast("cpu", dtype=torch.bfloat16)`` around forward and loss;
- ``compile``: ``torch.compile(model)`` (inductor; its compile time is reported separately);
- ``nchw`` (EfficientNet-Lite only): ``backbone.cpu_channels_last = False``, i.e. the features run in NCHW as
  given instead of switching to channels_last internally on CPU (the code before that change);
- ``padcopy`` (EfficientNet-Lite only): every ``SameConv2d`` pads with an explicit ``F.pad`` copy, as the
  code did before it passed symmetric padding to the convolution (same numbers; for the before/after timing);
- combinations with ``+`` (``cl+compile``).

Two things are timed, with the batch already in memory (no data loading):

- ``infer``: ``model.eval()`` forward under ``torch.inference_mode()``;
- ``step``: ``model.train()``, forward, cross-entropy, backward, and the ``full`` fine-tuning recipe's optimizer step
  (``configs/train/finetune.yaml``: SGD, momentum 0.9, Nesterov, weight decay 1e-4).

``--cpu-malloc`` is the jobs' ``cpu_malloc`` setting (``wsol.engine.cpu_malloc``), process-wide: ``both`` (the
default) runs the whole benchmark once per mode, each in a fresh process (``system`` first), and prints them side by
side. Each row also has the median minor page faults of a step and the process's peak RSS (over all of its settings).

``--trainable last_stage`` freezes everything but ``model.last_stage_modules()`` and ``model.new_modules()``
(frozen BatchNorm layers in eval mode, as a fine-tuning recipe would), for the models that define a last stage.

The machine is shared, so the settings of a model are interleaved: every round times one ``infer`` and one
``step`` of each setting in turn, after ``--warmup`` untimed ``infer`` + ``step`` pairs each (default 3: with
``cpu_malloc=reuse`` the heap takes a few steps to hold every block a step needs); the table reports the median over
rounds of the wall time per image and of the process CPU time (user + system) per image, which a busy neighbour
inflates less. Load average and CPU pressure before and after are printed with the table. A setting that fails (e.g. no
compiler for inductor) is reported with its error instead of a number.

``--breakdown N`` times every aten op of N more infers and steps of each setting, warm, grouped by op (convolutions
split into depthwise / 1x1 / other, forward and backward): where the step's time goes, per image.
``--profile`` additionally profiles one training step of each (model, setting) with ``torch.profiler`` and prints
the top operators by self CPU time and the convolution time split into depthwise / 1x1 / other, forward and
backward.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import platform
import resource
import subprocess
import tempfile
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from _bench import load_conditions, timed
from wsol.engine.cpu_malloc import CPU_MALLOC, set_cpu_malloc
from wsol.models import CAMNet, build_model

PAPER_MODELS = ("alexnet_gap", "vgg16_gap", "googlenet_gap", "alexnet_star_gap", "efficientnet_lite0")
SETTING_FLAGS = ("cl", "bf16", "compile", "nchw", "padcopy")
CSV_COLUMNS = ("model", "setting", "trainable", "batch_size", "image_size", "threads", "rounds", "warmup_s", "error",
               "infer_ms_per_img", "infer_ms_min", "infer_ms_max", "infer_cpu_ms_per_img", "step_ms_per_img",
               "step_ms_min", "step_ms_max", "step_cpu_ms_per_img", "step_minor_faults", "cpu_malloc", "peak_rss_mib")


@dataclass
class Variant:
    """One (model, setting): the model, its input, and what was measured."""

    setting: str
    model: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]
    x: torch.Tensor
    optimizer: torch.optim.Optimizer
    autocast: bool
    trainable: str
    error: str | None = None
    warmup_s: float = float("nan")
    times: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: {"infer": [], "step": []})
    step_faults: list[int] = field(default_factory=list)


def parse_setting(setting: str) -> set[str]:
    flags = set() if setting == "fp32" else set(setting.split("+"))
    unknown = flags - set(SETTING_FLAGS)
    if unknown:
        raise SystemExit(f"unknown setting {setting!r}: flags must be fp32 or a '+' join of {SETTING_FLAGS}")
    return flags


def freeze_to_last_stage(model: CAMNet) -> None:
    """Train only ``last_stage_modules()`` + ``new_modules()``; everything else frozen, its BN in eval mode."""
    trained = [*model.last_stage_modules(), *model.new_modules()]
    keep = {id(p) for m in trained for p in m.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    trained_ids = {id(sub) for m in trained for sub in m.modules()}
    frozen_bn = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 and id(m) not in trained_ids]
    original_train = model.train

    def train(mode: bool = True) -> nn.Module:  # model.train() must leave the frozen BN layers in eval mode
        original_train(mode)
        for bn in frozen_bn:
            bn.eval()
        return model

    model.train = train  # type: ignore[method-assign]


def make_variant(name: str, setting: str, trainable: str, batch_size: int, image_size: int,
                 num_classes: int) -> Variant:
    flags = parse_setting(setting)
    torch.manual_seed(0)
    model = build_model(name, num_classes=num_classes)
    x = torch.randn(batch_size, 3, image_size, image_size)
    if trainable == "last_stage":
        freeze_to_last_stage(model)
    if "nchw" in flags:
        if not hasattr(model.backbone, "cpu_channels_last"):
            raise NotImplementedError("nchw applies to EfficientNet-Lite only")
        model.backbone.cpu_channels_last = False
    if "padcopy" in flags:
        from wsol.models.efficientnet_lite import SameConv2d

        convs = [m for m in model.modules() if isinstance(m, SameConv2d)]
        if not convs:
            raise NotImplementedError("padcopy applies to EfficientNet-Lite (SameConv2d) only")
        for conv in convs:
            conv.forward = lambda x, conv=conv: explicit_same_pad(conv, x)  # type: ignore[method-assign]
    if "cl" in flags:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9, nesterov=True, weight_decay=1e-4)
    forward = torch.compile(model) if "compile" in flags else model
    return Variant(setting, model, forward, x, optimizer, "bf16" in flags, trainable)


def explicit_same_pad(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """TF SAME padding as an explicit ``F.pad`` copy before an unpadded convolution (the old ``SameConv2d``)."""
    pads = []
    for size, k, s in zip(x.shape[:-3:-1], conv.kernel_size[::-1], conv.stride[::-1]):  # width, then height
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.conv2d(F.pad(x, pads), conv.weight, None, conv.stride, 0, conv.dilation, conv.groups)


def run_infer(v: Variant) -> None:
    v.model.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16) if v.autocast else nullcontext():
        v.forward(v.x)


def run_step(v: Variant, y: torch.Tensor) -> None:
    v.model.train()
    v.optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16) if v.autocast else nullcontext():
        loss = F.cross_entropy(v.forward(v.x), y)
    loss.backward()
    v.optimizer.step()


def conv_kind(weight_shape: list[int]) -> str:
    if len(weight_shape) == 4 and weight_shape[1] == 1 and weight_shape[2] > 1:
        return "depthwise"
    if len(weight_shape) == 4 and weight_shape[2] == weight_shape[3] == 1:
        return "1x1"
    return "other"


def profile_step(v: Variant, y: torch.Tensor, top: int = 12) -> None:
    from torch.profiler import ProfilerActivity, profile

    run_step(v, y)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run_step(v, y)
    events = prof.key_averages(group_by_input_shape=True)
    split: dict[tuple[str, str], float] = collections.defaultdict(float)
    for e in events:
        # Self time of the kernels (mkldnn, or the slow path bf16 takes); input_shapes name the weight.
        if e.key in ("aten::convolution_backward", "aten::_slow_conv2d_backward"):
            split[("backward", conv_kind(e.input_shapes[2]))] += e.self_cpu_time_total / 1e3
        elif e.key in ("aten::mkldnn_convolution", "aten::_slow_conv2d_forward"):
            split[("forward", conv_kind(e.input_shapes[1]))] += e.self_cpu_time_total / 1e3
    total = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e3
    print(f"\n### profile: {v.setting} ({v.trainable}), one step, self CPU total {total:.0f} ms")
    print("| conv | " + " | ".join(f"{d} {k}" for d, k in sorted(split)) + " |")
    print("|---|" + "---|" * len(split))
    print("| ms | " + " | ".join(f"{split[key]:.0f}" for key in sorted(split)) + " |")
    print("\n| op | self CPU ms | % | calls |\n|---|---|---|---|")
    for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]:
        print(f"| {e.key} | {e.self_cpu_time_total / 1e3:.0f} | {100 * e.self_cpu_time_total / 1e3 / total:.1f} "
              f"| {e.count} |")


def _op_kind(func: object, args: tuple) -> str:
    """``func``'s name, convolutions split by kind (depthwise / 1x1 / other) and direction."""
    name = str(func).split(".")[1]  # aten.convolution_backward.default -> convolution_backward
    if name == "convolution_backward":
        return f"conv backward, {conv_kind(list(args[2].shape))}"
    if name == "convolution":
        return f"conv forward, {conv_kind(list(args[1].shape))}"
    return name


def breakdown(v: Variant, y: torch.Tensor, repeats: int) -> None:
    """Wall time of every aten op of ``repeats`` infers and steps (after the rounds: warm), grouped, per image.

    Each op is timed around its call under a ``TorchDispatchMode`` (a few microseconds per op of overhead, so the
    totals come out slightly above the rounds'); the gradients of ops called inside autograd are included, the
    Python between them is not.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    totals: dict[str, collections.Counter] = {}

    class OpTimes(TorchDispatchMode):
        def __init__(self, into: collections.Counter) -> None:
            super().__init__()
            self.into = into

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            t0 = time.perf_counter()
            out = func(*args, **(kwargs or {}))
            self.into[_op_kind(func, args)] += time.perf_counter() - t0
            return out

    for what, fn in (("infer", lambda: run_infer(v)), ("step", lambda: run_step(v, y))):
        totals[what] = collections.Counter()
        t0 = time.perf_counter()
        with OpTimes(totals[what]):
            for _ in range(repeats):
                fn()
        wall = (time.perf_counter() - t0) / repeats / len(y) * 1e3
        ops = sum(totals[what].values()) / repeats / len(y) * 1e3
        print(f"\n### {v.setting} {what}: {wall:.2f} ms/img under the timer, {ops:.2f} in aten ops (mean of {repeats})")
        print("| op | ms/img | % of the ops |\n|---|---|---|")
        for op, t in totals[what].most_common(14):
            print(f"| {op} | {t / repeats / len(y) * 1e3:.2f} | {100 * t / sum(totals[what].values()):.1f} |")


def bench_model(name: str, args: argparse.Namespace) -> list[dict]:
    y = torch.randint(0, args.num_classes, (args.batch_size,))
    variants: list[Variant] = []
    for setting in args.settings:
        try:
            v = make_variant(name, setting, args.trainable, args.batch_size, args.image_size, args.num_classes)
        except NotImplementedError as err:  # e.g. no last stage for this model
            print(f"{name} {setting}: skipped ({err})", flush=True)
            continue
        t0 = time.perf_counter()
        try:
            for _ in range(args.warmup):
                run_infer(v)
                run_step(v, y)
        except Exception as err:  # noqa: BLE001 -- report the failure (e.g. inductor without a compiler)
            v.error = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            traceback.print_exc(limit=2)
        v.warmup_s = time.perf_counter() - t0
        print(f"{name} {setting}: warm-up {v.warmup_s:.1f} s{' FAILED: ' + v.error if v.error else ''}", flush=True)
        variants.append(v)
    for r in range(args.rounds):
        for v in variants:
            if v.error:
                continue
            v.times["infer"].append(timed(lambda v=v: run_infer(v)))
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            v.times["step"].append(timed(lambda v=v: run_step(v, y)))
            v.step_faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
        print(f"{name}: round {r + 1}/{args.rounds} done ({load_conditions()})", flush=True)
    if args.breakdown:
        for v in variants:
            if not v.error:
                print(f"\n## {name}: time per op")
                breakdown(v, y, args.breakdown)
    if args.profile:
        for v in variants:
            if not v.error:
                print(f"\n## {name}")
                profile_step(v, y)
    rows = []
    for v in variants:
        row = {"model": name, "setting": v.setting, "trainable": v.trainable, "batch_size": args.batch_size,
               "image_size": args.image_size, "threads": torch.get_num_threads(), "rounds": len(v.times["step"]),
               "warmup_s": round(v.warmup_s, 1), "error": v.error or ""}
        for what in ("infer", "step"):
            walls = [w / args.batch_size * 1e3 for w, _ in v.times[what]]
            cpus = [c / args.batch_size * 1e3 for _, c in v.times[what]]
            row[f"{what}_ms_per_img"] = round(statistics.median(walls), 2) if walls else ""
            row[f"{what}_ms_min"] = round(min(walls), 2) if walls else ""
            row[f"{what}_ms_max"] = round(max(walls), 2) if walls else ""
            row[f"{what}_cpu_ms_per_img"] = round(statistics.median(cpus), 2) if cpus else ""
        row["step_minor_faults"] = int(statistics.median(v.step_faults)) if v.step_faults else ""
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    print("\n| model | setting | trainable | cpu_malloc | infer img/s | step img/s | infer ms/img (min-max) "
          "| step ms/img (min-max) | step CPU ms/img | step / infer | step minor faults | peak RSS MiB "
          "| step speed-up vs fp32 | vs cpu_malloc=system |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    base = {(r["model"], r["trainable"], r["cpu_malloc"]): r for r in rows if r["setting"] == "fp32" and not r["error"]}
    system = {(r["model"], r["setting"], r["trainable"]): r for r in rows
              if r["cpu_malloc"] == "system" and not r["error"]}
    for r in rows:
        if r["error"]:
            print(f"| {r['model']} | {r['setting']} | {r['trainable']} | {r['cpu_malloc']} | failed: {r['error']} "
                  "||||||||||")
            continue
        b = base.get((r["model"], r["trainable"], r["cpu_malloc"]))
        speedup = f"{b['step_ms_per_img'] / r['step_ms_per_img']:.2f}x" if b else "-"
        s = system.get((r["model"], r["setting"], r["trainable"]))
        vs_system = f"{s['step_ms_per_img'] / r['step_ms_per_img']:.2f}x" if s else "-"
        print(f"| {r['model']} | {r['setting']} | {r['trainable']} | {r['cpu_malloc']} "
              f"| {1e3 / r['infer_ms_per_img']:.1f} "
              f"| {1e3 / r['step_ms_per_img']:.1f} "
              f"| {r['infer_ms_per_img']:.1f} ({r['infer_ms_min']:.1f}-{r['infer_ms_max']:.1f}) "
              f"| {r['step_ms_per_img']:.1f} ({r['step_ms_min']:.1f}-{r['step_ms_max']:.1f}) "
              f"| {r['step_cpu_ms_per_img']:.1f} | {r['step_ms_per_img'] / r['infer_ms_per_img']:.1f} "
              f"| {r['step_minor_faults']} | {r['peak_rss_mib']} | {speedup} | {vs_system} |")


def run_per_malloc_mode(argv: list[str], modes: tuple[str, ...]) -> list[dict]:
    """Run this benchmark once per ``cpu_malloc`` mode, each in a fresh process; their rows, in order."""
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            out = Path(tmp) / f"{mode}.json"
            subprocess.run([sys.executable, __file__, *argv, "--cpu-malloc", mode, "--rows-json", str(out)],
                           check=True)
            rows += json.loads(out.read_text())
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(PAPER_MODELS))
    parser.add_argument("--settings", nargs="+", default=["fp32", "cl"])
    parser.add_argument("--trainable", choices=("all", "last_stage"), default="all")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3, help="untimed infer + step pairs per setting first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--csv", type=Path, default=None, help="append one row per (model, setting) here")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--breakdown", type=int, default=0, metavar="N",
                        help="after the rounds, time every aten op of N infers and N steps (warm), grouped")
    parser.add_argument("--cpu-malloc", choices=(*CPU_MALLOC, "both"), default="both",
                        help="the jobs' cpu_malloc setting; both: once per mode, each in a fresh process")
    parser.add_argument("--rows-json", type=Path, default=None, help=argparse.SUPPRESS)  # for --cpu-malloc both
    args = parser.parse_args(argv)
    for setting in args.settings:
        parse_setting(setting)
    if args.csv is not None and args.csv.exists():
        with args.csv.open(newline="") as f:
            header = next(csv.reader(f), [])
        if tuple(header) != CSV_COLUMNS:
            raise SystemExit(f"--csv {args.csv}: its columns are not this script's ({', '.join(CSV_COLUMNS)}); "
                             "rows appended there would be misread: give a new file")
    if args.cpu_malloc == "both":
        # the child's own --cpu-malloc, given last, is the one argparse keeps
        print_table(run_per_malloc_mode(sys.argv[1:] if argv is None else argv, ("system", "reuse")))
        return
    in_effect = set_cpu_malloc(args.cpu_malloc)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    print(f"cpu_malloc={in_effect}; start: {load_conditions()}", flush=True)
    writer = None
    handle = None
    if args.csv is not None:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        new = not args.csv.exists()
        handle = args.csv.open("a", newline="")
    rows: list[dict] = []
    try:
        for name in args.models:
            model_rows = bench_model(name, args)
            for row in model_rows:  # the process's peak so far: this model's settings and the models before it
                row["cpu_malloc"] = in_effect
                row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
            if handle is not None and model_rows:
                if writer is None:
                    writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
                    if new:
                        writer.writeheader()
                for row in model_rows:
                    writer.writerow(row)
                handle.flush()
            rows += model_rows
    finally:
        if handle is not None:
            handle.close()
    print(f"end: {load_conditions()}")
    if args.rows_json is not None:
        args.rows_json.write_text(json.dumps(rows))
    print_table(rows)


if __name__ == "__main__":
    main()
