"""Post-hoc class maps on a ``CAMNet``'s feature layer (``cam.method``), as pure tensor functions plus one producer.

    ``gradcam``    Grad-CAM    (Selvaraju et al., ICCV 2017)
    ``gradcampp``  Grad-CAM++  (Chattopadhay et al., WACV 2018)
    ``xgradcam``   XGrad-CAM   (Fu et al., BMVC 2020)
    ``layercam``   LayerCAM    (Jiang et al., IEEE TIP 2021)
    ``scorecam``   Score-CAM   (Wang et al., CVPR-W 2020)
    ``center``     wsolevaluation's centre-Gaussian baseline (Choe et al., CVPR 2020 / TPAMI 2022): no network map

``posthoc_cams`` has the contract of ``wsol.evaluation.inference.forward_cams`` (top-k classes then the GT class,
their softmax probabilities, float32 maps at feature-map resolution on the CPU), so every protocol, the CAM store
and the evaluators are the same for every map. ``cam.method=cam`` is not here: it stays ``forward_cams``.

Conventions, stated once here:
    * The layer is the output of ``model.forward_features``: ``A [B, K, h, w]`` (the CAM's layer). The class score
      ``y^c`` is the LOGIT (before softmax) of ``model.forward_head`` (pooling, dropout — the identity in eval mode
      — and the classifier), as in pytorch-grad-cam and torchcam.
    * ``g = dy^c / dA`` (``grads [B, k, K, h, w]``), one backward per class COLUMN of ``classes [B, k]``, batched
      over the images: ``forward_head`` treats images independently in eval mode, so the gradient of
      ``sum_b y_b^{c_b}`` with respect to image b's features is image b's own gradient. The backward runs through
      ``forward_head`` only (features are computed once, without grad): for a GAP/GMP head it is pool + linear.
    * Every map is a channel SUM followed by a ReLU (all five papers apply one), in float32, at feature-map
      resolution and NOT normalised: upsampling and normalisation are the evaluators' (``wsol.cam``).
    * Definitions (``S_k = sum_ij A_kij``; the reference implementation each matches, up to its eps):
        gradcam   ``ReLU(sum_k a_k A_k)``, ``a_k = mean_ij g_kij``                 pytorch-grad-cam, torchcam
        gradcampp ``ReLU(sum_k a_k A_k)``, ``a_k = sum_ij ReLU(g_kij) / (2 + S_k g_kij)``: the paper's eq. 19
                  closed form for the score ``exp(y^c)`` (its exp factors cancel in alpha, and the remaining
                  positive per-class factor exp(y^c) is dropped), i.e. ``alpha = g^2 / (2 g^2 + S g^3)`` with the
                  ``g^2`` cancelled — no eps. pytorch-grad-cam computes the same with ``+1e-6`` in the denominator,
                  which is NOT negligible where ``g^2 ~ 1e-6`` (ImageNet heads: ``g ~ w / hw ~ 1e-3``);
                  torchcam 0.5.0 computes ``a_k = sum_ij g^2 ReLU(g)`` (its in-place division by the denominator
                  acts on a boolean-indexed copy and is lost). ``scripts/check_posthoc_against_libraries.py``
                  shows both.
        xgradcam  ``ReLU(sum_k a_k A_k)``, ``a_k = sum_ij g_kij A_kij / S_k`` (0 where ``S_k = 0``, a channel
                  that is zero when A >= 0); the libraries add an eps (1e-7, 1e-8) to ``S_k`` instead.
        layercam  ``ReLU(sum_k ReLU(g_kij) A_kij)``: a weight per position               pytorch-grad-cam, torchcam
        scorecam  ``ReLU(sum_k p_k^c A_k)`` with ``p_k^c = softmax_C(f(X * H_k))[c]``: the softmax over CLASSES of
                  the logits of the image masked by ``H_k``, no baseline subtracted, where ``H_k`` is ``A_k``
                  upsampled to the input (bilinear, ``align_corners=False``) and min-max normalised; a constant
                  channel (no spatial information; ``H_k`` undefined) gets ``p_k^c = 0``. This is the authors'
                  code (haofanwang/Score-CAM ``cam/scorecam.py``), except that its sum runs over the upsampled
                  maps and the ReLU follows at input resolution (here: at feature resolution, before the
                  evaluators' bilinear upsampling, which is linear). The paper's Algorithm 1 writes
                  ``softmax_k(f^c(M_k) - f^c(X_b))`` over CHANNELS instead; pytorch-grad-cam implements that
                  (softmax over channels of the masked logits, masks upsampled with ``align_corners=True``,
                  ``+1e-8`` in the min-max), and torchcam too (min-max at feature resolution BEFORE upsampling;
                  its subtracted baseline is the unmasked image's logit, a constant over channels that the
                  softmax cancels). Exact: all K channels, ``scorecam_batch_size`` masked images per forward,
                  the forwards of an image shared by its k classes. Cost: one forward of the whole network per
                  non-constant channel and image. EfficientNet-Lite0 at 224 px (K = 1280; on real ILSVRC val
                  images 440-970 channels are non-constant, ~700 typically) takes ~17-25 s per image in chunks of
                  32 on one core of a 2-core x86-64 CPU that a training job shared (~25-35 ms per masked forward;
                  chunks of 64/128 were slower there), ~1000x the CAM or Grad-CAM (~0.02 s per image);
                  ``results/methods/posthoc_check.md``.
        center    ``exp(-((u - 1/2)^2 + (v - 1/2)^2) / (2 sigma^2))`` at the centres of the h x w feature cells,
                  ``u = (x + 1/2) / w``, ``v = (y + 1/2) / h`` (image side = 1), ``sigma = CENTER_SIGMA = 1/4``;
                  the same map for every image and class. wsolevaluation's code has no such baseline; its papers
                  describe an isotropic Gaussian centred on the image. Under min-max normalisation and MaxBoxAcc's
                  best threshold, sigma only re-spaces the threshold grid over the same family of centred boxes
                  (sigma = 1/4: an edge's midpoint is at exp(-2) = 0.14 of the peak, a corner at exp(-4) = 0.02).
                  The map is sampled at feature resolution like every other map (the same store, the evaluators'
                  bilinear upsampling). Classes and probabilities still come from the network (the protocols
                  score classification too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from wsol.cam import cam_classes, normalize_cams, upsample_cams
from wsol.choices import CAM_METHODS

__all__ = ["CAM_METHODS", "POSTHOC_METHODS", "GRADIENT_METHODS", "CENTER_SIGMA", "gradcam", "gradcampp", "xgradcam",
           "layercam", "scorecam", "scorecam_active_channels", "scorecam_masks", "scorecam_channel_scores",
           "center_gaussian", "class_gradients", "posthoc_cams"]

#: Maps computed from the gradient of the class logit with respect to the features.
GRADIENT_METHODS = ("gradcam", "gradcampp", "xgradcam", "layercam")
#: Every map of this module.
POSTHOC_METHODS = tuple(m for m in CAM_METHODS if m != "cam")
#: Standard deviation of the centre-Gaussian baseline, as a fraction of the image side.
CENTER_SIGMA = 0.25


# ----------------------------------------------------------------------------- the maps (pure functions)
def _check(features: torch.Tensor, per_class: torch.Tensor, name: str, ndim: int) -> None:
    if features.ndim != 4:
        raise ValueError(f"features must be [B,K,h,w], got shape {tuple(features.shape)}")
    b, k = features.shape[:2]
    if per_class.ndim != ndim or per_class.shape[0] != b or per_class.shape[2] != k or (
            ndim == 5 and per_class.shape[3:] != features.shape[2:]):
        want = f"[{b},k,{k},{features.shape[2]},{features.shape[3]}]" if ndim == 5 else f"[{b},k,{k}]"
        raise ValueError(f"{name} must be {want}, got shape {tuple(per_class.shape)}")


def _weighted_sum_relu(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``ReLU(sum_k weights[b, j, k] * features[b, k])``: ``[B, K, h, w]`` x ``[B, k, K]`` -> ``[B, k, h, w]``."""
    return torch.relu(torch.einsum("bkhw,bjk->bjhw", features, weights.to(features.dtype)))


def gradcam(features: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM: ``ReLU(sum_k mean_ij(g_kij) A_k)`` (channel sum, ReLU, no normalisation).

    Args:
        features: ``[B, K, h, w]`` activations ``A``.
        grads: ``[B, k, K, h, w]`` gradients of k class logits with respect to ``features``.

    Returns:
        ``[B, k, h, w]``, non-negative. For a GAP head at this layer ``g_kij = w_ck / hw``, so the map is
        ``ReLU(CAM) / hw`` (also for a GMP head, whose per-channel gradient also sums to ``w_ck``).
    """
    _check(features, grads, "grads", 5)
    return _weighted_sum_relu(features, grads.mean((-2, -1)))


def gradcampp(features: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++: ``ReLU(sum_k a_k A_k)``, ``a_k = sum_ij ReLU(g_kij) / (2 + S_k g_kij)``, ``S_k = sum_ij A_kij``.

    The paper's closed form (eq. 19 with the score ``exp(y^c)``): ``alpha_kij = g^2 / (2 g^2 + S_k g^3)``, which is
    ``1 / (2 + S_k g)`` wherever it is used (``g > 0``); no eps (module docstring: how the libraries differ). A
    position with ``2 + S_k g = 0`` (possible only for features with negative values) gives an infinite weight.

    Args:
        features: ``[B, K, h, w]``.
        grads: ``[B, k, K, h, w]``.

    Returns:
        ``[B, k, h, w]``, non-negative.
    """
    _check(features, grads, "grads", 5)
    sums = features.sum((-2, -1))[:, None, :, None, None]  # [B, 1, K, 1, 1]
    positive = grads > 0
    g = torch.where(positive, grads, 0.0)
    weights = torch.where(positive, g / (2.0 + sums * g), 0.0).sum((-2, -1))
    return _weighted_sum_relu(features, weights)


def xgradcam(features: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM: ``ReLU(sum_k a_k A_k)``, ``a_k = sum_ij g_kij A_kij / S_k`` (0 where ``S_k = 0``).

    Args:
        features: ``[B, K, h, w]``.
        grads: ``[B, k, K, h, w]``.

    Returns:
        ``[B, k, h, w]``, non-negative. For a GAP head at this layer ``a_k = w_ck / hw`` (where ``S_k != 0``): the
        map is ``ReLU(CAM) / hw``; for a GMP head ``a_k = w_ck max(A_k) / S_k``, another map.
    """
    _check(features, grads, "grads", 5)
    sums = features.sum((-2, -1))[:, None]  # [B, 1, K]
    numerator = (grads * features[:, None]).sum((-2, -1))  # [B, k, K]
    nonzero = sums != 0
    weights = torch.where(nonzero, numerator / torch.where(nonzero, sums, 1.0), 0.0)
    return _weighted_sum_relu(features, weights)


def layercam(features: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """LayerCAM: ``ReLU(sum_k ReLU(g_kij) A_kij)``, a weight per channel AND position.

    Args:
        features: ``[B, K, h, w]``.
        grads: ``[B, k, K, h, w]``.

    Returns:
        ``[B, k, h, w]``, non-negative. For a GAP head at this layer: ``ReLU(sum_k ReLU(w_ck) A_k) / hw``, the CAM
        with the negative classifier weights zeroed.
    """
    _check(features, grads, "grads", 5)
    return torch.relu((grads.clamp_min(0) * features[:, None]).sum(2))


def scorecam(features: torch.Tensor, channel_scores: torch.Tensor) -> torch.Tensor:
    """Score-CAM's combination: ``ReLU(sum_k p_k^c A_k)``.

    Args:
        features: ``[B, K, h, w]``.
        channel_scores: ``[B, k, K]`` the weight of each channel for each class (``scorecam_channel_scores``:
            the class's softmax probability on the image masked by the channel).

    Returns:
        ``[B, k, h, w]``, non-negative.
    """
    _check(features, channel_scores, "channel_scores", 3)
    return _weighted_sum_relu(features, channel_scores)


def scorecam_active_channels(features: torch.Tensor) -> torch.Tensor:
    """``[B, K]`` bool: the channels of ``features [B, K, h, w]`` that are not constant over space (Score-CAM runs
    one masked forward for each; a constant channel has no mask)."""
    flat = features.flatten(2)
    return flat.amax(2) > flat.amin(2)


def scorecam_masks(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Score-CAM's masks ``H_k``: ``[N, h, w]`` activations upsampled to ``size = (H, W)`` (``upsample_cams``:
    bilinear, ``align_corners=False``), then min-max normalised (``normalize_cams``; a constant map becomes 0).

    Returns:
        ``[N, H, W]`` float32 in [0, 1].
    """
    return normalize_cams(upsample_cams(maps[None], size)[0], "minmax", constant="zeros")


@torch.no_grad()
def scorecam_channel_scores(model: torch.nn.Module, images: torch.Tensor, features: torch.Tensor,
                            classes: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Score-CAM's channel weights: ``p_k^c = softmax_C(model(X * H_k))[c]``, 0 for a constant channel.

    Every non-constant channel of every image is one masked forward of the whole network, run
    ``batch_size`` masked images at a time; the forwards of an image serve all its classes.

    Args:
        model: a ``CAMNet`` in eval mode (``model(x)`` gives the logits).
        images: ``[B, 3, H, W]`` the (normalised) network inputs.
        features: ``[B, K, h, w]`` = ``model.forward_features(images)``.
        classes: int64 ``[B, k]``.
        batch_size: masked images per forward pass (memory only).

    Returns:
        ``[B, k, K]`` float32 probabilities.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pairs = scorecam_active_channels(features).nonzero()  # (image, channel) pairs that have a mask
    out = torch.zeros(features.shape[0], classes.shape[1], features.shape[1], device=features.device)
    for chunk in pairs.split(batch_size):
        b, c = chunk.unbind(1)
        masks = scorecam_masks(features[b, c].float(), (images.shape[-2], images.shape[-1]))
        logits = model(images[b] * masks[:, None].to(images.dtype)).float()
        out[b, :, c] = logits.softmax(1).gather(1, classes[b])
    return out


def center_gaussian(h: int, w: int) -> torch.Tensor:
    """The centre-Gaussian baseline map ``[h, w]`` (float32, peak 1 at the centre; module docstring)."""
    v = (torch.arange(h, dtype=torch.float64) + 0.5) / h - 0.5
    u = (torch.arange(w, dtype=torch.float64) + 0.5) / w - 0.5
    d2 = v[:, None] ** 2 + u[None, :] ** 2
    return torch.exp(-d2 / (2 * CENTER_SIGMA**2)).float()


# ----------------------------------------------------------------------------- gradients and the producer
def _head_logits(model: torch.nn.Module, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(leaf, logits)``: a copy of ``features`` requiring grad, and ``forward_head`` of it (grad enabled)."""
    leaf = features.detach().requires_grad_(True)
    with torch.enable_grad():
        return leaf, model.forward_head(leaf).float()


def _column_gradients(logits: torch.Tensor, leaf: torch.Tensor, classes: torch.Tensor) -> Iterator[torch.Tensor]:
    """``d logit[b, classes[b, j]] / d leaf[b]`` for j = 0, 1, ...: ONE backward per column, ``[B, K, h, w]`` each."""
    n = classes.shape[1]
    for j in range(n):
        with torch.enable_grad():
            score = logits.gather(1, classes[:, j:j + 1]).sum()  # images are independent: per-image gradients
        (grad,) = torch.autograd.grad(score, leaf, retain_graph=j < n - 1)
        yield grad


def class_gradients(model: torch.nn.Module, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Gradients of the class logits with respect to the features, ``classes.shape[1]`` backward passes.

    Args:
        model: a ``CAMNet`` in eval mode.
        features: ``[B, K, h, w]`` = ``model.forward_features(images)``.
        classes: int64 ``[B, k]``.

    Returns:
        ``[B, k, K, h, w]`` float32.
    """
    leaf, logits = _head_logits(model, features)
    return torch.stack([g.float() for g in _column_gradients(logits, leaf, classes)], 1)


_GRADIENT_MAPS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "gradcam": gradcam, "gradcampp": gradcampp, "xgradcam": xgradcam, "layercam": layercam}


def posthoc_cams(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, topk: int, method: str,
                 scorecam_batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch of post-hoc maps: ``(classes [B, k+1], probs [B, k+1], cams [B, k+1, h, w])`` on the CPU.

    The contract of ``forward_cams``: ``classes`` are the top-k predictions (best first) then the GT class,
    ``probs`` their softmax probabilities (the same logits as ``forward_cams``), ``cams`` float32 at feature-map
    resolution. One ``forward_features`` without grad; the gradient maps then take one ``forward_head`` and k+1
    backward passes through it, Score-CAM ``scorecam_channel_scores``, ``center`` nothing.

    Args:
        model: a ``CAMNet`` in eval mode.
        images: ``[B, 3, H, W]`` normalised inputs.
        labels: int64 ``[B]`` GT classes.
        topk: number of predicted classes.
        method: one of ``POSTHOC_METHODS``.
        scorecam_batch_size: Score-CAM's masked images per forward (``cam.scorecam_batch_size``).

    Raises:
        ValueError: an unknown method, or a model in training mode (dropout would make the maps random, batch
            statistics the images of a batch dependent).
    """
    if method not in POSTHOC_METHODS:
        raise ValueError(f"unknown post-hoc map {method!r}; expected one of {POSTHOC_METHODS}")
    if model.training:
        raise ValueError("posthoc_cams needs the model in eval mode (model.eval())")
    with torch.no_grad():
        features = model.forward_features(images)
        if method not in GRADIENT_METHODS:  # no graph to keep through Score-CAM's masked forwards
            logits = model.forward_head(features).float()
    if method in GRADIENT_METHODS:
        leaf, logits = _head_logits(model, features)
    classes = cam_classes(logits.detach(), labels.to(logits.device), topk)
    probs = logits.detach().softmax(1).gather(1, classes)
    maps = features.float()
    if method in GRADIENT_METHODS:
        fn = _GRADIENT_MAPS[method]
        cams = torch.cat([fn(maps, g.float()[:, None]) for g in _column_gradients(logits, leaf, classes)], 1)
    elif method == "scorecam":
        cams = scorecam(maps, scorecam_channel_scores(model, images, features, classes, scorecam_batch_size))
    else:
        b, n, (h, w) = maps.shape[0], classes.shape[1], maps.shape[2:]
        cams = center_gaussian(h, w).expand(b, n, h, w).contiguous()
    return classes.cpu(), probs.cpu(), cams.cpu()

