"""Compact, sharded, resumable storage of CAMs, so any protocol can be re-scored without the network.

What is stored per image (as the inference loop computes it): the top-k predicted classes and then the GT class
(``classes [k+1]``, int64), their softmax probabilities (``scores [k+1]``, float32), the CAMs of those classes at
feature-map resolution (``cams [k+1, h, w]``, float16), the image's index into its split's records (``indices``)
and the ``(width, height)`` of the image its GT boxes refer to (``sizes [2]``). ILSVRC val (50k images, 7x7 maps,
k = 5) takes ~30 MB.

float16, stated once here: CAMs are rounded to nearest (relative error <= 2**-11). When a store is written, the
evaluation scores the ROUNDED maps, so re-scoring the store, or resuming an interrupted evaluation from it, gives
exactly the numbers of the original run. A finite CAM value beyond the float16 range (65504) is refused with an
error naming the image index instead of being stored as inf; NaN/inf are stored as they are and counted.

Layout of a store directory (format 2):
    shard_r<RRR>_<NNNNN>.pt   dicts of tensors (``torch.save``; read with ``weights_only=True``) with keys
                              ``indices, sizes, classes, scores, cams``, at most ``shard_size`` images each;
                              rank RRR's N-th shard (one shard set per rank under ``torch.distributed``).
    journal_r<RRR>.json       rank RRR's finished shards (file, count, indices, statistics) and the store's
                              ``meta``; rewritten atomically after every shard. An interrupted evaluation is
                              resumed from the journals: finished shards are re-scored, the rest recomputed, so a
                              kill costs at most one shard of work per rank.
    index.json                written last by rank 0, only when every rank is done: ``format_version``,
                              ``num_images``, ``dtype``, ``cam_shape`` ``[k+1, h, w]``, ``shards`` and ``meta``.
                              A directory without it is an incomplete store, refused by the reader.
``meta`` records what the CAMs were computed from: the data config, the split's image ids and labels (as SHA-256
digests and the id list), the architecture, pooling, top-k, input size, the map (``cam_method``: ``cam`` or a
post-hoc map; absent from stores made before post-hoc maps, which hold CAMs) and a digest of the model weights. A
store is re-scored only against the same images (``check_matches``) and map, and a resume only with the same meta.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from wsol.engine.distributed import all_gather_objects, barrier, get_dist
from wsol.io import add_note, atomic_torch_save, atomic_write, atomic_write_json, load_torch_file, safe_join

__all__ = ["FORMAT_VERSION", "CAMStore", "CAMStoreWriter", "export_wsoleval_scoremaps", "records_digest",
           "is_complete_store", "check_matches"]

#: Version of the on-disk layout; the reader refuses any other.
FORMAT_VERSION = 2
_INDEX = "index.json"
_DTYPE = torch.float16
_FP16_MAX = float(torch.finfo(_DTYPE).max)  # 65504
_KEYS = ("indices", "sizes", "classes", "scores", "cams")
_SHARD_RE = re.compile(r"shard_r(\d{3})_(\d{5})\.pt")
_JOURNAL_RE = re.compile(r"journal_r(\d{3})\.json")


def records_digest(records: Sequence[Any]) -> dict[str, Any]:
    """Identity of a split's images: SHA-256 of the ordered ids and of the labels, and their number."""
    ids = "\n".join(r.image_id for r in records).encode()
    labels = np.array([r.label for r in records], dtype=np.int64).tobytes()
    return {"num_images": len(records), "image_ids_sha256": hashlib.sha256(ids).hexdigest(),
            "labels_sha256": hashlib.sha256(labels).hexdigest()}


def is_complete_store(path: str | Path) -> bool:
    """Whether ``path`` holds a finished store (``index.json``)."""
    return (Path(path) / _INDEX).is_file()


def check_matches(meta: dict[str, Any], records: Sequence[Any], where: str | Path) -> None:
    """Refuse to score stored CAMs against other images than the ones they were computed on.

    Raises:
        ValueError: naming what differs (number of images, ids or labels).
    """
    current = records_digest(records)
    for key, what in (("num_images", "number of images"), ("image_ids_sha256", "image ids (or their order)"),
                      ("labels_sha256", "labels")):
        if meta.get(key) != current[key]:
            raise ValueError(f"{where}: the stored CAMs are of other data than this split: the {what} differ "
                             f"(store: {meta.get('dataset')!r} split {meta.get('split')!r}, "
                             f"{meta.get('num_images')} images; here {current['num_images']} images)")


# ----------------------------------------------------------------------------- writer
class CAMStoreWriter:
    """Buffers batches of CAMs and writes a shard each time ``shard_size`` images have accumulated.

    ``close()`` writes the last partial shard, waits for every rank, and rank 0 writes ``index.json``. On an
    exception (a context manager's ``__exit__``) nothing more is written: the journals let a later run resume.

    Args:
        out_dir: the store directory (created if needed).
        meta: JSON-serialisable description (module docstring); must hold ``topk``.
        shard_size: images per shard (bounds the reader's memory and the work a kill can cost; ``eval.shard_size``).
        resume: continue an incomplete store with the same ``meta`` (its finished indices are in
            ``done_indices``); without it, a directory holding a store or shards is refused.

    Raises:
        ValueError: bad ``shard_size``, non-serialisable ``meta``, or (resume) a store made with another meta.
        FileExistsError: ``out_dir`` already holds a complete store, or shards while ``resume`` is false.
    """

    def __init__(self, out_dir: str | Path, *, meta: dict[str, Any], shard_size: int,
                 resume: bool = False) -> None:
        if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
            raise ValueError(f"shard_size must be an int >= 1, got {shard_size!r}")
        try:
            json.dumps(meta, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"CAM store meta must be JSON-serialisable: {err}") from err
        if "topk" not in meta:
            raise ValueError("CAM store meta must record topk")
        self.dir, self.meta, self.shard_size = Path(out_dir), dict(meta), shard_size
        self.dist = get_dist()
        if (self.dir / _INDEX).exists():
            raise FileExistsError(f"{self.dir / _INDEX}: a complete CAM store is already there")
        self.done_indices: set[int] = set()
        self._entries: list[dict[str, Any]] = []  # this rank's finished shards
        journals = sorted(self.dir.glob("journal_r*.json")) if self.dir.is_dir() else []
        shards = sorted(self.dir.glob("shard_r*.pt")) if self.dir.is_dir() else []
        if (journals or shards) and not resume:
            raise FileExistsError(f"{self.dir}: holds an incomplete CAM store ({(journals or shards)[0].name} ...); "
                                  "resume it (eval.resume=true), delete it, or choose another run dir")
        barrier()  # every rank has looked before any rank changes the directory
        where: dict[int, str] = {}  # image index -> the journaled shard holding it
        files: set[str] = set()
        for journal in journals:
            entry = json.loads(journal.read_text())
            if entry.get("meta") != self.meta:
                raise ValueError(f"{journal}: cannot resume, this store was written for other inputs "
                                 f"(model, data or settings differ); delete {self.dir} or use another run dir")
            for shard in entry["shards"]:
                if shard["file"] in files:  # a copied journal: its shards would be indexed twice
                    raise ValueError(f"{journal}: shard {shard['file']} is journaled twice; delete {self.dir} and "
                                     "evaluate again")
                files.add(shard["file"])
                _claim(where, shard["indices"], shard["file"], self.dir)
                self.done_indices.update(shard["indices"])
            if int(_JOURNAL_RE.fullmatch(journal.name).group(1)) == self.dist.rank:  # type: ignore[union-attr]
                self._entries = list(entry["shards"])
        journaled = {s["file"] for j in journals for s in json.loads(j.read_text())["shards"]}
        for shard in shards:  # written but not journaled (killed between rename and journal): recomputed
            m = _SHARD_RE.fullmatch(shard.name)
            if shard.name not in journaled and m and int(m.group(1)) == self.dist.rank:
                shard.unlink()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._buffer: dict[str, list[torch.Tensor]] = {k: [] for k in _KEYS}
        self._buffered = 0
        self._seen: set[int] = set()
        self._cam_shape: tuple[int, ...] | None = None
        self._closed = False

    def add(self, indices: torch.Tensor, sizes: torch.Tensor, classes: torch.Tensor, scores: torch.Tensor,
            cams: torch.Tensor) -> None:
        """Add one batch of ``B`` images (shapes as in the module docstring); refused batches change nothing.

        Raises:
            RuntimeError: the writer is closed.
            ValueError: wrong shapes or dtypes, ``k+1`` differing from ``meta["topk"] + 1``, a negative or repeated
                index, a non-positive size, or a finite CAM value beyond the float16 range (naming the images).
        """
        if self._closed:
            raise RuntimeError(f"{self.dir}: CAM store writer is closed")
        indices, sizes, classes, scores, cams = (t.detach().cpu() for t in (indices, sizes, classes, scores, cams))
        self._check_batch(indices, sizes, classes, scores, cams)
        values = {"indices": indices.long(), "sizes": sizes.long(), "classes": classes.long(),
                  "scores": scores.float(), "cams": cams.to(_DTYPE)}
        for key in _KEYS:
            self._buffer[key].append(values[key])
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
        topk = int(self.meta["topk"])
        if cams.shape[1] != topk + 1:
            raise ValueError(f"batch holds {cams.shape[1]} classes per image but meta topk={topk} "
                             f"means {topk + 1} (top-k then the GT class)")
        if self._cam_shape is not None and tuple(cams.shape[1:]) != self._cam_shape:
            raise ValueError(f"cams of shape [B,{','.join(map(str, cams.shape[1:]))}] differ from the store's "
                             f"[B,{','.join(map(str, self._cam_shape))}] (fixed by the first batch)")
        ids = indices.tolist()
        bad = [i for i in ids if i < 0]
        if bad:
            raise ValueError(f"negative image indices {bad[:5]}")
        unique = set(ids)
        if len(unique) != len(ids) or not self._seen.isdisjoint(unique) or not self.done_indices.isdisjoint(unique):
            repeated = sorted((unique & (self._seen | self.done_indices)) | {i for i in ids if ids.count(i) > 1})
            raise ValueError(f"image indices {repeated[:5]} are repeated in the CAM store")
        small = (sizes <= 0).any(1)
        if small.any():
            raise ValueError(f"non-positive (width, height) for image indices {indices[small].tolist()[:5]}")
        if cams.dtype != _DTYPE and cams.numel():
            flat = cams.flatten(1)
            over = (flat.abs() > _FP16_MAX) & torch.isfinite(flat)
            rows = over.any(1)
            if rows.any():
                worst = float(flat[over].abs().max())
                raise ValueError(f"CAM of image indices {indices[rows].tolist()[:5]} exceeds the float16 range "
                                 f"(|value| up to {worst:.6g} > {_FP16_MAX:g}); storing it would give inf")

    def _write_full_shards(self) -> None:
        merged = {k: torch.cat(v) for k, v in self._buffer.items()}
        start = 0
        while self._buffered - start >= self.shard_size:
            self._write_shard({k: v[start:start + self.shard_size] for k, v in merged.items()})
            start += self.shard_size
        self._buffer = {k: [v[start:].clone()] for k, v in merged.items()}  # the remainder only
        self._buffered -= start

    def finished_shards(self) -> int:
        """This process's shards written and journaled so far (resumed ones included)."""
        return len(self._entries)

    def _write_shard(self, shard: dict[str, torch.Tensor]) -> None:
        shard = {k: v.clone() for k, v in shard.items()}  # torch.save of a view writes the whole storage
        taken = {int(_SHARD_RE.fullmatch(e["file"]).group(2)) for e in self._entries}  # type: ignore[union-attr]
        number = max(taken, default=-1) + 1
        name = f"shard_r{self.dist.rank:03d}_{number:05d}.pt"
        cams = shard["cams"].float()
        finite = torch.isfinite(cams)
        entry = {"file": name, "count": len(shard["indices"]), "indices": shard["indices"].tolist(),
                 "max_abs_cam": float(cams[finite].abs().max()) if finite.any() else 0.0,
                 "nonfinite": int((~finite).sum())}
        try:
            atomic_torch_save(shard, self.dir / name)
            # the journal makes the shard count: a kill before this line only costs the shard's recomputation
            atomic_write_json(self.dir / f"journal_r{self.dist.rank:03d}.json", {"meta": self.meta,
                                                                                "shards": [*self._entries, entry]})
        except OSError as err:  # disk full: the journaled shards stay valid, a rerun continues from them
            raise add_note(err, f"{len(self._entries)} finished CAM shard(s) are kept in {self.dir}; the same command "
                                "in this run dir continues from them (eval.resume=true)")
        self._entries.append(entry)

    def close(self) -> None:
        """Write the last partial shard; rank 0 writes ``index.json`` once every rank is done. Idempotent."""
        if self._closed:
            return
        if self._buffered:
            self._write_shard({k: torch.cat(v) for k, v in self._buffer.items()})
            self._buffer = {k: [] for k in _KEYS}
            self._buffered = 0
        shapes = [s for s in all_gather_objects(self._cam_shape) if s is not None]
        barrier()
        if self.dist.is_main:
            journals = sorted(self.dir.glob("journal_r*.json"))
            shards = [s for j in journals for s in json.loads(j.read_text())["shards"]]
            num = sum(s["count"] for s in shards)
            cam_shape = list(shapes[0]) if shapes else None
            if cam_shape is None and shards:  # every image came from a resumed journal: read one shard's shape
                cam_shape = list(load_torch_file(self.dir / shards[0]["file"], "CAM shard")["cams"].shape[1:])
            index = {"format_version": FORMAT_VERSION, "num_images": num, "dtype": "float16",
                     "cam_shape": cam_shape, "shards": [{k: v for k, v in s.items() if k != "indices"}
                                                        for s in shards], "meta": self.meta}
            try:
                atomic_write_json(self.dir / _INDEX, index)
            except OSError as err:
                raise add_note(err, f"all {len(shards)} CAM shards are kept in {self.dir}; the same command in this "
                                    "run dir indexes them without computing them again (eval.resume=true)")
            for j in journals:
                j.unlink()
        barrier()
        self._closed = True

    def __enter__(self) -> CAMStoreWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            self.close()


# ----------------------------------------------------------------------------- reader
class CAMStore:
    """Reader of a complete store; holds at most one shard in memory.

    Args:
        path: the store directory.

    Attributes:
        meta: what the CAMs were computed from (module docstring).
        index: the whole parsed ``index.json``.
        topk: number of predicted classes per image (the GT class's CAM is the extra, last one).

    Raises:
        FileNotFoundError: no ``index.json`` (incomplete store), or a shard listed in it is missing.
        ValueError: unreadable ``index.json``, unsupported format version or dtype, inconsistent counts.
    """

    def __init__(self, path: str | Path) -> None:
        self.dir = Path(path)
        index_path = self.dir / _INDEX
        if not index_path.is_file():
            hint = " (an interrupted evaluation: rerun it with eval.resume=true to finish it)" \
                if any(self.dir.glob("journal_r*.json")) else ""
            raise FileNotFoundError(f"{index_path} missing: {self.dir} is not a complete CAM store{hint}")
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
        listed: set[str] = set()
        for entry in index["shards"]:
            if not _SHARD_RE.fullmatch(str(entry["file"])):
                raise ValueError(f"{index_path}: shard name {entry['file']!r} is not a store shard name")
            if entry["file"] in listed:  # its images would be scored twice
                raise ValueError(f"{index_path}: shard {entry['file']} is listed twice")
            listed.add(entry["file"])
            if not (self.dir / entry["file"]).is_file():
                raise FileNotFoundError(f"{self.dir / entry['file']}: shard listed in {_INDEX} is missing")
        self.index: dict[str, Any] = index
        self.meta: dict[str, Any] = index["meta"]
        self.topk = int(self.meta["topk"])

    def __len__(self) -> int:
        return int(self.index["num_images"])

    def _load_shard(self, entry: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One shard, checked against ``index.json`` (keys, count, shapes, dtypes)."""
        path = self.dir / entry["file"]
        shard = load_torch_file(path, "CAM shard")
        if set(shard) != set(_KEYS):
            raise ValueError(f"{path}: not a CAM shard (keys {sorted(shard)}, expected {list(_KEYS)})")
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
        """Batches in store order, one shard in memory at a time; ``cams`` as float32 (copies).

        Raises:
            ValueError: an image index held by two shards (a copied shard: its images would count twice), naming
                both files; checked for each shard before any of its batches is yielded.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        where: dict[int, str] = {}  # image index -> the shard holding it
        for entry in self.index["shards"]:
            shard = self._load_shard(entry)
            _claim(where, shard["indices"], entry["file"], self.dir)
            for start in range(0, int(entry["count"]), batch_size):
                batch = {k: v[start:start + batch_size].clone() for k, v in shard.items() if k != "cams"}
                batch["cams"] = shard["cams"][start:start + batch_size].float()
                yield batch
            del shard

    def read_indices(self) -> torch.Tensor:
        """int64 ``[N]``: every stored image index in store order (each once: refused as ``iter_batches``)."""
        where: dict[int, str] = {}
        parts = []
        for entry in self.index["shards"]:
            indices = self._load_shard(entry)["indices"]
            _claim(where, indices, entry["file"], self.dir)
            parts.append(indices)
        return torch.cat(parts or [torch.zeros(0, dtype=torch.int64)])


def _claim(where: dict[int, str], indices: torch.Tensor | Sequence[int], file: str, store_dir: Path) -> None:
    """Record that shard ``file`` holds ``indices``; an index already held (by another shard or twice by this one)
    is refused, naming the files: its image would be scored twice."""
    seen: set[int] = set()
    for i in (indices.tolist() if isinstance(indices, torch.Tensor) else indices):
        if i in seen or where.setdefault(i, file) != file:
            raise ValueError(_duplicate_message(store_dir, i, where[i], file))
        seen.add(i)


def _duplicate_message(store_dir: Path, index: int, first: str, second: str) -> str:
    where = f"both {first} and {second}" if first != second else f"{first} twice"
    return (f"{store_dir}: image index {index} is stored in {where} (a duplicated shard?): its image would be scored "
            "twice; delete the store and evaluate again")


def iter_journaled_batches(out_dir: str | Path, wanted: set[int],
                           batch_size: int = 256) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of the finished shards of an INCOMPLETE store (journals), restricted to the ``wanted`` indices.

    Used to resume an interrupted evaluation: those images are scored from their stored CAMs.
    """
    out_dir = Path(out_dir)
    for journal in sorted(out_dir.glob("journal_r*.json")):
        for entry in json.loads(journal.read_text())["shards"]:
            if wanted.isdisjoint(entry["indices"]):
                continue
            shard = load_torch_file(out_dir / entry["file"], "CAM shard")
            keep = torch.tensor([int(i) in wanted for i in shard["indices"].tolist()], dtype=torch.bool)
            part = {k: v[keep] for k, v in shard.items()}
            for start in range(0, int(keep.sum()), batch_size):
                batch = {k: v[start:start + batch_size].clone() for k, v in part.items() if k != "cams"}
                batch["cams"] = part["cams"][start:start + batch_size].float()
                yield batch


# ----------------------------------------------------------------------------- wsolevaluation export
def _scoremap_path(root: Path, image_id: str) -> Path:
    """``<root>/<image_id>.npy``; the id keeps its extension and sub-folders and may not leave ``root``."""
    path = safe_join(root, image_id)  # the one rule for ids (wsol.io), checked before touching the disk
    return path.with_name(path.name + ".npy")


def export_wsoleval_scoremaps(store: CAMStore, image_ids: Sequence[str], out_root: str | Path,
                              scoremap_fn: Callable[[np.ndarray], np.ndarray], *, overwrite: bool = False) -> int:
    """Write wsolevaluation-format score maps ``<out_root>/<image_id>.npy`` from each GT-class CAM.

    The GT class's CAM is the LAST of an image's ``k+1`` maps; it goes through ``scoremap_fn`` as float32
    ``[h, w]`` and the result is saved as returned (e.g. ``val/a.JPEG`` -> ``<out_root>/val/a.JPEG.npy``).
    Everything is checked before the first file is written; each file is written atomically.

    Raises:
        ValueError: an index outside ``image_ids``, an id escaping ``out_root``, or a score map that is not 2-D,
            holds NaN, or leaves ``[0, 1]``.
        FileExistsError: a target exists and ``overwrite`` is false.
    """
    root = Path(out_root)
    ids = list(image_ids)
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
            if scoremap.ndim != 2 or not np.issubdtype(scoremap.dtype, np.floating):
                raise ValueError(f"score map of {ids[index]!r} must be a 2-D float array, "
                                 f"got {scoremap.dtype} {scoremap.shape}")
            if np.isnan(scoremap).any() or scoremap.min() < 0 or scoremap.max() > 1:
                raise ValueError(f"score map of {ids[index]!r} holds NaN or values outside [0, 1]")
            atomic_write(paths[index], lambda f: np.save(f, scoremap))
            n += 1
    return n
