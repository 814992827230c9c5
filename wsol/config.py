"""Turning the Hydra config into explicit arguments — used by the entry points only.

Library functions never see a ``DictConfig``: the mains (``wsol.run``, ``wsol.train``, ``wsol.evaluate``) call these
helpers, and every default lives in ``configs/``. ``check_config`` validates a whole composed config before any
expensive work and reports every problem at once.
"""

from __future__ import annotations

import logging
import platform
import subprocess
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import wsol

log = logging.getLogger(__name__)

#: Keys every data config has; the others are the selected dataset factory's own options.
COMMON_DATA_KEYS = ("name", "root", "num_classes", "train_split", "val_split", "test_split", "image_size",
                    "crop_size", "resize_size", "hflip", "on_error")


def to_dict(node: DictConfig | None) -> dict[str, Any]:
    """A resolved plain ``dict`` of a config node (``{}`` for ``None``); Enums become their names."""
    if node is None:
        return {}
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def value(x: Any) -> Any:
    """An Enum config value as its plain name (``Protocol.paper`` -> ``"paper"``); anything else unchanged."""
    return getattr(x, "value", x)


# ----------------------------------------------------------------------------- data and model
def data_option_problems(data: DictConfig) -> list[str]:
    """Keys of a data node that are not options of its dataset's factory (one message each)."""
    from wsol.data.datasets import dataset_options

    try:
        known = dataset_options(data.name)
    except KeyError as err:
        return [f"data.name: {err.args[0]}"]
    if known is None:
        return []
    problems = []
    for key in (k for k in data if k not in COMMON_DATA_KEYS and k not in known):
        hint = (" (dataset options are top-level keys of the data node now: data.<option>=..., not "
                "data.kwargs.<option>)" if key == "kwargs" else "")
        problems.append(f"data.{key}: dataset {data.name!r} has no option {key!r}{hint}; its options are: "
                        f"{', '.join(known) or 'none'}")
    import inspect

    from wsol.data.datasets import DATASETS, INTERFACE_ARGUMENTS

    # the factories take their options as required arguments (their defaults live in configs/data/<name>.yaml)
    required = [p.name for p in inspect.signature(DATASETS.get(data.name)).parameters.values()
                if p.default is inspect.Parameter.empty and p.name not in INTERFACE_ARGUMENTS
                and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    problems += [f"data.{n}: dataset {data.name!r} needs it (configs/data/{data.name}.yaml sets every option)"
                 for n in required if n not in data and n not in COMMON_DATA_KEYS]
    return problems


def source_from_cfg(data: DictConfig, split: str, num_classes: int | None = None) -> Any:
    """Build split ``split`` of the dataset described by a ``configs/data/*.yaml`` node.

    Every key of the node that is not one of ``COMMON_DATA_KEYS`` (``data.gt_format``, ``data.num_images``, ...) is
    passed to the registered factory as a keyword argument. ``num_classes`` (the model's) is used when
    ``data.num_classes`` is null: labels are then checked against the model's classifier (e.g. 1000 for an ImageNet
    model on a subset of ImageNet).

    Raises:
        ValueError: a key that is not an option of the dataset's factory, named with the dataset.
    """
    from wsol.data.datasets import build_source

    problems = data_option_problems(data)
    if problems:
        raise ValueError(problems[0])
    options = {key: v for key, v in to_dict(data).items() if key not in COMMON_DATA_KEYS}
    n = data.num_classes if data.num_classes is not None else num_classes
    return build_source(data.name, split=split, root=data.root, num_classes=n, on_error=data.on_error, **options)


def split_name(data: DictConfig, which: str) -> str:
    """Map ``train|val|test`` to the dataset's own split name (``data.<which>_split``)."""
    key = f"{which}_split"
    if key not in data:
        raise ValueError(f"unknown split {which!r}; expected train, val or test")
    name = data[key]
    if name is None:
        raise ValueError(f"dataset {data.name!r} has no {which} split (data.{key} is null)")
    return str(name)


def model_from_cfg(model: DictConfig, num_classes: int | None) -> Any:
    """Build the model described by a ``configs/model/*.yaml`` node.

    ``num_classes=None`` (a dataset config with ``num_classes: null``) keeps the model's own default (1000 ImageNet
    classes), so a pretrained ImageNet model can be scored without fine-tuning.
    """
    from wsol.models import build_model

    extra = {} if num_classes is None else {"num_classes": num_classes}
    return build_model(model.name, pool=value(model.pool), pretrained=model.pretrained,
                       weights_path=model.weights_path, **extra, **to_dict(model.get("kwargs")))


def method_from_cfg(method: DictConfig | None) -> Any:
    """The ``wsol.methods.TrainingMethod`` of a ``configs/method/*.yaml`` node (None: plain CAM)."""
    from wsol.methods import build_method

    return build_method(to_dict(method))


def method_option_problems(method: DictConfig | None) -> list[str]:
    """An unknown method name, or keys that are not options of the method (one message each)."""
    from wsol.methods import METHODS

    if method is None:
        return []
    name = method.get("name")
    if name not in METHODS:
        return [f"method.name={name!r}: unknown method; known: {', '.join(METHODS.names())}"]
    known = METHODS.options(name) or ()
    return [f"method.{key}: method {name!r} has no option {key!r}; its options are: {', '.join(known) or 'none'}"
            for key in method if key != "name" and key not in known]


def train_transform_from_cfg(data: DictConfig, model: Any) -> Any:
    from wsol.data.transforms import build_train_transform

    return build_train_transform(data.resize_size, data.crop_size, data.hflip, model.mean, model.std)


# ----------------------------------------------------------------------------- training and evaluation settings
def train_settings(train: DictConfig) -> Any:
    """``wsol.engine.recipes.TrainSettings`` of a ``configs/train/*.yaml`` node (optimizer via ``_target_``)."""
    from hydra.utils import instantiate

    from wsol.engine.recipes import TrainSettings

    import torch

    opt = train.optimizer
    try:
        factory = instantiate(opt)
        factory([torch.nn.Parameter(torch.zeros(1))])  # a bad option fails now, not after the data is loaded
    except Exception as err:  # an unknown _target_ or a bad key: name the node
        raise ValueError(f"train.optimizer ({opt.get('_target_')}): {err}") from err
    sch = train.scheduler
    return TrainSettings(
        recipe=value(train.recipe), epochs=train.epochs, max_iters=train.max_iters, batch_size=train.batch_size,
        accumulate_grad_batches=train.accumulate_grad_batches, optimizer=factory, lr=float(opt.lr),
        weight_decay=float(opt.get("weight_decay", 0.0)), new_layer_lr_mult=train.new_layer_lr_mult,
        bias_lr_mult=train.bias_lr_mult, schedule=value(sch.name), schedule_unit=value(sch.unit),
        milestones=tuple(sch.milestones), gamma=sch.gamma, warmup_iters=sch.warmup_iters, amp=train.amp,
        channels_last=train.channels_last, sync_bn=train.sync_bn, num_workers=train.num_workers,
        checkpoint_every=train.checkpoint_every, snapshot_every=train.snapshot_every, log_every=train.log_every,
        feature_cache=train.feature_cache, svm_C=train.svm_C, svm_max_iter=train.svm_max_iter)


def protocol_settings(cfg: DictConfig) -> Any:
    """``wsol.evaluation.ProtocolSettings`` of ``cfg.eval`` + ``cfg.cam``."""
    from wsol.evaluation import ProtocolSettings

    ev = cfg.eval
    return ProtocolSettings(protocol=value(ev.protocol), topk=cfg.cam.topk, cam_threshold=ev.cam_threshold,
                            cam_curve_interval=ev.cam_curve_interval, iou_thresholds=tuple(ev.iou_thresholds),
                            box_method=value(ev.box_method), tau_policy=value(ev.tau_policy), tau=ev.tau,
                            tau_folds=ev.tau_folds, cam_method=value(cfg.cam.method),
                            scorecam_batch_size=cfg.cam.scorecam_batch_size)


# ----------------------------------------------------------------------------- up-front validation
def _range(problems: list[str], name: str, x: Any, lo: float, hi: float, *, lo_open: bool = False,
           hi_open: bool = False, integer: bool = False) -> None:
    if x is None:
        return
    if integer and (isinstance(x, bool) or int(x) != x):
        problems.append(f"{name}={x!r}: must be an integer")
        return
    bad = (x <= lo if lo_open else x < lo) or (x >= hi if hi_open else x > hi)
    if bad:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        problems.append(f"{name}={x!r}: must lie in {interval}")


def run_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be a run name, or None: the run dir is ``outputs/<task>/<name>`` (``wsol.conf``), so a name
    is one folder name — ``../../x`` would write outside ``outputs/``, ``/abs`` would be rewritten to
    ``outputs/<task>/abs``."""
    if name is None:
        return None
    from wsol.io import unsafe_path_reason

    text = str(name)
    reason = unsafe_path_reason(text) or ("has several path components ('/')" if "/" in text else None)
    if reason is None:
        return None
    return f"name={text!r}: a run name is one folder name (the run dir is outputs/<task>/<name>); it {reason}"


def check_values(cfg: DictConfig) -> list[str]:
    """Range and consistency checks of every value the run will use (no file is touched)."""
    p: list[str] = []
    inf = float("inf")
    name_problem = run_name_problem(cfg.get("name"))
    if name_problem:
        p.append(name_problem)
    if "train" in cfg:
        t = cfg.train
        _range(p, "train.epochs", t.epochs, 1, inf, integer=True)
        _range(p, "train.max_iters", t.max_iters, 1, inf, integer=True)
        _range(p, "train.batch_size", t.batch_size, 1, inf, integer=True)
        _range(p, "train.accumulate_grad_batches", t.accumulate_grad_batches, 1, inf, integer=True)
        if t.batch_size >= 1 and t.accumulate_grad_batches >= 1 and t.batch_size % t.accumulate_grad_batches:
            p.append(f"train.batch_size={t.batch_size} is not divisible by train.accumulate_grad_batches="
                     f"{t.accumulate_grad_batches}")
        _range(p, "train.checkpoint_every", t.checkpoint_every, 1, inf, integer=True)
        _range(p, "train.log_every", t.log_every, 1, inf, integer=True)
        _range(p, "train.snapshot_every", t.snapshot_every, 1, inf, integer=True)
        _range(p, "train.num_workers", t.num_workers, 0, inf, integer=True)
        _range(p, "train.optimizer.lr", t.optimizer.get("lr"), 0, inf, lo_open=True)
        _range(p, "train.scheduler.gamma", t.scheduler.gamma, 0, 1, lo_open=True)
        _range(p, "train.scheduler.warmup_iters", t.scheduler.warmup_iters, 0, inf, integer=True)
        _range(p, "train.svm_C", t.svm_C, 0, inf, lo_open=True)
        if "_target_" not in t.optimizer:
            p.append("train.optimizer has no _target_ (choose one with train/optimizer=sgd|adamw)")
    if "eval" in cfg:
        e = cfg.eval
        _range(p, "eval.cam_threshold", e.cam_threshold, 0, 1, lo_open=True, hi_open=True)
        _range(p, "eval.cam_curve_interval", e.cam_curve_interval, 0, 1, lo_open=True, hi_open=True)
        for t in e.iou_thresholds:
            _range(p, "eval.iou_thresholds[]", t, 0, 100, lo_open=True)
        if not e.iou_thresholds:
            p.append("eval.iou_thresholds is empty")
        _range(p, "eval.tau", e.tau, 0, 1, hi_open=True)
        _range(p, "eval.tau_folds", e.tau_folds, 2, inf, integer=True)
        _range(p, "eval.batch_size", e.batch_size, 1, inf, integer=True)
        _range(p, "eval.shard_size", e.shard_size, 1, inf, integer=True)
        _range(p, "eval.num_workers", e.num_workers, 0, inf, integer=True)
        policy = value(e.tau_policy)
        if policy == "fixed":
            if e.tau is None:
                p.append("eval.tau_policy=fixed needs eval.tau")
            elif 0 < e.cam_curve_interval < 1 and 0 <= e.tau < 1:
                import numpy as np

                grid = np.arange(0, 1, e.cam_curve_interval)
                if not np.isclose(grid, e.tau, atol=1e-9, rtol=0).any():
                    p.append(f"eval.tau={e.tau} is not on the threshold grid of eval.cam_curve_interval="
                             f"{e.cam_curve_interval}")
        if policy == "heldout" and cfg.data.get("val_split") is None:
            p.append(f"eval.tau_policy=heldout needs a held-out split: data {cfg.data.name!r} has data.val_split=null "
                     "(use crossfold, fixed or oracle)")
        if policy == "heldout" and cfg.data.get("val_split") == cfg.data.get(f"{e.split}_split"):
            p.append(f"eval.tau_policy=heldout: the held-out split {cfg.data.val_split!r} is the scored split")
        if e.split not in ("train", "val", "test"):
            p.append(f"eval.split={e.split!r}: expected train, val or test")
        elif cfg.data.get(f"{e.split}_split") is None:
            p.append(f"eval.split={e.split}: dataset {cfg.data.name!r} has no such split (data.{e.split}_split=null)")
        if value(e.protocol) == "cam16_heuristics" and cfg.cam.topk < 5:
            p.append(f"eval.protocol=cam16_heuristics needs cam.topk >= 5, got {cfg.cam.topk}")
        also = [value(x) for x in e.get("also") or []]
        for extra in also:
            if extra == value(e.protocol) or also.count(extra) > 1:
                p.append(f"eval.also={also}: lists {extra} twice (eval.protocol={value(e.protocol)} is scored anyway)")
            elif "cam16_heuristics" in (extra, value(e.protocol)):
                p.append(f"eval.also={also}: cam16_heuristics scores ten-crop canvases, not the maps of "
                         f"eval.protocol={value(e.protocol)}; run it on its own")
        if also and not e.save_cams:
            p.append(f"eval.also={also} re-scores the stored maps: set eval.save_cams=true")
        if "wsolevaluation" in also and value(e.tau_policy) == "heldout":
            p.append("eval.also=[wsolevaluation] re-scores stored maps of the scored split; tau_policy=heldout needs "
                     "the network on data.val_split: use crossfold, fixed or oracle, or eval.protocol=wsolevaluation")
        if value(e.protocol) == "cam16_heuristics" and value(cfg.cam.method) != "cam":
            from wsol.evaluation.protocols import CAM16_METHOD_ERROR

            p.append(CAM16_METHOD_ERROR.format(method=value(cfg.cam.method)))
    if "cam" in cfg:
        _range(p, "cam.topk", cfg.cam.topk, 1, inf, integer=True)
        _range(p, "cam.scorecam_batch_size", cfg.cam.scorecam_batch_size, 1, inf, integer=True)
    if "method" in cfg:
        p += method_option_problems(cfg.method)
    data = cfg.data
    _range(p, "data.image_size", data.image_size, 1, inf, integer=True)
    _range(p, "data.crop_size", data.crop_size, 1, inf, integer=True)
    if data.crop_size is not None and data.resize_size is not None and data.crop_size > data.resize_size:
        p.append(f"data.crop_size={data.crop_size} is larger than data.resize_size={data.resize_size}")
    p += data_option_problems(data)
    return p


# ----------------------------------------------------------------------------- provenance and run files
def git_commit() -> str:
    """The commit of the wsol checkout (``-dirty`` when it has uncommitted changes), or ``unknown``."""
    repo = Path(wsol.__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance() -> dict[str, Any]:
    """Versions, commit, machine and world size recorded in every ``metrics.json``."""
    import torch
    import torchvision

    from wsol.engine.cpu_malloc import cpu_malloc_in_effect
    from wsol.engine.distributed import get_dist

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or platform.machine()
    return {"wsol_version": wsol.__version__, "torch_version": torch.__version__,
            "torchvision_version": torchvision.__version__, "python_version": platform.python_version(),
            "git_commit": git_commit(), "device_name": device, "cpu_threads": torch.get_num_threads(),
            "cpu_malloc": cpu_malloc_in_effect(), "world_size": get_dist().world_size}


def config_fingerprint(cfg: DictConfig) -> dict[str, Any]:
    """The resolved job config without what does not change results (worker counts, resume flags, ``cpu_malloc``).

    ``cam.method=cam``, ``cam.scorecam_batch_size`` outside Score-CAM and ``eval.fused=false`` are left out too:
    they change nothing, and a run finished before those keys existed keeps its fingerprint.
    """
    d = to_dict(cfg)
    for section, key in (("train", "resume"), ("train", "num_workers"), ("eval", "num_workers"),
                         ("eval", "resume"), (None, "name"), (None, "cpu_malloc")):
        (d.get(section, {}) if section else d).pop(key, None)
    if not d.get("eval", {}).get("fused", True):  # off: the network as trained; keeps older runs' fingerprints
        d["eval"].pop("fused")
    cam = d.get("cam", {})
    if cam.get("method") != "scorecam":
        cam.pop("scorecam_batch_size", None)
    if cam.get("method") == "cam":
        cam.pop("method")
    return d


def save_run_files(out_dir: Path, cfg: DictConfig, metrics: dict[str, Any]) -> None:
    """Write the resolved ``config.yaml`` and ``metrics.json`` (atomically; rank 0 only)."""
    import json

    from wsol.engine.distributed import get_dist
    from wsol.io import atomic_write_json, atomic_write_text

    if not get_dist().is_main:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    metrics = {**metrics, "config_fingerprint": json.dumps(config_fingerprint(cfg), sort_keys=True)}
    atomic_write_json(out_dir / "metrics.json", metrics)
