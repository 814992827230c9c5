"""Config composition: every primary config and experiment composes; bad names fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from wsol import CONFIG_DIR
from wsol.config import model_from_cfg, split_name
from wsol.models import list_models

EXPERIMENTS = sorted(str(p.relative_to(Path(CONFIG_DIR) / "experiment").with_suffix(""))
                     for p in (Path(CONFIG_DIR) / "experiment").rglob("*.yaml"))


def _compose(name: str, overrides: list[str] = ()) -> OmegaConf:
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose(config_name=name, overrides=list(overrides), return_hydra_config=False)


@pytest.mark.parametrize("name", ["run", "train", "evaluate"])
def test_primary_configs_compose_and_resolve(name: str) -> None:
    cfg = _compose(name)
    assert cfg.data.name == "synthetic" and cfg.model.name == "small_cnn"
    OmegaConf.resolve(cfg)  # every interpolation resolves


def test_defaults_live_in_yaml() -> None:
    cfg = _compose("run")
    assert cfg.eval.protocol == "paper" and cfg.eval.cam_threshold == 0.2 and cfg.cam.topk == 5
    assert cfg.model.pool == "gap"
    assert split_name(cfg.data, "test") == "test"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiments_compose(experiment: str) -> None:
    cfg = _compose("train", [f"experiment={experiment}", "data.root=/nonexistent"])
    assert cfg.model.name in list_models()


def test_every_registered_model_has_a_config() -> None:
    configs = {p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml")}
    assert set(list_models()) <= configs


def test_unknown_config_name_is_named() -> None:
    with pytest.raises(MissingConfigException, match="no_such_model"):
        _compose("run", ["model=no_such_model"])


def test_unknown_registry_name_lists_known() -> None:
    cfg = _compose("run", ["model.name=nope"])
    with pytest.raises(KeyError, match="unknown model 'nope'; known: .*small_cnn"):
        model_from_cfg(cfg.model, 8)


def test_unknown_split_is_named() -> None:
    cfg = _compose("run")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        split_name(cfg.data, "dev")
