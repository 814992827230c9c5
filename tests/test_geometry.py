"""Box conventions of the readers and the rescaled reference subsets: golden values written by hand, real-data checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wsol.boxes import resize_boxes
from wsol.data.geometry import boxes_inverted, boxes_outside, xywh_to_xyxy


def test_xywh_to_xyxy_pixel_count_and_extent() -> None:
    # A 3-pixel-wide, 2-pixel-tall box starting at (10, 20): columns 10..12, rows 20..21.
    assert xywh_to_xyxy([[10, 20, 3, 2]], count_pixels=True).tolist() == [[10, 20, 12, 21]]
    # CUB image 1: "60.0 27.0 325.0 304.0" -> wsolevaluation "60,27,385,331".
    assert xywh_to_xyxy([[60.0, 27.0, 325.0, 304.0]], count_pixels=False).tolist() == [[60, 27, 385, 331]]


def test_box_checks() -> None:
    assert boxes_outside([[0, 0, 10, 7], [0, 0, 10.5, 7], [-1.5, 0, 3, 3]], (10, 8), tolerance=1.0).tolist() == [False, True, True]
    assert boxes_outside([[0, 0, 9.5, 7]], (10, 8), tolerance=0.0).tolist() == [True]
    assert boxes_inverted([[3, 3, 3, 3], [4, 0, 3, 1], [0, 2, 1, 1]]).tolist() == [False, True, True]
    with pytest.raises(ValueError):
        xywh_to_xyxy([[1, 2, 3]], count_pixels=True)


def _boxes(metadata: Path) -> pd.DataFrame:
    return pd.read_csv(metadata / "localization.txt", header=None, names=["id", "x0", "y0", "x1", "y1"])


def test_rescaled_subsets_follow_resize_boxes(shared_data: Path) -> None:
    """acuity227 boxes = original boxes * 227 / W (1 decimal); crop224 = shorter side 224 + centre crop."""
    test_meta = shared_data / "wsolevaluation_metadata" / "ILSVRC" / "test"
    sizes = pd.read_csv(test_meta / "image_sizes.txt", header=None, names=["id", "w", "h"]).set_index("id")
    originals = _boxes(test_meta)
    for subset in ("acuity227", "crop224"):
        mini = _boxes(shared_data / "ilsvrc_val_mini" / subset / "metadata")
        checked = 0
        for image_id, group in mini.groupby("id", sort=False):
            size = tuple(int(v) for v in sizes.loc[image_id, ["w", "h"]])
            source = originals[originals.id == image_id][["x0", "y0", "x1", "y1"]].to_numpy(float)
            if subset == "acuity227":
                expected = resize_boxes(source, size, (227, 227), truncate=False)
            else:
                # The subset was derived with continuous geometry: scale 224 / min(W, H), centre offset
                # (W * scale - 224) / 2 without rounding, clipped to [0, 224] (one past the last pixel).
                scale = 224 / min(size)
                resized = (size[0] * scale, size[1] * scale)
                left, top = (resized[0] - 224) / 2, (resized[1] - 224) / 2
                shifted = resize_boxes(source, size, resized, truncate=False) - np.array([left, top, left, top])
                expected = np.clip(shifted, 0, 224)
            got = group[["x0", "y0", "x1", "y1"]].to_numpy(float)
            assert len(got) == len(expected), image_id
            tolerance = 0.051  # both subsets store coordinates rounded to 1 decimal
            # Each stored box matches one mapped original box (the line order may differ).
            distance = np.abs(got[:, None, :] - expected[None, :, :]).max(axis=2)
            assert np.all(distance.min(axis=1) <= tolerance), (image_id, got, expected)
            assert sorted(distance.argmin(axis=1).tolist()) == list(range(len(expected))), image_id
            checked += 1
        assert checked == {"acuity227": 217, "crop224": 9}[subset]
