"""Dataset registry and the torch Dataset wrapper."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from PIL import Image

from wsol.data.datasets import DATASETS, WSOLDataset, build_source
from wsol.data.records import Annotations, ImageRecord
from wsol.data.transforms import build_eval_transform

if TYPE_CHECKING:
    from omegaconf import DictConfig


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


def _synthetic_node(**extra: object) -> DictConfig:
    from omegaconf import OmegaConf

    return OmegaConf.create({
        "name": "synthetic", "root": None, "num_classes": 4, "train_split": "train", "val_split": "val",
        "test_split": "test", "image_size": 32, "crop_size": 32, "resize_size": 32, "hflip": True,
        "on_error": "raise", "num_images": {"test": 2}, "render_size": 40, "scale_range": [0.15, 0.7],
        "aspect_range": [0.35, 0.8], "two_instance_prob": 0.2, "part_prob": 0.7, "max_distractors": 3, "seed": 0,
        **extra,
    })


def test_dataset_options_are_the_factory_keywords_minus_the_interface() -> None:
    from wsol.data.datasets import dataset_options

    assert dataset_options("synthetic") == ("num_images", "render_size", "scale_range", "aspect_range",
                                            "two_instance_prob", "part_prob", "max_distractors", "seed")
    assert dataset_options("_test_empty") is None  # a factory taking **kw accepts any option


def test_source_from_cfg_passes_top_level_options_to_the_factory() -> None:
    from wsol.config import source_from_cfg

    source = source_from_cfg(_synthetic_node(), "test")
    # render_size (an option) sets the rendered size; image_size (a common key, the eval input) does not
    assert source.load(0).size == (40, 40) and source.annotations.num_classes == 4


def test_source_from_cfg_names_an_unknown_key_and_the_dataset() -> None:
    from wsol.config import source_from_cfg

    with pytest.raises(ValueError, match=r"data\.gt_format: dataset 'synthetic' has no option 'gt_format'.*render_size"):
        source_from_cfg(_synthetic_node(gt_format="auto"), "test")
    with pytest.raises(ValueError, match=r"data\.kwargs: .*not data\.kwargs\.<option>"):
        source_from_cfg(_synthetic_node(kwargs={"render_size": 32}), "test")
    with pytest.raises(ValueError, match=r"data\.split: dataset 'synthetic' has no option 'split'"):
        source_from_cfg(_synthetic_node(split="val"), "test")  # an interface argument is not an option
