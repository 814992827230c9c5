"""Benchmark: the MaxBoxAcc / MaxBoxAccV2 curves, wsolevaluation's own BoxEvaluator vs wsol's exact and fast paths.

    python scripts/bench_boxes.py --wsolevaluation ~/src/wsolevaluation [--interval 0.001] [--maps-per-kind 10]
        [--scoremap-root MAPS --gt DATASET_DIR [--max-real 60]] [--previous REV] [--repeats 3] [--fast-repeats 15]
        [--grouped] [--profile] [--csv OUT.csv]

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
    * ``fast``: ``BoxAccEvaluator(method="fast")``, one ``update`` per map (one kernel call per map);
    * ``previous`` (with ``--previous REV``): the fast path of git revision ``REV`` (its ``wsol/metrics/kernels.py``
      and ``boxacc.py``, loaded from ``git show`` as a separate module), same calls.
Each path keeps one evaluator and ``reset()``s it per map. The per-threshold correct counts of all paths must be
identical (V1 at IoU 50, V2 at 30/50/70); the script exits 1 if they are not. ``fast_batch`` is the fast path
scoring each whole set in ONE ``update`` call (``[B, 224, 224]``: one kernel call for the batch), per map.

Times are CPU times of this process (``time.process_time``: steadier than wall time on a shared machine). By
default the paths are INTERLEAVED: for each map, ``--fast-repeats`` rounds, in each of which every path still
owed a run scores the map once, in an order that rotates from round to round (wsoleval runs in the first
``--repeats`` rounds, exact in the first); a path's time on a map is the median of its runs, and a kind's the
median over its maps. So every figure of a row was measured in the same minutes, on the same maps, under the
same load. ``--grouped`` instead lets each path score the whole set in turn.

``--profile`` splits the fast path of one map into its phases (calling the kernels' internal functions one by one,
as ``kernels.boxacc_counts`` does) and times a floor: one NumPy pass over the float map (``(m > 0.5).sum()``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from wsol.boxes import resize_boxes
from wsol.metrics import kernels
from wsol.metrics.boxacc import BoxAccEvaluator, _workspace
from wsol.metrics.scoremap import RESIZE_LENGTH, scoremap_thresholds, wsoleval_scoremap

IOUS = (30, 50, 70)
KINDS = ("cam14", "cam7", "cam14_smooth")
REPO = Path(__file__).resolve().parents[1]

Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]


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
def wsoleval_runner(checkout: Path, interval: float) -> Runner:
    """Their ``BoxEvaluator.accumulate`` for V1 and V2 on one map; returns the correct counts per threshold as
    rows V1 IoU 50, V2 IoU 30, 50, 70 (the layout of ``BoxAccEvaluator.counts()[:4]``)."""
    if not hasattr(np, "float"):
        np.float = float  # type: ignore[attr-defined]  # the suite predates NumPy 1.24
    sys.path.insert(0, str(checkout))
    from evaluation import BoxEvaluator  # type: ignore[import-not-found]  # noqa: PLC0415

    thresholds = list(np.arange(0, 1, interval))

    def run(scoremap: np.ndarray, gt: np.ndarray) -> np.ndarray:
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
        return np.stack([out["v1"][50]] + [out["v2"][t] for t in IOUS]).astype(np.int64)

    return run


def evaluator_runner(evaluator: BoxAccEvaluator) -> Runner:
    """One ``update`` per map on a reset evaluator (``BoxAccEvaluator`` or the previous revision's)."""

    def run(scoremap: np.ndarray, gt: np.ndarray) -> np.ndarray:
        evaluator.reset()
        evaluator.update([scoremap], [gt])
        return evaluator.counts()[: 1 + len(IOUS)]

    return run


def previous_module(rev: str):  # noqa: ANN201  (a module)
    """``wsol/metrics/boxacc.py`` and ``kernels.py`` of git revision ``rev``, imported as ``wsol_previous.*`` from a
    temporary directory (their imports of the rest of ``wsol`` resolve to the working tree)."""
    root = Path(tempfile.mkdtemp(prefix="wsol_previous_"))
    package = root / "wsol_previous"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("kernels.py", "boxacc.py"):
        text = subprocess.run(["git", "show", f"{rev}:wsol/metrics/{name}"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout
        (package / name).write_text(text.replace("from wsol.metrics import kernels", "from wsol_previous import kernels"))
    sys.path.insert(0, str(root))
    return importlib.import_module("wsol_previous.boxacc")


def timed(fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    """CPU seconds of one run, and its result."""
    start = time.process_time()
    result = fn()
    return time.process_time() - start, result


# ---------------------------------------------------------------------------------------------- profile
PHASES = ("load (quantise, histogram, raster scan)", "fill holes (anti-raster scan, FIFO)", "counting sort",
          "hole sweep", "Euler excess (nested contours)", "outer sweep", "second sweep (nested only)",
          "scoring, levels and the rest")


def profile_map(scoremap: np.ndarray, gt: np.ndarray, interval: float) -> dict[str, float]:
    """CPU seconds of each phase of ``kernels.boxacc_counts`` on one map, by calling its internal functions one
    by one in the same order (``kernels._map_levels`` inlined); the last phase is the whole call minus the rest."""
    height, width = scoremap.shape
    ws = _workspace(height, width)
    views = kernels._carve(ws, height, width)
    (val, rec, queued, queue, lab, order, hole_order, comp, crec, dirty, active, slot, alive, end_next,
     rbox, rlo, rhi, cpar) = views
    n = height * width
    need = np.ones(256, np.bool_)
    largest = np.zeros((256, 4), np.int32)
    n_outer, n_holes, nested = (np.zeros(256, np.int64) for _ in range(3))
    spent: dict[str, float] = {}

    def tick(name: str, fn: Callable[[], object]) -> object:
        start = time.process_time()
        out = fn()
        spent[name] = spent.get(name, 0.0) + time.process_time() - start
        return out

    val[:] = 255
    rec[:] = 255
    queued[:] = False
    hist = np.zeros(257, np.int64)
    tick(PHASES[0], lambda: kernels._load_float(scoremap, val, rec, hist))
    psi_start, hole_start = hist.copy(), np.zeros(257, np.int64)
    tick(PHASES[1], lambda: kernels._fill_holes(val, rec, queue, queued, height, width, psi_start, hole_start))

    def sort() -> None:
        kernels._cumulate(psi_start)
        kernels._cumulate(hole_start)
        kernels._orders(val, rec, height, width, psi_start, hole_start, order, hole_order)
        kernels._shift(psi_start)
        kernels._shift(hole_start)

    tick(PHASES[2], sort)
    n_hole_px = int(hole_start[256])
    any_nested = False
    if n_hole_px:
        tick(PHASES[3], lambda: kernels._sweep_holes(rec, hole_order, hole_start, lab, cpar, comp, crec, dirty,
                                                      alive, end_next, rbox, rlo, rhi, n, height, width, need, n_holes))
        diff = np.zeros(258, np.int64)
        tick(PHASES[4], lambda: kernels._euler_excess(val, rec, hole_order, n_hole_px, width, diff))
        any_nested = bool(((np.cumsum(diff)[1:257] // 4 + n_holes) > 0).any())
    tick(PHASES[5], lambda: kernels._sweep_outer(order, psi_start, lab, cpar, comp, crec, active, slot, rbox, rlo, rhi,
                                                 height, width, need, True, not any_nested, largest, n_outer))
    if any_nested:
        def second() -> None:
            start = hist.copy()
            kernels._cumulate(start)
            kernels._u8_order(val, height, width, start, order)
            kernels._shift(start)
            kernels._sweep_outer(order, start, lab, cpar, comp, crec, active, slot, rbox, rlo, rhi, height, width,
                                 need, False, True, largest, np.zeros(256, np.int64))
        tick(PHASES[6], second)
    counts = np.zeros((1 + len(IOUS), len(scoremap_thresholds(interval))), np.int64)
    args = (scoremap[None], np.asarray(gt, np.int64), np.array([0, len(gt)]), scoremap_thresholds(interval),
            np.array(IOUS) / 100, ws, counts)
    tick("whole", lambda: kernels.boxacc_counts(*args))
    whole = spent.pop("whole")
    spent[PHASES[7]] = max(0.0, whole - sum(spent.values()))
    return spent


def profile(maps: list[tuple[np.ndarray, np.ndarray]], interval: float, repeats: int) -> list[str]:
    per_phase: dict[str, list[float]] = defaultdict(list)
    floor = []
    for scoremap, gt in maps:
        runs = [profile_map(scoremap, gt, interval) for _ in range(repeats)]
        for name in PHASES:
            per_phase[name].append(statistics.median(r.get(name, 0.0) for r in runs))
        floor.append(statistics.median(timed(lambda: (scoremap > 0.5).sum())[0] for _ in range(repeats)))
    total = sum(statistics.mean(v) for v in per_phase.values())
    lines = [f"fast path by phase, mean over {len(maps)} maps of the median of {repeats} runs, CPU ms per map:"]
    for name in PHASES:
        lines.append(f"  {name:<42} {statistics.mean(per_phase[name]) * 1e3:7.3f}")
    lines.append(f"  {'total':<42} {total * 1e3:7.3f}")
    lines.append(f"  floor: one NumPy pass (m > 0.5).sum()      {statistics.mean(floor) * 1e3:7.3f}   "
                 f"(total = {total / statistics.mean(floor):.0f}x this)")
    return lines


# ------------------------------------------------------------------------------------------------- main
def main() -> int:  # noqa: C901, PLR0912, PLR0915  (a benchmark's main)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wsolevaluation", type=Path, help="a checkout of clovaai/wsolevaluation")
    parser.add_argument("--interval", type=float, default=0.001)
    parser.add_argument("--maps-per-kind", type=int, default=10)
    parser.add_argument("--scoremap-root", type=Path, help="real score maps <root>/<image_id>.npy")
    parser.add_argument("--gt", type=Path, help="dataset dir with metadata/ for --scoremap-root")
    parser.add_argument("--max-real", type=int, default=60, help="at most this many real maps")
    parser.add_argument("--previous", metavar="REV", help="also time the fast path of this git revision")
    parser.add_argument("--repeats", type=int, default=3, help="runs per map of wsoleval")
    parser.add_argument("--fast-repeats", type=int, default=15, help="runs per map of fast and previous")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grouped", action="store_true", help="each path scores the whole set in turn")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--csv", type=Path, help="write one row per map here")
    args = parser.parse_args()
    if (args.scoremap_root is None) != (args.gt is None):
        parser.error("--scoremap-root and --gt go together")

    rng = np.random.default_rng(args.seed)
    sets = {kind: list(synthetic_maps(kind, args.maps_per_kind, rng)) for kind in KINDS}
    if args.scoremap_root:
        sets["real"] = list(real_maps(args.scoremap_root, args.gt, args.max_real))
    paths: dict[str, Runner] = {}
    if args.wsolevaluation:
        paths["wsoleval"] = wsoleval_runner(args.wsolevaluation, args.interval)
    paths["exact"] = evaluator_runner(BoxAccEvaluator(args.interval, IOUS, method="exact"))
    paths["fast"] = evaluator_runner(BoxAccEvaluator(args.interval, IOUS, method="fast"))
    if args.previous:
        paths["previous"] = evaluator_runner(previous_module(args.previous).BoxAccEvaluator(args.interval, IOUS, "fast"))
    repeats = {name: args.fast_repeats for name in paths}
    repeats.update(wsoleval=args.repeats, exact=1)
    for name in ("fast", "previous"):  # numba compiles (or loads its cache) before any timing
        if name in paths:
            paths[name](*sets["cam14"][0])
    BoxAccEvaluator(args.interval, IOUS, method="fast").update(np.stack([sets["cam14"][0][0]] * 2), [sets["cam14"][0][1]] * 2)

    ref = next(iter(paths))
    load_before = os.getloadavg()
    print(f"step {args.interval} ({len(scoremap_thresholds(args.interval))} thresholds), 224x224 maps, CPU ms per map: "
          f"median of runs per map ({', '.join(f'{n} {r}' for n, r in repeats.items())}), median over maps; "
          f"{'grouped by path' if args.grouped else 'interleaved'}; load average {load_before[0]:.1f} "
          f"(5 min {load_before[1]:.1f}) on {os.cpu_count()} CPUs")
    columns = [*paths, "fast_batch"]
    ratios = [f"{ref}/fast"] + (["previous/fast"] if "previous" in paths else [])
    print(f"{'kind':<13} {'maps':>4} " + " ".join(f"{c:>10}" for c in columns) + " "
          + " ".join(f"{r:>14}" for r in ratios) + " identical")
    rows, all_same = [], True
    for kind, maps in sets.items():
        times: dict[str, list[list[float]]] = {name: [[] for _ in maps] for name in paths}
        results: dict[str, list[np.ndarray]] = {name: [None] * len(maps) for name in paths}  # type: ignore[list-item]
        names = list(paths)
        if args.grouped:
            schedule = [(i, name) for name in names for i in range(len(maps)) for _ in range(repeats[name])]
        else:
            schedule = []
            for i in range(len(maps)):
                for r in range(max(repeats.values())):
                    turn = names[r % len(names):] + names[: r % len(names)]  # rotates: no path always runs first
                    schedule.extend((i, name) for name in turn if r < repeats[name])
        for i, name in schedule:
            seconds, result = timed(lambda: paths[name](*maps[i]))  # noqa: B023
            times[name][i].append(seconds)
            results[name][i] = result
        batch_times = []
        total = np.zeros((1 + len(IOUS), len(scoremap_thresholds(args.interval))), np.int64)
        stacked, gts = np.stack([m for m, _ in maps]), [g for _, g in maps]
        for _ in range(max(1, args.repeats)):
            ev = BoxAccEvaluator(args.interval, IOUS, method="fast")
            seconds, _ = timed(lambda: ev.update(stacked, gts))  # noqa: B023
            batch_times.append(seconds / len(maps))
            total = ev.counts()[: 1 + len(IOUS)]
        same = bool(np.array_equal(total, sum(results[ref])))
        for i in range(len(maps)):
            ok = all(np.array_equal(results[name][i], results[ref][i]) for name in paths)
            same &= ok
            rows.append({"kind": kind, "map": i, **{f"ms_{n}": round(statistics.median(t[i]) * 1e3, 4) for n, t in times.items()},
                         "identical": ok})
        medians = {name: statistics.median(statistics.median(t) for t in per_map) for name, per_map in times.items()}
        medians["fast_batch"] = statistics.median(batch_times)
        values = [medians[ref] / medians["fast"]] + ([medians["previous"] / medians["fast"]] if "previous" in paths else [])
        print(f"{kind:<13} {len(maps):>4} " + " ".join(f"{medians[c] * 1e3:10.3f}" for c in columns) + " "
              + " ".join(f"{v:14.1f}" for v in values) + f" {same}")
        all_same &= same
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.1f} (5 min {load_after[1]:.1f})")
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if args.profile:
        for kind, maps in sets.items():
            print(f"\n[{kind}]")
            print("\n".join(profile(maps, args.interval, args.fast_repeats)))
    print("\nall identical" if all_same else "\nDIFFERENT results")
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
