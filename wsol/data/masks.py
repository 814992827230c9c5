"""Pixel masks for PxAP (OpenImages30k), read as wsolevaluation's ``get_mask`` reads them.

Each instance mask and the ignore-box mask is read as 8-bit grayscale, resized to 224x224 with
nearest-neighbour interpolation and binarised at > 0.5 (i.e. any non-zero pixel); the foreground is
the union of the instances; ignored pixels are those of the ignore box outside the foreground.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from wsol.metrics.boxacc import RESIZE_LENGTH
from wsol.metrics.pxap import combine_masks


def _read_mask(path: Path, size: int) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise FileNotFoundError(f"{path}: mask file missing or unreadable")
    return cv2.resize(image.astype(np.float32), (size, size), interpolation=cv2.INTER_NEAREST)


def load_wsoleval_mask(mask_root: str | Path, mask_paths: Sequence[str], ignore_path: str | None,
                       size: int = RESIZE_LENGTH) -> np.ndarray:
    """uint8 ``[size, size]`` mask: 1 foreground, 0 background, 255 ignored.

    Raises:
        FileNotFoundError: naming a missing mask file; ValueError when an image has no instance mask.
    """
    root = Path(mask_root)
    if not mask_paths:
        raise ValueError(f"no instance mask given (under {root})")
    instances = np.stack([_read_mask(root / p, size) for p in mask_paths])
    ignore = _read_mask(root / ignore_path, size) if ignore_path else None
    return combine_masks(instances, ignore)
