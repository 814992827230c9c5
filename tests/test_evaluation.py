"""Evaluators on hand-made CAMs with hand-computed results, the cam16 pipeline against an independent
implementation, the threshold policies, and the evaluation loop on tiny synthetic data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from conftest import synthetic_source
from wsol import CONFIG_DIR
from wsol.conf import yaml_data_options
from wsol.config import source_from_cfg
from wsol.data.datasets import build_source
from wsol.data.records import ImageRecord
from wsol.dtbox import dt_box, dt_rects_to_xyxy
from wsol.evaluation import CAMBatch, ProtocolSettings, build_evaluator, evaluate_model
from wsol.evaluation.cam16 import Cam16LocalizationEvaluator, TenCropCAMs
from wsol.evaluation.classification import ClassificationEvaluator
from wsol.evaluation.localization import PaperLocalizationEvaluator
from wsol.evaluation.wsoleval import WsolEvalEvaluator, fold_of
from wsol.models import build_model
from wsol.models.base import CAMNet

CPU = torch.device("cpu")


def _settings(protocol: str, topk: int = 3, **kw: Any) -> ProtocolSettings:
    base = dict(protocol=protocol, topk=topk, cam_threshold=0.2, cam_curve_interval=0.01, iou_thresholds=(30, 50, 70),
                box_method="exact", tau_policy="oracle", tau=None, tau_folds=2, cam_method="cam",
                scorecam_batch_size=64)
    return ProtocolSettings(**{**base, **kw})


def _wsoleval(interval: float, **kw: Any) -> WsolEvalEvaluator:
    """A ``WsolEvalEvaluator`` at IoU 30/50/70 with the exact box path and the oracle policy unless ``kw`` says else."""
    return WsolEvalEvaluator(interval, (30, 50, 70), **{"box_method": "exact", "tau_policy": "oracle", "tau": None,
                                                        "folds": 2, **kw})


def _batch(records: list[ImageRecord], classes: list[list[int]], cams: torch.Tensor,
           sizes: list[tuple[int, int]] | None = None) -> CAMBatch:
    b = len(records)
    return CAMBatch(records=records, indices=np.arange(b), sizes=sizes or [r.size for r in records],
                    classes=np.asarray(classes), scores=np.full((b, len(classes[0])), 0.5, np.float32), cams=cams)


def _blob_cam() -> torch.Tensor:
    """A 6x8 map: a large blob (values 5..9) at rows 1-3, cols 1-4 and a small peak 10 at (5, 7)."""
    cam = torch.zeros(6, 8)
    cam[1:4, 1:5] = torch.tensor([[5.0, 6, 6, 5], [6, 9, 8, 6], [5, 6, 6, 5]])
    cam[5, 7] = 10.0
    return cam


# ----------------------------------------------------------------------------- paper protocol
def test_paper_localization_golden() -> None:
    # CAMs given at the image's own size (6x8): the upsampling is the identity. At 20% of [0, 10] pixels >= 2 are
    # kept: the blob (12 px) beats the peak (1 px): box x 1-4, y 1-3.
    blob, dot = _blob_cam(), torch.zeros(6, 8)
    dot[0, 0] = 1.0  # a single-pixel map: its box is (0, 0, 0, 0)
    records = [ImageRecord("a", 3, np.array([[1, 1, 4, 3]], dtype=float), size=(8, 6))]
    ev = PaperLocalizationEvaluator((1, 2), cam_threshold=0.2)
    ev.process(_batch(records, [[5, 3, 3]], torch.stack([blob, dot, blob])[None]))
    out = ev.evaluate()
    # top-1 guess is class 5 (wrong class); top-2 guess is class 3 with the single-pixel box
    assert out["top1_loc_err"] == 100.0 and out["top2_loc_err"] == 100.0
    assert out["gt_known_loc_err"] == 0.0  # the GT class's map is the blob: exact box
    row = ev.rows()[0]
    assert (row["box_x0"], row["box_y0"], row["box_x1"], row["box_y1"]) == (1, 1, 4, 3)  # pred1's (wrong) map
    assert row["box_iou"] == 1.0 and row["top1_cls_correct"] == 0 and row["top1_loc_correct"] == 0
    assert row["gt_boxes"] == "1 1 4 3" and row["gt_known_correct"] == 1
    ev = PaperLocalizationEvaluator((1, 2), cam_threshold=0.2)
    ev.process(_batch(records, [[5, 3, 3]], torch.stack([dot, blob, blob])[None]))
    assert ev.evaluate()["top2_loc_err"] == 0.0  # the top-2 class carries the blob


def test_gt_known_box_comes_from_the_gt_class_cam() -> None:
    # Slip caught: the GT-known box taken from the top-1 class's CAM (boxes[0]) instead of the GT class's (the last
    # column). The top-1 class (5) is wrong and its map is a single pixel at (0, 0): box (0, 0, 0, 0), IoU 0 with the
    # GT box (1, 1, 4, 3). The GT class's (3) map is the blob: box (1, 1, 4, 3), IoU 1. So GT-known loc error is 0
    # from the right map and 100 from the wrong one.
    dot = torch.zeros(6, 8)
    dot[0, 0] = 1.0
    records = [ImageRecord("a", 3, np.array([[1, 1, 4, 3]], dtype=float), size=(8, 6))]
    ev = PaperLocalizationEvaluator((1,), cam_threshold=0.2)
    ev.process(_batch(records, [[5, 3]], torch.stack([dot, _blob_cam()])[None]))
    out = ev.evaluate()
    assert out["top1_loc_err"] == 100.0 and out["gt_known_loc_err"] == 0.0
    row = ev.rows()[0]
    assert (row["box_x0"], row["box_y0"], row["box_x1"], row["box_y1"]) == (0, 0, 0, 0)
    assert (row["gt_known_x0"], row["gt_known_y0"], row["gt_known_x1"], row["gt_known_y1"]) == (1, 1, 4, 3)
    assert row["gt_known_iou"] == 1.0 and row["gt_known_correct"] == 1


def test_paper_threshold_changes_the_box() -> None:
    # At 95% only the peak (10) survives: box (7, 5, 7, 5), IoU with the blob's box is 0.
    records = [ImageRecord("a", 0, np.array([[1, 1, 4, 3]], dtype=float), size=(8, 6))]
    ev = PaperLocalizationEvaluator((1,), cam_threshold=0.95)
    ev.process(_batch(records, [[0, 0]], _blob_cam().expand(1, 2, 6, 8)))
    assert ev.evaluate()["gt_known_loc_err"] == 100.0
    with pytest.raises(ValueError, match=r"cam_threshold must be in \(0, 1\), got 1.0"):
        PaperLocalizationEvaluator((1,), cam_threshold=1.0)


def test_upsampling_to_the_image_size_is_bilinear() -> None:
    # A 2x2 CAM [[0, 0], [0, 1]] to 4x4, bilinear with align_corners=False: output pixel i samples input position
    # 0.5 i - 0.25 (clamped), i.e. weights [0, .25, .75, 1] on the bright cell per axis; value = wx * wy.
    # At 0.2: (y1, x3) = .25 is kept -> box (1, 1, 3, 3)   [nearest: (2, 2, 3, 3)]
    # At 0.3: (y1, x3) = .25 is not, (y2, x2) = .5625 is -> box (2, 2, 3, 3)   [align_corners=True: (1, 1, 3, 3)]
    cam = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    records = [ImageRecord("a", 0, np.array([[2, 2, 3, 3]], dtype=float), size=(4, 4))]
    for threshold, box in ((0.2, (1, 1, 3, 3)), (0.3, (2, 2, 3, 3))):
        ev = PaperLocalizationEvaluator((1,), cam_threshold=threshold)
        ev.process(_batch(records, [[0, 0]], cam.expand(1, 2, 2, 2)))
        row = ev.rows()[0]
        assert (row["box_x0"], row["box_y0"], row["box_x1"], row["box_y1"]) == box, threshold


def test_blacklisted_images_count_for_classification_only() -> None:
    blob = _blob_cam()
    recs = [ImageRecord("a", 0, np.array([[1, 1, 4, 3]], dtype=float), size=(8, 6)),
            ImageRecord("b", 0, np.array([[6, 4, 7, 5]], dtype=float), size=(8, 6))]  # the blob misses it
    batch = _batch(recs, [[0, 1], [0, 1]], blob.expand(2, 2, 6, 8).clone())
    plain = PaperLocalizationEvaluator((1,), 0.2)
    plain.process(batch)
    listed = PaperLocalizationEvaluator((1,), 0.2, blacklist={"b"})
    listed.process(batch)
    assert plain.evaluate()["top1_loc_err"] == 50.0 and plain.evaluate()["n_blacklisted"] == 0
    out = listed.evaluate()
    assert out["top1_loc_err"] == 0.0 and out["n_loc_images"] == 1 and out["n_blacklisted"] == 1


def test_evaluate_model_applies_the_split_blacklist() -> None:
    # Slip caught: the pipeline passing an empty blacklist instead of the split's.
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=4, width=4)
    source = synthetic_source("test", 8, 4)
    ids = [r.image_id for r in source.annotations.records]
    source.annotations.blacklist = frozenset(ids[:3])
    out = evaluate_model(model, source, _settings("paper"), image_size=32, batch_size=4, num_workers=0, device=CPU,
                         fused=False)
    assert out.metrics["n_blacklisted"] == 3 and out.metrics["n_loc_images"] == 5 and out.metrics["n_images"] == 8


# ----------------------------------------------------------------------------- classification: one rule
def test_classification_is_the_same_under_every_protocol() -> None:
    # An image with two GT classes (0 and 2): devkit rule = mean over its classes. Top-1 guess 2 -> error 1/2.
    rec = ImageRecord("a", 0, np.array([[1, 1, 4, 3], [0, 0, 2, 2]], dtype=float), size=(8, 6),
                      box_labels=np.array([0, 2]))
    batch = _batch([rec], [[2, 0, 0]], _blob_cam().expand(1, 3, 6, 8))
    results = []
    for protocol in ("paper", "wsolevaluation"):
        ev = build_evaluator(_settings(protocol, topk=2))
        ev.process(batch)
        out = ev.evaluate()
        results.append((out["top1_cls_err"], out["top2_cls_err"]))
    assert results == [(50.0, 0.0), (50.0, 0.0)]


def test_cam16_guess_columns() -> None:
    rec = ImageRecord("a", 7, np.array([[1, 1, 4, 3]], dtype=float), size=(8, 6))
    ev = ClassificationEvaluator((1, 5), guess_columns=(0, 0, 1, 1, 2))
    # the true class is the network's 4th guess: a top-5 hit for the network, not for the heuristics' guesses
    ev.process(_batch([rec], [[1, 2, 3, 7, 9, 7]], torch.zeros(1, 6, 2, 2)))
    assert ev.evaluate()["top5_cls_err"] == 100.0


# ----------------------------------------------------------------------------- wsolevaluation + policies
def test_wsoleval_box_in_224_space() -> None:
    # One hot cell of a 7x7 CAM; the image is 448x448, its GT box (covering the hot cell's 64..127 px) becomes 32..63
    # in the 224 space; at the best tau the contour of the bicubic blob matches it, so MaxBoxAcc is 100.
    cam = torch.zeros(1, 2, 7, 7)
    cam[0, 1, 1, 1] = 1.0
    rec = ImageRecord("a", 2, np.array([[64, 64, 127, 127]], dtype=float), size=(448, 448))
    ev = _wsoleval(0.01, box_method="exact")
    ev.process(_batch([rec], [[4, 2]], cam, [(448, 448)]))
    out = ev.evaluate()
    assert out["maxboxacc"] == 100.0 and ev.curves()["boxacc"]["tau"].shape == (100,)


def _square_cam(center: tuple[int, int], size: int = 14) -> torch.Tensor:
    """A CAM-like map: a smooth bump on a 14x14 grid."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                          indexing="ij")
    return torch.exp(-((x - center[0]) ** 2 + (y - center[1]) ** 2) / 8.0)


def test_fixed_and_crossfold_policies_golden() -> None:
    # Four images whose BoxAcc curves are hand-controlled: each image's map is a bump; its GT box is the box the
    # bump gives at a known tau. The crossfold choice for a fold is the others' best tau.
    recs, cams = [], []
    fold0 = [f"img{j}" for j in range(100) if fold_of(f"img{j}", 2) == 0][:2]
    fold1 = [f"img{j}" for j in range(100) if fold_of(f"img{j}", 2) == 1][:2]
    for name, (cx, cy) in zip(fold0 + fold1, [(4, 4), (9, 9), (4, 9), (9, 4)]):
        recs.append(ImageRecord(name, 0, np.array([[cx * 16 - 24, cy * 16 - 24, cx * 16 + 40, cy * 16 + 40]],
                                                       dtype=float), size=(224, 224)))
        cams.append(_square_cam((cx, cy)))
    batch = _batch(recs, [[0, 0]] * 4, torch.stack([torch.stack([c, c]) for c in cams]), [(224, 224)] * 4)
    oracle = _wsoleval(0.05, box_method="exact")
    oracle.process(batch)
    curve = oracle.curves()["boxacc"]["boxacc_v1_iou50"]
    ref = oracle.evaluate()
    assert ref["boxacc_at_tau"] == ref["maxboxacc"] == curve.max()
    fixed = _wsoleval(0.05, box_method="exact", tau_policy="fixed", tau=0.95)
    fixed.process(batch)
    assert fixed.evaluate()["boxacc_at_tau"] == curve[19]  # tau 0.95 is grid point 19
    with pytest.raises(ValueError, match="not on the curve's threshold grid"):
        _wsoleval(0.05, tau_policy="fixed", tau=0.333)
    cross = _wsoleval(0.05, box_method="exact", tau_policy="crossfold", folds=2)
    cross.process(batch)
    out = cross.evaluate()
    folds = [fold_of(r.image_id, 2) for r in recs]
    assert out["n_per_fold"] == [2, 2]
    # independent computation of the crossfold accuracy from per-image curves
    per_image = []
    for i in range(4):
        one = _wsoleval(0.05, box_method="exact")
        one.process(_batch([recs[i]], [[0, 0]], batch.cams[i:i + 1], [(224, 224)]))
        per_image.append(one.curves()["boxacc"]["boxacc_v1_iou50"] / 100)
    correct = 0
    for f in (0, 1):
        inside = [i for i in range(4) if folds[i] == f]
        others = [i for i in range(4) if folds[i] != f]
        if not inside:
            continue
        tau_index = int(np.argmax(sum(per_image[i] for i in others)))
        correct += sum(per_image[i][tau_index] for i in inside)
    assert out["boxacc_at_tau"] == pytest.approx(100 * correct / 4)
    assert out["tau"] is None and len(out["tau_per_fold"]) == 2


def test_crossfold_tau_of_a_fold_never_sees_that_fold() -> None:
    # Slip caught: a fold's tau chosen on the pooled curve of ALL images (its own included) instead of the other
    # folds'. The same bump on four images; two GT boxes are the bump's box at tau 0.1 ([37, 37, 171, 171], "large":
    # right at IoU 0.5 for tau 0.05..0.3 on the 0.05 grid) and two at tau 0.8 ([83, 83, 125, 125], "small": right for
    # tau 0.7..0.9), never both at one tau (checked below). Fold 0 holds the large boxes, fold 1 the small ones. Each
    # fold is scored at the other fold's first best tau -- fold 0 at 0.7, fold 1 at 0.05 -- where none of its images
    # is right: boxacc_at_tau = 0. The pooled curve's first best tau (0.05) would give fold 0 its 2 images: 50.
    cam = _square_cam((6, 6))
    large, small = [37, 37, 171, 171], [83, 83, 125, 125]
    fold0 = [f"img{j}" for j in range(100) if fold_of(f"img{j}", 2) == 0][:2]
    fold1 = [f"img{j}" for j in range(100) if fold_of(f"img{j}", 2) == 1][:2]
    recs = [ImageRecord(name, 0, np.array([box], dtype=float), size=(224, 224))
            for name, box in zip(fold0 + fold1, [large, large, small, small])]
    batch = _batch(recs, [[0, 0]] * 4, torch.stack([cam, cam]).expand(4, 2, 14, 14).clone(), [(224, 224)] * 4)
    per_kind = []
    for rec in (recs[0], recs[2]):
        one = _wsoleval(0.05, box_method="exact")
        one.process(_batch([rec], [[0, 0]], batch.cams[:1], [(224, 224)]))
        per_kind.append(one.curves()["boxacc"]["boxacc_v1_iou50"] > 0)
    taus = np.round(np.arange(0, 1, 0.05), 2)
    assert taus[per_kind[0]].tolist() == [0.05, 0.1, 0.15, 0.2, 0.25, 0.3]  # large: right at these taus only
    assert taus[per_kind[1]].tolist() == [0.7, 0.75, 0.8, 0.85, 0.9]  # small: right at these only
    cross = _wsoleval(0.05, box_method="exact", tau_policy="crossfold", folds=2)
    cross.process(batch)
    out = cross.evaluate()
    assert out["n_per_fold"] == [2, 2] and out["tau_per_fold"] == pytest.approx([0.7, 0.05])
    assert out["boxacc_at_tau"] == 0.0
    assert out["maxboxacc"] == 50.0  # the oracle: either kind at its own tau


def test_maxboxacc_v2_is_the_mean_of_per_iou_maxima_each_with_its_own_tau() -> None:
    # Slip caught: V2 as the max over IoU thresholds, or one shared tau. The same bump on two images, one with a
    # large GT box and one with a small one: at IoU 0.3 a low tau fits the large box and a high tau the small one ...
    # per-IoU maxima over tau are 100 (IoU 30: both at once), 50, 50 -> V2 = 66.67; the best single tau for all
    # three IoUs gives 50, the max over IoUs 100.
    rec = ImageRecord("a", 0, np.array([[20, 20, 180, 180]], dtype=float), size=(224, 224))
    cam = _square_cam((6, 6))
    ev = _wsoleval(0.01, box_method="exact")
    rec2 = ImageRecord("b", 0, np.array([[60, 60, 120, 120]], dtype=float), size=(224, 224))
    ev.process(_batch([rec, rec2], [[0, 0], [0, 0]], torch.stack([torch.stack([cam, cam])] * 2), [(224, 224)] * 2))
    out = ev.evaluate()
    curves = ev.curves()["boxacc"]
    per_iou = [curves[f"boxacc_v2_iou{t}"].max() for t in (30, 50, 70)]
    assert per_iou == [100.0, 50.0, 50.0]
    assert out["maxboxacc_v2"] == pytest.approx(200 / 3)
    assert max(per_iou) != pytest.approx(np.mean(per_iou))  # the test can see a max-for-mean slip
    shared = max(np.mean([curves[f"boxacc_v2_iou{t}"][i] for t in (30, 50, 70)]) for i in range(100))
    assert shared != pytest.approx(out["maxboxacc_v2"])  # ... and a one-shared-tau slip


# ----------------------------------------------------------------------------- cam16: an independent implementation
class _TinyNet(CAMNet):
    def __init__(self) -> None:
        g = torch.Generator().manual_seed(3)
        conv = nn.Conv2d(3, 6, 5, stride=4, padding=2)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
            conv.bias.copy_(torch.randn(6, generator=g))
        super().__init__(nn.Sequential(conv, nn.ReLU()), nn.Identity(), num_features=6, num_classes=5, pool="gap",
                         mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        with torch.no_grad():
            self.classifier.weight.copy_(torch.randn(5, 6, generator=g))
            self.classifier.bias.copy_(torch.randn(5, generator=g) * 3)  # a large bias: a slip adding it shows


def _reference_cam16(model: CAMNet, image: Image.Image, size: int, crop: int, gt: int, add_bias: bool = False,
                     thresholds: tuple[int, int, int] = (20, 100, 110)) -> tuple[list[int], list[list[int]]]:
    """The released pipeline written out plainly (loops, no wsol helper but dt_box, whose port is tested against
    the authors' binary output in tests/test_dtbox.py)."""
    x = torch.from_numpy(np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0)
    x = (x.permute(2, 0, 1) - 0.5) / 0.5
    d = size - crop
    origins = [(0, 0), (0, d), (d, 0), (d, d), (d // 2, d // 2)]
    feats, probs = [], torch.zeros(5)
    with torch.no_grad():
        for i in range(10):
            x0, y0 = origins[i % 5]
            c = x[:, y0:y0 + crop, x0:x0 + crop]
            if i >= 5:
                c = torch.flip(c, dims=[2])
            f = model.backbone(c[None])[0]
            feats.append(f)
            probs += torch.softmax(model.classifier(f.mean(dim=(1, 2))), 0) / 10
    top3 = [int(i) for i in torch.argsort(probs, descending=True)[:3]]
    w, h = image.size
    boxes_per_class = []
    for cls in top3 + [gt]:
        canvas = torch.zeros(size, size)
        for i, f in enumerate(feats):
            cam = sum(model.classifier.weight[cls, k] * f[k] for k in range(f.shape[0]))
            if add_bias:
                cam = cam + model.classifier.bias[cls]
            up = F.interpolate(cam[None, None].detach(), size=(crop, crop), mode="bicubic", align_corners=False)[0, 0]
            if i >= 5:
                up = torch.flip(up, dims=[1])
            x0, y0 = origins[i % 5]
            canvas[y0:y0 + crop, x0:x0 + crop] += up.abs()
        full = F.interpolate(canvas[None, None], size=(h, w), mode="bicubic", align_corners=False)[0, 0].clamp(min=0)
        gray = np.round(full.numpy() / full.max().item() * 255).astype(np.uint8)
        boxes_per_class.append(dt_rects_to_xyxy(dt_box(gray, thresholds)).tolist())
    labels = [top3[0], top3[0], top3[1], top3[1], top3[2]]
    picks = [boxes_per_class[0][0], boxes_per_class[0][min(1, len(boxes_per_class[0]) - 1)], boxes_per_class[1][0],
             boxes_per_class[1][min(1, len(boxes_per_class[1]) - 1)], boxes_per_class[2][0]]
    return labels, picks + [boxes_per_class[3][0]]


def test_cam16_pipeline_equals_an_independent_implementation(tmp_path: Path) -> None:
    model = _TinyNet().eval()
    rng = np.random.default_rng(0)
    base = rng.random((6, 8, 3))
    image = Image.fromarray((np.kron(base, np.ones((8, 8, 1)))[:45, :60] * 255).astype(np.uint8))
    size, crop, gt = round(32 * 256 / 224), 32, 1
    labels, boxes = _reference_cam16(model, image, size, crop, gt)
    # the test has power: a bias in the CAM, or dt_box's fallback thresholds, change the result
    assert _reference_cam16(model, image, size, crop, gt, add_bias=True)[1] != boxes
    assert _reference_cam16(model, image, size, crop, gt, thresholds=(30, 90, 150))[1] != boxes

    from torchvision import transforms as T

    producer = TenCropCAMs(model, topk=5, size=size, crop=crop)
    x = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])(image)[None]
    classes, probs, canvas = producer(x, torch.tensor([gt]))
    assert classes[0, :3].tolist() == labels[::2][:3] or classes[0, :3].tolist() == [labels[0], labels[2], labels[4]]
    rec = ImageRecord("img", gt, np.array([boxes[0]], dtype=float), size=image.size)
    ev = Cam16LocalizationEvaluator()
    ev.process(CAMBatch([rec], np.array([0]), [image.size], classes.numpy(), probs.numpy(), canvas))
    row = ev.rows()[0]
    assert row["guess_labels"] == " ".join(map(str, labels))
    assert row["guess_boxes"] == ";".join(" ".join(map(str, b)) for b in boxes[:5])
    assert row["gt_known_box"] == " ".join(map(str, boxes[5]))


# ----------------------------------------------------------------------------- the loop
def test_evaluate_model_all_protocols_on_tiny_data() -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=6, width=4)
    source = synthetic_source("test", 12, 6)
    kw = dict(image_size=32, batch_size=5, num_workers=0, device=CPU)
    paper = evaluate_model(model, source, _settings("paper"), **kw, fused=False)
    assert paper.metrics["n_images"] == 12 and {"top1_loc_err", "top3_loc_err", "gt_known_loc_err"} <= set(paper.metrics)
    assert len(paper.rows) == 12 and [r["index"] for r in paper.rows] == list(range(12))
    ws = evaluate_model(model, source, _settings("wsolevaluation"), **kw, fused=False).metrics
    assert 0 <= ws["maxboxacc"] <= 100 and 0 <= ws["maxboxacc_v2"] <= 100
    assert ws["top1_cls_err"] == paper.metrics["top1_cls_err"]  # classification does not depend on the protocol
    c16 = evaluate_model(model, source, _settings("cam16_heuristics", topk=5), **kw, fused=False).metrics
    assert c16["n_images"] == 12 and 0 <= c16["top5_loc_err"] <= c16["top1_loc_err"] <= 100
    with pytest.raises(ValueError, match="unknown eval.protocol 'devkit'"):
        _settings("devkit")


def test_heldout_policy_scores_the_val_split_first() -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=4, width=4)
    test = synthetic_source("test", 8, 4)
    val = synthetic_source("val", 8, 4)
    kw = dict(image_size=32, batch_size=8, num_workers=0, device=CPU)
    out = evaluate_model(model, test, _settings("wsolevaluation", tau_policy="heldout"), heldout_source=val, **kw,
                         fused=False)
    held = evaluate_model(model, val, _settings("wsolevaluation"), **kw, fused=False)
    assert out.metrics["tau"] == held.metrics["maxboxacc_tau"]
    tau_index = int(round(out.metrics["tau"] / 0.01))
    assert out.metrics["boxacc_at_tau"] == out.curves["boxacc"]["boxacc_v1_iou50"][tau_index]
    with pytest.raises(ValueError, match="needs a held-out split"):
        evaluate_model(model, test, _settings("wsolevaluation", tau_policy="heldout"), **kw, fused=False)


def test_model_without_classifier_is_refused() -> None:
    class NoHead(torch.nn.Module):
        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            return x

    source = synthetic_source("test", 2, 4)
    with pytest.raises(TypeError, match="classifier must be an nn.Linear"):
        evaluate_model(NoHead(), source, _settings("paper"), image_size=32, batch_size=2,  # type: ignore[arg-type]
                       num_workers=0, device=CPU, fused=False)


def _openimages_fixture(root: Path) -> None:
    """Two 40x30 images of class 1 with an instance mask each; the first also has an ignore mask."""
    (root / "test" / "c").mkdir(parents=True)
    (root / "metadata" / "test").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(root / "test" / "c" / f"{name}.jpg")
        m = np.zeros((30, 40), np.uint8)
        m[5:20, 10:30] = 255
        Image.fromarray(m).save(root / "test" / "c" / f"{name}_m.png")
    ig = np.zeros((30, 40), np.uint8)
    ig[0:25, 0:35] = 255
    Image.fromarray(ig).save(root / "test" / "c" / "a_ignore.png")
    meta = root / "metadata" / "test"
    (meta / "image_ids.txt").write_text("test/c/a.jpg\ntest/c/b.jpg\n")
    (meta / "class_labels.txt").write_text("test/c/a.jpg,1\ntest/c/b.jpg,1\n")
    (meta / "image_sizes.txt").write_text("")
    (meta / "localization.txt").write_text("test/c/a.jpg,test/c/a_m.png,test/c/a_ignore.png\n"
                                           "test/c/b.jpg,test/c/b_m.png,\n")


def test_wsoleval_mask_reading(tmp_path: Path) -> None:
    from wsol.data.masks import load_wsoleval_mask

    _openimages_fixture(tmp_path)
    mask = load_wsoleval_mask(tmp_path, ["test/c/a_m.png"], "test/c/a_ignore.png")
    assert mask.shape == (224, 224) and set(np.unique(mask)) == {0, 1, 255}
    # nearest-neighbour 40x30 -> 224: column j samples source column floor(j * 40 / 224)
    assert mask[100, 100] == 1  # inside the instance (source row 13, col 17)
    assert mask[10, 10] == 255  # ignore box outside the instance (source row 1, col 1)
    assert mask[220, 220] == 0  # outside both (source row 29, col 39)
    assert load_wsoleval_mask(tmp_path, ["test/c/b_m.png"], None).max() == 1  # no ignore mask
    with pytest.raises(FileNotFoundError, match="nope.png: mask file missing"):
        load_wsoleval_mask(tmp_path, ["test/c/nope.png"], None)


def test_pxap_through_the_pipeline(tmp_path: Path) -> None:
    from wsol.jobs import _mask_loader

    _openimages_fixture(tmp_path)
    data = OmegaConf.load(Path(CONFIG_DIR) / "data" / "openimages.yaml")  # the options' one home, as a run reads it
    data.root, data.num_classes = str(tmp_path), 3
    source = source_from_cfg(data, "test")
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=3, width=4)
    out = evaluate_model(model, source, _settings("wsolevaluation", topk=2), image_size=32, batch_size=2,
                         num_workers=0, device=CPU, mask_loader=_mask_loader, fused=False)
    assert 0 <= out.metrics["pxap"] <= 100 and "maxboxacc" not in out.metrics  # masks, no boxes
    assert "pxap" in out.curves



def test_an_image_unreadable_at_load_time_is_skipped_and_listed(tmp_path: Path) -> None:
    # data.on_error=skip: an image that breaks after the split was built (e.g. storage going away) is dropped,
    # listed with its reason, and the others are scored; with "raise" the same image stops the run naming it.
    (tmp_path / "images").mkdir()
    meta = tmp_path / "metadata"
    meta.mkdir()
    rng = np.random.default_rng(0)
    ids = [f"img{i}.png" for i in range(4)]
    for name in ids:
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "images" / name)
    (meta / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (meta / "class_labels.txt").write_text("".join(f"{i},{k % 3}\n" for k, i in enumerate(ids)))
    (meta / "image_sizes.txt").write_text("".join(f"{i},30,20\n" for i in ids))
    (meta / "localization.txt").write_text("".join(f"{i},2,2,20,15\n" for i in ids))
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=3, width=4)
    kw = dict(image_size=32, batch_size=2, num_workers=0, device=CPU)
    options = yaml_data_options("wsol_metadata")
    skip = build_source("wsol_metadata", split="test", root=str(tmp_path), num_classes=3, on_error="skip", **options)
    strict = build_source("wsol_metadata", split="test", root=str(tmp_path), num_classes=3, **options)
    (tmp_path / "images" / "img2.png").write_bytes(b"not a png any more")
    out = evaluate_model(model, skip, _settings("paper"), **kw, fused=False)
    assert out.metrics["n_images"] == 3 and list(skip.annotations.skipped) == ["img2.png"]
    assert "img2.png" in skip.annotations.skipped["img2.png"]
    with pytest.raises(Exception, match="img2.png"):
        evaluate_model(model, strict, _settings("paper"), **kw, fused=False)
