"""Config composition: every primary config and experiment composes; bad names fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from wsol import CONFIG_DIR
from wsol.conf import register_configs, run_dir_for
from wsol.config import check_values, model_from_cfg, protocol_settings, split_name, train_settings
from wsol.models import list_models

register_configs()

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
    assert cfg.eval.protocol.value == "paper" and cfg.eval.cam_threshold == 0.2 and cfg.cam.topk == 5
    assert cfg.model.pool.value == "gap"
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


@pytest.mark.parametrize("override,match", [
    ("eval.protocol=papr", "protocol"),  # an Enum: the valid names are listed
    ("eval.protocl=paper", "protocl"),  # an unknown key
    ("train.optimizer.name=adam", "name"),  # the old key that silently trained SGD
    ("train.epochs=ten", "epochs"),
    ("model.pool=avg", "pool"),
    ("cpu_malloc=keep", "cpu_malloc"),
])
def test_unknown_keys_and_bad_values_fail_at_composition(override: str, match: str) -> None:
    with pytest.raises(ConfigCompositionException, match=match):
        _compose("run", [override])


def test_optimizer_is_chosen_by_target() -> None:
    cfg = _compose("run", ["train/optimizer=adamw", "train.optimizer.lr=0.002"])
    settings = train_settings(cfg.train)
    opt = settings.optimizer([{"params": [torch.nn.Parameter(torch.zeros(1))]}])
    assert isinstance(opt, torch.optim.AdamW) and settings.lr == 0.002
    cfg = _compose("run", ["+train.optimizer.bogus=1"])
    with pytest.raises(ValueError, match=r"train.optimizer \(torch.optim.SGD\): .*bogus"):
        train_settings(cfg.train)


def test_check_values_reports_every_problem_at_once() -> None:
    cfg = _compose("run", ["eval.cam_threshold=1.5", "train.epochs=0", "train.checkpoint_every=0",
                           "train.log_every=0", "eval.tau_policy=fixed", "cam.topk=0", "+data.colour=red"])
    problems = check_values(cfg)
    text = "\n".join(problems)
    for needle in ("eval.cam_threshold=1.5: must lie in (0, 1)", "train.epochs=0", "train.checkpoint_every=0",
                   "train.log_every=0", "eval.tau_policy=fixed needs eval.tau", "cam.topk=0",
                   "data.colour: dataset 'synthetic' has no option 'colour'"):
        assert needle in text, needle
    assert check_values(_compose("run")) == []
    bad_tau = _compose("run", ["eval.tau_policy=fixed", "eval.tau=0.333"])
    assert any("not on the threshold grid" in p for p in check_values(bad_tau))


def test_protocol_settings_are_plain_values() -> None:
    s = protocol_settings(_compose("run", ["eval.protocol=wsolevaluation", "eval.tau_policy=crossfold"]))
    assert (s.protocol, s.tau_policy, s.iou_thresholds) == ("wsolevaluation", "crossfold", (30, 50, 70))


def test_run_dirs(tmp_path: Path) -> None:
    assert run_dir_for("run", None, None, "T") == "outputs/run/T"
    assert run_dir_for("run", "exp1", "auto", "T") == "outputs/run/exp1"
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"x")
    assert run_dir_for("run", None, str(tmp_path), "T") == str(tmp_path)
    assert run_dir_for("run", None, str(tmp_path / "checkpoints" / "last.pt"), "T") == str(tmp_path)


def test_model_options_are_checked_against_the_factory() -> None:
    # +model.kwargs.<opt> overrides a factory default; an option the factory does not take is an error naming it.
    model = model_from_cfg(_compose("run", ["+model.kwargs.width=4"]).model, 3)
    assert model.num_features == 16  # small_cnn: K = 4 * width
    with pytest.raises(ValueError, match="model 'small_cnn' has no option 'widht'; its options are: .*width"):
        model_from_cfg(_compose("run", ["+model.kwargs.widht=4"]).model, 3)
