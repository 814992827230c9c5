"""The three protocols as evaluator sets, and ``evaluate_model`` / ``rescore_store`` that run them.

    ``paper``            ClassificationEvaluator(1, k) + PaperLocalizationEvaluator   (network: ``forward_cams``)
    ``wsolevaluation``   ClassificationEvaluator(1, k) + WsolEvalEvaluator             (network: ``forward_cams``)
    ``cam16_heuristics`` ClassificationEvaluator(1, 5; guesses c1 c1 c2 c2 c3) + Cam16LocalizationEvaluator
                                                                                   (network: ``TenCropCAMs``)
Every protocol goes through the same ``inference_on_dataset`` loop and the same CAM store, so a store written
under one protocol's producer can be re-scored by any protocol with the same producer (``paper`` <->
``wsolevaluation``; ten-crop canvases only by ``cam16_heuristics``).

``cam.method`` (``ProtocolSettings.cam_method``) chooses the map of ``paper`` and ``wsolevaluation``: ``cam`` is
``forward_cams``; the post-hoc maps (``gradcam``, ``gradcampp``, ``xgradcam``, ``layercam``, ``scorecam``,
``center``) are ``wsol.posthoc.posthoc_cams``, with the same contract. A store holds one method's maps and is
re-scored only under that method. ``cam16_heuristics`` is defined for the CAM only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from wsol.data.records import ImageRecord
from wsol.evaluation.base import EvaluatorList
from wsol.evaluation.cam16 import GUESS_COLUMNS, Cam16LocalizationEvaluator, TenCropCAMs
from wsol.evaluation.classification import ClassificationEvaluator
from wsol.evaluation.inference import forward_cams, inference_on_dataset, score_cam_store
from wsol.evaluation.localization import PaperLocalizationEvaluator
from wsol.evaluation.store import CAMStore, CAMStoreWriter
from wsol.evaluation.wsoleval import WsolEvalEvaluator
from wsol.models import CAMNet, check_cam_model
from wsol.posthoc import CAM_METHODS, posthoc_cams

__all__ = ["PROTOCOLS", "EvalOutput", "ProtocolSettings", "build_evaluator", "producer_kind", "stored_cam_method",
           "evaluate_model", "rescore_store", "settings_summary"]

from wsol.choices import PROTOCOLS  # noqa: E402  (the one list: wsol.choices)


@dataclass
class EvalOutput:
    """Flat metrics (percent), named curves and per-image rows of one evaluation."""

    metrics: dict[str, Any]
    curves: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    rows: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class ProtocolSettings:
    """Everything a protocol's evaluators need besides the data (``configs/eval`` + ``configs/cam``)."""

    protocol: str
    topk: int
    cam_threshold: float
    cam_curve_interval: float
    iou_thresholds: tuple[int, ...]
    box_method: str
    tau_policy: str
    tau: float | None
    tau_folds: int
    cam_method: str
    scorecam_batch_size: int

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown eval.protocol {self.protocol!r}; expected one of {PROTOCOLS}")
        if self.topk < 1:
            raise ValueError(f"cam.topk must be >= 1, got {self.topk}")
        if self.cam_method not in CAM_METHODS:
            raise ValueError(f"unknown cam.method {self.cam_method!r}; expected one of {CAM_METHODS}")
        if self.protocol == "cam16_heuristics" and self.cam_method != "cam":
            raise ValueError(CAM16_METHOD_ERROR.format(method=self.cam_method))
        if self.scorecam_batch_size < 1:
            raise ValueError(f"cam.scorecam_batch_size must be >= 1, got {self.scorecam_batch_size}")


#: The one message for a post-hoc map under cam16_heuristics (``ProtocolSettings`` and ``wsol.config.check_values``).
CAM16_METHOD_ERROR = ("eval.protocol=cam16_heuristics scores the CAM authors' ten-crop CAMs; cam.method={method} is "
                      "not defined there (use cam.method=cam, or eval.protocol=paper|wsolevaluation)")


def stored_cam_method(meta: dict[str, Any]) -> str:
    """The ``cam.method`` whose maps a CAM store holds (a store made before post-hoc maps existed holds CAMs)."""
    return meta.get("cam_method", "cam")


def producer_kind(protocol: str) -> str:
    """``ten_crop`` for cam16_heuristics (canvas maps), ``cam`` otherwise (feature-map CAMs)."""
    return "ten_crop" if protocol == "cam16_heuristics" else "cam"


def build_evaluator(s: ProtocolSettings, *, blacklist: Collection[str] = (),
                    load_mask: Callable[[ImageRecord], np.ndarray] | None = None,
                    heldout_curve: dict[str, np.ndarray] | None = None, tau_policy: str | None = None) -> EvaluatorList:
    """The evaluators of protocol ``s.protocol``, fresh."""
    ks = sorted({1, s.topk})
    if s.protocol == "paper":
        return EvaluatorList([ClassificationEvaluator(ks), PaperLocalizationEvaluator(ks, s.cam_threshold, blacklist)])
    if s.protocol == "wsolevaluation":
        return EvaluatorList([ClassificationEvaluator(ks), WsolEvalEvaluator(
            s.cam_curve_interval, s.iou_thresholds, box_method=s.box_method, load_mask=load_mask,
            tau_policy=tau_policy or s.tau_policy, tau=s.tau, heldout_curve=heldout_curve, folds=s.tau_folds)])
    if s.topk < 5:
        raise ValueError(f"cam16_heuristics scores five guesses from the top-3 classes: cam.topk must be >= 5, "
                         f"got {s.topk}")
    return EvaluatorList([ClassificationEvaluator((1, 5), guess_columns=GUESS_COLUMNS),
                          Cam16LocalizationEvaluator(blacklist)])


def _producer(model: CAMNet, s: ProtocolSettings, image_size: int) -> tuple[Callable, int]:
    """The CAM producer of the protocol and the input size its transform must give."""
    if producer_kind(s.protocol) == "ten_crop":
        # The authors' geometry is 224 crops of 256 for a 224-input network; other sizes keep the ratio.
        size = round(image_size * 256 / 224)
        return TenCropCAMs(model, s.topk, size, image_size), size
    if s.cam_method == "cam":
        return (lambda x, y: forward_cams(model, x, y, s.topk)), image_size
    return (lambda x, y: posthoc_cams(model, x, y, s.topk, s.cam_method, s.scorecam_batch_size)), image_size


@torch.no_grad()
def evaluate_model(model: CAMNet, source: Any, s: ProtocolSettings, *, image_size: int, batch_size: int,
                   num_workers: int, device: torch.device, store: CAMStoreWriter | None = None,
                   heldout_source: Any | None = None,
                   mask_loader: Callable[[Any], Callable[[ImageRecord], np.ndarray] | None] = lambda s: None,
                   fused: bool) -> EvalOutput:
    """Score ``model`` on ``source`` under ``s.protocol``.

    Args:
        model: a ``CAMNet``.
        source: the scored split (``ImageSource``).
        s: protocol settings.
        image_size: evaluation input side (the whole image resized; ten-crop: crops of that side).
        store: a CAM store writer receiving (and resuming) this split's CAMs, or None.
        heldout_source: the split whose best tau the ``heldout`` policy applies (scored first).
        mask_loader: ``source -> record -> mask`` for PxAP, or None where a source has no masks.
        fused: score the inference copy of the model (``wsol.models.fusion.fuse_for_inference``: eval-mode
            BatchNorms folded into the convolutions, TF-SAME padding without copies): faster, the same maps up to
            float rounding.

    Returns:
        ``EvalOutput`` (metrics include ``eval_seconds``; when ``fused``, ``fused_bn_pairs`` and
        ``fusion_max_abs_diff``, the largest feature difference from the model as trained on the check batch).
    """
    from wsol.data.transforms import build_eval_transform

    check_cam_model(model)
    if len(source.annotations) == 0:
        raise ValueError("evaluation dataset is empty")
    if s.topk > model.num_classes:
        s = ProtocolSettings(**{**s.__dict__, "topk": model.num_classes})
    model.eval().to(device)
    t0 = time.time()
    fusion = {}
    if fused:
        from wsol.models.fusion import check_batch, fuse_for_inference

        model = fuse_for_inference(model, check_batch(image_size, device))
        fusion = {"fused_bn_pairs": len(model.fused_bn_pairs), "fusion_max_abs_diff": model.fusion_max_abs_diff}
    producer, input_size = _producer(model, s, image_size)
    transform = build_eval_transform(input_size, model.mean, model.std)
    heldout_curve = None
    if s.protocol == "wsolevaluation" and s.tau_policy == "heldout":
        if heldout_source is None:
            raise ValueError("eval.tau_policy=heldout needs a held-out split (data.val_split) with boxes")
        held = build_evaluator(s, load_mask=mask_loader(heldout_source), tau_policy="oracle")
        inference_on_dataset(producer, heldout_source, held, transform=transform, batch_size=batch_size,
                             num_workers=num_workers, device=device, desc="evaluate[held-out split]")
        curves = held.curves()
        if "boxacc" not in curves:
            raise ValueError("eval.tau_policy=heldout: the held-out split has no image with a box")
        heldout_curve = curves["boxacc"]
    evaluator = build_evaluator(s, blacklist=source.annotations.blacklist, load_mask=mask_loader(source),
                                heldout_curve=heldout_curve)
    inference_on_dataset(producer, source, evaluator, transform=transform, batch_size=batch_size,
                         num_workers=num_workers, device=device, store=store, desc=f"evaluate[{s.protocol}]")
    if store is not None:
        store.close()
    out = EvalOutput(evaluator.evaluate(), evaluator.curves(), evaluator.rows())
    out.metrics.update(fusion, eval_seconds=round(time.time() - t0, 2))
    return out


def rescore_store(store: CAMStore, source: Any, s: ProtocolSettings, *, batch_size: int = 256,
                  mask_loader: Callable[[Any], Callable[[ImageRecord], np.ndarray] | None] = lambda s: None,
                  heldout_curve: dict[str, np.ndarray] | None = None) -> EvalOutput:
    """Score the CAMs of ``store`` under ``s.protocol`` (no network).

    Raises:
        ValueError: the store holds another producer's maps (ten-crop canvases vs feature-map CAMs) or another
            ``cam.method``'s, fewer predicted classes than ``s.topk``, or (checked by the caller) other images.
    """
    kind = store.meta.get("producer", "cam")
    if kind != producer_kind(s.protocol):
        raise ValueError(f"{store.dir}: the store holds {kind!r} maps; protocol {s.protocol!r} needs "
                         f"{producer_kind(s.protocol)!r} maps — evaluate the model under that protocol instead")
    method = stored_cam_method(store.meta)
    if method != s.cam_method:
        raise ValueError(f"{store.dir}: the store holds cam.method={method} maps, cam.method={s.cam_method} was "
                         f"asked — re-score it with cam.method={method}, or evaluate the model with "
                         f"cam.method={s.cam_method}")
    if s.tau_policy == "heldout" and s.protocol == "wsolevaluation" and heldout_curve is None:
        raise ValueError("eval.tau_policy=heldout needs the network to score data.val_split; use oracle, fixed or "
                         "crossfold when re-scoring stored CAMs")
    t0 = time.time()
    evaluator = build_evaluator(s, blacklist=source.annotations.blacklist, load_mask=mask_loader(source),
                                heldout_curve=heldout_curve)
    score_cam_store(store, source, evaluator, topk=s.topk, batch_size=batch_size)
    out = EvalOutput(evaluator.evaluate(), evaluator.curves(), evaluator.rows())
    out.metrics["eval_seconds"] = round(time.time() - t0, 2)
    return out


def settings_summary(s: ProtocolSettings) -> dict[str, Any]:
    """The protocol settings that belong in a result row."""
    row: dict[str, Any] = {"protocol": s.protocol, "cam_method": s.cam_method, "topk": s.topk}
    if s.protocol == "paper":
        row["cam_threshold"] = s.cam_threshold
    if s.protocol == "wsolevaluation":
        row["cam_curve_interval"] = s.cam_curve_interval
    return row

