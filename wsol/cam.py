"""Class activation maps (CAM, Zhou et al. CVPR 2016, eq. 2) as pure tensor functions.

Conventions, stated once here:
    * ``M_c(x, y) = sum_k w_k^c f_k(x, y)``: a channel SUM weighted by the classifier row of class c,
      WITHOUT the classifier bias and WITHOUT a ReLU (the paper's definition). For a GAP model the
      spatial mean of ``M_c`` plus the bias ``b_c`` equals the logit of class c exactly.
    * Upsampling is bilinear with ``align_corners=False`` (pixel centres aligned, as OpenCV's and
      PIL's resize do).
    * Normalisation has one home, ``normalize_cams(cams, mode)``: ``"minmax"`` (``(M - min) / (max - min)``;
      the paper's rule and wsolevaluation's) or ``"max"`` (``M / max``; the CAM authors' released heuristics,
      on ``|CAM|``). What a constant map and a NaN become is an explicit argument.

torch is imported inside the torch functions, so that ``normalize_cams`` (NumPy or torch) can be used by the
torch-free modules (``wsol.boxes``, ``wsol.metrics``) without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch


def compute_cams(features: torch.Tensor, fc_weight: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """CAMs of selected classes in one batched op.

    Args:
        features: ``[B, K, h, w]`` last conv features (``model.forward_features``).
        fc_weight: ``[C, K]`` classifier weight (``model.classifier.weight``).
        classes: int64 ``[B, k]`` class indices per image (e.g. top-5 predictions + GT class).

    Returns:
        ``[B, k, h, w]`` in ``features``' dtype: ``out[b, j] = sum_k fc_weight[classes[b, j], k] * features[b, k]``.
    """
    import torch  # noqa: PLC0415  (see the module docstring)

    if features.ndim != 4:
        raise ValueError(f"features must be [B,K,h,w], got shape {tuple(features.shape)}")
    if fc_weight.ndim != 2 or fc_weight.shape[1] != features.shape[1]:
        raise ValueError(f"fc_weight must be [C,{features.shape[1]}], got shape {tuple(fc_weight.shape)}")
    if classes.ndim != 2 or classes.shape[0] != features.shape[0]:
        raise ValueError(f"classes must be [{features.shape[0]},k], got shape {tuple(classes.shape)}")
    weights = fc_weight[classes].to(features.dtype)  # [B, k, K]
    return torch.einsum("bkhw,bjk->bjhw", features, weights)


def cam_classes(logits: torch.Tensor, labels: torch.Tensor, topk: int) -> torch.Tensor:
    """The classes whose CAMs are needed: the ``topk`` predictions (best first) then the GT class.

    Args:
        logits: ``[B, C]``.
        labels: int64 ``[B]`` ground-truth classes.
        topk: number of predicted classes (``cam.topk``; clamped to C).

    Returns:
        int64 ``[B, min(topk, C) + 1]``.
    """
    import torch  # noqa: PLC0415

    k = min(topk, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return torch.cat([top, labels.view(-1, 1).to(top.dtype)], dim=1)


def upsample_cams(cams: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (``align_corners=False``) resize of ``[B, k, h, w]`` maps to ``size = (H, W)``, in float32."""
    import torch.nn.functional as F  # noqa: N812, PLC0415

    return F.interpolate(cams.float(), size=size, mode="bilinear", align_corners=False)


#: ``normalize_cams`` modes: min-max (the paper's box rule, wsolevaluation) and divide-by-max (the released
#: heuristics, after the caller takes ``|CAM|``).
NORMALIZE_MODES = ("minmax", "max")

Maps = TypeVar("Maps")


def normalize_cams(cams: Maps, mode: str, *, constant: str = "zeros", nan: str = "raise") -> Maps:
    """Normalise each map of ``[..., H, W]`` to ``[0, 1]``: THE normalisation rule of wsol.

    One rule for NumPy arrays and torch tensors (same operations, same order):
        * ``mode="minmax"``: ``(x - min) / (max - min)``, computed as ``s = x - min`` then ``s / max(s)``, so
          that in float64 it agrees bit for bit with wsolevaluation's ``x -= x.min(); x /= x.max()``.
        * ``mode="max"``: ``x / max`` (the CAM authors' released heuristics). The maps must be non-negative:
          the caller clamps or takes ``|CAM|`` first, as the released code does.

    Args:
        cams: ``[..., H, W]`` maps, a NumPy array or a torch tensor (integer input becomes float64 / float32).
        mode: ``"minmax"`` or ``"max"``.
        constant: what a map whose divisor is 0 becomes (``"minmax"``: a constant map; ``"max"``: the zero
            map): ``"zeros"`` (wsolevaluation) or ``"ones"`` (every pixel is at the map's maximum: the paper's
            box rule then keeps the whole image).
        nan: ``"raise"`` (default) or ``"zeros"`` (wsolevaluation's ``normalize_scoremap``: a map holding a
            NaN becomes all zeros). An infinity always raises: no protocol defines it.

    Returns:
        The normalised maps, same type, shape and (floating) dtype as ``cams``.

    Raises:
        ValueError: on an unknown mode/option, a map with no pixel, an infinity, a NaN with ``nan="raise"``,
            or a negative value with ``mode="max"``; the message names the offending map indices.
    """
    if mode not in NORMALIZE_MODES:
        raise ValueError(f"normalize_cams: mode must be one of {NORMALIZE_MODES}; got {mode!r}")
    if constant not in ("zeros", "ones"):
        raise ValueError(f"normalize_cams: constant must be 'zeros' or 'ones'; got {constant!r}")
    if nan not in ("raise", "zeros"):
        raise ValueError(f"normalize_cams: nan must be 'raise' or 'zeros'; got {nan!r}")
    ops = _ArrayOps(cams)
    x = ops.as_float(cams)
    if x.ndim < 2 or x.shape[-1] * x.shape[-2] == 0:
        raise ValueError(f"normalize_cams: cams must be [..., H, W] with H, W >= 1; got shape {tuple(x.shape)}")
    flat = x.reshape(tuple(x.shape[:-2]) + (-1,))
    nan_maps = ops.isnan(flat).any(-1, keepdims=True)
    if nan_maps.any():
        if nan == "raise":
            raise ValueError(f"normalize_cams: NaN in map(s) {_map_indices(ops, nan_maps)}")
        flat = ops.where(nan_maps, 0.0, flat)
    inf_maps = ops.isinf(flat).any(-1, keepdims=True)
    if inf_maps.any():
        raise ValueError(f"normalize_cams: infinite value in map(s) {_map_indices(ops, inf_maps)}")
    if mode == "minmax":
        shifted = flat - ops.amin(flat)
    else:
        negative = (flat < 0).any(-1, keepdims=True)
        if negative.any():
            raise ValueError(f"normalize_cams: mode='max' needs non-negative maps (clamp or take |CAM| first); "
                             f"negative values in map(s) {_map_indices(ops, negative)}")
        shifted = flat
    divisor = ops.amax(shifted)
    degenerate = divisor == 0
    out = ops.where(degenerate, 1.0 if constant == "ones" else 0.0, shifted / ops.where(degenerate, 1.0, divisor))
    out = ops.where(nan_maps, 0.0, out)
    return out.reshape(x.shape)


def _map_indices(ops: _ArrayOps, flags: Any) -> str:
    """The flagged maps (``flags`` is ``[..., 1]`` over the leading dims), at most five, for error messages."""
    if flags.ndim == 1:
        return "(the map)"
    rows = [tuple(int(i) for i in row) for row in ops.nonzero(flags[..., 0])][:5]
    return str([r[0] if len(r) == 1 else r for r in rows])


class _ArrayOps:
    """The few operations ``normalize_cams`` needs that NumPy and torch spell differently (torch is imported
    only when a tensor is given)."""

    def __init__(self, x: Any) -> None:
        self.torch = None
        if not isinstance(x, np.ndarray) and type(x).__module__.split(".")[0] == "torch":
            import torch  # noqa: PLC0415

            self.torch = torch

    def as_float(self, x: Any) -> Any:
        if self.torch is None:
            x = np.asarray(x)
            return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)
        return x if x.is_floating_point() else x.float()

    def isnan(self, x: Any) -> Any:
        return np.isnan(x) if self.torch is None else self.torch.isnan(x)

    def isinf(self, x: Any) -> Any:
        return np.isinf(x) if self.torch is None else self.torch.isinf(x)

    def amin(self, x: Any) -> Any:
        return x.min(-1, keepdims=True) if self.torch is None else x.amin(-1, keepdim=True)

    def amax(self, x: Any) -> Any:
        return x.max(-1, keepdims=True) if self.torch is None else x.amax(-1, keepdim=True)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        # A Python float is a "weak" scalar for both libraries: the array's dtype is kept.
        return np.where(cond, a, b) if self.torch is None else self.torch.where(cond, a, b)

    def nonzero(self, flags: Any) -> list[list[int]]:
        return np.argwhere(flags).tolist() if self.torch is None else flags.nonzero().tolist()
