"""Class activation maps (CAM, Zhou et al. CVPR 2016, eq. 2) as pure tensor functions.

Conventions, stated once here:
    * ``M_c(x, y) = sum_k w_k^c f_k(x, y)``: a channel SUM weighted by the classifier row of class c,
      WITHOUT the classifier bias and WITHOUT a ReLU (the paper's definition). For a GAP model the
      spatial mean of ``M_c`` plus the bias ``b_c`` equals the logit of class c exactly.
    * Upsampling is bilinear with ``align_corners=False`` (pixel centres aligned, as OpenCV's and
      PIL's resize do).
    * Normalisation is min-max per map: ``(M - min) / (max - min)``; a constant map becomes zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def compute_cams(features: torch.Tensor, fc_weight: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """CAMs of selected classes in one batched op.

    Args:
        features: ``[B, K, h, w]`` last conv features (``model.forward_features``).
        fc_weight: ``[C, K]`` classifier weight (``model.classifier.weight``).
        classes: int64 ``[B, k]`` class indices per image (e.g. top-5 predictions + GT class).

    Returns:
        ``[B, k, h, w]`` in ``features``' dtype: ``out[b, j] = sum_k fc_weight[classes[b, j], k] * features[b, k]``.
    """
    if features.ndim != 4:
        raise ValueError(f"features must be [B,K,h,w], got shape {tuple(features.shape)}")
    if fc_weight.ndim != 2 or fc_weight.shape[1] != features.shape[1]:
        raise ValueError(f"fc_weight must be [C,{features.shape[1]}], got shape {tuple(fc_weight.shape)}")
    if classes.ndim != 2 or classes.shape[0] != features.shape[0]:
        raise ValueError(f"classes must be [{features.shape[0]},k], got shape {tuple(classes.shape)}")
    weights = fc_weight[classes].to(features.dtype)  # [B, k, K]
    return torch.einsum("bkhw,bjk->bjhw", features, weights)


def cam_classes(logits: torch.Tensor, labels: torch.Tensor, topk: int = 5) -> torch.Tensor:
    """The classes whose CAMs are needed: the ``topk`` predictions (best first) then the GT class.

    Args:
        logits: ``[B, C]``.
        labels: int64 ``[B]`` ground-truth classes.
        topk: number of predicted classes (clamped to C).

    Returns:
        int64 ``[B, min(topk, C) + 1]``.
    """
    k = min(topk, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return torch.cat([top, labels.view(-1, 1).to(top.dtype)], dim=1)


def upsample_cams(cams: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (``align_corners=False``) resize of ``[B, k, h, w]`` maps to ``size = (H, W)``, in float32."""
    return F.interpolate(cams.float(), size=size, mode="bilinear", align_corners=False)


def normalize_cams(cams: torch.Tensor, mode: str = "minmax") -> torch.Tensor:
    """Min-max normalise each map of ``[..., H, W]`` to [0, 1]; constant maps become zeros.

    Raises:
        ValueError: if a map holds NaN or inf (a silent number from it would be wrong).
    """
    if not torch.isfinite(cams).all():
        bad = (~torch.isfinite(cams)).flatten(-2).any(-1).nonzero().tolist()
        raise ValueError(f"CAM contains NaN/inf at map indices {bad[:5]}")
    flat = cams.flatten(-2)
    if mode == "max":
        hi = flat.amax(-1, keepdim=True)
        return torch.where(hi > 0, flat / hi.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat)).view_as(cams)
    lo = flat.amin(-1, keepdim=True)
    span = flat.amax(-1, keepdim=True) - lo
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat))
    return out.view_as(cams)
