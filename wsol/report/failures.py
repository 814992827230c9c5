"""Why top-1 localization fails: reading ``predictions.csv`` and sorting each error into a cause.

The causes are decided per image from its row: ``wrong_class`` from the classification flags, the others from the
boxes by ``wsol.boxes.classify_failure`` (box geometry, where the drawing code can use the category names too).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wsol.boxes import FAILURE_CATEGORIES, classify_failure  # noqa: F401  (re-exported: the report's names)
from wsol.report.summary import is_missing

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
