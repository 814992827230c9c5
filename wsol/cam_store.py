"""Compact, sharded storage of CAMs, so any protocol can be re-scored without running the network.

What is stored per image (as computed by ``wsol.evaluate.forward_cams``): the top-k predicted classes and
then the GT class (``classes [k+1]``, int64), their softmax probabilities (``scores [k+1]``, float32), the
CAMs of those classes at feature-map resolution (``cams [k+1, h, w]``, float16), the image's index into
its split's records (``indices``, int64) and the ``(width, height)`` of the image its GT boxes refer to
(``sizes [2]``, int64). ILSVRC val (50k images, 7x7 maps, k = 5) takes ~30 MB.

float16, stated once here: CAMs are rounded to nearest (relative error <= 2**-11, ample for maps that are
min-max normalised and thresholded afterwards). The largest finite float16 is 65504; a finite CAM value
with ``|value| > 65504`` is refused with an error naming the image index, instead of being stored as inf
(this is slightly conservative: values up to 65520 would still round to 65504). NaN and inf inputs are
stored as they are, so a re-scored protocol sees exactly what the direct evaluation saw; ``index.json``
counts them per shard (``nonfinite``) next to the shard's largest finite ``|CAM|`` (``max_abs_cam``).

Layout of a store directory:
    shard_00000.pt ...  dicts of tensors (``torch.save``) with keys ``indices, sizes, classes, scores,
                        cams``, ``shard_size`` images each (the last may be shorter); read with
                        ``torch.load(weights_only=True)``, one shard at a time, so memory is bounded by a
                        shard whatever the dataset size.
    index.json          written last, only on success: ``format_version``, ``num_images``, ``dtype``,
                        ``cam_shape`` ``[k+1, h, w]``, ``shards`` (file, count, max_abs_cam, nonfinite) and
                        the writer's free ``meta`` dict. A directory without it is an incomplete store
                        (e.g. an interrupted evaluation) and is refused by the reader.
Every file is written to a temporary name, fsynced and renamed into place (``os.replace``), so an
interrupted run never leaves a truncated file under a valid name.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

__all__ = ["FORMAT_VERSION", "CAMStore", "CAMStoreWriter", "export_wsoleval_scoremaps"]

#: Version of the on-disk layout; the reader refuses any other.
FORMAT_VERSION = 1
_INDEX = "index.json"
_DTYPE = torch.float16
_FP16_MAX = float(torch.finfo(_DTYPE).max)  # 65504
_KEYS = ("indices", "sizes", "classes", "scores", "cams")
_SHARD_RE = re.compile(r"shard_\d{5}\.pt(\.tmp)?")


# ----------------------------------------------------------------------------- atomic writes
def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary sibling, fsync it, then rename it in place.

    The rename is atomic on POSIX: a reader sees either no file or the whole file. The fsync comes first
    so that after a crash the renamed file cannot be an empty or partial one (delayed allocation).
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(path: Path) -> None:
    """Persist the directory's entries (the shard renames) before ``index.json`` declares them valid."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # platforms where a directory cannot be opened (Windows): nothing to do
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- writer
class CAMStoreWriter:
    """Buffers batches of CAMs and writes a shard each time ``shard_size`` images have accumulated.

    ``close()`` writes the last, partial shard and then ``index.json``, which marks the store complete.
    As a context manager it closes on success; on an exception it writes no ``index.json``, leaving an
    incomplete store that ``CAMStore`` refuses.

    Args:
        out_dir: the store directory (created if needed). Refused if it already holds a complete store
            (``index.json``) or shards of an incomplete one: stale shards must never mix with new ones.
        shard_size: images per shard (bounds the reader's memory).
        meta: free JSON-serialisable description saved in ``index.json`` (dataset, split, arch, pool,
            topk, image_size, image ids ...). Checked to be serialisable here, not after a long run.
            If it has ``topk``, every batch must hold ``topk + 1`` classes (the re-scorer trusts it to
            separate the predictions from the GT class).

    Raises:
        ValueError: bad ``shard_size`` or non-serialisable ``meta``.
        FileExistsError: ``out_dir`` already holds a store or stale shards.
    """

    def __init__(self, out_dir: str | Path, *, shard_size: int = 1024, meta: dict[str, Any]) -> None:
        if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
            raise ValueError(f"shard_size must be an int >= 1, got {shard_size!r}")
        try:
            json.dumps(meta, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"CAM store meta must be JSON-serialisable: {err}") from err
        self.dir = Path(out_dir)
        if (self.dir / _INDEX).exists():
            raise FileExistsError(f"{self.dir / _INDEX}: a CAM store is already there")
        if self.dir.is_dir():
            stale = sorted(p.name for p in self.dir.iterdir() if _SHARD_RE.fullmatch(p.name))
            if stale:
                raise FileExistsError(f"{self.dir}: holds shards of an incomplete CAM store ({stale[0]} ...); "
                                      "delete them or choose another directory")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        self.meta = dict(meta)
        self._buffer: dict[str, list[torch.Tensor]] = {k: [] for k in _KEYS}
        self._buffered = 0
        self._shards: list[dict[str, Any]] = []
        self._num_images = 0
        self._cam_shape: tuple[int, ...] | None = None  # (k+1, h, w), fixed by the first batch
        self._seen: set[int] = set()  # indices already added (a few bytes per image)
        self._closed = False

    def add(self, indices: torch.Tensor, sizes: torch.Tensor, classes: torch.Tensor, scores: torch.Tensor,
            cams: torch.Tensor) -> None:
        """Add one batch of ``B`` images.

        Args:
            indices: integer ``[B]``: each image's index into its split's records (unique in the store).
            sizes: integer ``[B, 2]``: ``(width, height)`` of the image its GT boxes refer to.
            classes: integer ``[B, k+1]``: the top-k predicted classes, best first, then the GT class.
            scores: float ``[B, k+1]``: softmax probability of each class in ``classes``.
            cams: float ``[B, k+1, h, w]`` (any float dtype, any device): stored as float16.

        Raises:
            RuntimeError: the writer is closed.
            ValueError: wrong shapes or dtypes, a shape differing from earlier batches, ``k+1`` differing
                from ``meta["topk"] + 1``, a negative or repeated index, a non-positive size, or a finite
                CAM value beyond the float16 range (naming the image indices).
        """
        if self._closed:
            raise RuntimeError(f"{self.dir}: CAM store writer is closed")
        indices, sizes, classes, scores, cams = (t.detach().cpu() for t in (indices, sizes, classes, scores, cams))
        self._check_batch(indices, sizes, classes, scores, cams)
        values = {"indices": indices.long(), "sizes": sizes.long(), "classes": classes.long(),
                  "scores": scores.float(), "cams": cams.to(_DTYPE)}
        for key in _KEYS:
            self._buffer[key].append(values[key])
        # Committed only once the batch passed every check: a refused batch changes nothing.
        self._cam_shape = tuple(cams.shape[1:])
        self._seen.update(values["indices"].tolist())
        self._buffered += len(indices)
        if self._buffered >= self.shard_size:
            self._write_full_shards()

    def _check_batch(self, indices: torch.Tensor, sizes: torch.Tensor, classes: torch.Tensor,
                     scores: torch.Tensor, cams: torch.Tensor) -> None:
        b = indices.shape[0] if indices.ndim == 1 else -1
        if not (indices.ndim == 1 and sizes.shape == (b, 2) and classes.ndim == 2 and classes.shape[0] == b
                and scores.shape == classes.shape and cams.ndim == 4 and cams.shape[:2] == classes.shape):
            raise ValueError(f"inconsistent batch shapes: indices {tuple(indices.shape)} (want [B]), sizes "
                             f"{tuple(sizes.shape)} ([B,2]), classes {tuple(classes.shape)} ([B,k+1]), scores "
                             f"{tuple(scores.shape)} ([B,k+1]), cams {tuple(cams.shape)} ([B,k+1,h,w])")
        for name, t in (("indices", indices), ("sizes", sizes), ("classes", classes)):
            if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
                raise ValueError(f"{name} must be an integer tensor, got {t.dtype}")
        for name, t in (("scores", scores), ("cams", cams)):
            if not t.dtype.is_floating_point:
                raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
        topk = self.meta.get("topk")
        if topk is not None and cams.shape[1] != int(topk) + 1:
            raise ValueError(f"batch holds {cams.shape[1]} classes per image but meta topk={topk} "
                             f"means {int(topk) + 1} (top-k then the GT class)")
        if self._cam_shape is not None and tuple(cams.shape[1:]) != self._cam_shape:
            raise ValueError(f"cams of shape [B,{','.join(map(str, cams.shape[1:]))}] differ from the store's "
                             f"[B,{','.join(map(str, self._cam_shape))}] (fixed by the first batch)")
        ids = indices.tolist()
        bad = [i for i in ids if i < 0]
        if bad:
            raise ValueError(f"negative image indices {bad[:5]}")
        unique = set(ids)
        if len(unique) != len(ids) or not self._seen.isdisjoint(unique):
            # Each image once: the re-scorer matches the store to the split by count.
            repeated = sorted((unique & self._seen) | {i for i in ids if ids.count(i) > 1})
            raise ValueError(f"image indices {repeated[:5]} are repeated in the CAM store")
        small = (sizes <= 0).any(1)
        if small.any():
            raise ValueError(f"non-positive (width, height) for image indices {indices[small].tolist()[:5]}")
        if cams.dtype != _DTYPE and cams.numel():
            # Only finite values can overflow; NaN/inf are stored as they are (module docstring).
            flat = cams.flatten(1)
            over = (flat.abs() > _FP16_MAX) & torch.isfinite(flat)
            rows = over.any(1)
            if rows.any():
                worst = float(flat[over].abs().max())
                raise ValueError(f"CAM of image indices {indices[rows].tolist()[:5]} exceeds the float16 range "
                                 f"(|value| up to {worst:.6g} > {_FP16_MAX:g}); storing it would give inf")

    def _write_full_shards(self) -> None:
        # One concatenation per add(), whatever the batch size relative to the shard size.
        merged = {k: torch.cat(v) for k, v in self._buffer.items()}
        start = 0
        while self._buffered - start >= self.shard_size:
            self._write_shard({k: v[start:start + self.shard_size] for k, v in merged.items()})
            start += self.shard_size
        # clone(): the remainder must not keep the whole merged buffer alive.
        self._buffer = {k: [v[start:].clone()] for k, v in merged.items()}
        self._buffered -= start

    def _write_shard(self, shard: dict[str, torch.Tensor]) -> None:
        # clone(): torch.save of a view would write the whole underlying storage.
        shard = {k: v.clone() for k, v in shard.items()}
        count = len(shard["indices"])
        name = f"shard_{len(self._shards):05d}.pt"
        _atomic_write(self.dir / name, lambda f: torch.save(shard, f))
        cams = shard["cams"].float()
        finite = torch.isfinite(cams)
        self._shards.append({"file": name, "count": count,
                             "max_abs_cam": float(cams[finite].abs().max()) if finite.any() else 0.0,
                             "nonfinite": int((~finite).sum())})
        self._num_images += count

    def close(self) -> None:
        """Write the last partial shard, then ``index.json`` (the store is complete only after this).

        Idempotent; ``add()`` is refused afterwards.
        """
        if self._closed:
            return
        if self._buffered:
            self._write_shard({k: torch.cat(v) for k, v in self._buffer.items()})
            self._buffer = {k: [] for k in _KEYS}
            self._buffered = 0
        _fsync_dir(self.dir)
        index = {"format_version": FORMAT_VERSION, "num_images": self._num_images, "dtype": "float16",
                 "cam_shape": None if self._cam_shape is None else list(self._cam_shape),
                 "shards": self._shards, "meta": self.meta}
        text = json.dumps(index, indent=1).encode()
        _atomic_write(self.dir / _INDEX, lambda f: f.write(text))
        self._closed = True

    def __enter__(self) -> CAMStoreWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        # On an exception no index.json is written: the incomplete store is recognisable as such.
        if exc_type is None:
            self.close()


# ----------------------------------------------------------------------------- reader
class CAMStore:
    """Reader of a complete store written by ``CAMStoreWriter``; holds at most one shard in memory.

    Args:
        path: the store directory.

    Attributes:
        meta: the writer's free ``meta`` dict.
        index: the whole parsed ``index.json``.

    Raises:
        FileNotFoundError: no ``index.json`` (incomplete store), or a shard listed in it is missing.
        ValueError: unreadable ``index.json``, unsupported format version or dtype, inconsistent counts.
    """

    def __init__(self, path: str | Path) -> None:
        self.dir = Path(path)
        index_path = self.dir / _INDEX
        if not index_path.is_file():
            raise FileNotFoundError(f"{index_path} missing: {self.dir} is not a complete CAM store "
                                    "(was the evaluation interrupted?)")
        try:
            index = json.loads(index_path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{index_path}: unreadable CAM store index ({err})") from err
        if not isinstance(index, dict) or index.get("format_version") != FORMAT_VERSION:
            version = index.get("format_version") if isinstance(index, dict) else None
            raise ValueError(f"{index_path}: unsupported CAM store format_version {version!r} "
                             f"(this wsol reads {FORMAT_VERSION})")
        if index.get("dtype") != "float16":
            raise ValueError(f"{index_path}: unsupported CAM dtype {index.get('dtype')!r} (expected 'float16')")
        counts = sum(int(s["count"]) for s in index["shards"])
        if counts != index["num_images"]:
            raise ValueError(f"{index_path}: shard counts sum to {counts}, not num_images={index['num_images']}")
        for entry in index["shards"]:  # fail before any work rather than midway through
            if not (self.dir / entry["file"]).is_file():
                raise FileNotFoundError(f"{self.dir / entry['file']}: shard listed in {_INDEX} is missing")
        self.index: dict[str, Any] = index
        self.meta: dict[str, Any] = index["meta"]

    def __len__(self) -> int:
        return int(self.index["num_images"])

    def _load_shard(self, entry: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One shard, checked against ``index.json`` (keys, count, shapes, dtypes)."""
        path = self.dir / entry["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: shard listed in {_INDEX} is missing")
        try:
            shard = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated or foreign file: say which
            raise ValueError(f"{path}: unreadable CAM shard ({type(err).__name__}: {err})") from err
        if not isinstance(shard, dict) or set(shard) != set(_KEYS):
            found = sorted(shard) if isinstance(shard, dict) else type(shard).__name__
            raise ValueError(f"{path}: not a CAM shard (keys {found}, expected {list(_KEYS)})")
        n, cam_shape = int(entry["count"]), self.index["cam_shape"]
        expected = {"indices": ((n,), torch.int64), "sizes": ((n, 2), torch.int64),
                    "classes": ((n, cam_shape[0]), torch.int64), "scores": ((n, cam_shape[0]), torch.float32),
                    "cams": ((n, *cam_shape), _DTYPE)}
        for key, (shape, dtype) in expected.items():
            t = shard[key]
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape or t.dtype != dtype:
                got = (tuple(t.shape), t.dtype) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"{path}: {key} is {got} but {_INDEX} says {n} images -> {shape} {dtype}")
        return shard

    def iter_batches(self, batch_size: int = 256) -> Iterator[dict[str, torch.Tensor]]:
        """Batches in store order, loading one shard at a time; a batch never spans two shards.

        Args:
            batch_size: at most this many images per batch.

        Yields:
            ``{"indices": int64 [b], "sizes": int64 [b, 2], "classes": int64 [b, k+1],
            "scores": float32 [b, k+1], "cams": float32 [b, k+1, h, w]}``; tensors are copies, so a
            batch kept by the caller does not pin its shard in memory.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for entry in self.index["shards"]:
            shard = self._load_shard(entry)
            for start in range(0, int(entry["count"]), batch_size):
                batch = {k: v[start:start + batch_size].clone() for k, v in shard.items() if k != "cams"}
                batch["cams"] = shard["cams"][start:start + batch_size].float()
                yield batch
            # Drop this shard before loading the next: at most one is held, whatever the dataset size.
            del shard

    def read_indices(self) -> torch.Tensor:
        """int64 ``[N]``: every stored image index in store order (reads each shard once)."""
        return torch.cat([self._load_shard(e)["indices"] for e in self.index["shards"]]
                         or [torch.zeros(0, dtype=torch.int64)])


# ----------------------------------------------------------------------------- wsolevaluation export
def _scoremap_path(root: Path, image_id: str) -> Path:
    """``<root>/<image_id>.npy``; the id keeps its extension and sub-folders and may not leave ``root``."""
    parts = PurePosixPath(image_id).parts
    if not image_id or PurePosixPath(image_id).is_absolute() or ".." in parts or "\\" in image_id:
        raise ValueError(f"image id {image_id!r} is not a relative path inside the score-map root")
    return root.joinpath(*parts[:-1], parts[-1] + ".npy")


def export_wsoleval_scoremaps(store: CAMStore, image_ids: Sequence[str], out_root: str | Path,
                              scoremap_fn: Callable[[np.ndarray], np.ndarray], *,
                              overwrite: bool = False) -> int:
    """Write wsolevaluation-format score maps: ``<out_root>/<image_id>.npy`` from each GT-class CAM.

    The GT class's CAM is the LAST of an image's ``k+1`` maps; it goes through ``scoremap_fn`` as float32
    ``[h, w]`` and the result is saved as returned (e.g. ``val/a.JPEG`` -> ``<out_root>/val/a.JPEG.npy``,
    sub-folders created). Everything is checked before the first file is written, so a refusal writes
    nothing; each file is written atomically.

    Args:
        store: the CAMs.
        image_ids: the split's image ids, indexed by the stored ``indices``; must equal
            ``store.meta["image_ids"]`` when the store records them.
        out_root: root of the score-map tree (wsolevaluation's ``scoremap_root``).
        scoremap_fn: CAM ``[h, w]`` -> 2-D score map in ``[0, 1]``
            (``wsol.metrics.boxacc.wsoleval_scoremap`` for wsolevaluation's 224x224 bicubic + min-max).
        overwrite: replace existing files; otherwise an existing file is refused, naming it.

    Returns:
        The number of score maps written.

    Raises:
        ValueError: ids that differ from the store's, an index outside ``image_ids``, an id escaping
            ``out_root``, or a score map that is not 2-D, holds NaN, or leaves ``[0, 1]``.
        FileExistsError: a target exists and ``overwrite`` is false.
    """
    root = Path(out_root)
    ids = list(image_ids)
    stored_ids = store.meta.get("image_ids")
    if stored_ids is not None and list(stored_ids) != ids:
        raise ValueError(f"{store.dir}: the stored CAMs are of other images than the {len(ids)} image ids given")
    indices = store.read_indices().tolist()
    out_of_range = [i for i in indices if i >= len(ids)]
    if out_of_range:
        raise ValueError(f"{store.dir}: image indices {out_of_range[:5]} are outside the {len(ids)} image ids")
    paths = {i: _scoremap_path(root, ids[i]) for i in indices}
    if not overwrite:
        existing = [p for p in paths.values() if p.exists()]
        if existing:
            raise FileExistsError(f"{existing[0]} exists ({len(existing)} of {len(paths)} score maps do); "
                                  "pass overwrite=True to replace them")
    n = 0
    for batch in store.iter_batches():
        for index, cams in zip(batch["indices"].tolist(), batch["cams"]):
            scoremap = np.asarray(scoremap_fn(cams[-1].numpy()))
            # wsolevaluation's check_scoremap_validity, here so a bad map fails naming its image.
            if scoremap.ndim != 2 or not np.issubdtype(scoremap.dtype, np.floating):
                raise ValueError(f"score map of {ids[index]!r} must be a 2-D float array, "
                                 f"got {scoremap.dtype} {scoremap.shape}")
            if np.isnan(scoremap).any() or scoremap.min() < 0 or scoremap.max() > 1:
                raise ValueError(f"score map of {ids[index]!r} holds NaN or values outside [0, 1]")
            path = paths[index]
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, lambda f: np.save(f, scoremap))
            n += 1
    return n
