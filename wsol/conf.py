"""Structured-config schemas (Hydra ``ConfigStore``) and the run-dir resolver.

The schemas give every config group its keys and types — and no values: every default lives once, in
``configs/*.yaml``. Composed onto a schema, an unknown key (``eval.protocl=paper``, a typo in an experiment file) or
a value of the wrong type (``eval.protocol=papr``, ``train.epochs=ten``) is an error at composition, before any work.
Choices are Enums built from the library's own tuples (``wsol.choices``), so the message lists the valid values. The
optimizer is chosen by config with Hydra's ``_target_`` (``configs/train/optimizer/*.yaml``) and instantiated by the
entry point; the data node's keys are checked against the selected dataset factory's signature (``wsol.config``)
since each dataset has its own options. The argparse tools (``wsol-score``, ``wsol-prepare``) read their defaults
from the same YAML files (``yaml_default``), and scripts and tests that build a dataset take its options from its
data config (``yaml_data_options``), so that a value has one home for them too.

Run directories (``configs/hydra/default.yaml``): ``outputs/<task>/<name>`` when ``name`` is set (a stable place that
``train.resume=auto`` and re-launched sweeps find again), the run dir of ``train.resume=PATH`` when it names one,
else ``outputs/<task>/<timestamp>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from wsol import CONFIG_DIR
from wsol.choices import (BOX_METHODS, CAM_METHODS, CPU_MALLOC, POOLS, PROTOCOLS, RECIPES, SCHEDULE_UNITS, SCHEDULES,
                          TAU_POLICIES)

__all__ = ["RunSchema", "TrainRootSchema", "EvaluateSchema", "Protocol", "CamMethod", "TauPolicy", "BoxMethod", "Pool",
           "Recipe", "CpuMalloc", "Schedule", "ScheduleUnit", "register_configs", "run_dir_for", "yaml_default",
           "yaml_data_options"]


def _choice(name: str, values: tuple[str, ...]) -> type[Enum]:
    """An Enum whose members are ``values`` (name = value), so a composed config holds e.g. ``Protocol.paper``."""
    return Enum(name, {v: v for v in values}, module=__name__, qualname=name)


# The choices are the library's own tuples (``wsol.choices``), written once: OmegaConf lists them in its message.
Protocol = _choice("Protocol", PROTOCOLS)
CamMethod = _choice("CamMethod", CAM_METHODS)
TauPolicy = _choice("TauPolicy", TAU_POLICIES)
BoxMethod = _choice("BoxMethod", BOX_METHODS)
Pool = _choice("Pool", POOLS)
Recipe = _choice("Recipe", RECIPES)
Schedule = _choice("Schedule", SCHEDULES)
ScheduleUnit = _choice("ScheduleUnit", SCHEDULE_UNITS)
CpuMalloc = _choice("CpuMalloc", CPU_MALLOC)


@dataclass
class PathsSchema:
    data_dir: str = MISSING
    cache_dir: Optional[str] = MISSING


@dataclass
class ModelSchema:
    name: str = MISSING
    pool: Pool = MISSING
    pretrained: bool = MISSING
    weights_path: Optional[str] = MISSING
    kwargs: Dict[str, Any] = MISSING


@dataclass
class CamSchema:
    method: CamMethod = MISSING
    topk: int = MISSING
    scorecam_batch_size: int = MISSING


@dataclass
class SchedulerSchema:
    name: Schedule = MISSING
    unit: ScheduleUnit = MISSING
    milestones: List[float] = MISSING
    gamma: float = MISSING
    warmup_iters: int = MISSING


@dataclass
class TrainSchema:
    recipe: Recipe = MISSING
    epochs: int = MISSING
    max_iters: Optional[int] = MISSING
    batch_size: int = MISSING
    accumulate_grad_batches: int = MISSING
    optimizer: Any = MISSING
    new_layer_lr_mult: float = MISSING
    bias_lr_mult: float = MISSING
    scheduler: SchedulerSchema = MISSING
    amp: bool = MISSING
    channels_last: bool = MISSING
    sync_bn: bool = MISSING
    num_workers: int = MISSING
    checkpoint_every: int = MISSING
    snapshot_every: Optional[int] = MISSING
    log_every: int = MISSING
    resume: Optional[str] = MISSING
    feature_cache: bool = MISSING
    svm_C: float = MISSING
    svm_max_iter: int = MISSING


@dataclass
class EvalSchema:
    protocol: Protocol = MISSING
    also: List[Protocol] = MISSING
    split: str = MISSING
    cam_threshold: float = MISSING
    cam_curve_interval: float = MISSING
    iou_thresholds: List[int] = MISSING
    box_method: BoxMethod = MISSING
    tau_policy: TauPolicy = MISSING
    tau: Optional[float] = MISSING
    tau_folds: int = MISSING
    save_cams: bool = MISSING
    resume: bool = MISSING
    shard_size: int = MISSING
    export_scoremaps: Optional[str] = MISSING
    predictions: bool = MISSING
    fused: bool = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING


@dataclass
class _Common:
    task_name: str = MISSING
    name: Optional[str] = MISSING
    seed: int = MISSING
    device: str = MISSING
    cpu_malloc: CpuMalloc = MISSING
    paths: PathsSchema = MISSING
    data: Any = MISSING
    model: ModelSchema = MISSING


@dataclass
class RunSchema(_Common):
    train: TrainSchema = MISSING
    method: Any = MISSING  # options checked against the method's signature (wsol.methods)
    cam: CamSchema = MISSING
    eval: EvalSchema = MISSING


@dataclass
class TrainRootSchema(_Common):
    train: TrainSchema = MISSING
    method: Any = MISSING


@dataclass
class EvaluateSchema(_Common):
    cam: CamSchema = MISSING
    eval: EvalSchema = MISSING
    checkpoint: Optional[str] = MISSING
    cams: Optional[str] = MISSING


def _check_name(name: Optional[str]) -> None:
    from wsol.config import run_name_problem  # noqa: PLC0415  (the one rule; config imports this module lazily)

    problem = run_name_problem(name)
    if problem is not None:
        raise ValueError(problem)


def run_dir_for(task_name: str, name: Optional[str], resume: Optional[str], timestamp: str) -> str:
    """The run directory (module docstring); ``train.resume=PATH`` to a run dir or a checkpoint inside one wins.

    Raises:
        ValueError: a ``name`` that is not one folder name (``wsol.config.run_name_problem``), before Hydra creates
            the directory.
    """
    _check_name(name)
    if resume not in (None, "", "auto"):
        path = Path(str(resume))
        if path.is_dir():
            return str(path)
        if path.is_file():  # <run>/checkpoints/last.pt or <run>/model.pt
            return str(path.parent.parent if path.parent.name == "checkpoints" else path.parent)
    if name:
        return f"outputs/{task_name}/{name}"
    return f"outputs/{task_name}/{timestamp}"


def yaml_default(config: str, key: str) -> Any:
    """The value ``key`` has in ``configs/<config>.yaml``: the default of an argparse tool's option.

    The Hydra apps compose these files; ``wsol-score`` and ``wsol-prepare`` take the same settings as options and read
    their defaults here, so each value is written in one place (e.g. ``yaml_default("eval/default",
    "cam_curve_interval")``).

    Raises:
        KeyError: the file has no such key (a renamed setting must not silently lose its default).
    """
    absent = object()
    node = OmegaConf.load(Path(CONFIG_DIR) / f"{config}.yaml")
    try:
        value = OmegaConf.select(node, key, default=absent, throw_on_missing=True)
    except MissingMandatoryValue:  # "???": required, so it has no default
        value = absent
    if value is absent:
        raise KeyError(f"configs/{config}.yaml has no value for {key!r}")
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def yaml_data_options(name: str, **overrides: Any) -> dict[str, Any]:
    """The dataset options of ``configs/data/<name>.yaml`` (its factory's keyword arguments), ``overrides`` on top.

    A script or test that builds a dataset outside a Hydra run passes them as ``source_from_cfg`` does for a run, so
    the factory's required options (``check_files``, ``alpha``, ``box_tolerance`` ...) get their one value:
    ``build_source(name, split=..., root=..., num_classes=..., **yaml_data_options(name, check_files="none"))``. The
    keys every data config has (``wsol.config.COMMON_DATA_KEYS``: ``root``, ``num_classes``, ``on_error`` ...) are
    not options and are left out, and so is a required value (``???``, e.g. ``imagenette``'s ``gt``): the caller
    passes it, as an override or an argument.

    Raises:
        KeyError: an override that is not an option of the file (a typo would otherwise reach the factory as a
            second value or an unknown keyword).
        FileNotFoundError: there is no ``configs/data/<name>.yaml``.
    """
    from wsol.config import COMMON_DATA_KEYS  # noqa: PLC0415  (config imports this module lazily)

    node = OmegaConf.load(Path(CONFIG_DIR) / "data" / f"{name}.yaml")
    keys = [key for key in node if key not in COMMON_DATA_KEYS]
    unknown = sorted(set(overrides) - set(keys))
    if unknown:
        raise KeyError(f"configs/data/{name}.yaml has no option {unknown}; its options are: {', '.join(keys)}")
    values = OmegaConf.to_container(node)
    options = {key: values[key] for key in keys if not OmegaConf.is_missing(node, key)}  # type: ignore[index]
    return {**options, **overrides}


_registered = False


def register_configs() -> None:
    """Register the schemas in Hydra's ConfigStore and the ``wsol_run_dir`` resolver (idempotent)."""
    global _registered
    if _registered:
        return
    cs = ConfigStore.instance()
    cs.store(name="schema_run", node=RunSchema)
    cs.store(name="schema_train", node=TrainRootSchema)
    cs.store(name="schema_evaluate", node=EvaluateSchema)
    if not OmegaConf.has_resolver("wsol_run_dir"):
        OmegaConf.register_new_resolver("wsol_run_dir", run_dir_for)
    if not OmegaConf.has_resolver("wsol_sweep_dir"):
        OmegaConf.register_new_resolver(
            "wsol_sweep_dir", lambda task, name, timestamp: _check_name(name) or f"multirun/{task}/{name or timestamp}")
    _registered = True

