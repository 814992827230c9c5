"""Dataset registry and the torch Dataset wrapper."""

from __future__ import annotations

import pytest
from PIL import Image

from wsol.data.datasets import DATASETS, WSOLDataset, build_source
from wsol.data.records import Annotations, ImageRecord
from wsol.data.transforms import build_eval_transform


class _Empty:
    annotations = Annotations(records=[], num_classes=3)

    def load(self, index: int) -> Image.Image:
        raise IndexError(index)


if "_test_empty" not in DATASETS:
    DATASETS.register("_test_empty")(lambda split, **kw: _Empty())


def test_empty_dataset_is_an_error() -> None:
    with pytest.raises(ValueError, match="dataset '_test_empty' split 'test' is empty"):
        build_source("_test_empty", split="test")


def test_unknown_dataset_lists_known() -> None:
    with pytest.raises(KeyError, match="unknown dataset 'imagenet'; known: .*synthetic"):
        build_source("imagenet", split="test")


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="dataset 'synthetic' is already registered"):
        DATASETS.register("synthetic")(lambda split: None)


def test_wsol_dataset_items() -> None:
    class One:
        annotations = Annotations([ImageRecord("x.png", 2)], num_classes=3)

        def load(self, index: int) -> Image.Image:
            return Image.new("RGB", (10, 6), (255, 0, 0))

    ds = WSOLDataset(One(), build_eval_transform(8, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))
    image, label, index = ds[0]
    assert image.shape == (3, 8, 8) and label == 2 and index == 0
    assert float(image[0].min()) == 1.0 and float(image[1].max()) == -1.0  # red, normalised to [-1, 1]
