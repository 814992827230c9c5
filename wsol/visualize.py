"""Figures: BoxAcc-vs-tau curves, the failure breakdown, CAM overlays -- drawing only.

Every function is pure: arrays in, a matplotlib ``Figure`` (or an RGB array) out; the only I/O is ``save_figure``.
Which images a grid shows and where they come from is ``wsol.report.overlays``; the ``wsol-visualize`` command is
``wsol.report.visualize_cli``. This module imports neither (nor ``wsol.report`` nor ``wsol.config``): the report
draws through it, never the other way round. matplotlib is used through its object API with the Agg canvas (no
pyplot, no global backend switch) and imported inside the functions, so that ``--help`` of the tools starts fast.

Overlay conventions: boxes are ``xyxy`` with inclusive pixel coordinates (``wsol.boxes``), drawn as the
outline of the pixels they cover (a box ``[x0, y0, x1, y1]`` spans ``x0 - 0.5 .. x1 + 0.5`` in the
pixel-centre coordinates of ``imshow``). GT boxes are green, the predicted box red with its IoU. The heat
map is the stored CAM bilinearly upsampled to the image (``wsol.cam.upsample_cams``) and min-max
normalised (``wsol.cam.normalize_cams``), shown with the ``jet`` colour map blended at 50% over the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wsol.boxes import FAILURE_CATEGORIES

if TYPE_CHECKING:  # annotations only: matplotlib is imported where a figure is drawn
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_GT_COLOUR, _PRED_COLOUR = "#00d000", "#ff2020"


def _new_figure(width: float, height: float) -> Figure:
    """A figure on an Agg canvas (no pyplot state, nothing shown)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> None:
    """Write ``fig`` as a PNG (parent dirs created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)


def figure_to_array(fig: Figure, dpi: int = 100) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB rendering of ``fig``."""
    fig.set_dpi(dpi)
    canvas = fig.canvas
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


# ----------------------------------------------------------------------------- BoxAcc vs tau
@dataclass
class BoxAccCurves:
    """The BoxAcc-vs-tau curves of one group of runs (e.g. the seeds of one config).

    Attributes:
        label: legend text.
        tau: ``[T]`` threshold grid shared by the runs.
        acc: ``[n, T]`` BoxAcc in percent, one row per run.
        chosen_taus: the tau(s) the threshold policy chose in these runs (marked on the curve).
    """

    label: str
    tau: np.ndarray
    acc: np.ndarray
    chosen_taus: list[float] = field(default_factory=list)


def draw_boxacc_curves(groups: Sequence[BoxAccCurves], *, ylabel: str = "BoxAcc, IoU 0.5 (%)") -> Figure:
    """BoxAcc vs the CAM threshold tau, one line per group: the mean over its runs, a band of ± one sample std
    (``ddof=1``, when it has several runs), and a dot at each tau its policy chose.

    Raises:
        ValueError: a group whose ``acc`` is not ``[n, len(tau)]``.
    """
    fig = _new_figure(6.4, 4.2)
    ax = fig.add_subplot()
    for i, g in enumerate(groups):
        tau = np.asarray(g.tau, dtype=np.float64)
        acc = np.atleast_2d(np.asarray(g.acc, dtype=np.float64))
        if acc.shape[1] != len(tau):
            raise ValueError(f"curves of {g.label!r}: acc is {acc.shape}, expected [n, {len(tau)}]")
        mean = acc.mean(0)
        colour = f"C{i % 10}"
        n = len(acc)
        taus_text = ", ".join(f"{t:.3f}" for t in g.chosen_taus[:3]) + (" ..." if len(g.chosen_taus) > 3 else "")
        label = f"{g.label} (n={n})" + (f", tau {taus_text}" if g.chosen_taus else "")
        ax.plot(tau, mean, "-", color=colour, lw=1.5, label=label)
        if n > 1:
            std = acc.std(0, ddof=1)
            ax.fill_between(tau, mean - std, mean + std, color=colour, alpha=0.2, lw=0)
        for t in g.chosen_taus:
            j = int(np.argmin(np.abs(tau - t)))
            ax.plot([tau[j]], [mean[j]], "o", color=colour, ms=6, mec="black", mew=0.8)
    ax.set_xlabel("CAM threshold tau")
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    if groups:
        ax.legend(fontsize=7, title="dot: chosen tau; band: ±1 std over seeds", title_fontsize=7)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- failure breakdown
def draw_failure_breakdown(labels: Sequence[str], means: np.ndarray, stds: np.ndarray | None = None) -> Figure:
    """A heat-map table: one row per group, one column per failure category (``FAILURE_CATEGORIES``) + the total.

    Each cell shows its value (``mean ± std`` where a std is given and finite) on a colour scale shared by the
    categories; the last column is the row's sum, the top-1 localization error. Rows stay readable for a whole
    study (a bar chart of 20+ groups x 5 categories does not).

    Args:
        labels: ``G`` group names (row labels).
        means: ``[G, C]`` percent of the localization-scored images, ``C = len(FAILURE_CATEGORIES)``.
        stds: ``[G, C]`` seed spreads (NaN: none, e.g. one run), or None.

    Raises:
        ValueError: shapes that do not match.
    """
    means = np.atleast_2d(np.asarray(means, dtype=np.float64))
    n_groups, n_cats = len(labels), len(FAILURE_CATEGORIES)
    if means.shape != (n_groups, n_cats):
        raise ValueError(f"means must be [{n_groups}, {n_cats}] (groups x categories), got {means.shape}")
    if stds is not None:
        stds = np.atleast_2d(np.asarray(stds, dtype=np.float64))
        if stds.shape != means.shape:
            raise ValueError(f"stds must be {means.shape}, got {stds.shape}")
    label_inches = 0.065 * max((len(str(label)) for label in labels), default=10)
    fig = _new_figure(label_inches + 1.25 * (n_cats + 1) + 0.6, 0.8 + 0.28 * max(n_groups, 1))
    ax = fig.add_subplot()
    top = float(np.nanmax(means)) if means.size and np.isfinite(means).any() else 1.0
    ax.imshow(np.hstack([means, np.full((n_groups, 1), np.nan)]), cmap="Reds", vmin=0.0, vmax=max(top, 1e-9),
              aspect="auto")
    totals = np.nansum(means, axis=1)
    for i in range(n_groups):
        for j in range(n_cats + 1):
            if j == n_cats:
                text, colour = f"{totals[i]:.1f}", "black"
            else:
                std = np.nan if stds is None else stds[i, j]
                text = f"{means[i, j]:.1f}" + ("" if np.isnan(std) else f" ± {std:.1f}")
                colour = "white" if means[i, j] > 0.6 * top else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour,
                    fontweight="bold" if j == n_cats else "normal")
    ax.set_xticks(range(n_cats + 1), [c.replace("_", " ") for c in FAILURE_CATEGORIES] + ["total = top-1 loc err"],
                  fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks(range(n_groups), list(labels), fontsize=7)
    ax.set_title("Top-1 localization errors by cause, % of images (mean ± seed std)", fontsize=8, pad=18)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- overlays
@dataclass
class OverlayPanel:
    """What one overlay panel shows.

    Attributes:
        image: uint8 ``[H, W, 3]`` RGB.
        heatmap: float ``[H, W]`` in ``[0, 1]`` (blended over the image), or None (boxes only).
        gt_boxes: ``[N, 4]`` GT boxes, xyxy inclusive, image pixels (green).
        pred_box: ``[4]`` predicted box (red), or None.
        iou: the predicted box's IoU, written on it, or None.
        top_classes: ``(name, probability or None)`` best first.
        gt_class: name of the image's class.
        title: first line above the panel (e.g. the image id).
        note: appended to the GT line (e.g. the failure cause), or empty.
    """

    image: np.ndarray
    heatmap: np.ndarray | None
    gt_boxes: np.ndarray
    pred_box: np.ndarray | None
    iou: float | None
    top_classes: list[tuple[str, float | None]]
    gt_class: str = ""
    title: str = ""
    note: str = ""


def _check_panel(p: OverlayPanel) -> None:
    image = np.asarray(p.image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"overlay image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    if p.heatmap is not None:
        heat = np.asarray(p.heatmap)
        if heat.shape != image.shape[:2]:
            raise ValueError(f"heat map {heat.shape} does not match the image {image.shape[:2]}")
        if not np.isfinite(heat).all() or heat.min() < 0 or heat.max() > 1:
            raise ValueError("heat map must be finite and in [0, 1] (min-max normalise it first)")
    if np.asarray(p.gt_boxes).reshape(-1, 4).shape[1] != 4:
        raise ValueError(f"gt_boxes must be [N, 4], got {np.shape(p.gt_boxes)}")


def blend_heatmap(image: np.ndarray, heatmap: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """uint8 ``[H, W, 3]``: ``(1 - opacity) * image + opacity * jet(heatmap)`` (the overlays' 50 %)."""
    from matplotlib import colormaps

    colour = colormaps["jet"](np.asarray(heatmap, dtype=np.float64))[..., :3] * 255.0
    return np.clip((1 - opacity) * image.astype(np.float64) + opacity * colour + 0.5, 0, 255).astype(np.uint8)


def draw_overlay(ax: Axes, panel: OverlayPanel) -> None:
    """Draw one panel into ``ax``: image (+ heat map), GT boxes, predicted box with its IoU, top classes."""
    from matplotlib.patches import Rectangle

    _check_panel(panel)
    image = np.asarray(panel.image)
    shown = image if panel.heatmap is None else blend_heatmap(image, panel.heatmap)
    ax.imshow(shown, interpolation="nearest")
    height, width = image.shape[:2]
    lw = 1.5
    for x0, y0, x1, y1 in np.asarray(panel.gt_boxes, dtype=np.float64).reshape(-1, 4):
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, ec=_GT_COLOUR, lw=lw))
    if panel.pred_box is not None:
        x0, y0, x1, y1 = np.asarray(panel.pred_box, dtype=np.float64).reshape(4)
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, ec=_PRED_COLOUR,
                               lw=lw, ls="--"))
        if panel.iou is not None and np.isfinite(panel.iou):
            # Inside the box's top-left corner: always within the image, never over the title.
            ax.text(max(x0, 0), max(y0, 0), f"IoU {panel.iou:.2f}", color="white", fontsize=6, va="top",
                    ha="left", bbox=dict(fc=_PRED_COLOUR, ec="none", pad=1))
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    gt_line = " | ".join(t for t in (f"GT: {panel.gt_class}" if panel.gt_class else "", panel.note) if t)
    title = "\n".join(t for t in (panel.title, gt_line) if t)
    ax.set_title(title, fontsize=6)
    lines = [f"{i + 1}. {name}" + ("" if p is None else f" {p:.2f}") + (" *" if name == panel.gt_class else "")
             for i, (name, p) in enumerate(panel.top_classes[:3])]
    ax.set_xlabel("\n".join(lines), fontsize=6, loc="left")


def draw_overlay_grid(panels: Sequence[OverlayPanel], ncols: int = 4, panel_inches: float = 2.2) -> Figure:
    """Panels in a grid of ``ncols`` columns (``draw_overlay`` each), with a colour legend in the title."""
    if not panels:
        raise ValueError("no panel to draw")
    ncols = max(1, min(ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    fig = _new_figure(ncols * panel_inches, nrows * (panel_inches + 0.7) + 0.3)
    for i, panel in enumerate(panels):
        draw_overlay(fig.add_subplot(nrows, ncols, i + 1), panel)
    fig.suptitle("GT boxes green, predicted box red (dashed) with IoU; top-3 classes, * = GT class", fontsize=7)
    fig.tight_layout()
    return fig


def render_overlay(image: np.ndarray, heatmap: np.ndarray | None, gt_boxes: np.ndarray,
                   pred_box: np.ndarray | None, iou: float | None, top_classes: Sequence[tuple[str, float | None]],
                   *, gt_class: str = "", title: str = "", inches: float = 3.0, dpi: int = 100) -> np.ndarray:
    """One overlay panel as a uint8 ``[H, W, 3]`` RGB array (``inches * dpi`` pixels wide).

    Args:
        image: uint8 ``[H, W, 3]``.
        heatmap: ``[H, W]`` in ``[0, 1]``, or None for boxes only.
        gt_boxes: ``[N, 4]`` xyxy inclusive, image pixels.
        pred_box: ``[4]`` or None.
        iou: of ``pred_box``, or None.
        top_classes: ``(name, probability or None)``, best first.
        gt_class, title: text above the panel.

    Raises:
        ValueError: arrays of the wrong shape, dtype or range.
    """
    panel = OverlayPanel(np.asarray(image), None if heatmap is None else np.asarray(heatmap),
                         np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4), pred_box, iou, list(top_classes),
                         gt_class, title)
    fig = _new_figure(inches, inches + 0.7)
    draw_overlay(fig.add_subplot(), panel)
    fig.tight_layout()
    return figure_to_array(fig, dpi)
