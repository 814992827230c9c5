"""What ``wsol-run``, ``wsol-train`` and ``wsol-evaluate`` do, from a composed config (entry-point layer).

Order of work, so that a mistake costs seconds, not a training run:
    1. ``check_values`` on the whole config (ranges, choices, data options), every problem at once;
    2. build everything the run will need — the model (weights files), every split it will read (data root, ground
       truth, image headers per ``check_files``), the optimizer — collecting every failure;
    3. only then train and evaluate.
A finished run (``metrics.json`` with the same config) is not redone; a training run resumes from its checkpoint
(``train.resume``), an evaluation with a CAM store from its finished shards (``eval.resume``). Nothing a run dir
holds is replaced by a run with other settings: a finished run is refused naming what changed, and so is a new
training over the checkpoint of an unfinished one (``train.resume`` continues it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig

from wsol.cli import ConfigError
from wsol.config import (check_values, config_fingerprint, method_from_cfg, model_from_cfg, protocol_settings,
                         source_from_cfg, split_name, to_dict, train_settings, train_transform_from_cfg, value)
from wsol.io import add_note

log = logging.getLogger(__name__)

__all__ = ["Job", "prepare_job", "completed_row", "resolve_resume", "train_job", "evaluate_job", "rescore_job",
           "store_split_roles"]


@dataclass
class Job:
    """Everything built from the config before any expensive work."""

    cfg: DictConfig
    out_dir: Path
    device: torch.device
    model: Any = None
    arch: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    train_source: Any = None
    eval_source: Any = None
    heldout_source: Any = None
    settings: Any = None
    protocol: Any = None
    resume: Path | None = None


def _attempt(problems: list[str], what: str, fn: Callable[[], Any]) -> Any:
    """Run a build step, turning a user error into a collected problem (None returned)."""
    from wsol.cli import USER_ERRORS

    try:
        return fn()
    except USER_ERRORS as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        problems.append(f"{what}: {msg}")
        return None


def resolve_resume(resume: str | None, out_dir: Path, *, named: bool) -> Path | None:
    """The checkpoint ``train.resume`` asks for (None: start from scratch).

    ``auto`` continues this run dir's ``checkpoints/last.pt``; with none there, a NAMED run dir (``name=...``, an
    explicit ``hydra.run.dir``, a sweep job) starts its run, but a new timestamped dir is refused — there cannot be
    anything to continue in it, and silently starting over is what a user who forgot the run name would get.
    A PATH is a run dir (its ``checkpoints/last.pt``) or a checkpoint file; it must exist.
    """
    if resume in (None, ""):
        return None
    if resume == "auto":
        ckpt = out_dir / "checkpoints" / "last.pt"
        if ckpt.is_file():
            return ckpt
        if named:
            log.info("train.resume=auto: no checkpoint in %s yet, starting the run", out_dir)
            return None
        raise ValueError(f"train.resume=auto: no checkpoint in {out_dir}, a new timestamped run dir. Name the run to "
                         "resume (name=NAME: outputs/<task>/NAME) or pass train.resume=PATH (a run dir or checkpoint)")
    path = Path(resume)
    ckpt = path / "checkpoints" / "last.pt" if path.is_dir() else path
    if not ckpt.is_file():
        raise FileNotFoundError(f"train.resume={resume}: no checkpoint at {ckpt}")
    return ckpt


def completed_row(out_dir: Path, cfg: DictConfig) -> dict[str, Any] | None:
    """The ``metrics.json`` of a finished run with the same config (a re-launched job is not redone); None when
    ``out_dir`` holds no finished run. Checked first, before anything is built.

    Raises:
        FileExistsError: ``out_dir`` holds a finished run made with other settings (naming what changed): its
            ``metrics.json``, ``model.pt`` and ``predictions.csv`` are never replaced by another config's. Or a
            training without ``train.resume`` would start over the checkpoint of an earlier one.
    """
    path = out_dir / "metrics.json"
    ckpt = out_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        if "train" in cfg and cfg.train.resume in (None, "") and ckpt.is_file():  # would be overwritten silently
            raise FileExistsError(f"{out_dir} holds the checkpoint of an earlier training ({ckpt}); continue it with "
                                  "train.resume=auto, or choose another run name (name=...) or run dir, or delete "
                                  f"{out_dir} to start over")
        return None
    current = config_fingerprint(cfg)
    try:
        row = json.loads(path.read_text())
        saved = json.loads(row["config_fingerprint"])
    except (ValueError, KeyError, TypeError) as err:
        changed = f"its config cannot be read from {path} ({type(err).__name__}: {err})"
    else:
        if saved == current:
            return row
        diff = _config_diff(saved, current)
        changed = "changed: " + "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
    raise FileExistsError(f"{out_dir} holds a finished run made with other settings ({changed}); it is kept: choose "
                          f"another run name (name=...) or run dir, or delete {out_dir} to redo it")


def _config_diff(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs between two config fingerprints (dotted keys)."""
    out = []
    for key in sorted(set(saved) | set(current), key=str):
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def prepare_job(cfg: DictConfig, out_dir: Path, *, train: bool, evaluate: bool, named: bool = False,
                checkpoint: str | None = None) -> Job:
    """Validate the whole config and build what the run needs; every problem is reported at once.

    Raises:
        ConfigError: listing every problem found.
    """
    from wsol.engine.checkpoint import load_model_file, model_spec
    from wsol.engine.cpu_malloc import set_cpu_malloc
    from wsol.engine.distributed import init_distributed
    from wsol.engine.trainer import resolve_device, seed_everything

    problems = check_values(cfg)
    if problems:  # the values are wrong: building with them would only add noise
        raise ConfigError(problems)
    init_distributed(cfg.device)
    job = Job(cfg=cfg, out_dir=out_dir, device=resolve_device(cfg.device))
    if job.device.type == "cpu":
        set_cpu_malloc(value(cfg.cpu_malloc))
    seed_everything(cfg.seed)
    data = cfg.data
    if checkpoint:
        state = _attempt(problems, f"checkpoint={checkpoint}", lambda: load_model_file(checkpoint))
        if state is not None:
            from wsol.models import build_model

            spec = state["spec"]
            job.model = _attempt(problems, "checkpoint model", lambda: _load(_with_method(build_model(
                spec["name"], num_classes=spec["num_classes"], pool=spec["pool"], pretrained=False, **spec["kwargs"]),
                spec.get("method")), state["model"], checkpoint))
            job.arch, job.spec = spec["name"], spec
    else:
        job.model = _attempt(problems, f"model={cfg.model.name}", lambda: model_from_cfg(cfg.model, data.num_classes))
        method = None
        if job.model is not None and "method" in cfg:
            method = _attempt(problems, f"method={cfg.method.name}", lambda: method_from_cfg(cfg.method))
            if method is not None and _attempt(problems, f"method={method.name}",
                                               lambda: method.attach(job.model) or True) is None:
                method = None
        if job.model is not None:
            job.arch = cfg.model.name
            job.spec = model_spec(cfg.model.name, job.model.num_classes, value(cfg.model.pool),
                                  to_dict(cfg.model.get("kwargs")), method.spec() if method is not None else None)
    n = job.model.num_classes if job.model is not None else None
    if job.model is not None and data.num_classes is not None and n != data.num_classes:
        problems.append(f"the model has {n} classes but dataset {data.name!r} has {data.num_classes} "
                        "(data.num_classes)")
    if train:
        job.settings = _attempt(problems, "train", lambda: train_settings(cfg.train))
        job.train_source = _attempt(problems, f"data={data.name} split {data.train_split!r}",
                                    lambda: source_from_cfg(data, split_name(data, "train"), n))
        if job.settings is not None and job.model is not None and job.settings.recipe == "last_stage":
            _attempt(problems, "train.recipe=last_stage", job.model.last_stage_modules)
        if job.settings is not None and job.model is not None and job.model.train_method is not None:
            _attempt(problems, f"method={job.model.train_method.name}",
                     lambda: job.model.train_method.check(job.model, job.settings.recipe))
        job.resume = _attempt(problems, "train.resume", lambda: resolve_resume(cfg.train.resume, out_dir,
                                                                                named=named))
    if evaluate:
        job.protocol = _attempt(problems, "eval", lambda: protocol_settings(cfg))
        job.eval_source = _attempt(problems, f"data={data.name} split {cfg.eval.split!r}",
                                   lambda: source_from_cfg(data, split_name(data, cfg.eval.split), n))
        if value(cfg.eval.tau_policy) == "heldout" and value(cfg.eval.protocol) == "wsolevaluation":
            job.heldout_source = _attempt(problems, f"data={data.name} held-out split",
                                          lambda: source_from_cfg(data, split_name(data, "val"), n))
    if problems:
        raise ConfigError(problems)
    return job


def _with_method(model: Any, method: dict[str, Any] | None) -> Any:
    """``model`` with the training-time method of its spec attached (its layers, its map) before loading weights."""
    from wsol.methods import attach_method

    attach_method(model, method)
    return model


def _load(model: Any, state: dict[str, Any], path: str) -> Any:
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit the architecture in its spec ({str(err).splitlines()[0]})") \
            from err
    return model


def train_job(job: Job, *, stop_after: int | None = None) -> Any:
    """Train ``job.model`` with ``job.settings`` (resuming ``job.resume``); ``model.pt`` lands in the run dir."""
    from wsol.data.datasets import WSOLDataset
    from wsol.engine.distributed import get_dist
    from wsol.engine.recipes import train_fingerprint, train_model

    cfg = job.cfg
    data = cfg.data
    # the data settings that shape the training (not how strictly files are checked)
    checks = ("on_error", "check_files", "train_check_files", "max_image_pixels")
    fingerprint = train_fingerprint(job.settings, seed=cfg.seed, spec=job.spec,
                                    data={k: v for k, v in to_dict(data).items() if k not in checks},
                                    world_size=get_dist().world_size)
    log.info("training %s (%s, recipe %s) on %s: %d images", job.arch, job.model.pool, job.settings.recipe,
             data.name, len(job.train_source.annotations))
    return train_model(job.model, job.train_source, job.out_dir, settings=job.settings, seed=cfg.seed, spec=job.spec,
                       fingerprint=fingerprint, device=job.device,
                       make_train_dataset=lambda m: WSOLDataset(job.train_source, train_transform_from_cfg(data, m)),
                       image_size=data.image_size, cache_dir=cfg.paths.cache_dir, arch=job.arch,
                       data_root=None if data.root is None else str(data.root), resume=job.resume,
                       stop_after=stop_after)


def _store_meta(job: Job) -> dict[str, Any]:
    from wsol.engine.features import weights_digest
    from wsol.evaluation.protocols import producer_kind
    from wsol.evaluation.store import records_digest

    cfg, s = job.cfg, job.protocol
    return {"dataset": cfg.data.name, "data": to_dict(cfg.data), "split": split_name(cfg.data, cfg.eval.split),
            **records_digest(job.eval_source.annotations.records), "arch": job.arch, "pool": job.model.pool,
            "topk": min(s.topk, job.model.num_classes), "image_size": cfg.data.image_size,
            "producer": producer_kind(s.protocol), "cam_method": s.cam_method,
            "model_sha256": weights_digest(job.model), **({"fused": True} if cfg.eval.fused else {})}


def _row_head(cfg: DictConfig, *, arch: str, pool: str, split: str, data_root: Any) -> dict[str, Any]:
    return {"dataset": cfg.data.name, "data_root": None if data_root is None else str(data_root), "split": split,
            "arch": arch, "pool": pool, "seed": cfg.seed, "image_size": cfg.data.image_size}


def _write_outputs(out_dir: Path, out: Any, write_rows: bool) -> None:
    import pandas as pd

    from wsol.engine.distributed import get_dist
    from wsol.io import atomic_write_text

    if not get_dist().is_main:
        return
    for name, curve in out.curves.items():
        atomic_write_text(out_dir / f"{name}_curve.csv", pd.DataFrame({k: list(v) for k, v in curve.items()})
                          .to_csv(index=False, float_format="%.6g"))
    if write_rows and out.rows:
        atomic_write_text(out_dir / "predictions.csv", pd.DataFrame(out.rows).drop(columns=["index"])
                          .to_csv(index=False))


def evaluate_job(job: Job) -> dict[str, Any]:
    """Score ``job.model`` under the configured protocol; returns the flat result row (curves etc. written)."""
    from wsol.evaluation import evaluate_model, rescore_store
    from wsol.evaluation.protocols import settings_summary, stored_cam_method
    from wsol.evaluation.store import CAMStore, CAMStoreWriter, is_complete_store

    cfg, ev = job.cfg, job.cfg.eval
    source = job.eval_source
    store = None
    store_dir = job.out_dir / "cams"
    if ev.save_cams or ev.export_scoremaps:
        meta = _store_meta(job)
        # a store written before cam_method was recorded holds CAMs: the same meta as a cam store now
        stored = CAMStore(store_dir).meta if is_complete_store(store_dir) else None
        if stored is not None and ev.resume and {**stored, "cam_method": stored_cam_method(stored)} == meta:
            log.info("%s: complete CAM store of this model and split found; scoring it", store_dir)
            out = rescore_store(CAMStore(store_dir), source, job.protocol, batch_size=256,
                                mask_loader=_mask_loader)
        else:
            store = CAMStoreWriter(store_dir, meta=meta, shard_size=ev.shard_size, resume=bool(ev.resume))
    if store is not None or not (ev.save_cams or ev.export_scoremaps):
        try:
            out = evaluate_model(job.model, source, job.protocol, image_size=cfg.data.image_size,
                                 batch_size=ev.batch_size, num_workers=ev.num_workers, device=job.device, store=store,
                                 heldout_source=job.heldout_source, mask_loader=_mask_loader,
                                 fused=bool(ev.fused))
        except (KeyboardInterrupt, OSError) as err:  # Ctrl-C, disk full: the finished shards stay (one line, wsol.cli)
            if store is not None and not getattr(err, "__notes__", None):
                add_note(err, f"{store.finished_shards()} finished CAM shard(s) are kept in {store_dir}; the same "
                              "command in this run dir continues from them (eval.resume=true)")
            raise
    _write_outputs(job.out_dir, out, bool(ev.predictions))
    if ev.export_scoremaps:
        _export(store_dir, source, ev.export_scoremaps)
    row = _row_head(cfg, arch=job.arch, pool=job.model.pool, split=split_name(cfg.data, ev.split),
                    data_root=cfg.data.root)
    row.update(settings_summary(job.protocol))
    row.update(out.metrics)
    also = [value(p) for p in ev.get("also") or []]
    if also:  # the same stored maps under the other protocols: their metrics join the row, curves in <run>/<p>/
        from dataclasses import replace

        row["also"] = also
        for extra in also:
            s = replace(job.protocol, protocol=extra)
            more = rescore_store(CAMStore(store_dir), source, s, batch_size=256, mask_loader=_mask_loader)
            _write_outputs(job.out_dir / extra, more, False)
            row.update({k: v for k, v in settings_summary(s).items() if k not in row})
            row.update({k: v for k, v in more.metrics.items() if k not in row})
            row[f"{extra}_eval_seconds"] = more.metrics.get("eval_seconds")
    skipped = source.annotations.skipped
    row.update({"n_skipped": len(skipped), "skipped": dict(sorted(skipped.items()))})
    return row


def _export(store_dir: Path, source: Any, out_root: str) -> None:
    from wsol.engine.distributed import get_dist
    from wsol.evaluation.store import CAMStore, export_wsoleval_scoremaps
    from wsol.metrics.scoremap import wsoleval_scoremap

    if get_dist().is_main:
        n = export_wsoleval_scoremaps(CAMStore(store_dir), [r.image_id for r in source.annotations.records],
                                      out_root, wsoleval_scoremap)
        log.info("wrote %d wsolevaluation score maps under %s", n, out_root)


def _mask_loader(source: Any) -> Callable[[Any], Any] | None:
    """PxAP masks for sources that have them (OpenImages30k), else None."""
    mask_root = getattr(source, "mask_root", None)
    if mask_root is None or not any(r.mask_paths for r in source.annotations.records):
        return None
    from wsol.data.masks import load_wsoleval_mask

    return lambda record: load_wsoleval_mask(mask_root, record.mask_paths, record.ignore_path)


def store_split_roles(meta: dict[str, Any]) -> list[str]:
    """Which of ``test``/``val``/``train`` (``eval.split``) a CAM store's split is, by its data config (empty when
    the store does not say)."""
    data, split = meta.get("data") or {}, meta.get("split")
    return [which for which in ("test", "val", "train") if split is not None and data.get(f"{which}_split") == split]


def rescore_job(cfg: DictConfig, out_dir: Path, *, data_overridden: bool) -> dict[str, Any]:
    """Score the CAM store ``cfg.cams`` without the network; the store's own data config unless overridden.

    The store's split is the scored one: another ``eval.split`` is refused; ``eval.export_scoremaps`` exports its
    maps. The stored images' frames are checked against the records' sizes while scoring (``score_cam_store``).
    """
    from omegaconf import OmegaConf

    from wsol.evaluation import rescore_store
    from wsol.evaluation.protocols import settings_summary
    from wsol.evaluation.store import CAMStore, check_matches

    problems = check_values(cfg)
    if problems:
        raise ConfigError(problems)
    store = CAMStore(cfg.cams)
    meta = store.meta
    roles = store_split_roles(meta)
    if roles and cfg.eval.split not in roles:  # scoring one split under another's name would lie in the row
        raise ValueError(f"{cfg.cams}: the store holds the {roles[0]} split ({meta.get('split')!r}); eval.split="
                         f"{cfg.eval.split} was asked: re-score it with eval.split={roles[0]}, or evaluate the model "
                         f"on the {cfg.eval.split} split")
    data = cfg.data if data_overridden or "data" not in meta else OmegaConf.create(meta["data"])
    split = meta.get("split") if not data_overridden else split_name(data, cfg.eval.split)
    source = source_from_cfg(data, split, data.num_classes)
    check_matches(meta, source.annotations.records, cfg.cams)
    s = protocol_settings(cfg)
    if s.topk > store.topk:
        raise ValueError(f"{cfg.cams}: the store holds the top-{store.topk} classes per image; cam.topk={s.topk} "
                         f"was asked (use cam.topk<={store.topk})")
    out = rescore_store(store, source, s, batch_size=cfg.eval.batch_size, mask_loader=_mask_loader)
    _write_outputs(out_dir, out, bool(cfg.eval.predictions))
    if cfg.eval.export_scoremaps:  # the store's maps are what an export is made from anyway
        _export(Path(cfg.cams), source, cfg.eval.export_scoremaps)
    row = {"dataset": data.name, "data_root": None if data.root is None else str(data.root), "split": split,
           "arch": meta.get("arch"), "pool": meta.get("pool"), "seed": cfg.seed, "image_size": meta.get("image_size"),
           "cams": str(cfg.cams)}
    row.update(settings_summary(s))
    row.update(out.metrics)
    return row
