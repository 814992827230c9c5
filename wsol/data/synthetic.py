"""A seeded, procedurally generated WSOL dataset with exact ground-truth boxes (``data=synthetic``).

It is built to show the real difficulty of weakly supervised localization, not a toy:

* **Uneven class evidence.** Every object is a textured *body* with a small *part* at one end of its
  major axis. The part (a class-specific colour and shape) identifies the class on its own; the body
  is only weakly discriminative: classes ``2j`` and ``2j+1`` share the body palette and differ only
  in overlapping ranges of stripe frequency. The part is visible in a fraction ``part_prob`` of the
  objects (it can be hidden, as a dog's head can be), so a classifier leans on the part when it can
  see it and on the body otherwise, which is what makes CAM boxes too small on real objects.
* **Scale, aspect, pose and position vary**: the object's major axis spans 15-70% of the image side
  (``scale_range``), the minor/major ratio varies, the body is rotated and placed anywhere it fits.
* **Clutter**: smooth coloured backgrounds with grain and streaks, plus distractors: body-textured
  blobs without a part (they carry the weak body evidence of random classes) and small symbols in
  colours no class uses.
* **Several instances**: with probability ``two_instance_prob`` an image holds two objects of its
  class; both boxes are ground truth.

The GT box of an object is the tight box of its rendered pixels (body and part, before occlusion by
a later object), in inclusive pixel coordinates. Images are generated deterministically from
``(seed, split, index)``, so every split is reproducible and independent of the others.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from wsol.data.datasets import DATASETS
from wsol.data.records import Annotations, ImageRecord

SPLITS = ("train", "val", "test")

# Highly saturated, mutually distinct part colours (RGB in [0, 1]); class c uses PART_COLOURS[c % 12].
_PART_COLOURS = np.array([
    [0.95, 0.10, 0.10], [0.10, 0.35, 0.95], [0.98, 0.85, 0.05], [0.05, 0.80, 0.20],
    [0.85, 0.15, 0.85], [0.05, 0.85, 0.85], [0.98, 0.50, 0.05], [0.50, 0.05, 0.95],
    [0.55, 0.95, 0.10], [0.95, 0.40, 0.60], [0.35, 0.20, 0.05], [0.95, 0.95, 0.95],
])
# Muted body palettes (base colour, stripe colour); classes 2j and 2j+1 share palette j % 6.
_BODY_PALETTES = np.array([
    [[0.55, 0.45, 0.35], [0.35, 0.28, 0.22]],
    [[0.40, 0.50, 0.40], [0.25, 0.33, 0.25]],
    [[0.45, 0.45, 0.58], [0.30, 0.30, 0.42]],
    [[0.60, 0.55, 0.40], [0.42, 0.38, 0.25]],
    [[0.55, 0.40, 0.48], [0.38, 0.26, 0.33]],
    [[0.42, 0.55, 0.58], [0.27, 0.38, 0.42]],
])
_PART_SHAPES = ("disc", "square", "diamond")
_DISTRACTOR_COLOURS = np.array([[0.5, 0.5, 0.5], [0.3, 0.3, 0.3], [0.7, 0.65, 0.6], [0.2, 0.25, 0.3]])


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig:
    """Parameters of the generator, all required: their defaults live in ``configs/data/synthetic.yaml`` only.

    Attributes:
        num_classes: number of classes, in ``[2, 12]``.
        render_size: side of the rendered square image in pixels (>= 32).
        scale_range: object major axis as a fraction of the image side, ``(lo, hi)`` in ``(0, 1]``.
        aspect_range: minor / major axis ratio, ``(lo, hi)`` in ``(0, 1]``.
        two_instance_prob: chance that an image holds a second instance of its class.
        part_prob: chance that an object's discriminative part is visible.
        max_distractors: most distractor bodies + symbols per image.
        seed: the dataset's own seed.
    """

    num_classes: int
    render_size: int
    scale_range: tuple[float, float]
    aspect_range: tuple[float, float]
    two_instance_prob: float
    part_prob: float
    max_distractors: int
    seed: int

    def __post_init__(self) -> None:
        if not 2 <= self.num_classes <= len(_PART_COLOURS):
            raise ValueError(f"synthetic num_classes must be in [2, {len(_PART_COLOURS)}], got {self.num_classes}")
        if self.render_size < 32:
            raise ValueError(f"synthetic render_size must be >= 32, got {self.render_size}")
        lo, hi = self.scale_range
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"synthetic scale_range must satisfy 0 < lo <= hi <= 1, got {self.scale_range}")
        alo, ahi = self.aspect_range
        if not 0 < alo <= ahi <= 1:
            raise ValueError(f"synthetic aspect_range must satisfy 0 < lo <= hi <= 1, got {self.aspect_range}")
        if not 0 <= self.two_instance_prob <= 1:
            raise ValueError(f"synthetic two_instance_prob must be in [0, 1], got {self.two_instance_prob}")
        if not 0 <= self.part_prob <= 1:
            raise ValueError(f"synthetic part_prob must be in [0, 1], got {self.part_prob}")
        if self.max_distractors < 0:
            raise ValueError(f"synthetic max_distractors must be >= 0, got {self.max_distractors}")


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    # A stable per-image stream: the same (seed, split, index) always gives the same image.
    digest = hashlib.sha256(f"wsol-synthetic/{seed}/{split}/{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise ``[size, size]`` in [0, 1]: a random ``cells x cells`` grid, bilinearly upsampled."""
    grid = rng.random((cells, cells)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.uniform(0.25, 0.75, size=3).astype(np.float32)
    tint = rng.uniform(-0.25, 0.25, size=3).astype(np.float32)
    field = _smooth_noise(rng, size, int(rng.integers(3, 7)))
    img = base[None, None, :] + (field[..., None] - 0.5) * tint[None, None, :] * 2
    # Streaks: a few random oriented stripes of low contrast, as texture clutter.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(int(rng.integers(0, 3))):
        theta = rng.uniform(0, np.pi)
        freq = rng.uniform(0.15, 0.5)
        stripes = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * freq) > 0.6
        img[stripes] += rng.uniform(-0.12, 0.12, size=3).astype(np.float32)
    img += rng.normal(0, 0.03, size=img.shape).astype(np.float32)
    return img


def _rotated_coords(size: int, cx: float, cy: float, theta: float) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    c, s = np.cos(theta), np.sin(theta)
    return dx * c + dy * s, -dx * s + dy * c


def _shape_mask(u: np.ndarray, v: np.ndarray, a: float, b: float, shape: str) -> np.ndarray:
    if shape == "ellipse" or shape == "disc":
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    if shape == "rect" or shape == "square":
        return (np.abs(u) <= a) & (np.abs(v) <= b)
    if shape == "diamond":
        return np.abs(u) / a + np.abs(v) / b <= 1.0
    raise ValueError(shape)


def _half_extent(a: float, b: float, theta: float, shape: str) -> tuple[float, float]:
    """Half width/height of the axis-aligned box of a rotated shape with half-axes (a, b)."""
    c, s = abs(np.cos(theta)), abs(np.sin(theta))
    if shape == "rect":
        return a * c + b * s, a * s + b * c
    return float(np.sqrt((a * c) ** 2 + (b * s) ** 2)), float(np.sqrt((a * s) ** 2 + (b * c) ** 2))


def _paint_object(rng: np.random.Generator, img: np.ndarray, label: int | None, cfg: SyntheticConfig,
                  palette: int) -> np.ndarray:
    """Paint one body (with the part of ``label``, or none for a distractor); return its pixel mask."""
    size = cfg.render_size
    major = rng.uniform(*cfg.scale_range) * size  # full length of the major axis, in pixels
    a = major / 2
    b = a * rng.uniform(*cfg.aspect_range)
    theta = rng.uniform(0, np.pi)
    shape = ("ellipse", "rect", "ellipse")[int(rng.integers(0, 3))]
    ex, ey = _half_extent(a, b, theta, shape)
    cx = rng.uniform(min(ex, size / 2), max(size - 1 - ex, size / 2))
    cy = rng.uniform(min(ey, size / 2), max(size - 1 - ey, size / 2))
    u, v = _rotated_coords(size, cx, cy, theta)
    body = _shape_mask(u, v, a, b, shape)

    base, stripe = _BODY_PALETTES[palette % len(_BODY_PALETTES)]
    # Stripe frequency: overlapping ranges for the two classes of a palette (weak evidence);
    # distractor bodies draw from the whole range.
    lo, hi = (0.6, 1.4) if label is None else ((0.6, 1.1) if label % 2 == 0 else (0.9, 1.4))
    freq = rng.uniform(lo, hi)
    texture = (np.sin(u * freq + rng.uniform(0, 6.3)) > 0).astype(np.float32)[..., None]
    colour = base * (1 - texture) + stripe * texture
    img[body] = colour[body] + rng.normal(0, 0.02, size=(int(body.sum()), 3))
    mask = body
    if label is not None and rng.random() < cfg.part_prob:
        # The discriminative part: at one end of the major axis, about the body's minor width.
        r = max(2.0, 0.55 * b)
        sign = 1.0 if rng.random() < 0.5 else -1.0
        px = cx + sign * (a - 0.7 * r) * np.cos(theta)
        py = cy + sign * (a - 0.7 * r) * np.sin(theta)
        pu, pv = _rotated_coords(size, px, py, theta)
        part_shape = _PART_SHAPES[label % len(_PART_SHAPES)]
        part = _shape_mask(pu, pv, r, r, part_shape)
        # A class-specific inner mark: a dot for even classes, a bar for odd ones, in the body colour.
        if label % 2 == 0:
            mark = _shape_mask(pu, pv, 0.4 * r, 0.4 * r, "disc")
        else:
            mark = _shape_mask(pu, pv, 0.9 * r, 0.25 * r, "rect")
        img[part] = _PART_COLOURS[label % len(_PART_COLOURS)]
        img[part & mark] = stripe
        mask = body | part
    return mask


def _paint_symbol(rng: np.random.Generator, img: np.ndarray, size: int) -> None:
    r = rng.uniform(1.5, 4.0)
    cx, cy = rng.uniform(r, size - 1 - r, size=2)
    u, v = _rotated_coords(size, cx, cy, rng.uniform(0, np.pi))
    m = _shape_mask(u, v, r, r, _PART_SHAPES[int(rng.integers(0, 3))])
    img[m] = _DISTRACTOR_COLOURS[int(rng.integers(0, len(_DISTRACTOR_COLOURS)))]


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """Tight inclusive ``xyxy`` box of a boolean mask ``[H, W]`` (which must have a pixel)."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)


def render_image(cfg: SyntheticConfig, split: str, index: int) -> tuple[np.ndarray, int, np.ndarray]:
    """Render image ``index`` of ``split``.

    Returns:
        ``(image uint8 [S, S, 3], label, boxes float64 [N, 4] xyxy inclusive)``, N in {1, 2}.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown synthetic split {split!r}; expected one of {SPLITS}")
    rng = _rng(cfg.seed, split, index)
    size = cfg.render_size
    label = int(rng.integers(0, cfg.num_classes))
    img = _background(rng, size)
    n_distractors = int(rng.integers(0, cfg.max_distractors + 1))
    n_blobs = int(rng.integers(0, n_distractors + 1))
    # Distractor bodies come first so the real objects are painted on top of them.
    for _ in range(n_blobs):
        _paint_object(rng, img, None, cfg, palette=int(rng.integers(0, len(_BODY_PALETTES))))
    for _ in range(n_distractors - n_blobs):
        _paint_symbol(rng, img, size)
    boxes = [mask_to_box(_paint_object(rng, img, label, cfg, palette=label // 2))]
    if rng.random() < cfg.two_instance_prob:
        # A second instance must not overlap the first one's box (so neither is hidden); give up
        # after a few placements, which keeps small images with a large first object single.
        for _ in range(8):
            candidate = img.copy()
            box = mask_to_box(_paint_object(rng, candidate, label, cfg, palette=label // 2))
            x0, y0, x1, y1 = boxes[0]
            if box[0] > x1 or box[2] < x0 or box[1] > y1 or box[3] < y0:
                img = candidate
                boxes.append(box)
                break
    image = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return image, label, np.stack(boxes)


class SyntheticSource:
    """An ``ImageSource`` over a rendered split; images are rendered once and kept in memory."""

    def __init__(self, cfg: SyntheticConfig, split: str, num_images: int) -> None:
        if num_images < 1:
            raise ValueError(f"synthetic split {split!r} needs num_images >= 1, got {num_images}")
        self.cfg = cfg
        rendered = [render_image(cfg, split, i) for i in range(num_images)]
        self.images = np.stack([r[0] for r in rendered])
        size = (cfg.render_size, cfg.render_size)
        self.annotations = Annotations(
            records=[ImageRecord(image_id=f"{split}/{i:06d}.png", label=lab, boxes=boxes, size=size)
                     for i, (_, lab, boxes) in enumerate(rendered)],
            num_classes=cfg.num_classes,
            class_names=[f"class{c}" for c in range(cfg.num_classes)],
        )

    def load(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index])


@DATASETS.register("synthetic")
def synthetic(
    split: str,
    *,
    num_images: dict[str, int],
    num_classes: int,
    render_size: int,
    scale_range: tuple[float, float],
    aspect_range: tuple[float, float],
    two_instance_prob: float,
    part_prob: float,
    max_distractors: int,
    seed: int,
    root: str | None = None,
    on_error: str = "raise",
) -> SyntheticSource:
    """The ``synthetic`` dataset factory; every generator option is required (``configs/data/synthetic.yaml``
    holds the defaults, see ``SyntheticConfig``).

    Args:
        split: ``train``, ``val`` or ``test``.
        num_images: images per split, e.g. ``{"train": 2400, "val": 400, "test": 600}``.
        num_classes, render_size, scale_range, aspect_range, two_instance_prob, part_prob, max_distractors,
            seed: the generator's parameters (``SyntheticConfig``).
        root: must be None (accepted for the uniform data interface: the images are generated in memory).
        on_error: accepted for the uniform data interface; generated images cannot be unreadable.
    """
    if root is not None:
        raise ValueError(f"synthetic data is generated in memory; data.root must be null, got {root!r}")
    if split not in num_images:
        raise ValueError(f"synthetic: no size given for split {split!r} (num_images has {sorted(num_images)})")
    cfg = SyntheticConfig(num_classes=num_classes, render_size=render_size, scale_range=tuple(scale_range),
                          aspect_range=tuple(aspect_range), two_instance_prob=two_instance_prob,
                          part_prob=part_prob, max_distractors=max_distractors, seed=seed)
    return SyntheticSource(cfg, split, int(num_images[split]))
