"""Compact, sharded storage of CAMs, so any protocol can be re-scored without running the network.

What is stored per image (as computed by ``wsol.evaluate.forward_cams``): the top-k predicted classes and
the GT class (``classes [k+1]``), their softmax probabilities, the CAMs of those classes at feature-map
resolution in float16 (``cams [k+1, h, w]``), the image's index in its split and its ``(width, height)``.
ILSVRC val at 7x7 (k = 5) takes ~30 MB.

Layout of a store directory:
    shard_00000.pt ...   dicts of tensors (``torch.save``), ``shard_size`` images each (the last may be
                         shorter); loaded with ``weights_only=True``, one shard at a time
    index.json           written last, on success: format version, meta, shard names and counts. A
                         directory without it is an incomplete store and is refused.
Writes are atomic (temp file + ``os.replace``): an interrupted run never leaves a truncated shard.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

FORMAT_VERSION = 1
_FP16_MAX = float(torch.finfo(torch.float16).max)
_KEYS = ("indices", "sizes", "classes", "scores", "cams")


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class CAMStoreWriter:
    """Buffers batches and writes shards of ``shard_size`` images; ``close()`` writes ``index.json``.

    Args:
        out_dir: the store directory (created; must not already hold an ``index.json``).
        shard_size: images per shard.
        meta: free JSON-serialisable description (dataset, split, arch, pool, topk, image ids ...).
    """

    def __init__(self, out_dir: str | Path, *, shard_size: int = 1024, meta: dict[str, Any] | None = None) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.dir = Path(out_dir)
        if (self.dir / "index.json").exists():
            raise FileExistsError(f"{self.dir}: a CAM store is already there")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shard_size, self.meta = shard_size, dict(meta or {})
        self._buffer: dict[str, list[torch.Tensor]] = {k: [] for k in _KEYS}
        self._buffered = 0
        self._shards: list[dict[str, Any]] = []
        self._n = 0
        self._closed = False

    def add(self, indices: torch.Tensor, sizes: torch.Tensor, classes: torch.Tensor, scores: torch.Tensor,
            cams: torch.Tensor) -> None:
        """Add a batch: ``indices [B]``, ``sizes [B, 2]`` (width, height), ``classes [B, k+1]``,
        ``scores [B, k+1]``, ``cams [B, k+1, h, w]``.

        Raises:
            ValueError: on inconsistent shapes, or a CAM value beyond the float16 range (it would be
                stored as inf), naming the image index.
        """
        b = len(indices)
        if not (sizes.shape == (b, 2) and classes.shape[0] == b and scores.shape == classes.shape
                and cams.shape[:2] == classes.shape and cams.ndim == 4):
            raise ValueError(f"inconsistent batch shapes: indices {tuple(indices.shape)}, sizes {tuple(sizes.shape)}, "
                             f"classes {tuple(classes.shape)}, scores {tuple(scores.shape)}, cams {tuple(cams.shape)}")
        peak = cams.detach().abs().flatten(1).amax(1)
        if not torch.isfinite(peak).all() or (peak > _FP16_MAX).any():
            bad = int(indices[int(torch.nan_to_num(peak, nan=float("inf")).argmax())])
            raise ValueError(f"CAM of image index {bad} is not finite or exceeds the float16 range "
                             f"(|value| > {_FP16_MAX:g}); it cannot be stored in float16")
        for key, value in zip(_KEYS, (indices, sizes, classes, scores, cams)):
            value = value.detach().cpu()
            if key == "cams":
                value = value.to(torch.float16)
            elif key == "scores":
                value = value.float()
            else:
                value = value.long()
            self._buffer[key].append(value)
        self._buffered += b
        while self._buffered >= self.shard_size:
            self._flush(self.shard_size)

    def _flush(self, count: int) -> None:
        merged = {k: torch.cat(v) for k, v in self._buffer.items()}
        shard = {k: v[:count].clone() for k, v in merged.items()}
        self._buffer = {k: [v[count:]] for k, v in merged.items()}
        self._buffered -= count
        name = f"shard_{len(self._shards):05d}.pt"
        _atomic_save(shard, self.dir / name)
        self._shards.append({"file": name, "count": count,
                             "max_abs_cam": float(shard["cams"].float().abs().max()) if count else 0.0})
        self._n += count

    def close(self) -> None:
        """Write the last partial shard and ``index.json`` (the store is complete only after this)."""
        if self._closed:
            return
        if self._buffered:
            self._flush(self._buffered)
        cam_shape = None
        if self._shards:
            first = torch.load(self.dir / self._shards[0]["file"], map_location="cpu", weights_only=True)
            cam_shape = list(first["cams"].shape[1:])
        index = {"format_version": FORMAT_VERSION, "num_images": self._n, "dtype": "float16",
                 "cam_shape": cam_shape, "shards": self._shards, "meta": self.meta}
        tmp = self.dir / "index.json.tmp"
        tmp.write_text(json.dumps(index, indent=1))
        os.replace(tmp, self.dir / "index.json")
        self._closed = True

    def __enter__(self) -> "CAMStoreWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # On an exception no index.json is written: the incomplete store is recognisable as such.
        if exc_type is None:
            self.close()


class CAMStore:
    """Reader of a store written by ``CAMStoreWriter``; holds one shard in memory at a time."""

    def __init__(self, path: str | Path) -> None:
        self.dir = Path(path)
        index_path = self.dir / "index.json"
        if not index_path.is_file():
            raise FileNotFoundError(f"{index_path} missing: {self.dir} is not a complete CAM store "
                                    "(was the evaluation interrupted?)")
        index = json.loads(index_path.read_text())
        if index.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{index_path}: unsupported format_version {index.get('format_version')!r} "
                             f"(this wsol reads {FORMAT_VERSION})")
        self.index = index
        self.meta: dict[str, Any] = index.get("meta", {})

    def __len__(self) -> int:
        return int(self.index["num_images"])

    def _load_shard(self, entry: dict[str, Any]) -> dict[str, torch.Tensor]:
        path = self.dir / entry["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: shard listed in index.json is missing")
        try:
            shard = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a corrupt file: say which
            raise ValueError(f"{path}: unreadable CAM shard ({err})") from err
        if set(shard) != set(_KEYS) or any(len(shard[k]) != entry["count"] for k in _KEYS):
            raise ValueError(f"{path}: shard does not match index.json (expected {entry['count']} images "
                             f"with keys {list(_KEYS)})")
        if self.index.get("cam_shape") and list(shard["cams"].shape[1:]) != self.index["cam_shape"]:
            raise ValueError(f"{path}: CAM shape {list(shard['cams'].shape[1:])} differs from index.json "
                             f"{self.index['cam_shape']}")
        return shard

    def iter_batches(self, batch_size: int = 256) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of up to ``batch_size`` images in store order; ``cams`` as float32."""
        for entry in self.index["shards"]:
            shard = self._load_shard(entry)
            for start in range(0, entry["count"], batch_size):
                batch = {k: v[start:start + batch_size] for k, v in shard.items()}
                batch["cams"] = batch["cams"].float()
                yield batch


def export_wsoleval_scoremaps(store: CAMStore, image_ids: Sequence[str], out_root: str | Path,
                              scoremap_fn: Callable[[np.ndarray], np.ndarray], overwrite: bool = False) -> int:
    """Write wsolevaluation-format score maps: ``<out_root>/<image_id>.npy`` from the GT class's CAM.

    Args:
        image_ids: the split's image ids, indexed by the stored ``indices``.
        scoremap_fn: CAM ``[h, w]`` -> score map (``wsol.metrics.boxacc.wsoleval_scoremap``).
        overwrite: replace existing files (refused otherwise, naming the file).

    Returns:
        The number of maps written.
    """
    root = Path(out_root)
    n = 0
    for batch in store.iter_batches():
        for index, cams in zip(batch["indices"].tolist(), batch["cams"]):
            path = root / f"{image_ids[index]}.npy"
            if path.exists() and not overwrite:
                raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, scoremap_fn(cams[-1].numpy()))
            n += 1
    return n
