"""Training-time WSOL methods (wsolevaluation's set): ``cam``, ``has``, ``acol``, ``spg``, ``adl``, ``cutmix``.

    base.py      TrainingMethod (loss on a batch, extra layers, test-time map), MethodNet, per-step random draws,
                 hook context managers (tap_outputs / edit_outputs)
    cam.py has.py cutmix.py adl.py acol.py spg.py   one module per method, registered with @register_method

A method is chosen with the Hydra group ``method=<name>`` (``configs/method/<name>.yaml`` holds its options), recorded
in the model spec (``spec["method"]``), and re-attached when a checkpoint is loaded, so ``wsol-evaluate
checkpoint=...`` rebuilds its layers and its map. Adding one: a module with a ``TrainingMethod`` subclass decorated
``@register_method("name")`` (listed in ``wsol.methods.registry``) and ``configs/method/<name>.yaml``.
"""

from __future__ import annotations

from typing import Any

from wsol.methods.base import (SPATIAL_RECIPES, MethodNet, MethodRandom, TrainingMethod, method_random,
                               new_layer_modules)
from wsol.methods.registry import METHODS, register_method

__all__ = ["METHODS", "MethodNet", "MethodRandom", "SPATIAL_RECIPES", "TrainingMethod", "attach_method",
           "build_method", "list_methods", "method_options", "method_random", "new_layer_modules",
           "register_method"]


def list_methods() -> list[str]:
    """Names of the registered training-time methods."""
    return METHODS.names()


def method_options(name: str) -> tuple[str, ...]:
    """The options (keyword arguments) of method ``name``."""
    return METHODS.options(name) or ()


def build_method(spec: dict[str, Any] | None) -> TrainingMethod:
    """The method of a spec ``{"name": ..., **options}`` (None or a spec without a name: plain CAM)."""
    spec = dict(spec or {})
    name = spec.pop("name", "cam") or "cam"
    return METHODS.build(name, **spec)


def attach_method(model: Any, spec: dict[str, Any] | None) -> TrainingMethod:
    """Build the method of ``spec`` and attach it to ``model`` (its layers exist before weights are loaded)."""
    method = build_method(spec)
    method.attach(model)
    return method
