"""The built-in synthetic dataset: determinism, exact boxes, and the properties it promises."""

from __future__ import annotations

import numpy as np
import pytest

from wsol.data.datasets import build_source
from wsol.data.synthetic import SyntheticConfig, mask_to_box, render_image

# The generator's parameters, written out (the defaults live only in configs/data/synthetic.yaml; the
# compose test in test_data_formats.py builds the dataset from that file).
GENERATOR = dict(num_classes=8, render_size=64, scale_range=(0.15, 0.7), aspect_range=(0.35, 0.8),
                 two_instance_prob=0.2, part_prob=0.7, max_distractors=3, seed=0)


def test_mask_to_box_inclusive() -> None:
    mask = np.zeros((5, 6), dtype=bool)
    mask[1, 2] = mask[3, 4] = True
    assert mask_to_box(mask).tolist() == [2.0, 1.0, 4.0, 3.0]


def test_render_is_deterministic_and_split_dependent() -> None:
    cfg = SyntheticConfig(**GENERATOR)
    a = render_image(cfg, "train", 7)
    b = render_image(cfg, "train", 7)
    c = render_image(cfg, "test", 7)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and np.array_equal(a[2], b[2])
    assert not np.array_equal(a[0], c[0])


def test_statistics_over_many_images() -> None:
    cfg = SyntheticConfig(**GENERATOR)
    sides, labels, counts = [], [], []
    for i in range(200):
        image, label, boxes = render_image(cfg, "val", i)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 63).all()
        assert (boxes[:, 2:] >= boxes[:, :2]).all()
        sides.extend(np.maximum(boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1) / 64)
        labels.append(label)
        counts.append(len(boxes))
    # every class appears; some images hold two instances; object scale spans small to large
    assert set(labels) == set(range(8))
    assert 0.05 < np.mean(np.array(counts) == 2) < 0.4
    assert min(sides) < 0.25 and max(sides) > 0.6


def test_discriminative_part_lies_inside_a_gt_box() -> None:
    # The class part is painted in its exact colour (no noise): every such pixel is inside a GT box,
    # and the part covers only a fraction of the box (the body is the larger, weaker evidence).
    from wsol.data.synthetic import _PART_COLOURS

    cfg = SyntheticConfig(**{**GENERATOR, "max_distractors": 0, "part_prob": 1.0})
    for i in range(20):
        image, label, boxes = render_image(cfg, "train", i)
        colour = (np.clip(_PART_COLOURS[label], 0, 1) * 255 + 0.5).astype(np.uint8)
        ys, xs = np.nonzero((image == colour).all(-1))
        assert len(xs) > 0
        inside = np.zeros(len(xs), dtype=bool)
        for x0, y0, x1, y1 in boxes:
            inside |= (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
        assert inside.all()
        box_area = sum((b[2] - b[0] + 1) * (b[3] - b[1] + 1) for b in boxes)
        assert len(xs) < 0.5 * box_area


def test_factory_and_bad_values() -> None:
    source = build_source("synthetic", split="val", num_images={"val": 5}, **{**GENERATOR, "num_classes": 4, "render_size": 48})
    assert len(source.annotations) == 5 and source.annotations.num_classes == 4
    assert source.load(0).size == (48, 48)
    assert source.annotations.records[0].size == (48, 48)
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticConfig(**{**GENERATOR, "num_classes": 1})
    with pytest.raises(ValueError, match="render_size must be >= 32"):
        SyntheticConfig(**{**GENERATOR, "render_size": 31})
    with pytest.raises(TypeError, match="part_prob"):  # no silent default: every parameter is required
        SyntheticConfig(**{k: v for k, v in GENERATOR.items() if k != "part_prob"})
    with pytest.raises(TypeError, match="seed"):
        build_source("synthetic", split="val", num_images={"val": 1}, **{k: v for k, v in GENERATOR.items() if k != "seed"})
    with pytest.raises(ValueError, match="no size given for split 'test'"):
        build_source("synthetic", split="test", num_images={"val": 5}, **GENERATOR)
    with pytest.raises(ValueError, match="num_images >= 1"):
        build_source("synthetic", split="val", num_images={"val": 0}, **GENERATOR)
    with pytest.raises(ValueError, match="data.root must be null"):
        build_source("synthetic", split="val", num_images={"val": 1}, root="/x", **GENERATOR)


def test_render_size_is_the_image_size_and_changes_the_images() -> None:
    small = render_image(SyntheticConfig(**{**GENERATOR, "render_size": 40}), "test", 3)
    large = render_image(SyntheticConfig(**GENERATOR), "test", 3)
    assert small[0].shape == (40, 40, 3) and large[0].shape == (64, 64, 3)
    assert (small[2][:, 2:] <= 39).all()
