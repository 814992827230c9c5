"""What every training-time WSOL method is: a loss on a batch, optional extra layers, and its test-time map.

A method never changes ``CAMNet``'s contract (``forward_features`` + ``classifier``): it adds layers in
``model.method_modules`` (saved with the weights, rebuilt from the model spec), reads or edits activations of named
layers for the duration of ONE training forward (``tap_outputs`` / ``edit_outputs``: context managers that remove
their hooks on exit, torch-cam's habit), and, where its localization map is not the plain CAM, gives
``class_maps(model, features, classes)``. Evaluation and the CAM store are the same for every method.

Randomness, stated once here: a method draws from a ``MethodRandom`` seeded by ``(seed, step, rank, micro-batch)``
(``method_random``), never from the global RNGs. A resumed run redraws exactly the masks and boxes an uninterrupted
run draws at the same step, whatever the DataLoader workers or the global RNG states did; the checkpoint's ``step``
is the method's whole RNG state.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

__all__ = ["TrainingMethod", "MethodRandom", "method_random", "tap_outputs", "edit_outputs", "probe_channels",
           "MethodNet", "SPATIAL_RECIPES", "linear_class_maps",
           "new_layer_modules"]

#: Recipes that train on images (the others train on cached pooled features: no image or feature map to work on).
SPATIAL_RECIPES = ("full", "last_stage")


class MethodRandom:
    """The random draws of one micro-batch: a torch ``Generator`` and a NumPy ``Generator`` from one seed."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.torch = torch.Generator().manual_seed(self.seed)
        self.numpy = np.random.default_rng(self.seed)

    def rand(self, *shape: int) -> torch.Tensor:
        """Uniform [0, 1) float32 of ``shape`` (CPU)."""
        return torch.rand(*shape, generator=self.torch)


def method_random(seed: int, step: int, rank: int, micro_batch: int) -> MethodRandom:
    """The ``MethodRandom`` of optimizer step ``step`` (0-based), rank ``rank``, micro-batch ``micro_batch``."""
    key = f"wsol-method:{seed}:{step}:{rank}:{micro_batch}".encode()
    return MethodRandom(int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1)


@contextmanager
def tap_outputs(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Collect the outputs of the named submodules of ``model`` during the ``with`` block (hooks removed on exit).

    Yields:
        A dict ``name -> output`` filled by the forward passes run inside the block (the last call wins).
    """
    out: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name in names:
            module = model.get_submodule(name)
            handles.append(module.register_forward_hook(
                lambda _m, _i, output, name=name: out.__setitem__(name, output)))
        yield out
    finally:
        for h in handles:
            h.remove()


@contextmanager
def edit_outputs(model: nn.Module, edits: dict[str, Callable[[torch.Tensor], torch.Tensor]]) -> Iterator[None]:
    """Replace the output ``y`` of each named submodule by ``edits[name](y)`` inside the block (hooks removed)."""
    handles = []
    try:
        for name, fn in edits.items():
            handles.append(model.get_submodule(name).register_forward_hook(
                lambda _m, _i, output, fn=fn: fn(output)))
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def probe_channels(model: Any, names: Sequence[str], size: int) -> dict[str, int]:
    """Channels of the named submodules' outputs, from one eval-mode forward of a ``[1, 3, size, size]`` zero image."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with tap_outputs(model, names) as taps:
            model.forward_features(torch.zeros(1, 3, size, size, device=device))
    finally:
        model.train(was_training)
    return {name: int(taps[name].shape[1]) for name in names}


def linear_class_maps(features: torch.Tensor, classifier: nn.Linear, classes: torch.Tensor) -> torch.Tensor:
    """A linear classifier's class maps WITH its bias (the 1x1 convolution the ACoL/SPG references use).

    Args:
        features: ``[B, K, h, w]``.
        classifier: ``nn.Linear(K, C)``.
        classes: int64 ``[B, k]``.

    Returns:
        ``[B, k, h, w]``: ``W[c] . f + b[c]`` (the CAM of ``wsol.cam.compute_cams`` plus the bias).
    """
    weight = classifier.weight[classes].to(features.dtype)  # [B, k, K]
    maps = torch.einsum("bkhw,bjk->bjhw", features, weight)
    if classifier.bias is not None:
        maps = maps + classifier.bias[classes].to(features.dtype)[:, :, None, None]
    return maps


class TrainingMethod:
    """Base class: plain CAM training (cross-entropy on the logits, the CAM as the map).

    Subclasses register with ``@register_method("name")``; their ``__init__`` keyword arguments are the method's
    options (``configs/method/<name>.yaml`` holds their defaults), and ``options()`` returns them for the model spec.
    """

    name = "cam"
    #: layers a method needs the model to declare in ``CAMNet.taps[<name>]`` (ADL, SPG); None: none needed
    tap_key: str | None = None

    def options(self) -> dict[str, Any]:
        """The method's options (what ``configs/method/<name>.yaml`` sets), recorded in the model spec."""
        return {}

    def spec(self) -> dict[str, Any]:
        """``{"name": ..., **options}``: what rebuilds this method on a model (``wsol.methods.build_method``)."""
        return {"name": self.name, **self.options()}

    def check(self, model: Any, recipe: str) -> None:
        """Raise ``ValueError`` when the method cannot train ``model`` under ``recipe`` (before any work)."""
        if self.name != "cam" and recipe not in SPATIAL_RECIPES:
            raise ValueError(f"method={self.name} trains on images and feature maps; train.recipe={recipe} trains "
                             f"the classifier on cached pooled features. Use train.recipe=full or last_stage "
                             f"(e.g. experiment=imagenette/lite0_last_stage), or method=cam")
        if self.tap_key is not None:
            self.tap_names(model)

    def tap_names(self, model: Any) -> tuple[str, ...]:
        """The layers ``model`` declares for this method (``CAMNet.taps[self.tap_key]``); ValueError if none."""
        names = getattr(model, "taps", {}).get(self.tap_key)
        if not names:
            declared = [k for k, v in getattr(model, "taps", {}).items() if v]
            raise ValueError(f"method={self.name}: the model declares no {self.tap_key} layer positions "
                             f"(CAMNet.taps[{self.tap_key!r}]); models that do: resnet18, resnet50, vgg16_gap, "
                             f"inception_v3, efficientnet_lite0/1/2, small_cnn"
                             + (f" (this one declares {declared})" if declared else ""))
        return tuple(names)

    def attach(self, model: Any) -> None:
        """Add the method's layers to ``model.method_modules`` and make it the model's map (before loading weights)."""
        model.train_method = self

    def new_layer_modules(self, model: Any) -> list[nn.Module]:
        """The method's layers that train at ``train.new_layer_lr_mult`` (the classifier's rate); the others in
        ``model.method_modules`` train at the trunk's rate. Default: all of them."""
        return [model.method_modules]

    def loss(self, model: Any, inputs: torch.Tensor, labels: torch.Tensor,
             rng: MethodRandom) -> tuple[torch.Tensor, torch.Tensor]:
        """One training forward: ``(logits [B, C], loss)``. Plain CAM: cross-entropy of the logits."""
        logits = model(inputs)
        return logits, F.cross_entropy(logits.float(), labels)

    def class_maps(self, model: Any, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Test-time localization maps ``[B, k, h, w]`` of ``classes [B, k]`` from ``features`` (default: the CAM)."""
        from wsol.cam import compute_cams

        return compute_cams(features.float(), model.classifier.weight.float(), classes)


def new_layer_modules(model: Any) -> list[nn.Module]:
    """The attached method's layers trained at the new-layer learning rate (``TrainingMethod.new_layer_modules``;
    all of ``model.method_modules`` for a model without a method)."""
    method = getattr(model, "train_method", None)
    return [model.method_modules] if method is None else method.new_layer_modules(model)


class MethodNet(nn.Module):
    """What the training loop (and DDP) calls: ``net(inputs, labels, rng) -> (logits, loss)`` of ``method``."""

    def __init__(self, model: nn.Module, method: TrainingMethod) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor,
                rng: MethodRandom) -> tuple[torch.Tensor, torch.Tensor]:
        return self.method.loss(self.model, inputs, labels, rng)
