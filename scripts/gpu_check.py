"""The Python part of ``scripts/gpu_check.sh``: the benchmark data, the machine's description, and the report.

    python scripts/gpu_check.py make-data --shared DIR --out WORK/data [--train-images N] [--processes P]
    python scripts/gpu_check.py environment --out WORK/environment.json
    python scripts/gpu_check.py report --work WORK --report results/bench/gpu.md --command "..."

``make-data`` writes, from ``DIR/imagenette_mini`` and the val ground truth ``DIR/wsolevaluation_metadata/ILSVRC/test``:

- ``imagenette/``: the imagenette_mini tree with each of its 500 ILSVRC2012 val images scaled back to its ORIGINAL
  size (``image_sizes.txt``; the stored copies are squashed to 224x224) and saved as JPEG quality 95 with +-6 grey
  levels of seeded noise, so that decoding costs about what the real val images cost (on the development machine:
  83 KB and 1.8 ms per image, against 71 KB and 2.2 ms for the 20 real originals of ``ilsvrc_val_mini/original``)
  and the boxes are the official ones in original pixels; the ImageNet-train files are copied as they are;
- ``ilsvrc/train/n00000000 .. n00000999/``: an ILSVRC train-folder layout of ``N`` (at least 1000) entries, symbolic
  links to those 500 val images in turn, for the training benchmark (``scripts/bench_loop.py``).

``report`` turns what ``gpu_check.sh`` left in ``WORK`` (step times, pytest log, the benchmarks' JSON) into the
Markdown report: the four checks of the GPU issue, with the command and the machine, and the projections.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# The paper's recipe (configs/train/cam_paper.yaml: max_iters, batch_size) and the ILSVRC2012 val set.
PAPER_ITERS, PAPER_BATCH, VAL_IMAGES = 160_000, 64, 50_000


# ----------------------------------------------------------------------------------------------------- make-data
def _original_size_copy(job: tuple[str, str, int, int, int]) -> str:
    """One val image scaled to its original (W, H), with seeded noise, as JPEG quality 95."""
    import numpy as np
    from PIL import Image

    src, dst, width, height, seed = job
    image = Image.open(src).convert("RGB").resize((width, height), Image.BICUBIC)
    noise = np.random.default_rng(seed).integers(-6, 7, (height, width, 3))
    pixels = (np.asarray(image, dtype=np.int16) + noise).clip(0, 255).astype(np.uint8)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(dst, "JPEG", quality=95)
    return dst


def make_data(shared: Path, out: Path, train_images: int, processes: int) -> None:
    tree, gt = shared / "imagenette_mini", shared / "wsolevaluation_metadata" / "ILSVRC" / "test"
    sizes = {}
    for line in (gt / "image_sizes.txt").read_text().splitlines():
        image_id, w, h = line.split(",")
        sizes[Path(image_id).stem] = (int(w), int(h))
    jobs, copied = [], 0
    for path in sorted(tree.rglob("*.JPEG")):
        dst = out / "imagenette" / path.relative_to(tree)
        if path.stem.startswith("ILSVRC2012_val_"):
            jobs.append((str(path), str(dst), *sizes[path.stem], int(path.stem.rsplit("_", 1)[1])))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dst)
            copied += 1
    with ProcessPoolExecutor(processes) as pool:
        val = sorted(pool.map(_original_size_copy, jobs, chunksize=16))
    train = out / "ilsvrc" / "train"
    train_images = max(train_images, 1000)  # every class folder non-empty (torchvision's ImageFolder requires it)
    for c in range(1000):
        (train / f"n{c:08d}").mkdir(parents=True, exist_ok=True)
    for i in range(train_images):
        link = train / f"n{i % 1000:08d}" / f"img_{i:07d}.JPEG"
        link.symlink_to(Path(val[i % len(val)]).resolve())
    size = sum(Path(v).stat().st_size for v in val) / len(val)
    print(f"{out / 'imagenette'}: {len(val)} val images at their original sizes (mean {size / 1e3:.0f} KB), "
          f"{copied} train files; {train}: {train_images} links in 1000 class folders")


# --------------------------------------------------------------------------------------------------- environment
def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch
    import torchvision

    env: dict[str, Any] = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "python": platform.python_version(),
        "torch": torch.__version__, "torchvision": torchvision.__version__, "cuda_runtime": torch.version.cuda,
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "python_executable": sys.executable, "cuda_available": torch.cuda.is_available()}
    for name in ("numpy", "numba", "cv2", "PIL", "hydra", "omegaconf", "pandas", "sklearn", "torchcam"):
        try:
            env[f"{name}_version"] = __import__(name).__version__
        except Exception:  # noqa: BLE001 -- absent or without a version: say so
            env[f"{name}_version"] = "absent"
    model = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text()) if Path("/proc/cpuinfo").is_file() \
        else None
    if model:
        env["cpu"] = model.group(1).strip()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   gpu_capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version(),
                   nccl=str(torch.cuda.nccl.version()) if hasattr(torch.cuda, "nccl") else "",
                   cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                   matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
        env["nvidia_smi"] = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,power.limit,"
                                  "clocks.max.sm", "--format=csv,noheader"])
    return env


# -------------------------------------------------------------------------------------------------------- report
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _steps(work: Path) -> list[dict[str, str]]:
    """``steps.tsv``: name, exit code, seconds, time limit (written by gpu_check.sh)."""
    path = work / "steps.tsv"
    if not path.is_file():
        return []
    return [dict(zip(("step", "rc", "seconds", "limit"), line.split("\t")))
            for line in path.read_text().splitlines() if line]


def _pytest_section(work: Path) -> list[str]:
    out = ["## 1. Correctness: `pytest -m gpu` (tests/test_gpu.py)", ""]
    junit = work / "pytest.xml"
    if junit.is_file():
        out += ["| test | outcome | seconds |", "|---|---|---|"]
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcome = "passed"
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    message = (node.get("message") or "").splitlines()[0][:160] if node.get("message") else ""
                    outcome = f"**{tag}**" + (f": {message}" if message else "") if tag != "skipped" else \
                        f"skipped: {message}"
            out.append(f"| `{case.get('name')}` | {outcome} | {float(case.get('time', 0)):.1f} |")
    else:
        out.append("No test results (the step did not run or did not finish).")
    log = work / "logs" / "pytest.log"
    findings = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("[gpu]")] \
        if log.is_file() else []
    if findings:
        out += ["", "What the tests printed:", "", "```", *(f[6:] for f in findings), "```"]
    return out + [""]


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _loop_section(rows: list[dict[str, Any]] | None) -> tuple[list[str], dict[tuple[str, str, int], float]]:
    out = ["## 2. Training throughput: wsol's loop vs a plain PyTorch AMP loop (`scripts/bench_loop.py`)", ""]
    rates: dict[tuple[str, str, int], float] = {}
    if not rows:
        return out + ["No results (the step did not run or did not finish).", ""], rates
    out += ["bf16 autocast, channels_last, SGD (the paper's recipe), random weights, 1000 classes. `tensors`: one "
            "batch already on the GPU fed as every batch; `pipeline`: JPEG decode + augmentation (resize 256x256, "
            "random 224 crop, mirror) in DataLoader workers, pinned memory. `peer`: torchvision's reference "
            "training loop with `cudnn.benchmark=True` as that script sets it; wsol leaves it off. Ratio = wsol / "
            "peer (target >= 0.95).", "",
            "| model | data | batch | wsol img/s | peer img/s | wsol / peer | wsol+benchmark img/s | peak GiB wsol / "
            "peer |", "|---|---|---|---|---|---|---|---|"]
    keyed = {(r["model"], r["data"], r["batch"], r["loop"]): r for r in rows}
    order = {m: i for i, m in enumerate(dict.fromkeys(r["model"] for r in rows))}
    main_batch = max(r["batch"] for r in rows)
    groups = sorted({(r["model"], r["data"], r["batch"]) for r in rows},
                    key=lambda k: (k[2] != main_batch, k[1] != "tensors", order[k[0]], -k[2]))
    failed = [r for r in rows if r.get("error")]
    for model, data, batch in groups:
        get = {loop: keyed.get((model, data, batch, loop)) for loop in ("wsol", "peer", "wsol+benchmark")}
        rate = {k: (v["img_s"] if v and not v.get("error") else None) for k, v in get.items()}
        mem = {k: (v.get("peak_mem_gib") if v and not v.get("error") else None) for k, v in get.items()}
        ratio = rate["wsol"] / rate["peer"] if rate["wsol"] and rate["peer"] else None
        flag = "" if ratio is None or ratio >= 0.95 else " **(< 0.95)**"
        out.append(f"| {model} | {data} | {batch} | {_fmt(rate['wsol'])} | {_fmt(rate['peer'])} | "
                   f"{_fmt(ratio, 3)}{flag} | {_fmt(rate['wsol+benchmark'])} | {_fmt(mem['wsol'], 2)} / "
                   f"{_fmt(mem['peer'], 2)} |")
        if rate["wsol"]:
            rates[(model, data, batch)] = rate["wsol"]
    if failed:
        out += ["", "Failed runs:", ""] + [f"- {r['model']} {r['data']} {r['batch']} {r['loop']}: `{r['error']}`"
                                            for r in failed]
    return out + [""], rates


def _eval_section(results: list[dict[str, Any]]) -> tuple[list[str], dict[str, float]]:
    out = ["## 3. Evaluation throughput: `wsolevaluation` protocol, top-5 + GT CAMs, CAM store on "
           "(`scripts/bench_eval.py`)", ""]
    rates: dict[str, float] = {}
    if not results:
        return out + ["No results (the step did not run or did not finish).", ""], rates
    first = results[0]
    out += [f"{first['n_images']} Imagenette val images at their original sizes (official boxes), on "
            f"{first['device']}, step {first['step']}, MaxBoxAcc V1 + V2 (IoU 30/50/70), batch 64. `peer`: torchcam "
            "`CAM` for the GT class, the map resized to 224 (bicubic) and min-max normalised, one `.npy` per image, "
            f"then wsolevaluation's own `BoxEvaluator` (V1 and V2) over the files, on the first "
            f"{first.get('peer_images')} images (its per-threshold OpenCV loop makes it the slow part); wsol: "
            "`evaluate_model` with the CAM store (fp16 shards). ResNet-50 has random weights (no ImageNet weights "
            "offline): same timing, meaningless accuracy.", "",
            "`one more image`: (time for all images - time for the first tenth) / the rest: the cost of an image "
            "without the fixed start-up (DataLoader workers, store), which the projections use.", "",
            "| model | pipeline | workers | images | ms / image | images/s | peer / this | one more image (ms) | "
            "MaxBoxAcc | MaxBoxAccV2 |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        peer = r.get("peer") or {}
        peer_ms = peer.get("ms_per_image")
        if peer:
            out.append(f"| {r['model']} | peer (torchcam + .npy + BoxEvaluator) | {peer.get('workers')} | "
                       f"{peer.get('n_images')} | {_fmt(peer_ms, 2)} | {_fmt(1e3 / peer_ms if peer_ms else None)} | "
                       f"1.00 | | {_fmt(peer.get('maxboxacc'), 2)} | {_fmt(peer.get('maxboxacc_v2'), 2)} |")
        for w in r.get("wsol", []):
            speedup = peer_ms / w["ms_per_image"] if peer_ms else None
            out.append(f"| {r['model']} | wsol `evaluate_model` + store | {w['workers']} | {w['n_images']} | "
                       f"{_fmt(w['ms_per_image'], 2)} | {_fmt(1e3 / w['ms_per_image'])} | **{_fmt(speedup, 2)}** | "
                       f"{_fmt(w.get('marginal_ms_per_image'), 2)} | {_fmt(w.get('maxboxacc'), 2)} | "
                       f"{_fmt(w.get('maxboxacc_v2'), 2)} |")
            marginal = w.get("marginal_ms_per_image")
            rates[f"{r['model']}:{w['workers']}"] = 1e3 / (marginal if marginal and marginal > 0 else w["ms_per_image"])
        check = r.get("same_maps_check")
        if check:
            out.append(f"| {r['model']} | wsol on the peer's images (same maps?) | | {check['n_images']} | | | | | "
                       f"{_fmt(check['maxboxacc'], 2)} | {_fmt(check['maxboxacc_v2'], 2)} |")
    stages = list(first.get("stages", {}))
    out += ["", "Where wsol's time goes: each stage timed alone over all images in one process (ms / image). With W "
            "DataLoader workers, decoding and resizing run in the workers (their cost / W); the forward pass, the CAMs "
            "(to the CPU), the score maps and the MaxBoxAcc kernels run one after the other in the main process:", "",
            "| model | " + " | ".join(stages) + " | main process | workers (/ W) | bound with W = "
            f"{max((w['workers'] for w in first.get('wsol', [])), default=0)} |",
            "|---|" + "---|" * (len(stages) + 3)]
    for r in results:
        t = r.get("stages", {})
        workers = max((w["workers"] for w in r.get("wsol", [])), default=0) or 1
        main = sum(t.get(k, 0.0) for k in ("forward+head+top5+GT CAMs", "score maps (bicubic 224, min-max)",
                                            "MaxBoxAcc V1+V2 curves"))
        loading = t.get("decode", 0.0) + t.get("resize+normalise", 0.0)
        scorer = t.get("score maps (bicubic 224, min-max)", 0.0) + t.get("MaxBoxAcc V1+V2 curves", 0.0)
        network = t.get("forward+head+top5+GT CAMs", 0.0)
        bound = ("decoding" if loading / workers > main else
                 "the scorer (score maps + MaxBoxAcc)" if scorer > network else "the network (forward + CAMs)")
        out.append(f"| {r['model']} | " + " | ".join(_fmt(t[k], 2) for k in stages) + f" | {_fmt(main, 2)} | "
                   f"{_fmt(loading / workers, 2)} | {bound} |")
    return out + [""], rates


def _projection_section(train: dict[tuple[str, str, int], float], evals: dict[str, float]) -> list[str]:
    out = ["## 4. Projections from the measured rates (not measurements)", ""]
    images = PAPER_ITERS * PAPER_BATCH
    pipeline = {b: v for (m, d, b), v in train.items() if m == "googlenet_gap" and d == "pipeline"}
    tensors = {b: v for (m, d, b), v in train.items() if m == "googlenet_gap" and d == "tensors"}
    if pipeline:
        batch = PAPER_BATCH if PAPER_BATCH in pipeline else max(pipeline)  # the recipe's batch when measured
        one = pipeline[batch]
        out.append(f"- **Paper recipe** (`experiment=cam_paper/googlenet_gap`: {PAPER_ITERS:,} iterations x "
                   f"{PAPER_BATCH} = {images / 1e6:.2f} M images), wsol's loop through the data pipeline at batch "
                   f"{batch}, {one:,.0f} images/s (bf16, channels_last; the recipe leaves channels_last off): "
                   f"**{images / one / 3600:.1f} h on 1 GPU**.")
        if tensors:
            per_gpu = min(tensors)  # the smallest batch measured: 8 = 64 / 8 GPUs
            small = tensors[per_gpu]
            out.append(f"  On 8 such GPUs with the recipe unchanged (global batch {PAPER_BATCH} = {PAPER_BATCH // 8} "
                       f"per GPU), a step takes at least one step of batch {per_gpu} ({small:,.0f} images/s on "
                       f"resident tensors: {per_gpu / small * 1e3:.1f} ms): "
                       f"**>= {PAPER_ITERS * per_gpu / small / 3600:.1f} h**, before the gradient all-reduce, and "
                       f"only if 8 data pipelines keep up. Perfect scaling of the 1-GPU rate would give "
                       f"{images / one / 8 / 3600:.1f} h; so small a batch per GPU does not reach it.")
    else:
        out.append("- Paper recipe: no googlenet_gap rate through the data pipeline was measured.")
    for model in ("efficientnet_lite0", "resnet50"):
        rate = max((v for k, v in evals.items() if k.startswith(f"{model}:")), default=None)
        if rate:
            out.append(f"- **Full ILSVRC val evaluation** ({VAL_IMAGES:,} images, wsolevaluation protocol at step "
                       f"0.001 with the store), {model} at {rate:,.0f} images/s (one more image, its best worker "
                       "count): "
                       f"**{VAL_IMAGES / rate / 60:.1f} min on 1 GPU, {VAL_IMAGES / rate / 8 / 60:.1f} min on 8** "
                       "(each rank scores its own contiguous block; assumes 8 x the CPU cores for decoding and "
                       "scoring).")
    return out + [""]


def report(work: Path, path: Path, command: str, note: str) -> str:
    env = _read_json(work / "environment.json") or {}
    steps = _steps(work)
    lines = [f"# The CUDA path, measured: {env.get('gpu', 'no GPU (CPU dry run)')}", "",
             "Made by one command (issue 20; `scripts/gpu_prepare.sh` ran first on the development machine):", "",
             "```bash", command, "```", ""]
    if note:
        lines += [note, ""]
    lines += ["| | |", "|---|---|",
              f"| date | {env.get('date_utc', '-')} |",
              f"| device | {env.get('gpu', 'CPU')} ({env.get('gpu_memory_gib', '-')} GiB, capability "
              f"{env.get('gpu_capability', '-')}) |",
              f"| nvidia-smi | {env.get('nvidia_smi', '-') or '-'} |",
              f"| torch / CUDA / cuDNN / NCCL | {env.get('torch')} / {env.get('cuda_runtime')} / "
              f"{env.get('cudnn', '-')} / {env.get('nccl', '-')} |",
              f"| torchvision, Python | {env.get('torchvision')}, {env.get('python')} |",
              f"| CPU | {env.get('cpu')}, {env.get('cpu_count')} CPUs ({env.get('torch_threads')} torch threads, "
              f"OMP_NUM_THREADS {env.get('omp_num_threads', '-')}) |",
              f"| interpreter | `{env.get('python_executable', '-')}` |",
              f"| TF32 (cuDNN / matmul) | {env.get('cudnn_allow_tf32', '-')} / {env.get('matmul_allow_tf32', '-')} |",
              "| other packages | " + ", ".join(f"{k[:-8]} {v}" for k, v in env.items() if k.endswith("_version"))
              + " |",
              "", "Steps (exit code 124 = stopped by its time limit):", "",
              "| step | exit code | seconds | limit |", "|---|---|---|---|",
              *(f"| {s['step']} | {s['rc']} | {s['seconds']} | {s['limit']} |" for s in steps), ""]
    lines += _pytest_section(work)
    loop, train_rates = _loop_section(_read_json(work / "bench_loop.json"))
    lines += loop
    evals = [r for r in (_read_json(p) for p in sorted(work.glob("bench_eval_*.json"))) if r]
    section, eval_rates = _eval_section(evals)
    lines += section
    lines += _projection_section(train_rates, eval_rates)
    failed = [s for s in steps if s["rc"] != "0"]
    if failed:
        lines += ["## Steps that failed", ""]
        for s in failed:
            log = work / "logs" / f"{s['step']}.log"
            tail = log.read_text(errors="replace").splitlines()[-25:] if log.is_file() else []
            lines += [f"`{s['step']}` (exit code {s['rc']}), last lines of its log:", "", "```", *tail, "```", ""]
    text = "\n".join(lines).rstrip() + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("make-data")
    p.add_argument("--shared", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train-images", type=int, default=8192)
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    p = sub.add_parser("environment")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("report")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--report", type=Path, required=True)
    p.add_argument("--command", required=True)
    p.add_argument("--note", default="")
    args = parser.parse_args(argv)
    if args.what == "make-data":
        make_data(args.shared, args.out, args.train_images, args.processes)
    elif args.what == "environment":
        env = environment()
        args.out.write_text(json.dumps(env, indent=1))
        print(json.dumps(env, indent=1))
    else:
        print(report(args.work, args.report, args.command, args.note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
