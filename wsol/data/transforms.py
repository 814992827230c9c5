"""Image transforms for training and evaluation.

Geometry, stated once here:
    * Training: resize the whole image to ``resize_size x resize_size`` (aspect not kept, as the CAM
      authors' and wsolevaluation's pipelines do), take a random ``crop_size`` crop, mirror with
      probability 0.5.
    * Evaluation: resize the whole image to ``image_size x image_size`` without crop (wsolevaluation's
      test transform). The CAM of that input covers the whole image, so resizing it back to the
      image's own ``(width, height)`` puts it in the pixel space of the GT boxes.
    * Normalisation is the model's own (``CAMNet.mean/std``) on RGB in [0, 1].
"""

from __future__ import annotations

from typing import Callable

import torch
from PIL import Image
from torchvision import transforms as T


def build_train_transform(resize_size: int, crop_size: int, hflip: bool, mean: tuple[float, ...],
                          std: tuple[float, ...]) -> Callable[[Image.Image], torch.Tensor]:
    """Resize to a square, random crop, optional mirroring, to tensor, normalise."""
    if crop_size > resize_size:
        raise ValueError(f"crop_size ({crop_size}) must be <= resize_size ({resize_size})")
    ops: list = [T.Resize((resize_size, resize_size))]
    if crop_size < resize_size:
        ops.append(T.RandomCrop(crop_size))
    if hflip:
        ops.append(T.RandomHorizontalFlip())
    ops += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(ops)


def build_eval_transform(image_size: int, mean: tuple[float, ...],
                         std: tuple[float, ...]) -> Callable[[Image.Image], torch.Tensor]:
    """Whole image resized to ``image_size x image_size`` (no crop), to tensor, normalise."""
    return T.Compose([T.Resize((image_size, image_size)), T.ToTensor(), T.Normalize(mean, std)])
