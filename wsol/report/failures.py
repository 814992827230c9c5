"""Why top-1 localization fails: reading ``predictions.csv`` and sorting each error into a cause."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wsol.report.summary import is_missing

#: Top-1 localization failure categories, in the order they are tested (``classify_failure``).
FAILURE_CATEGORIES = ("wrong_class", "several_instances", "too_large", "too_small", "misplaced")

#: Columns every ``predictions.csv`` has (paper protocol; ``pred2..pred5`` are optional, fewer when topk < 5).
PREDICTION_COLUMNS = (
    "image_id", "label", "width", "height", "pred1", "prob1", "box_x0", "box_y0", "box_x1", "box_y1", "box_iou",
    "gt_known_x0", "gt_known_y0", "gt_known_x1", "gt_known_y1", "gt_known_iou", "gt_boxes",
    "top1_cls_correct", "top1_loc_correct", "gt_known_correct",
)


# ----------------------------------------------------------------------------- predictions + failures
def parse_boxes(text: Any, where: str = "gt_boxes") -> np.ndarray:
    """``"x0 y0 x1 y1;x0 y0 x1 y1"`` -> float64 ``[N, 4]`` (``[0, 4]`` for an empty cell).

    Raises:
        ValueError: a box without 4 numbers, a non-number, or ``x1 < x0`` / ``y1 < y0`` (naming ``where``).
    """
    if is_missing(text) or str(text).strip() == "":
        return np.zeros((0, 4), dtype=np.float64)
    boxes = []
    for part in str(text).split(";"):
        fields = part.split()
        try:
            box = [float(f) for f in fields]
        except ValueError:
            box = []
        if len(box) != 4 or not all(math.isfinite(v) for v in box):
            raise ValueError(f"{where}: {part!r} is not a box 'x0 y0 x1 y1' (in {text!r})")
        if box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"{where}: box {part!r} is inverted (x1 < x0 or y1 < y0)")
        boxes.append(box)
    return np.array(boxes, dtype=np.float64)


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A run's ``predictions.csv`` (paper protocol, one row per scored image), checked.

    ``image_id`` and ``gt_boxes`` are read as text (an empty ``gt_boxes`` is ``""``), every other blank cell as
    NaN. ``top1_cls_correct`` and ``top1_loc_correct`` are the image's share of top-1 accuracy under the devkit's
    rule, in [0, 1] (0 or 1 for a single-class image; the mean over its classes on a multi-class one);
    ``gt_known_correct`` is 0 or 1; the localization flags may be blank (an image not scored for localization:
    blacklisted, or without a GT box).

    Raises:
        FileNotFoundError: no such file.
        ValueError: missing columns, or flags other than 0/1 (naming the file, column and image ids).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no predictions.csv (written by the paper protocol's evaluation)")
    header = pd.read_csv(path, nrows=0).columns
    df = pd.read_csv(path, dtype={"image_id": str, "gt_boxes": str}, keep_default_na=False,
                     na_values={c: [""] for c in header if c not in ("image_id", "gt_boxes")})
    missing = [c for c in PREDICTION_COLUMNS if c not in df]
    if missing:
        raise ValueError(f"{path}: missing columns {missing} (has {list(df.columns)[:12]} ...)")
    for col in ("top1_cls_correct", "top1_loc_correct", "gt_known_correct"):
        values = pd.to_numeric(df[col], errors="coerce")
        valid = values.isin([0, 1]) if col == "gt_known_correct" else values.between(0, 1)
        ok = valid | (df[col].isna() if col != "top1_cls_correct" else False)
        if not ok.all():
            what = "0 or 1" if col == "gt_known_correct" else "a share in [0, 1]"
            raise ValueError(f"{path}: column {col} must hold {what}, got {df.loc[~ok, col].tolist()[:3]} "
                             f"for image ids {df.loc[~ok, 'image_id'].tolist()[:3]}")
        df[col] = values
    return df


def _areas(boxes: np.ndarray) -> np.ndarray:
    """Areas of ``[N, 4]`` boxes under the inclusive-pixel convention of ``wsol.boxes.box_iou``."""
    return (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0)


def _intersections(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection areas of one box with ``[N, 4]`` boxes, inclusive pixels (as ``wsol.boxes.box_iou``)."""
    w = np.maximum(0.0, np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + 1.0)
    h = np.maximum(0.0, np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + 1.0)
    return w * h


def classify_failure(pred_box: np.ndarray, gt_boxes: np.ndarray) -> str:
    """Why a right-class top-1 guess failed to localize (its box has IoU < 0.5 with every GT box).

    With ``P`` the predicted box, ``G_1..G_n`` the GT boxes of the class (xyxy, inclusive pixels, areas
    ``(x1 - x0 + 1) * (y1 - y0 + 1)``), ``cover_i = |P ∩ G_i| / |G_i|`` and ``G*`` the GT box of highest
    IoU with ``P`` (the first on ties), the first rule that holds names the failure:

    1. ``several_instances``: ``n >= 2`` and ``cover_i >= 0.5`` for at least two GT boxes — the box
       holds at least half of each of two instances (it merged them);
    2. ``too_large``: ``|P ∩ G*| / |G*| >= 0.5`` and ``|P| > |G*|`` — it holds most of the object but is
       bigger;
    3. ``too_small``: ``|P ∩ G*| / |P| >= 0.5`` and ``|P| < |G*|`` — it lies mostly inside the object but
       is smaller (the typical CAM failure: only the discriminative part);
    4. ``misplaced``: anything else (mostly outside every GT box, or overlapping one partly without
       holding most of it or lying mostly inside it).

    ``wrong_class`` (the top-1 class is not a class of the image) is decided before, from the flags, by
    ``failure_categories``. All ``>=`` are inclusive: exactly half counts.

    Args:
        pred_box: ``[4]`` the top-1 box.
        gt_boxes: ``[N, 4]`` with ``N >= 1``.

    Returns:
        One of ``FAILURE_CATEGORIES[1:]``.

    Raises:
        ValueError: no GT box, or shapes other than ``[4]`` / ``[N, 4]``.
    """
    from wsol.boxes import box_iou  # the one IoU of the project (scipy import kept out of start-up)

    pred = np.asarray(pred_box, dtype=np.float64).reshape(-1)
    gts = np.asarray(gt_boxes, dtype=np.float64)
    if pred.shape != (4,) or gts.ndim != 2 or gts.shape[1] != 4:
        raise ValueError(f"classify_failure: expected pred_box [4] and gt_boxes [N, 4], got "
                         f"{np.shape(pred_box)} and {np.shape(gt_boxes)}")
    if len(gts) == 0:
        raise ValueError("classify_failure: no GT box to compare with")
    inter = _intersections(pred, gts)
    gt_area = _areas(gts)
    pred_area = float(_areas(pred[None])[0])
    if len(gts) >= 2 and int((inter >= 0.5 * gt_area).sum()) >= 2:
        return "several_instances"
    best = int(np.argmax(box_iou(pred, gts)[0]))
    if inter[best] >= 0.5 * gt_area[best] and pred_area > gt_area[best]:
        return "too_large"
    if inter[best] >= 0.5 * pred_area and pred_area < gt_area[best]:
        return "too_small"
    return "misplaced"


def failure_categories(predictions: pd.DataFrame) -> pd.Series:
    """Each image's outcome: ``correct``, ``excluded``, or a ``FAILURE_CATEGORIES`` entry.

    ``excluded``: blank ``top1_loc_correct`` (not scored for localization). ``correct``:
    ``top1_loc_correct == 1``. Otherwise (an error, of weight ``1 - top1_loc_correct``: 1 unless the image has
    several classes) ``wrong_class`` when ``top1_cls_correct == 0`` (the top-1 class is
    not a class of the image, ILSVRC devkit rules), else ``classify_failure(box, gt_boxes)`` with the box
    ``box_x0..box_y1`` and the GT boxes of class ``label``. (On a multi-class ILSVRC image whose top-1 class
    is another of its classes, the geometry is still judged against the boxes of ``label``.)

    Raises:
        ValueError: a right-class localization failure without any GT box (names the image id).
    """
    out = []
    for _, row in predictions.iterrows():
        if is_missing(row["top1_loc_correct"]):
            out.append("excluded")
        elif row["top1_loc_correct"] == 1:
            out.append("correct")
        elif row["top1_cls_correct"] == 0:
            out.append("wrong_class")
        else:
            where = f"predictions of image {row['image_id']!r}, gt_boxes"
            gts = parse_boxes(row["gt_boxes"], where)
            if len(gts) == 0:
                raise ValueError(f"{where}: a right-class localization failure without any GT box")
            box = np.array([row["box_x0"], row["box_y0"], row["box_x1"], row["box_y1"]], dtype=np.float64)
            out.append(classify_failure(box, gts))
    return pd.Series(out, index=predictions.index, name="outcome")


def failure_breakdown(predictions: pd.DataFrame) -> pd.DataFrame:
    """The top-1 localization errors split by cause (``failure_categories``), as a table.

    Returns:
        Index ``FAILURE_CATEGORIES``; columns ``count`` (images, each weighted by its error: whole numbers unless
        multi-class images fail in part), ``pct_images`` (percent of the images scored for
        localization: the column sums to the top-1 localization error) and ``pct_errors`` (percent of the
        errors). ``df.attrs`` holds ``n_loc_images``, ``n_errors`` and ``n_excluded``.
    """
    outcome = failure_categories(predictions)
    scored = int((outcome != "excluded").sum())
    # each error weighs what it costs the metric: 1 - the image's top-1 localization share (1 on single-class
    # images), so that the causes sum to the top-1 localization error exactly
    weight = 1.0 - pd.to_numeric(predictions["top1_loc_correct"], errors="coerce").fillna(1.0)
    counts = {c: float(weight[outcome == c].sum()) for c in FAILURE_CATEGORIES}
    errors = sum(counts.values())
    table = pd.DataFrame({"count": [counts[c] for c in FAILURE_CATEGORIES]},
                         index=pd.Index(FAILURE_CATEGORIES, name="category"))
    if all(float(v).is_integer() for v in counts.values()):
        table["count"] = table["count"].astype(int)
    table["pct_images"] = 100.0 * table["count"] / scored if scored else float("nan")
    table["pct_errors"] = 100.0 * table["count"] / errors if errors else float("nan")
    table.attrs.update(n_loc_images=scored, n_errors=errors, n_excluded=int((outcome == "excluded").sum()))
    return table


def failure_row(predictions: pd.DataFrame) -> dict[str, float | int]:
    """``failure_breakdown`` as one flat row: ``<category>`` in percent of images, ``<category>_n`` counts."""
    table = failure_breakdown(predictions)
    row: dict[str, float | int] = {"n_loc_images": table.attrs["n_loc_images"], "n_errors": table.attrs["n_errors"],
                                   "top1_loc_err": float(table["pct_images"].sum())}
    for cat in FAILURE_CATEGORIES:
        row[cat] = float(table.loc[cat, "pct_images"])
        count = float(table.loc[cat, "count"])
        row[f"{cat}_n"] = int(count) if count.is_integer() else count
    return row
