"""Pixel masks for PxAP (OpenImages30k), read as wsolevaluation's ``get_mask`` reads them.

Each instance mask and the ignore-box mask is read as 8-bit grayscale, resized to 224x224 with
nearest-neighbour interpolation and binarised at > 0.5 (i.e. any non-zero pixel); the foreground is
the union of the instances; ignored pixels are those of the ignore box outside the foreground. The result is
the label map ``wsol.metrics.pxap.PxAPEvaluator`` reads: 1 foreground, 0 background, 255 ignored.

Layering: this module is data-level and imports nothing from ``wsol.metrics``. Its default size, 224, is
wsolevaluation's evaluation grid (``wsol.metrics.scoremap.RESIZE_LENGTH``; a test keeps the two equal).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

#: Values of the PxAP label map.
FOREGROUND, BACKGROUND, IGNORED = 1, 0, 255

#: wsolevaluation's evaluation grid (equal to ``wsol.metrics.scoremap.RESIZE_LENGTH``).
MASK_SIZE = 224


def combine_masks(instance_masks: np.ndarray, ignore_mask: np.ndarray | None) -> np.ndarray:
    """wsolevaluation's ``get_mask`` without the file reading.

    Args:
        instance_masks: ``[K, H, W]`` per-instance masks (any real dtype; > 0.5 is foreground), K >= 1.
        ignore_mask: ``[H, W]`` ignore-box mask (> 0.5 is ignored), or None.

    Returns:
        uint8 ``[H, W]``: 1 foreground, 255 ignored background, 0 background.
    """
    fg = (np.asarray(instance_masks) > 0.5).any(axis=0)
    ignore = np.zeros_like(fg) if ignore_mask is None else (np.asarray(ignore_mask) > 0.5) & ~fg
    out = np.full(fg.shape, BACKGROUND, dtype=np.uint8)
    out[fg] = FOREGROUND
    out[ignore] = IGNORED
    return out


def _read_mask(path: Path, size: int) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise FileNotFoundError(f"{path}: mask file missing or unreadable")
    return cv2.resize(image.astype(np.float32), (size, size), interpolation=cv2.INTER_NEAREST)


def load_wsoleval_mask(mask_root: str | Path, mask_paths: Sequence[str], ignore_path: str | None,
                       size: int = MASK_SIZE) -> np.ndarray:
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
