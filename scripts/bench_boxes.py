"""Benchmark: the MaxBoxAcc / MaxBoxAccV2 curves, wsolevaluation's own BoxEvaluator vs wsol's exact and fast paths.

    python scripts/bench_boxes.py --wsolevaluation ~/src/wsolevaluation [--interval 0.001] [--maps-per-kind 8]
        [--scoremap-root MAPS --gt DATASET_DIR [--max-real 60]] [--repeats 3] [--interleave] [--profile] [--csv OUT.csv]

Maps (224x224, as wsolevaluation scores them):
    * ``cam14`` / ``cam7``: CAM-like maps made the way CAMs become score maps -- a 14x14 (or 7x7) grid holding
      1-3 Gaussian blobs of random position, width and height plus 5% noise (a real CAM's background is never
      flat), bicubic-upsampled to 224x224 and min-max normalised (``wsoleval_scoremap``);
    * ``cam14_smooth``: the same without the noise (level sets without holes: the single-sweep case);
    * ``real``: score maps from ``--scoremap-root`` with GT boxes from ``--gt DIR/metadata`` (wsolevaluation
      format, integer coordinates), e.g. exported by ``wsol-evaluate ... eval.export_scoremaps=MAPS``.

Per map, each path scores the map at every threshold ``np.arange(0, 1, interval)``:
    * ``wsoleval``: the suite's ``BoxEvaluator.accumulate`` from the ``--wsolevaluation`` checkout, run twice as
      the suite does (``multi_contour_eval`` False for MaxBoxAcc, True for MaxBoxAccV2; its ``__init__``, which
      only reads metadata files, is bypassed and the GT boxes set directly);
    * ``exact``: ``BoxAccEvaluator(method="exact")`` (the same OpenCV calls, once per distinct 8-bit level);
    * ``fast``: ``BoxAccEvaluator(method="fast")`` (one sweep over the level sets, numba).
The per-threshold correct counts of all three must be identical (V1 at IoU 50, V2 at 30/50/70). Times are CPU
times of this process (``time.process_time``: steadier than wall time on a shared machine), the median of
``--repeats`` runs for wsoleval and fast, one run for exact. By default each path scores a whole set of maps in
turn (as an evaluation loop would); ``--interleave`` alternates the paths map by map instead, so that each path
starts every map on caches the other paths filled -- which costs the one-pass fast path more than the suite's
loop, which re-reads the same small image a thousand times. Without ``--wsolevaluation`` only exact and fast
are compared.

``--profile`` splits the fast path by phase (each numba kernel, and the Python around them) and times two
floors: one NumPy pass over the 8-bit map (``(u8 > 127).sum()``) and the counting sort of its pixels.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import io
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from wsol.boxes import resize_boxes
from wsol.metrics import kernels
from wsol.metrics.boxacc import BoxAccEvaluator, quantise
from wsol.metrics.scoremap import RESIZE_LENGTH, scoremap_thresholds, wsoleval_scoremap

IOUS = (30, 50, 70)
KINDS = ("cam14", "cam7", "cam14_smooth")


# ------------------------------------------------------------------------------------------------- maps
def cam_like_map(rng: np.random.Generator, grid: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """A CAM-like 224x224 score map and 1-2 GT boxes around its strongest blob (224 grid, inclusive xyxy)."""
    yy, xx = np.mgrid[0:grid, 0:grid]
    cam = np.zeros((grid, grid))
    blobs = []
    for _ in range(rng.integers(1, 4)):
        cx, cy = rng.uniform(0, grid, 2)
        sx, sy = rng.uniform(0.06, 0.25, 2) * grid
        weight = rng.uniform(0.4, 1.0)
        cam += weight * np.exp(-((xx - cx) ** 2) / (2 * sx**2) - ((yy - cy) ** 2) / (2 * sy**2))
        blobs.append((weight, cx, cy, sx, sy))
    cam += noise * rng.standard_normal((grid, grid))
    scale = RESIZE_LENGTH / grid
    gt = []
    for _, cx, cy, sx, sy in sorted(blobs, reverse=True)[: rng.integers(1, 3)]:
        # a box of about +-2 sigma around the blob, jittered: IoUs spread over the thresholds
        x0, x1 = (cx - 2 * sx * rng.uniform(0.6, 1.4)) * scale, (cx + 2 * sx * rng.uniform(0.6, 1.4)) * scale
        y0, y1 = (cy - 2 * sy * rng.uniform(0.6, 1.4)) * scale, (cy + 2 * sy * rng.uniform(0.6, 1.4)) * scale
        gt.append(np.clip([x0, y0, x1, y1], 0, RESIZE_LENGTH - 1).astype(int))
    return wsoleval_scoremap(cam), np.array(gt)


def synthetic_maps(kind: str, n: int, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    grid, noise = {"cam14": (14, 0.05), "cam7": (7, 0.05), "cam14_smooth": (14, 0.0)}[kind]
    for _ in range(n):
        yield cam_like_map(rng, grid, noise)


def real_maps(scoremap_root: Path, gt_dir: Path, limit: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Score maps ``<root>/<image_id>.npy`` with their GT boxes resized to 224 as wsolevaluation does."""
    meta = gt_dir / "metadata"
    ids = [line.strip() for line in (meta / "image_ids.txt").read_text().splitlines() if line.strip()][:limit]
    sizes = {}
    for line in (meta / "image_sizes.txt").read_text().splitlines():
        if line.strip():
            image_id, w, h = line.strip().split(",")
            sizes[image_id] = (int(w), int(h))
    boxes: dict[str, list[list[int]]] = defaultdict(list)
    for line in (meta / "localization.txt").read_text().splitlines():
        if line.strip():
            image_id, *coords = line.strip().split(",")
            boxes[image_id].append([int(c) for c in coords])  # the suite parses them with int()
    for image_id in ids:
        scoremap = np.load(scoremap_root / f"{image_id}.npy").astype(np.float64)  # the suite's t2n
        yield scoremap, resize_boxes(boxes[image_id], sizes[image_id], (RESIZE_LENGTH, RESIZE_LENGTH), truncate=True)


# ------------------------------------------------------------------------------------------------ paths
def wsoleval_runner(checkout: Path, interval: float) -> Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    """Their ``BoxEvaluator.accumulate`` for V1 and V2 on one map; returns the correct counts per threshold."""
    if not hasattr(np, "float"):
        np.float = float  # type: ignore[attr-defined]  # the suite predates NumPy 1.24
    sys.path.insert(0, str(checkout))
    from evaluation import BoxEvaluator  # type: ignore[import-not-found]  # noqa: PLC0415

    thresholds = list(np.arange(0, 1, interval))

    def run(scoremap: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for name, multi in (("v1", False), ("v2", True)):
            ev = BoxEvaluator.__new__(BoxEvaluator)  # what __init__ sets, without its metadata files
            ev.cam_threshold_list = thresholds
            ev.iou_threshold_list = list(IOUS)
            ev.multi_contour_eval = multi
            ev.cnt = 0
            ev.num_correct = {t: np.zeros(len(thresholds)) for t in IOUS}
            ev.gt_bboxes = {"map": [tuple(int(v) for v in box) for box in gt]}
            with contextlib.redirect_stdout(io.StringIO()):
                ev.accumulate(scoremap, "map")
            out[name] = ev.num_correct
        return {"v1_iou50": out["v1"][50], **{f"v2_iou{t}": out["v2"][t] for t in IOUS}}

    return run


def wsol_runner(method: str, interval: float) -> Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    def run(scoremap: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
        ev = BoxAccEvaluator(interval, IOUS, method=method)
        ev.update([scoremap], [gt])
        curve = ev.curve()  # one image: 0 or 100 per threshold
        return {"v1_iou50": curve["boxacc_v1_iou50"] / 100, **{f"v2_iou{t}": curve[f"boxacc_v2_iou{t}"] / 100 for t in IOUS}}

    return run


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median CPU seconds over ``repeats`` runs, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.process_time()
        result = fn()
        times.append(time.process_time() - start)
    return statistics.median(times), result


# ---------------------------------------------------------------------------------------------- profile
KERNELS = ("fill_holes", "sweep_components", "sweep_holes", "euler_numbers", "pixel_order")


@contextlib.contextmanager
def kernel_timers() -> Iterator[dict[str, float]]:
    """Wrap the kernels (as ``wsol.metrics.boxacc`` looks them up, through the module) to add up their CPU time."""
    spent: dict[str, float] = defaultdict(float)
    originals = {name: getattr(kernels, name) for name in KERNELS}

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def inner(*args: Any) -> Any:
            start = time.process_time()
            try:
                return fn(*args)
            finally:
                spent[name] += time.process_time() - start

        return inner

    for name, fn in originals.items():
        setattr(kernels, name, wrap(name, fn))
    try:
        yield spent
    finally:
        for name, fn in originals.items():
            setattr(kernels, name, fn)


def profile(maps: list[tuple[np.ndarray, np.ndarray]], interval: float, repeats: int) -> list[str]:
    fast = wsol_runner("fast", interval)
    total = 0.0
    with kernel_timers() as spent:
        for _ in range(repeats):
            for scoremap, gt in maps:
                start = time.process_time()
                fast(scoremap, gt)
                total += time.process_time() - start
    runs = repeats * len(maps)
    floors = {}
    u8s = [quantise(m) for m, _ in maps]
    for name, fn in (("numpy pass (u8 > 127).sum()", lambda u: (u > 127).sum()), ("pixel_order (counting sort)", kernels.pixel_order)):
        start = time.process_time()
        for _ in range(repeats):
            for u8 in u8s:
                fn(u8)
        floors[name] = (time.process_time() - start) / runs
    lines = [f"fast path, mean CPU ms per map over {len(maps)} maps x {repeats}:"]
    for name in KERNELS:
        lines.append(f"  {name:<22} {spent[name] / runs * 1e3:7.3f}")
    rest = total - sum(spent.values())
    lines.append(f"  {'Python (checks, IoU)':<22} {rest / runs * 1e3:7.3f}")
    lines.append(f"  {'total':<22} {total / runs * 1e3:7.3f}")
    for name, seconds in floors.items():
        lines.append(f"  floor: {name:<28} {seconds * 1e3:7.3f}   (total = {total / runs / seconds:.0f}x this)")
    return lines


# ------------------------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wsolevaluation", type=Path, help="a checkout of clovaai/wsolevaluation")
    parser.add_argument("--interval", type=float, default=0.001)
    parser.add_argument("--maps-per-kind", type=int, default=8)
    parser.add_argument("--scoremap-root", type=Path, help="real score maps <root>/<image_id>.npy")
    parser.add_argument("--gt", type=Path, help="dataset dir with metadata/ for --scoremap-root")
    parser.add_argument("--max-real", type=int, default=60, help="at most this many real maps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interleave", action="store_true", help="alternate the paths map by map (see below)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--csv", type=Path, help="write one row per map here")
    args = parser.parse_args()
    if (args.scoremap_root is None) != (args.gt is None):
        parser.error("--scoremap-root and --gt go together")

    rng = np.random.default_rng(args.seed)
    sets = {kind: list(synthetic_maps(kind, args.maps_per_kind, rng)) for kind in KINDS}
    if args.scoremap_root:
        sets["real"] = list(real_maps(args.scoremap_root, args.gt, args.max_real))
    paths = {"exact": wsol_runner("exact", args.interval), "fast": wsol_runner("fast", args.interval)}
    if args.wsolevaluation:
        paths = {"wsoleval": wsoleval_runner(args.wsolevaluation, args.interval), **paths}
    repeats = {"wsoleval": args.repeats, "exact": 1, "fast": args.repeats}
    paths["fast"](*sets["cam14"][0])  # numba compiles (or loads its cache) before timing

    print(f"step {args.interval} ({len(scoremap_thresholds(args.interval))} thresholds), 224x224 maps, CPU ms per map "
          f"(median of {args.repeats} for wsoleval and fast; {'interleaved' if args.interleave else 'grouped by path'}); "
          f"load average {os.getloadavg()[0]:.1f}")
    ref = next(iter(paths))
    print(f"{'kind':<13} {'maps':>4} " + " ".join(f"{p:>9}" for p in paths) + f" {ref + '/fast':>14} identical")
    rows, all_same = [], True
    for kind, maps in sets.items():
        per_path: dict[str, list[float]] = defaultdict(list)
        results: dict[str, list[dict[str, np.ndarray]]] = defaultdict(list)
        # grouped (default): each path scores the whole set in turn, as an evaluation loop would; interleaved:
        # the paths take turns on each map, so each one starts on caches the other one filled
        order = ([(i, name) for i in range(len(maps)) for name in paths] if args.interleave
                 else [(i, name) for name in paths for i in range(len(maps))])
        for index, name in order:
            seconds, result = timed(functools.partial(paths[name], *maps[index]), repeats[name])
            per_path[name].append(seconds)
            results[name].append(result)
        same = True
        for index in range(len(maps)):
            ok = all(np.array_equal(results[name][index][key], results[ref][index][key])
                     for name in paths for key in results[ref][index])
            same &= ok
            rows.append({"kind": kind, "map": index, **{f"ms_{n}": round(t[index] * 1e3, 3) for n, t in per_path.items()},
                         "identical": ok})
        medians = {name: statistics.median(t) for name, t in per_path.items()}
        ratio = medians[ref] / medians["fast"]
        print(f"{kind:<13} {len(maps):>4} " + " ".join(f"{medians[p] * 1e3:9.2f}" for p in paths) + f" {ratio:14.1f} {same}")
        all_same &= same
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if args.profile:
        for kind, maps in sets.items():
            print(f"\n[{kind}]")
            print("\n".join(profile(maps, args.interval, args.repeats)))
    print("\nall identical" if all_same else "\nDIFFERENT results")
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
