"""The model registry. Each factory registers itself where it is defined, with ``@register_model("name")``.

A factory takes ``num_classes``, ``pool``, ``pretrained`` (and, for pretrained models, ``weights_path``)
and returns a ``CAMNet``; its other keyword arguments are the architecture's options, whose defaults
live in its signature and nowhere else (a model YAML's ``kwargs`` only overrides them).
"""

from __future__ import annotations

from wsol.models.base import CAMNet
from wsol.registry import Registry

MODELS: Registry[CAMNet] = Registry("model")
register_model = MODELS.register
