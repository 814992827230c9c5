"""Frozen-feature cache for the ``head`` fine-tuning recipe (and the paper's linear-SVM experiment).

When the whole backbone is frozen, the classifier only ever sees pooled features, and both poolings (GAP and
GMP) of the same feature map come out of ONE forward pass. So the features of the training split are computed
once per (model weights, input size, views, images) and reused by every head, pooling and seed:

    ``pooled[view, image, pool, K]`` float32, views = the image resized to ``image_size`` (as the evaluation
    sees it) and, with ``hflip``, its mirror; pools = ("gap", "gmp").

Cost and saving are measured in ``results/imagenette/README.md``. The cache file lives in ``cache_dir`` under a
name derived from a SHA-256 of everything the features depend on (architecture, a hash of the trunk's weights,
input size, normalisation, views, image ids, labels, data root, and a SHA-256 of the image files' bytes — files
replaced under the same names get new features); it is written atomically and loaded with ``weights_only=True``, and
a file whose recorded key differs is refused rather than reused. The cache directory must be writable before the
pass starts. A cache made under ``data.on_error=skip`` lacks the images that failed to load; a run under
``data.on_error=raise`` is refused it, naming one of them.

Training on the cache (``PooledHead``) uses the model's own ``dropout`` and ``classifier`` modules, so the
trained classifier IS the CAM classifier: no copy, and ``forward_head`` on a feature map gives the same logits as
the head on that map's pooled vector.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from wsol.data.datasets import SkippedImage, collate_skipping, load_or_skip
from wsol.data.images import ImageLoadError
from wsol.io import add_note, atomic_torch_save, check_writable_dir, load_torch_file
from wsol.models.base import POOLS, CAMNet, global_pool

log = logging.getLogger(__name__)

__all__ = ["PooledFeatures", "PooledHead", "PooledFeatureItems", "extract_pooled_features", "cached_pooled_features",
           "weights_digest", "fit_linear_svm"]

FORMAT_VERSION = 2  # 2: the key holds the files' content digest


class PooledFeatures:
    """Pooled features of a split: ``pooled [V, N, 2, K]`` (views x images x (gap, gmp) x channels).

    ``skipped`` maps the id of each image that failed to load under ``data.on_error=skip`` to the reason; its rows
    are NaN, and ``kept()`` drops them.
    """

    def __init__(self, pooled: torch.Tensor, labels: torch.Tensor, image_ids: list[str], meta: dict[str, Any],
                 skipped: dict[str, str] | None = None) -> None:
        self.pooled, self.labels, self.image_ids, self.meta = pooled, labels, image_ids, meta
        self.skipped = dict(skipped or {})

    def kept(self) -> PooledFeatures:
        """The features without the skipped images."""
        if not self.skipped:
            return self
        keep = [i for i, image_id in enumerate(self.image_ids) if image_id not in self.skipped]
        return PooledFeatures(self.pooled[:, keep], self.labels[keep], [self.image_ids[i] for i in keep], self.meta,
                              self.skipped)

    def of(self, pool: str) -> torch.Tensor:
        """``[V, N, K]`` features of one pooling."""
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; expected one of {POOLS}")
        return self.pooled[:, :, POOLS.index(pool)]


def weights_digest(module: nn.Module) -> str:
    """SHA-256 over the module's state dict (names, shapes, dtypes, bytes): identifies the frozen weights."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class _Views(Dataset):
    def __init__(self, source: Any, transform: Any) -> None:
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.source.annotations)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | SkippedImage:
        image = load_or_skip(self.source, i)
        return image if isinstance(image, SkippedImage) else (self.transform(image), i)


@torch.no_grad()
def extract_pooled_features(model: CAMNet, source: Any, *, image_size: int, hflip: bool, batch_size: int,
                            num_workers: int, device: torch.device, indices: Sequence[int] | None = None,
                            skipped: dict[str, str] | None = None, bar: Any = None,
                            what: str = "features") -> torch.Tensor:
    """One pass of ``model.forward_features`` over ``source``; GAP and GMP of each map (and of its mirror).

    Args:
        model: a ``CAMNet``; evaluated in eval mode (BatchNorm running statistics, no dropout).
        source: an ``ImageSource`` (``annotations`` + ``load(i)``).
        image_size: the whole image resized to ``image_size`` squared (``wsol.data.transforms.build_eval_transform``).
        hflip: also the mirrored view.
        indices: the images to do (default: all), in this order.
        skipped: filled with ``image id -> reason`` of each image that fails to load under the source's
            ``on_error="skip"`` (``wsol.data.datasets.load_or_skip``); their rows are NaN.
        bar: a tqdm bar of a longer pass (the cache's chunks) to advance per batch; None: a bar of its own.
        what: how the log lines name this pass (e.g. ``features, chunk 3 of 12``).

    Returns:
        float32 ``[V, N, 2, K]`` with ``V = 2 if hflip else 1`` (pools in ``POOLS`` order).
    """
    from tqdm import tqdm

    from wsol.data.transforms import build_eval_transform

    model.eval().to(device)
    dataset = _Views(source, build_eval_transform(image_size, model.mean, model.std))
    if indices is not None:
        dataset = Subset(dataset, list(indices))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False,
                        collate_fn=collate_skipping)
    views = 2 if hflip else 1
    position = {index: p for p, index in enumerate(indices if indices is not None else range(len(dataset)))}
    out: torch.Tensor | None = None
    t0, every = time.time(), max(1, len(loader) // 10)
    own_bar = bar is None
    if own_bar:
        bar = tqdm(total=len(loader), desc="features", unit="batch", disable=None)
    for b, (batch, dropped) in enumerate(loader, 1):
        bar.update(1)
        if b % every == 0:  # progress in the log too (tqdm is off without a terminal)
            log.info("%s: %d of %d batches (%.0f s)", what, b, len(loader), time.time() - t0)
        for item in dropped:
            log.warning("image skipped (data.on_error=skip): %s", item.reason)
            if skipped is not None:
                skipped[item.image_id] = item.reason
        if batch is None:
            continue
        images, index = batch
        images = images.to(device)
        per_view = []
        for v in range(views):
            feats = model.forward_features(images.flip(-1) if v else images).float()
            per_view.append(torch.stack([global_pool(feats, p) for p in POOLS], 1).cpu())  # [B, 2, K]
        pooled = torch.stack(per_view)  # [V, B, 2, K]
        if out is None:
            out = torch.full((views, len(position), *pooled.shape[2:]), float("nan"))
        out[:, [position[int(i)] for i in index]] = pooled
    if own_bar:
        bar.close()
    if out is None:
        raise RuntimeError(f"no image of {len(position)} could be loaded: " + "; ".join((skipped or {}).values()))
    return out


def cached_pooled_features(model: CAMNet, source: Any, *, arch: str, cache_dir: str | Path | None, image_size: int,
                           hflip: bool, batch_size: int, num_workers: int, device: torch.device,
                           data_root: str | None, chunk_size: int = 2048) -> PooledFeatures:
    """``extract_pooled_features`` through a cache file (module docstring); ``cache_dir=None`` disables it.

    The work is done in chunks of ``chunk_size`` images, each written as a part file as soon as it is done, so an
    interrupted extraction resumes from its finished chunks; under ``torch.distributed`` rank ``r`` does chunks
    ``r, r + W, ...`` and rank 0 joins the parts into the cache file.
    """
    from wsol.engine.distributed import barrier, get_dist

    records = source.annotations.records
    labels = torch.tensor([r.label for r in records])
    ids = [r.image_id for r in records]
    if cache_dir is None:
        t0, skipped = time.time(), {}
        pooled = extract_pooled_features(model, source, image_size=image_size, hflip=hflip, batch_size=batch_size,
                                         num_workers=num_workers, device=device, skipped=skipped)
        return PooledFeatures(pooled, labels, ids, {"cache": None, "cache_hit": False,
                                                    "extract_seconds": round(time.time() - t0, 1)}, skipped)
    check_writable_dir(Path(cache_dir), "the feature cache (paths.cache_dir, WSOL_CACHE)")  # before the long pass
    key = {"format_version": FORMAT_VERSION, "arch": arch, "trunk_sha256": weights_digest(model.backbone)
           + weights_digest(model.head), "image_size": image_size, "mean": list(model.mean), "std": list(model.std),
           "hflip": hflip, "data_root": data_root,
           "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
           "labels_sha256": hashlib.sha256(labels.numpy().astype(np.int64).tobytes()).hexdigest(),
           "content_sha256": content_digest(source)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"features-{arch}-{image_size}px-{digest}.pt"
    if not path.is_file():
        from tqdm import tqdm

        info = get_dist()
        n_chunks = (len(records) + chunk_size - 1) // chunk_size
        todo_chunks = []
        for c in range(info.rank, n_chunks, info.world_size):
            part = path.with_name(f"{path.stem}.part{c:05d}.pt")
            todo = range(c * chunk_size, min((c + 1) * chunk_size, len(records)))
            if part.is_file():
                done = load_torch_file(part, "feature cache part")
                if (done.get("key") == key and done.get("first", todo.start) == todo.start
                        and done["pooled"].shape[1] == len(todo)):
                    continue  # finished before an interruption (with the same chunk size)
            todo_chunks.append((c, part, todo))
        # one bar over the whole pass: every batch of every chunk this rank still has to do
        bar = tqdm(total=sum(-(-len(todo) // batch_size) for _, _, todo in todo_chunks), unit="batch", disable=None,
                   desc=f"features ({len(todo_chunks)} of {n_chunks} chunks to do)")
        mine = len(range(info.rank, n_chunks, info.world_size))
        kept = mine - len(todo_chunks)  # this process's finished chunks, on disk
        try:
            for c, part, todo in todo_chunks:
                t0, skipped = time.time(), {}
                bar.set_postfix_str(f"chunk {c + 1} of {n_chunks}")
                pooled = extract_pooled_features(model, source, image_size=image_size, hflip=hflip,
                                                 batch_size=batch_size, num_workers=num_workers, device=device,
                                                 indices=todo, skipped=skipped, bar=bar,
                                                 what=f"features, chunk {c + 1} of {n_chunks}")
                atomic_torch_save({"key": key, "chunk": c, "first": todo.start, "pooled": pooled,
                                   "seconds": time.time() - t0, "skipped": skipped}, part)
                kept += 1
                log.info("features: chunk %d of %d done (%d images, %.0f s)", c + 1, n_chunks, len(todo),
                         time.time() - t0)
        except (OSError, KeyboardInterrupt) as err:  # disk full, Ctrl-C: say what is kept (one line, wsol.cli)
            raise add_note(err, f"{kept} of {mine} feature chunks are kept in {path.parent}; the next run with the "
                                "same inputs continues from them")
        finally:
            bar.close()
        barrier()
        if info.is_main:
            parts = [load_torch_file(path.with_name(f"{path.stem}.part{c:05d}.pt"), "feature cache part")
                     for c in range(n_chunks)]
            if any(p.get("key") != key for p in parts):
                raise ValueError(f"{path.parent}: a feature cache part was made for other inputs; delete the parts")
            seconds = round(sum(float(p["seconds"]) for p in parts), 1)
            skipped = {k: v for p in parts for k, v in p.get("skipped", {}).items()}
            try:
                atomic_torch_save({"key": key, "pooled": torch.cat([p["pooled"] for p in parts], 1),
                                   "labels": labels, "image_ids": ids, "seconds": seconds, "skipped": skipped}, path)
            except (OSError, KeyboardInterrupt) as err:  # the parts are deleted only once the joined file is there
                raise add_note(err, f"all {n_chunks} feature chunks are kept in {path.parent}; the next run with the "
                                    "same inputs joins them without computing them again")
            for stale in path.parent.glob(f"{path.stem}.part*.pt"):  # also parts of an earlier chunk size
                stale.unlink()
            log.info("pooled features of %d images cached in %s (%.0f s of extraction)", len(records), path, seconds)
        barrier()
        hit = False
    else:
        hit = True
    state = load_torch_file(path, "feature cache")
    if state.get("key") != key:
        raise ValueError(f"{path}: feature cache made for other inputs (its key differs); delete it")
    if state["image_ids"] != ids or not torch.equal(state["labels"], labels):
        raise ValueError(f"{path}: feature cache of other images or labels; delete it")
    if hit:
        log.info("pooled features from the cache %s", path)
    skipped = state.get("skipped", {})
    if skipped and getattr(source, "on_error", "raise") != "skip":
        first = next(iter(skipped.values()))
        raise ImageLoadError(f"{path}: made under data.on_error=skip, it lacks {len(skipped)} training image(s) that "
                             f"failed to load, e.g. {first}; under data.on_error=raise they are errors (fix the "
                             "files, or set data.on_error=skip)")
    return PooledFeatures(state["pooled"], state["labels"], list(state["image_ids"]),
                          {"cache": str(path), "cache_hit": hit, "extract_seconds": state["seconds"]},
                          state.get("skipped", {}))


def content_digest(source: Any, workers: int = 8) -> str | None:
    """SHA-256 over the bytes of every image file of ``source`` (record order): the cache key's content part, so that
    files replaced under the same names are not served stale features.

    Reading the files costs about as much as listing them for small images (Imagenette2 at 224 px: ~12k files, a
    second or two); a source without files (the generated synthetic set) has no content digest (None: its ids,
    labels and generator settings define it). A file that cannot be read counts as its error message, so a broken
    file fails later in the pass with the usual message and policy.
    """
    from concurrent.futures import ThreadPoolExecutor

    image_path = getattr(source, "image_path", None)
    if image_path is None:
        return None

    def one(index: int) -> bytes:
        h = hashlib.sha256()
        try:
            with open(image_path(index), "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except (OSError, ValueError) as err:  # ValueError: an id that leaves the image root (safe_join)
            h.update(f"unreadable: {err}".encode())
        return h.digest()

    total = hashlib.sha256()
    with ThreadPoolExecutor(max_workers=workers) as pool:  # hashlib releases the GIL
        for d in pool.map(one, range(len(source.annotations)), chunksize=64):
            total.update(d)
    return total.hexdigest()


class PooledFeatureItems(Dataset):
    """Training items ``(pooled vector [K], label, index)``; the view (plain or mirrored) is drawn per item.

    Wrapped in ``wsol.engine.trainer.SeededAugmentation``, the draw is seeded by ``(seed, epoch, index)``: the
    cache equivalent of a random horizontal flip, and exactly resumable.
    """

    def __init__(self, feats: torch.Tensor, labels: torch.Tensor) -> None:
        if feats.ndim != 3 or feats.shape[1] != len(labels):
            raise ValueError(f"features must be [V, N={len(labels)}, K], got {tuple(feats.shape)}")
        self.feats, self.labels = feats, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        view = int(torch.randint(self.feats.shape[0], ())) if self.feats.shape[0] > 1 else 0
        return self.feats[view, index], int(self.labels[index]), index


class PooledHead(nn.Module):
    """``classifier(dropout(v))`` over pooled vectors, sharing the modules of a ``CAMNet``."""

    def __init__(self, model: CAMNet) -> None:
        super().__init__()
        self.dropout, self.classifier = model.dropout, model.classifier

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(pooled))


def fit_linear_svm(features: torch.Tensor, labels: torch.Tensor, *, C: float, seed: int,
                   max_iter: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """The paper's section 4 classifier: a one-vs-rest linear SVM (scikit-learn ``LinearSVC``) on pooled features.

    Features are used as they are (no scaling), so that ``w . f + b`` on a pooled vector is what the CAM of the
    resulting classifier sums over space — the CAM identity holds for the SVM as for a trained fc layer.

    Args:
        features: ``[N, K]`` pooled features.
        labels: ``[N]`` class indices (every class of the dataset must appear).
        C: SVM regularisation.
        seed: ``random_state`` of the dual coordinate descent.
        max_iter: iteration cap (a ``ConvergenceWarning`` is reported in the returned info).

    Returns:
        ``(weight [C, K], bias [C], info)``.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    svm = LinearSVC(C=C, random_state=seed, max_iter=max_iter, dual="auto")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        svm.fit(features.double().numpy(), labels.numpy())
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    coef, intercept = svm.coef_, svm.intercept_
    if coef.shape[0] == 1:  # binary: scikit-learn keeps one row (class 1 vs 0)
        coef, intercept = np.concatenate([-coef, coef]), np.concatenate([-intercept, intercept])
    info = {"svm_C": C, "svm_converged": converged, "svm_iterations": int(np.max(svm.n_iter_))}
    return torch.from_numpy(coef).float(), torch.from_numpy(intercept).float(), info
