"""The images a CAM-overlay grid shows, and its panels built from a run: selection, images, stored CAMs.

``select_predictions`` picks rows of a run's ``predictions.csv``; ``overlay_panels`` turns them into
``wsol.visualize.OverlayPanel``s from built objects (the split's image source and the stored CAMs); ``open_run`` builds
those objects from a run dir (its ``config.yaml``, through ``wsol.config``, and its CAM store ``cams/``);
``write_overlay_grid`` does all of it for one run and saves the grid (``wsol-report --overlays``, ``wsol-visualize``).

Heat maps: the stored CAM bilinearly upsampled to the image (``wsol.cam.upsample_cams``) and min-max normalised
(``wsol.cam.normalize_cams``): the top-1 class's CAM (``which="top1"``) or the GT class's (``"gt_known"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wsol.boxes import FAILURE_CATEGORIES
from wsol.report.failures import failure_categories, parse_boxes, read_predictions
from wsol.visualize import OverlayPanel, draw_overlay_grid, save_figure

__all__ = ["SELECTIONS", "RunImages", "load_overlay_panels", "open_run", "overlay_panels", "select_predictions",
           "write_overlay_grid"]

#: ``--select`` choices of ``wsol-visualize``.
SELECTIONS = ("worst", "best", "random", "failures")


def select_predictions(predictions: pd.DataFrame, n: int, select: str = "random", *, seed: int = 0,
                       which: str = "top1", category: str | None = None) -> pd.DataFrame:
    """The ``n`` rows of ``predictions`` an overlay grid shows.

    Args:
        select: ``worst`` / ``best``: lowest / highest IoU of the shown box first (images without a GT box
            left out); ``failures``: the images whose shown box is wrong (``top1_loc_correct == 0``, or
            ``gt_known_correct == 0`` for ``which="gt_known"``), most confident (``prob1``) first;
            ``random``: a uniform sample without replacement (``seed``).
        which: ``top1`` (the box from the top-1 class's CAM) or ``gt_known`` (from the GT class's CAM).
        category: keep only top-1 failures of this ``FAILURE_CATEGORIES`` entry (``failure_categories``).
        Ties keep the file's order (stable sorts).

    Raises:
        ValueError: unknown ``select``, ``which`` or ``category``, or ``n < 1``.
    """
    if select not in SELECTIONS:
        raise ValueError(f"unknown selection {select!r}; expected one of {SELECTIONS}")
    if which not in ("top1", "gt_known"):
        raise ValueError(f"unknown box {which!r}; expected top1 or gt_known")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    df = predictions
    if category is not None:
        if category not in FAILURE_CATEGORIES:
            raise ValueError(f"unknown failure category {category!r}; expected one of {FAILURE_CATEGORIES}")
        df = df[failure_categories(df) == category]
    iou = "box_iou" if which == "top1" else "gt_known_iou"
    flag = "top1_loc_correct" if which == "top1" else "gt_known_correct"
    if select in ("worst", "best"):
        df = df[df[iou].notna() & df["gt_boxes"].map(lambda t: bool(str(t).strip()))]
        return df.sort_values(iou, ascending=select == "worst", kind="stable").head(n)
    if select == "failures":
        return df[df[flag] == 0].sort_values("prob1", ascending=False, kind="stable").head(n)
    return df.sample(n=min(n, len(df)), random_state=seed)


def _read_cams(store: Any, indices: set[int]) -> dict[int, dict[str, np.ndarray]]:
    """The stored classes, scores and CAMs of the images ``indices`` (one pass over the shards)."""
    found: dict[int, dict[str, np.ndarray]] = {}
    for batch in store.iter_batches():
        for j, index in enumerate(batch["indices"].tolist()):
            if index in indices:
                found[index] = {k: batch[k][j].numpy() for k in ("classes", "scores", "cams")}
    return found


def _heatmap(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A stored ``[h, w]`` CAM at the image's ``(H, W)``: bilinear upsampling, then min-max (``wsol.cam``)."""
    import torch

    from wsol.cam import normalize_cams, upsample_cams

    up = upsample_cams(torch.as_tensor(cam, dtype=torch.float32)[None, None], size)
    return np.asarray(normalize_cams(up, mode="minmax"))[0, 0].astype(np.float64)


@dataclass
class RunImages:
    """What the overlays of a run are drawn from.

    Attributes:
        source: the scored split's image source (``annotations`` + ``load``).
        split: its name.
        store_dir: the run's CAM store folder (may not exist).
        cams: ``{image index: {"classes", "scores", "cams"}}`` of the stored images asked for; empty without a store.
        notes: what the user should know (e.g. no CAM store: boxes only).
    """

    source: Any
    split: str
    store_dir: Path
    cams: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def open_run(run_dir: str | Path, image_ids: Any) -> RunImages:
    """The image source of a run (its ``config.yaml``, split from ``metrics.json`` or ``eval.split``) and the stored
    CAMs of ``image_ids`` (one pass over the shards of ``cams/``; none, with a note, without a store).

    Raises:
        FileNotFoundError: no ``config.yaml``.
        ValueError: an image id not in the split.
    """
    import json

    from omegaconf import OmegaConf

    from wsol.config import source_from_cfg, split_name  # the run's config: the entry layer's reader

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir / 'config.yaml'} missing: cannot tell which images the run scored")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    split = metrics.get("split") or split_name(cfg.data, cfg.eval.split)
    source = source_from_cfg(cfg.data, split, cfg.data.get("num_classes"))
    index_of = {r.image_id: i for i, r in enumerate(source.annotations.records)}
    missing = [i for i in image_ids if i not in index_of]
    if missing:
        raise ValueError(f"{run_dir}: image ids {missing[:3]} of predictions.csv are not in {cfg.data.name} "
                         f"split {split!r}")
    store_dir = run_dir / "cams"
    found = RunImages(source, split, store_dir)
    if (store_dir / "index.json").is_file():
        from wsol.evaluation.store import CAMStore

        found.cams = _read_cams(CAMStore(store_dir), {index_of[i] for i in image_ids})
    else:
        found.notes.append(f"no CAM store at {store_dir} (evaluate with eval.save_cams=true for heat maps): "
                           "drawing boxes only")
    return found


def overlay_panels(rows: pd.DataFrame, run: RunImages, *, which: str) -> list[OverlayPanel]:
    """Overlay panels of the images ``rows`` (rows of the run's ``predictions.csv``), from built objects.

    The heat map is the top-1 class's CAM for ``which="top1"``, the GT class's for ``"gt_known"``; the top-k
    probabilities come from the store when there is one. Under each panel: the image's top-1 outcome
    (``failure_categories``: correct, or why it failed) for ``"top1"``.

    Raises:
        ValueError: an image whose size differs from ``predictions.csv``, or a CAM store whose classes disagree with
            ``predictions.csv`` (another run's store).
    """
    source, cams, store_dir = run.source, run.cams, run.store_dir
    index_of = {r.image_id: i for i, r in enumerate(source.annotations.records)}
    names = source.annotations.class_names

    def name(c: Any) -> str:
        c = int(c)
        return names[c] if names is not None and 0 <= c < len(names) else str(c)

    prefix = "box" if which == "top1" else "gt_known"
    # The top-1 outcome (correct, or why it failed) under each panel's GT line; the GT-known box has none.
    outcomes = failure_categories(rows) if which == "top1" else pd.Series("", index=rows.index)
    pred_cols = [c for c in (f"pred{k}" for k in range(1, 6)) if c in rows]
    panels = []
    for _, row in rows.iterrows():
        index = index_of[row["image_id"]]
        image = np.asarray(source.load(index).convert("RGB"))
        if (image.shape[1], image.shape[0]) != (int(row["width"]), int(row["height"])):
            raise ValueError(f"image {row['image_id']!r} is {image.shape[1]}x{image.shape[0]} but predictions.csv "
                             f"says {int(row['width'])}x{int(row['height'])}")
        top = [(name(row[c]), float(row["prob1"]) if c == "pred1" else None) for c in pred_cols
               if not pd.isna(row[c])]
        heatmap = None
        if cams:
            if index not in cams:
                raise ValueError(f"{store_dir}: no CAM stored for image {row['image_id']!r} (index {index})")
            stored = cams[index]
            j = 0 if which == "top1" else len(stored["classes"]) - 1
            expected = int(row["pred1"] if which == "top1" else row["label"])
            if int(stored["classes"][j]) != expected:
                raise ValueError(f"{store_dir}: the CAM store is not of this predictions.csv (image "
                                 f"{row['image_id']!r}: stored class {int(stored['classes'][j])}, expected {expected})")
            heatmap = _heatmap(stored["cams"][j], image.shape[:2])
            top = [(name(c), float(p)) for c, p in zip(stored["classes"][:-1], stored["scores"][:-1])]
        box = np.array([row[f"{prefix}_{k}"] for k in ("x0", "y0", "x1", "y1")], dtype=np.float64)
        iou = row[f"{prefix}_iou"]
        panels.append(OverlayPanel(
            image=image, heatmap=heatmap,
            gt_boxes=parse_boxes(row["gt_boxes"], f"predictions.csv, image {row['image_id']!r}"),
            pred_box=None if np.isnan(box).any() else box, iou=None if pd.isna(iou) else float(iou),
            top_classes=top, gt_class=name(row["label"]), title=str(row["image_id"]),
            note=str(outcomes[row.name]).replace("_", " ").replace("excluded", "")))
    return panels


def load_overlay_panels(run_dir: str | Path, rows: pd.DataFrame, *,
                        which: str = "top1") -> tuple[list[OverlayPanel], list[str]]:
    """``overlay_panels`` of a run dir (``open_run``), and the notes for the user.

    Raises:
        FileNotFoundError, ValueError: as ``open_run`` and ``overlay_panels``.
    """
    run = open_run(run_dir, list(rows["image_id"]))
    return overlay_panels(rows, run, which=which), run.notes


def write_overlay_grid(run_dir: str | Path, out_png: str | Path, *, n: int = 16, select: str = "random",
                       seed: int = 0, which: str = "top1", category: str | None = None, ncols: int = 4) -> list[str]:
    """Select ``n`` images of a run (``select_predictions``), draw their overlays, save the grid.

    Returns:
        Notes for the user (e.g. no CAM store, fewer images than asked).

    Raises:
        ValueError: nothing to draw (e.g. no failure in the run), or as ``load_overlay_panels``.
    """
    run_dir = Path(run_dir)
    predictions = read_predictions(run_dir / "predictions.csv")
    rows = select_predictions(predictions, n, select, seed=seed, which=which, category=category)
    if rows.empty:
        raise ValueError(f"{run_dir}: no image matches --select {select}"
                         + (f" --category {category}" if category else ""))
    panels, notes = load_overlay_panels(run_dir, rows, which=which)
    if len(rows) < n:
        notes.append(f"only {len(rows)} images match --select {select} (asked for {n})")
    save_figure(draw_overlay_grid(panels, ncols=ncols), out_png, dpi=150)
    return notes
