"""``wsol-score``: score saved predictions under the ILSVRC devkit or wsolevaluation rules.

    wsol-score devkit --pred FILE --gt DIR [--blacklist FILE] [--num-classes N]
    wsol-score scoremaps --scoremap-root DIR --gt DIR [--cam-curve-interval 0.01] [--iou-thresholds 30 50 70]

``--gt DIR`` is a data set folder holding wsolevaluation metadata in ``DIR/metadata/<split>/`` (``--split``, default
test) or ``DIR/metadata/``, as ``wsol-evaluate`` finds it (or the metadata folder
itself): ``image_ids.txt``, ``class_labels.txt``, ``image_sizes.txt``, ``localization.txt`` (and the optional
``blacklist.txt``). It is read by ``wsol.data.metadata.read_metadata``, the reader of ``wsol-prepare check`` and
of every dataset factory, with the same rules (duplicate ids, conflicting labels, labels outside
``[0, --num-classes)``, zero or huge sizes, inverted/NaN/outside boxes, ids leaving their root, non-UTF-8 text):
ground truth that ``wsol-evaluate`` refuses is refused here too, every problem listed with file and line. Where
the two differ, it is for a stated reason:
    * nothing is skipped (``wsol-evaluate`` has ``data.on_error=skip``): a scorer of finished predictions that
      dropped ground-truth images would publish a number over a different set of images;
    * ``scoremaps`` needs ``image_sizes.txt`` (boxes are resized from it; ``wsol-evaluate`` reads the size from
      the image file, checked against ``image_sizes.txt`` when present) and boxes, not masks.

devkit: ``--pred`` has one line per image in ``image_ids.txt`` order, each with up to five whitespace-separated
``label x0 y0 x1 y1`` groups, best first (extra groups are ignored, as the devkit does); labels are 0-based in the
ground truth's class order and must lie in its label range. ``--blacklist`` lists image ids, or ILSVRC2012 val
image numbers as in the devkit's blacklist file (``N`` is ``ILSVRC2012_val_<N>``, not the N-th image of the ground
truth; ``wsol.data.devkit.read_blacklist``, the reader of every tool), one per line; it adds to the metadata's
``blacklist.txt``. Prints
``top1_cls_err`` ... ``top5_cls_err``, ``top1_loc_err`` ... ``top5_loc_err`` (percent) and counts.

scoremaps: ``DIR/<image_id>.npy`` per image (the id may not leave ``DIR``), a 2-D float map of shape 224x224 in
[0, 1] (wsolevaluation's format: its boxes are resized to that grid, so a map of any other shape would be scored
against boxes of another image size). Prints ``maxboxacc`` (IoU 50, largest contour), ``maxboxacc_v2`` (mean over
the IoU thresholds, all contours), the per-IoU values and the best thresholds.

Bad input (wrong number of lines, malformed group, missing, empty, truncated, non-float, NaN or wrongly shaped map,
bad ground truth) prints the file, line and reason on stderr and exits with status 2. Output is one JSON object on
stdout.

Option defaults are the run's, read from their one home: ``--box-tolerance`` and ``--max-image-pixels`` from
``configs/data/wsol_metadata.yaml``, ``--cam-curve-interval``, ``--iou-thresholds`` (and the box method) from
``configs/eval/default.yaml``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsol.boxes import resize_boxes
from wsol.cli import box_tolerance, positive_int
from wsol.conf import yaml_default
from wsol.data.devkit import read_blacklist
from wsol.data.metadata import (
    IMAGE_IDS,
    AnnotationError,
    label_problem,
    parse_float,
    parse_int,
    read_metadata,
    read_text,
    match_blacklist,
    resolve_metadata_dir,
)
from wsol.data.records import Annotations
from wsol.io import UnsafePathError, safe_join
from wsol.metrics.boxacc import BoxAccEvaluator
from wsol.metrics.scoremap import RESIZE_LENGTH
from wsol.metrics.topk import DevkitErrors

__all__ = ["main", "read_scoremap"]

_MAX_GUESSES = 5
_GRID = (RESIZE_LENGTH, RESIZE_LENGTH)


class InputError(Exception):
    """Bad user input: reported on stderr, exit status 2."""


def _metadata_dir(gt: Path, split: str) -> Path:
    """``gt`` itself when it holds ``image_ids.txt`` (the metadata folder), else the folder ``wsol-evaluate``
    finds for ``split`` under a data set root (``wsol.data.metadata.resolve_metadata_dir``: ``gt/metadata/<split>``,
    then ``gt/metadata``)."""
    if (gt / IMAGE_IDS).exists():
        return gt
    try:
        return resolve_metadata_dir(gt, split)
    except FileNotFoundError as err:
        raise InputError(f"{gt}: {err}, nor in {gt} (--gt is a data set folder holding metadata/<split>/ or "
                         "metadata/, or the metadata folder itself)") from None


def _user_file(read: Callable[[Path], Any], path: str) -> Any:
    """``read(path)`` with a missing or malformed file reported as bad input."""
    try:
        return read(Path(path))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except ValueError as err:
        raise InputError(str(err)) from None


def _read_ground_truth(args: argparse.Namespace) -> Annotations:
    """The ground truth through the suite's one metadata reader (module docstring)."""
    meta = _metadata_dir(Path(args.gt), args.split)
    try:
        return read_metadata(meta, num_classes=args.num_classes, on_error="raise", box_tolerance=args.box_tolerance,
                             max_image_pixels=args.max_image_pixels)
    except FileNotFoundError as err:
        raise InputError(str(err)) from None


def _lines(path: Path) -> list[str]:
    try:
        return read_text(path)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None


def _read_predictions(path: Path, n_images: int, num_classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    lines = _lines(path)
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
            label, box = parse_int(group[0]), [parse_float(v) for v in group[1:]]
            if label is None or any(v is None for v in box):
                raise InputError(f"{path}:{no}: malformed group {g + 1}: {' '.join(group)!r} (an integer label and "
                                 "four finite numbers)")
            reason = label_problem(label, num_classes)
            if reason:
                raise InputError(f"{path}:{no}: group {g + 1}: predicted {reason} (0-based labels in the ground "
                                 "truth's class order)")
            if box[2] < box[0] or box[3] < box[1]:  # type: ignore[operator]
                raise InputError(f"{path}:{no}: group {g + 1} has an inverted box {box} (need x0 <= x1, y0 <= y1)")
            labels[no - 1, g] = label
            boxes[no - 1, g] = box
    return labels, boxes


def _devkit(args: argparse.Namespace) -> dict[str, float | int]:
    gt = _read_ground_truth(args)
    ids = [record.image_id for record in gt.records]
    labels, boxes = _read_predictions(Path(args.pred), len(ids), args.num_classes)
    # the one blacklist reader: a number N is ILSVRC2012 val image N (as wsol-evaluate data=ilsvrc reads it), not
    # the N-th line of the ground truth; entries naming images outside the scored set do not apply
    extra = match_blacklist(_user_file(read_blacklist, args.blacklist), ids) if args.blacklist else []
    blacklist = set(gt.blacklist) | set(extra)
    errors = DevkitErrors(range(1, _MAX_GUESSES + 1), blacklist=blacklist)
    for record, guess_labels, guess_boxes in zip(gt.records, labels, boxes):
        errors.add_cls(record, guess_labels)
        errors.add_loc(record, guess_labels, guess_boxes)
    return errors.compute()


def read_scoremap(path: Path, grid: tuple[int, int] = _GRID) -> np.ndarray:
    """A wsolevaluation score map ``.npy``, checked before its data is read.

    Args:
        path: the file.
        grid: the ``(height, width)`` the map must have (wsolevaluation's 224x224).

    Returns:
        The map as stored (float dtype, shape ``grid``, values in [0, 1], no NaN).

    Raises:
        InputError: naming the file: missing, not a file, empty, not a ``.npy`` array, truncated, not float,
            not of shape ``grid``, NaN or values outside [0, 1]. The header is read first, so a file claiming
            a huge shape is refused without allocating it.
    """
    if not path.exists():
        raise InputError(f"{path}: score map not found")
    if not path.is_file():
        raise InputError(f"{path}: score map is not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: empty score map (0 bytes; was its write interrupted?)")
    npy = np.lib.format
    try:
        with open(path, "rb") as handle:
            version = npy.read_magic(handle)
            read_header = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
            if read_header is None:  # 3.0 only adds UTF-8 field names: never a float map
                raise ValueError(f".npy format version {version[0]}.{version[1]}")
            shape, _, dtype = read_header(handle)
            data_start = handle.tell()
    except PermissionError as err:
        raise InputError(f"{path}: cannot be read ({err.strerror})") from None
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{path}: not a .npy array ({err})") from None
    if dtype.hasobject or not np.issubdtype(dtype, np.floating):
        raise InputError(f"{path}: score map of dtype {dtype}; wsolevaluation maps are float arrays in [0, 1]")
    if tuple(shape) != tuple(grid):
        raise InputError(f"{path}: score map of shape {tuple(shape)}; wsolevaluation scores {grid[0]}x{grid[1]} maps "
                         f"(its GT boxes are resized to that grid, so another shape would be scored against boxes of "
                         "another size)")
    expected = data_start + int(np.prod(shape)) * dtype.itemsize
    if size != expected:
        raise InputError(f"{path}: {size} bytes, but its header describes {expected} (truncated or padded file)")
    try:
        scoremap = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{path}: cannot be read as .npy ({err})") from None
    if np.isnan(scoremap).any():
        raise InputError(f"{path}: score map contains NaN")
    low, high = float(scoremap.min()), float(scoremap.max())
    if low < 0 or high > 1:
        raise InputError(f"{path}: score map values lie in [{low:g}, {high:g}], outside [0, 1]")
    return scoremap


def _scoremaps(args: argparse.Namespace) -> dict[str, float | int]:
    gt = _read_ground_truth(args)
    meta = _metadata_dir(Path(args.gt), args.split)
    if any(record.mask_paths for record in gt.records):
        raise InputError(f"{meta}: mask annotations (PxAP); wsol-score scores boxes (MaxBoxAcc) only")
    unsized = [record.image_id for record in gt.records if record.size is None]
    if unsized:
        raise InputError(f"{meta}: no image_sizes.txt entries (e.g. {unsized[0]!r}); the GT boxes are resized to "
                         f"{_GRID[1]}x{_GRID[0]} from the image size")
    unboxed = [record.image_id for record in gt.records if len(record.boxes) == 0]
    if unboxed:
        raise InputError(f"{meta}: no box for {len(unboxed)} image(s) (e.g. {unboxed[0]!r}); wsolevaluation needs "
                         "one per image (is localization.txt empty?)")
    root = Path(args.scoremap_root)
    if not root.is_dir():
        raise InputError(f"{root}: score-map folder not found")
    evaluator = BoxAccEvaluator(cam_curve_interval=args.cam_curve_interval, iou_thresholds=args.iou_thresholds,
                                method=yaml_default("eval/default", "box_method"))
    for record in gt.records:
        try:
            path = safe_join(root, record.image_id, where=str(meta / IMAGE_IDS))
        except UnsafePathError as err:
            raise InputError(str(err)) from None
        scoremap = read_scoremap(path.with_name(path.name + ".npy"))
        gt_boxes = resize_boxes(record.boxes, record.size, (_GRID[1], _GRID[0]), truncate=True)  # type: ignore[arg-type]
        evaluator.update([scoremap], [gt_boxes])
    return evaluator.compute()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsol-score", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    # The defaults are the run's (configs/data/wsol_metadata.yaml, configs/eval/default.yaml), written there only.
    tolerance, max_pixels = yaml_default("data/wsol_metadata", "box_tolerance"), yaml_default("data/wsol_metadata",
                                                                                               "max_image_pixels")
    interval, ious = yaml_default("eval/default", "cam_curve_interval"), yaml_default("eval/default", "iou_thresholds")

    def ground_truth(command: argparse.ArgumentParser) -> None:
        command.add_argument("--gt", required=True, help="data set folder holding metadata/<split>/ or metadata/ "
                                                         "(or the metadata folder itself)")
        command.add_argument("--split", default="test", help="the split whose metadata/<split>/ folder --gt holds, "
                                                             "as wsol-evaluate finds it (default test)")
        command.add_argument("--num-classes", type=positive_int, help="labels must lie in [0, N) (e.g. 1000 for ILSVRC); "
                                                             "default: any label in [0, 2**31 - 1]")
        command.add_argument("--box-tolerance", type=box_tolerance, default=tolerance,
                             help=f"pixels a GT box may overshoot its image (default {tolerance:g}, data.box_tolerance, "
                                  "as wsol-evaluate and wsol-prepare check)")
        command.add_argument("--max-image-pixels", type=positive_int, default=max_pixels,
                             help=f"largest image size (pixels) image_sizes.txt may state (default {max_pixels}, "
                                  "data.max_image_pixels)")

    devkit = sub.add_parser("devkit", help="top-k errors under the ILSVRC devkit's rules")
    devkit.add_argument("--pred", required=True, help="prediction file, one line per image")
    ground_truth(devkit)
    devkit.add_argument("--blacklist", help="excluded from localization: ILSVRC2012 val image numbers (the devkit's "
                                            "blacklist file: N is ILSVRC2012_val_<N>) or image ids, one per line")
    maps = sub.add_parser("scoremaps", help="MaxBoxAcc / MaxBoxAccV2 under wsolevaluation's rules")
    maps.add_argument("--scoremap-root", required=True, help="directory of <image_id>.npy score maps (224x224)")
    ground_truth(maps)
    maps.add_argument("--cam-curve-interval", type=float, default=interval,
                      help=f"threshold step (default {interval:g}, eval.cam_curve_interval)")
    maps.add_argument("--iou-thresholds", type=int, nargs="+", default=ious,
                      help=f"IoU thresholds in percent (default {' '.join(map(str, ious))}, eval.iou_thresholds)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``wsol-score``; returns the exit status (0 ok, 2 bad input)."""
    args = _parser().parse_args(argv)
    try:
        result = _devkit(args) if args.command == "devkit" else _scoremaps(args)
    except AnnotationError as err:
        for problem in err.problems:
            print(f"wsol-score: {problem}", file=sys.stderr)
        print(f"wsol-score: error: {len(err.problems)} problem(s) in the ground truth; nothing scored",
              file=sys.stderr)
        return 2
    except (InputError, ValueError) as err:  # ValueError: an evaluator's check (no image eligible, bad interval)
        print(f"wsol-score: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
