"""Shared fixtures. Real reference data lives in ../shared/data (never committed); tests using it skip without it."""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    # The structured-config schemas (wsol/conf.py) must be in Hydra's ConfigStore before any test composes a
    # config; the entry points register them at import.
    from wsol.conf import register_configs

    register_configs()


# WSOL_SHARED_DATA points elsewhere (a machine without ../shared: scripts/gpu_check.sh carries a copy).
SHARED_DATA = Path(os.environ.get("WSOL_SHARED_DATA") or REPO_ROOT.parent / "shared" / "data")
# WSOL_GPU_TESTS_ON_CPU=1 runs the gpu-marked tests on the CPU at small sizes: a dry run of their code (typos cost
# minutes of a lent GPU), not a test of CUDA; tests of CUDA-only behaviour skip themselves then.
GPU_TESTS_ON_CPU = os.environ.get("WSOL_GPU_TESTS_ON_CPU") == "1"
#: glibc's malloc is what ``cpu_malloc=reuse`` tunes (``wsol.engine.cpu_malloc``); elsewhere it does nothing.
GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.fixture
def shared_data() -> Path:
    """Path of ../shared/data; skips the test cleanly when it is absent (a user's fresh clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real reference data not found at {SHARED_DATA}")
    return SHARED_DATA


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Slow tests are opt-in (--runslow); GPU tests skip cleanly without CUDA (unless GPU_TESTS_ON_CPU).
    import torch

    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not torch.cuda.is_available() and not GPU_TESTS_ON_CPU:
            item.add_marker(skip_gpu)


def synthetic_source(split: str, n: int, num_classes: int = 4, render_size: int = 32):  # noqa: ANN201
    """A small synthetic split with the generator settings of configs/data/synthetic.yaml (their only home).

    Every test that builds a dataset takes its options this way (``wsol.conf.yaml_data_options``):
    ``build_source(name, split=..., root=..., **yaml_data_options(name), **overrides)``.
    """
    from wsol.conf import yaml_data_options
    from wsol.data.datasets import build_source

    options = {**yaml_data_options("synthetic"), "num_images": {split: n}, "render_size": render_size}
    return build_source("synthetic", split=split, num_classes=num_classes, **options)


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module (the scripts are not a package); its folder on ``sys.path`` for its imports."""
    import sys

    folder = Path(__file__).resolve().parents[1] / "scripts"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
