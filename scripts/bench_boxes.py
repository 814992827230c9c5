"""Benchmark: wsolevaluation's per-threshold box loop vs wsol's exact and fast MaxBoxAcc paths.

    python scripts/bench_boxes.py [--interval 0.001] [--maps-per-kind 4] [--seed 0]

For each 224x224 map (smooth single blob, multimodal, noisy with many small contours) it times
    * reference: a faithful re-implementation of wsolevaluation's ``compute_bboxes_from_scoremaps`` +
      IoU loop, run twice as the suite does (``multi_contour_eval`` False for MaxBoxAcc, True for V2);
    * exact: ``BoxAccEvaluator(method="exact")`` (OpenCV per distinct 8-bit level, both curves in one pass);
    * fast: ``BoxAccEvaluator(method="fast")`` (level-set sweep, numba);
checks that the three give identical per-threshold correctness for every IoU threshold, and prints per-map
milliseconds and the speed ratios.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from wsol.boxes import box_iou
from wsol.metrics.boxacc import BoxAccEvaluator, scoremap_thresholds

IOUS = (30, 50, 70)


def reference_correct(scoremap: np.ndarray, gt: np.ndarray, thresholds: np.ndarray, multi: bool) -> dict[int, np.ndarray]:
    """wsolevaluation's loop: threshold + findContours + boxes at EVERY tau, then the best IoU per tau."""
    height, width = scoremap.shape
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    best = []
    for tau in thresholds:
        _, mask = cv2.threshold(image, int(tau * np.max(image)), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            boxes = np.asarray([[0, 0, 0, 0]])
        else:
            if not multi:
                contours = [max(contours, key=cv2.contourArea)]
            boxes = []
            for contour in contours:
                x, y, w, h = cv2.boundingRect(contour)
                boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
            boxes = np.asarray(boxes)
        best.append(box_iou(boxes, gt).max())
    best = np.asarray(best)
    return {t: best >= t / 100 for t in IOUS}


def make_maps(kind: str, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    yy, xx = np.mgrid[0:224, 0:224]
    out = []
    for _ in range(n):
        if kind == "smooth":
            m = np.exp(-((xx - rng.uniform(60, 160)) ** 2 + (yy - rng.uniform(60, 160)) ** 2) / (2 * rng.uniform(20, 60) ** 2))
        elif kind == "multimodal":
            m = cv2.resize(rng.random((14, 14)), (224, 224), interpolation=cv2.INTER_CUBIC)
        else:  # many small contours
            m = cv2.resize(rng.random((14, 14)), (224, 224), interpolation=cv2.INTER_CUBIC) + 0.3 * rng.random((224, 224))
        m = m - m.min()
        out.append(m / m.max())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=0.001)
    parser.add_argument("--maps-per-kind", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    thresholds = scoremap_thresholds(args.interval)
    # Compile the numba kernels before timing (cached on disk after the first run).
    BoxAccEvaluator(args.interval, IOUS, method="fast").update([np.eye(8)], [np.array([[0, 0, 3, 3]])])

    print(f"step {args.interval} ({len(thresholds)} thresholds), 224x224 maps, ms per map")
    print(f"{'kind':<11} {'reference':>10} {'exact':>8} {'fast':>8} {'ref/exact':>10} {'ref/fast':>9} identical")
    totals = {"reference": 0.0, "exact": 0.0, "fast": 0.0}
    for kind in ("smooth", "multimodal", "noisy"):
        for m in make_maps(kind, args.maps_per_kind, rng):
            x0, x1 = sorted(rng.integers(0, 224, 2))
            y0, y1 = sorted(rng.integers(0, 224, 2))
            gt = np.array([[x0, y0, x1, y1], [60, 60, 170, 170]])
            t = time.perf_counter()
            ref_v1 = reference_correct(m, gt, thresholds, multi=False)
            ref_v2 = reference_correct(m, gt, thresholds, multi=True)
            t_ref = time.perf_counter() - t
            timings, same = {}, True
            for method in ("exact", "fast"):
                ev = BoxAccEvaluator(args.interval, IOUS, method=method)
                t = time.perf_counter()
                ev.update([m], [gt])
                timings[method] = time.perf_counter() - t
                same &= np.array_equal(ev._correct_v1 == 1, ref_v1[50])
                same &= all(np.array_equal(ev._correct_v2[i] == 1, ref_v2[i]) for i in IOUS)
            totals["reference"] += t_ref
            totals["exact"] += timings["exact"]
            totals["fast"] += timings["fast"]
            print(
                f"{kind:<11} {t_ref * 1e3:10.1f} {timings['exact'] * 1e3:8.1f} {timings['fast'] * 1e3:8.2f} "
                f"{t_ref / timings['exact']:10.1f} {t_ref / timings['fast']:9.1f} {same}"
            )
    print(
        f"{'total':<11} {totals['reference'] * 1e3:10.1f} {totals['exact'] * 1e3:8.1f} {totals['fast'] * 1e3:8.2f} "
        f"{totals['reference'] / totals['exact']:10.1f} {totals['reference'] / totals['fast']:9.1f}"
    )


if __name__ == "__main__":
    main()
