"""``wsol-score``: score saved predictions under the ILSVRC devkit or wsolevaluation rules.

    wsol-score devkit --pred FILE --gt DIR [--blacklist FILE]
    wsol-score scoremaps --scoremap-root DIR --gt DIR [--cam-curve-interval 0.01] [--iou-thresholds 30 50 70]

``--gt DIR`` holds wsolevaluation metadata in ``DIR/metadata/``: ``image_ids.txt`` (one id per line),
``class_labels.txt`` (``id,label``, 0-based), ``image_sizes.txt`` (``id,w,h``) and ``localization.txt``
(``id,x0,y0,x1,y1``, one line per box, inclusive pixels).

devkit: ``--pred`` has one line per image in ``image_ids.txt`` order, each with up to five whitespace-separated
``label x0 y0 x1 y1`` groups, best first (extra groups are ignored, as the devkit does). ``--blacklist`` lists
image ids, or 1-based image indices as in the devkit's blacklist file, one per line. Prints
``top1_cls_err`` ... ``top5_cls_err``, ``top1_loc_err`` ... ``top5_loc_err`` (percent) and counts.

scoremaps: ``DIR/<image_id>.npy`` per image, a 2-D float map in [0, 1] (wsolevaluation's format). GT boxes
are scaled to 224x224 as wsolevaluation does. Prints ``maxboxacc`` (IoU 50, largest contour),
``maxboxacc_v2`` (mean over the IoU thresholds, all contours), the per-IoU values and the best thresholds.

Bad input (wrong number of lines, malformed group, missing or invalid map, unknown image) prints the file, line
and reason on stderr and exits with status 2. Output is one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsol.metrics.boxacc import BoxAccEvaluator, resize_boxes_wsoleval

# The devkit path's imports (wsol.data.records, wsol.metrics.topk) are inside _devkit: importing wsol.data
# loads torch (~650 MB of RSS), which the score-map path does not need.

__all__ = ["main"]

_MAX_GUESSES = 5


class InputError(Exception):
    """Bad user input: reported on stderr, exit status 2."""


@dataclass
class _Metadata:
    image_ids: list[str]
    labels: dict[str, int]
    sizes: dict[str, tuple[int, int]]
    boxes: dict[str, list[list[float]]]


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    return path.read_text().splitlines()


def _read_metadata(gt_dir: Path, need_sizes: bool) -> _Metadata:
    """A minimal reader of the wsolevaluation metadata format (image ids, labels, sizes, boxes)."""
    meta = gt_dir / "metadata"
    image_ids = [line.strip() for line in _read_lines(meta / "image_ids.txt") if line.strip()]
    if not image_ids:
        raise InputError(f"{meta / 'image_ids.txt'}: no image id")
    known = set(image_ids)

    def rows(name: str, n_fields: int) -> list[tuple[int, list[str]]]:
        path = meta / name
        out = []
        for no, line in enumerate(_read_lines(path), start=1):
            if not line.strip():
                continue
            fields = line.strip().split(",")
            if len(fields) != n_fields:
                raise InputError(f"{path}:{no}: expected {n_fields} comma-separated fields, got {len(fields)}")
            if fields[0] not in known:
                raise InputError(f"{path}:{no}: image id {fields[0]!r} is not in image_ids.txt")
            out.append((no, fields))
        return out

    def number(path: Path, no: int, text: str, kind: type) -> float:
        try:
            return kind(text)
        except ValueError:
            raise InputError(f"{path}:{no}: {text!r} is not a valid {kind.__name__}") from None

    labels = {f[0]: int(number(meta / "class_labels.txt", no, f[1], int)) for no, f in rows("class_labels.txt", 2)}
    sizes: dict[str, tuple[int, int]] = {}
    if need_sizes:
        for no, f in rows("image_sizes.txt", 3):
            sizes[f[0]] = (int(number(meta / "image_sizes.txt", no, f[1], int)), int(number(meta / "image_sizes.txt", no, f[2], int)))
    boxes: dict[str, list[list[float]]] = {}
    for no, f in rows("localization.txt", 5):
        box = [float(number(meta / "localization.txt", no, v, float)) for v in f[1:]]
        boxes.setdefault(f[0], []).append(box)
    for image_id in image_ids:
        if image_id not in labels:
            raise InputError(f"{meta / 'class_labels.txt'}: no label for image {image_id!r}")
        if need_sizes and image_id not in sizes:
            raise InputError(f"{meta / 'image_sizes.txt'}: no size for image {image_id!r}")
    return _Metadata(image_ids, labels, sizes, boxes)


def _read_predictions(path: Path, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    lines = _read_lines(path)
    if len(lines) != n_images:
        raise InputError(f"{path}: {len(lines)} lines, but the ground truth lists {n_images} images")
    # -1 = no guess: never equal to a 0-based class label.
    labels = np.full((n_images, _MAX_GUESSES), -1, dtype=np.int64)
    boxes = np.zeros((n_images, _MAX_GUESSES, 4), dtype=np.float64)
    for no, line in enumerate(lines, start=1):
        tokens = line.replace(",", " ").split()
        if len(tokens) % 5:
            raise InputError(f"{path}:{no}: {len(tokens)} numbers; expected groups of 5 'label x0 y0 x1 y1'")
        for g in range(min(len(tokens) // 5, _MAX_GUESSES)):
            group = tokens[5 * g : 5 * g + 5]
            try:
                labels[no - 1, g] = int(group[0])
                box = [float(v) for v in group[1:]]
            except ValueError:
                raise InputError(f"{path}:{no}: malformed group {g + 1}: {' '.join(group)!r}") from None
            if not np.isfinite(box).all() or box[2] < box[0] or box[3] < box[1]:
                raise InputError(f"{path}:{no}: group {g + 1} has an invalid box {box} (need x0 <= x1, y0 <= y1)")
            boxes[no - 1, g] = box
    return labels, boxes


def _read_blacklist(path: Path, image_ids: list[str]) -> set[str]:
    known = set(image_ids)
    out = set()
    for no, line in enumerate(_read_lines(path), start=1):
        token = line.strip()
        if not token:
            continue
        if token in known:
            out.add(token)
        elif token.isdigit() and 1 <= int(token) <= len(image_ids):
            out.add(image_ids[int(token) - 1])  # the devkit's blacklist holds 1-based image indices
        else:
            raise InputError(f"{path}:{no}: {token!r} is neither an image id nor a 1-based image index")
    return out


def _devkit(args: argparse.Namespace) -> dict[str, float | int]:
    from wsol.data.records import ImageRecord  # noqa: PLC0415  (see the imports above)
    from wsol.metrics.topk import TopkLocalizationEvaluator  # noqa: PLC0415

    meta = _read_metadata(Path(args.gt), need_sizes=False)
    labels, boxes = _read_predictions(Path(args.pred), len(meta.image_ids))
    blacklist = _read_blacklist(Path(args.blacklist), meta.image_ids) if args.blacklist else set()
    records = [
        ImageRecord(i, meta.labels[i], np.asarray(meta.boxes.get(i, []), dtype=np.float64).reshape(-1, 4))
        for i in meta.image_ids
    ]
    evaluator = TopkLocalizationEvaluator(topk=range(1, _MAX_GUESSES + 1), blacklist=blacklist)
    evaluator.update(records, labels, boxes)
    return evaluator.compute()


def _scoremaps(args: argparse.Namespace) -> dict[str, float | int]:
    meta = _read_metadata(Path(args.gt), need_sizes=True)
    root = Path(args.scoremap_root)
    evaluator = BoxAccEvaluator(cam_curve_interval=args.cam_curve_interval, iou_thresholds=args.iou_thresholds)
    for image_id in meta.image_ids:
        if image_id not in meta.boxes:
            raise InputError(f"{Path(args.gt) / 'metadata' / 'localization.txt'}: no box for image {image_id!r}")
        path = root / f"{image_id}.npy"
        if not path.is_file():
            raise InputError(f"{path}: score map not found")
        try:
            scoremap = np.load(path)
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: cannot be read as .npy ({err})") from None
        gt = resize_boxes_wsoleval(np.asarray(meta.boxes[image_id]), meta.sizes[image_id])
        try:
            evaluator.update([scoremap], [gt])
        except ValueError as err:
            raise InputError(f"{path}: {err}") from None
    return evaluator.compute()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsol-score", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    devkit = sub.add_parser("devkit", help="top-k errors under the ILSVRC devkit's rules")
    devkit.add_argument("--pred", required=True, help="prediction file, one line per image")
    devkit.add_argument("--gt", required=True, help="dataset directory holding metadata/")
    devkit.add_argument("--blacklist", help="image ids (or 1-based indices) excluded from localization")
    maps = sub.add_parser("scoremaps", help="MaxBoxAcc / MaxBoxAccV2 under wsolevaluation's rules")
    maps.add_argument("--scoremap-root", required=True, help="directory of <image_id>.npy score maps")
    maps.add_argument("--gt", required=True, help="dataset directory holding metadata/")
    maps.add_argument("--cam-curve-interval", type=float, default=0.01, help="threshold step (default 0.01)")
    maps.add_argument("--iou-thresholds", type=int, nargs="+", default=[30, 50, 70], help="IoU thresholds in percent")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``wsol-score``; returns the exit status (0 ok, 2 bad input)."""
    args = _parser().parse_args(argv)
    try:
        result = _devkit(args) if args.command == "devkit" else _scoremaps(args)
    except InputError as err:
        print(f"wsol-score: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # e.g. an evaluator's check on the whole set (no image eligible, bad interval)
        print(f"wsol-score: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
