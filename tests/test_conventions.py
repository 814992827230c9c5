"""Conventions the whole code base shares, and tests that catch one-line slips no other test sees.

* Choice lists are written once (``wsol.choices``): the config schema's Enums and the library accept the same names.
* Every run default lives in one place, the YAML (``configs/``): no library signature below the entry layer defaults a
  setting of the config, and no ``DEFAULT_*`` constant holds one, except the entries listed (with why) below.
* The class order of the linear SVM's rows, the CAM without the classifier bias in what the store keeps, the paper
  metrics recomputed from their own per-image rows (replacing checks that could not fail as written).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError
from PIL import Image
from torch import nn

import wsol
from conftest import synthetic_source
from wsol import CONFIG_DIR, choices, conf
from wsol.data.records import Annotations, ImageRecord
from wsol.data.transforms import build_eval_transform
from wsol.engine.features import fit_linear_svm
from wsol.evaluation import EvaluatorList, ProtocolSettings, evaluate_model
from wsol.evaluation.inference import forward_cams, inference_on_dataset
from wsol.evaluation.store import CAMStore, CAMStoreWriter
from wsol.models import build_model
from wsol.models.base import CAMNet

CPU = torch.device("cpu")


# ----------------------------------------------------------------------------- choice lists, once
#: (schema Enum, its tuple in wsol.choices, the modules that check the setting against a tuple of that name)
CHOICES = [
    (conf.Protocol, "PROTOCOLS", ["wsol.evaluation.protocols"]),
    (conf.CamMethod, "CAM_METHODS", ["wsol.posthoc"]),
    (conf.TauPolicy, "TAU_POLICIES", ["wsol.metrics.threshold", "wsol.evaluation.wsoleval"]),
    (conf.BoxMethod, "BOX_METHODS", ["wsol.metrics.boxacc"]),
    (conf.Pool, "POOLS", ["wsol.models.base", "wsol.models"]),
    (conf.Recipe, "RECIPES", ["wsol.engine.recipes"]),
    (conf.Schedule, "SCHEDULES", ["wsol.engine.optim"]),
    (conf.ScheduleUnit, "SCHEDULE_UNITS", []),
]


@pytest.mark.parametrize("enum, name, owners", CHOICES, ids=[c[1] for c in CHOICES])
def test_config_choices_are_the_library_tuples(enum: type, name: str, owners: list[str]) -> None:
    values = getattr(choices, name)
    assert tuple(m.value for m in enum) == values and [m.name for m in enum] == list(values)
    for module in owners:
        assert getattr(importlib.import_module(module), name) == values, module


def test_the_report_explains_every_tau_policy() -> None:
    from wsol.report.summary import TAU_POLICY_MEANINGS

    assert tuple(TAU_POLICY_MEANINGS) == choices.TAU_POLICIES


def test_a_wrong_choice_is_refused_listing_the_choices() -> None:
    node = OmegaConf.structured(conf.EvalSchema)
    node.protocol = "wsolevaluation"
    assert node.protocol is conf.Protocol.wsolevaluation
    with pytest.raises(ValidationError, match=r"expected one of \[paper, wsolevaluation, cam16_heuristics\]"):
        node.protocol = "papr"


def test_the_schema_and_the_choices_load_without_torch() -> None:
    code = "import sys, wsol.conf, wsol.choices; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- every default in one place
def _keys(config: str) -> set[str]:
    """The leaf keys of ``configs/<config>.yaml`` (nested groups flattened)."""
    def leaves(node: Any) -> set[str]:
        found = set()
        for key, value in node.items():
            found |= leaves(value) if OmegaConf.is_dict(value) else {key}
        return found

    return leaves(OmegaConf.load(Path(CONFIG_DIR) / f"{config}.yaml"))


#: The settings watched: every key of the evaluation, CAM and training configs, and the image/box options of the
#: file-based data configs. (Generic names that also mean other things in the library -- batch_size, num_workers,
#: resume, split, method, protocol, name -- are left out: a parameter of that name is not necessarily that setting.)
_GENERIC = {"batch_size", "num_workers", "resume", "split", "method", "protocol", "also", "predictions", "save_cams",
            "export_scoremaps", "name", "defaults"}
WATCHED = ((_keys("eval/default") | _keys("cam/default") | _keys("train/default")) - _GENERIC) | {
    "alpha", "apply_exif_orientation", "box_tolerance", "max_image_pixels", "check_files", "train_check_files"}
#: Parameter names that are a watched setting under another name.
ALIASES = {"threshold": "cam_threshold", "folds": "tau_folds", "tolerance": "box_tolerance",
           "max_pixels": "max_image_pixels", "warmup_steps": "warmup_iters"}

#: ``module.qualname(parameter)`` -> why a default is allowed there: a value that is not a second copy of a setting.
ALLOWED_DEFAULTS = {
    # not a second value: None means "the protocol settings' own tau_policy" (the held-out split is scored as oracle)
    "wsol.evaluation.protocols.build_evaluator(tau_policy)": "None = the settings' value, an override",
}
#: ``module.NAME`` -> why a ``DEFAULT_*`` constant exists.
ALLOWED_CONSTANTS = {
    "wsol.dtbox.DEFAULT_THRESHOLDS": "a fact of the released dt_box.cpp (its built-in fallback), not a setting",
    "wsol.data.images.DEFAULT_MAX_IMAGE_PIXELS": "Pillow's own limit (a fact), the limit of sizes that are never "
                                                "loaded: data=imagenette's original ILSVRC2012 val images, whose sizes "
                                                "map the boxes onto the stored files (no loader takes a default)",
}


def _wsol_modules() -> list:
    names = [m.name for m in pkgutil.walk_packages(wsol.__path__, "wsol.") if not m.name.endswith("__main__")]
    return [importlib.import_module(name) for name in names]


def _defaults_of_settings() -> dict[str, object]:
    """``module.qualname(parameter) -> default`` for every public function and method in ``wsol`` whose parameter is
    a watched setting and has a default (the config schema's ``MISSING``, ``???``, is no default: it means required)."""
    found = {}
    for module in _wsol_modules():
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                functions = [(name, obj)]
            elif inspect.isclass(obj):
                functions = [(f"{name}.{attr}", f) for attr, f in vars(obj).items()
                             if inspect.isfunction(f) and (attr == "__init__" or not attr.startswith("_"))]
            else:
                continue
            for qualname, function in functions:
                for p in inspect.signature(function).parameters.values():
                    if ALIASES.get(p.name, p.name) in WATCHED and p.default is not inspect.Parameter.empty \
                            and p.default != "???":
                        found[f"{module.__name__}.{qualname}({p.name})"] = p.default
    return found


def test_no_second_default_of_a_setting() -> None:
    # Slip caught: a library function growing its own default for a setting the YAML holds (box_tolerance=1.0,
    # cam_threshold=0.2, cam_curve_interval=0.01 ...): a run that forgets to pass it silently uses a value that may
    # not be the config's. Below the entry layer these are required arguments.
    found = _defaults_of_settings()
    unexpected = {k: v for k, v in found.items() if k not in ALLOWED_DEFAULTS}
    assert not unexpected, f"defaults of settings whose home is configs/: {unexpected}"
    stale = sorted(set(ALLOWED_DEFAULTS) - set(found))
    assert not stale, f"allowed defaults that no longer exist (remove them from ALLOWED_DEFAULTS): {stale}"


def test_no_default_constants_but_the_listed_facts() -> None:
    # a DEFAULT_* constant is a second home for a value; the ones left are facts (ALLOWED_CONSTANTS)
    defined = {f"{m.__name__}.{name}" for m in _wsol_modules() for name in vars(m)
               if name.startswith("DEFAULT_") and _assigns(m, name)}
    assert defined == set(ALLOWED_CONSTANTS)


def _assigns(module: object, name: str) -> bool:
    """True when ``name`` is assigned in ``module``'s own source (not imported from another module)."""
    return any(line.startswith(f"{name} =") for line in inspect.getsource(module).splitlines())


def test_the_watched_settings_exist_in_the_yaml() -> None:
    # the test above watches real keys: a renamed key must be renamed here too
    assert {"cam_threshold", "cam_curve_interval", "iou_thresholds", "box_method", "tau_policy", "tau", "tau_folds",
            "topk", "shard_size", "gamma", "milestones", "log_every", "checkpoint_every", "svm_C"} <= WATCHED
    for key in ("alpha", "apply_exif_orientation", "box_tolerance", "max_image_pixels", "check_files"):
        assert key in OmegaConf.load(Path(CONFIG_DIR) / "data" / "wsol_metadata.yaml"), key


# ----------------------------------------------------------------------------- the linear SVM's class order
def test_linear_svm_rows_belong_to_their_classes() -> None:
    # Slip caught: the SVM's rows given to the wrong classes (e.g. reversed). Three classes, each with its own feature
    # dimension switched on (5 on its axis, a little noise elsewhere): class c's row must weigh feature c most, and the
    # classifier w . f + b must give every training point its own label. Reversed rows score class 2 on axis 0, etc.
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(30) % 3
    feats = 5.0 * torch.nn.functional.one_hot(labels, 3).float() + 0.1 * torch.rand(30, 3, generator=g)
    w, b, _ = fit_linear_svm(feats, labels, C=1.0, seed=0, max_iter=10_000)
    assert w.shape == (3, 3) and b.shape == (3,)
    assert w.argmax(1).tolist() == [0, 1, 2]
    assert torch.equal((feats @ w.T + b).argmax(1), labels)
    # binary: scikit-learn keeps one row (class 1 vs 0); class 1 is the one with feature 0 switched on
    labels = torch.arange(20) % 2
    feats = torch.stack([5.0 * labels.float(), 0.1 * torch.rand(20, generator=g)], 1)
    w, b, _ = fit_linear_svm(feats, labels, C=1.0, seed=0, max_iter=10_000)
    assert w[1, 0] > 0 > w[0, 0] and torch.equal((feats @ w.T + b).argmax(1), labels)


# ----------------------------------------------------------------------------- the CAM the store keeps
def test_stored_cams_are_the_cam_without_the_classifier_bias(tmp_path: Path) -> None:
    # Slip caught: the classifier bias added into the CAMs the evaluation loop scores and stores. The CAM (wsol.cam) is
    # M_c = sum_k w[c, k] f_k, no bias; for a GAP model its spatial mean plus b_c is the logit (the paper's identity).
    # The model's biases are large (+-20..50), so a CAM with the bias added misses both checks by far more than the
    # float16 rounding of the store (|M| < 10 here: rounding error < 0.01).
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=4, width=4).eval()
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([50.0, -40.0, 30.0, -20.0]))
    source = synthetic_source("test", 5, 4)
    transform = build_eval_transform(32, model.mean, model.std)
    with CAMStoreWriter(tmp_path / "cams", meta={"topk": 2}, shard_size=4) as writer:
        inference_on_dataset(lambda x, y: forward_cams(model, x, y, 2), source, EvaluatorList([]),
                             transform=transform, batch_size=3, num_workers=0, device=CPU, store=writer)
    stored = list(CAMStore(tmp_path / "cams").iter_batches(100))
    indices = torch.cat([s["indices"] for s in stored])
    classes, cams = torch.cat([s["classes"] for s in stored]), torch.cat([s["cams"] for s in stored])
    assert sorted(indices.tolist()) == list(range(5)) and cams.shape[:2] == (5, 3)
    images = torch.stack([transform(source.load(int(i))) for i in indices])
    with torch.no_grad():
        features = model.forward_features(images)  # [5, K, h, w]
        logits = model.forward_head(features)
    weight, bias = model.classifier.weight.detach(), model.classifier.bias.detach()
    for n in range(5):
        for j, c in enumerate(classes[n].tolist()):
            expected = (weight[c][:, None, None] * features[n]).sum(0)  # written out: channel sum, no bias, no ReLU
            torch.testing.assert_close(cams[n, j], expected, atol=0.02, rtol=0.01)
            assert float(cams[n, j].mean() + bias[c]) == pytest.approx(float(logits[n, c]), abs=0.02)


# ----------------------------------------------------------------------------- paper metrics vs their rows
def _iou(a: list[float], b: list[float]) -> float:
    """IoU of two inclusive-pixel boxes, written out (the devkit's +1 widths)."""
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(w, 0) * max(h, 0)
    area_a, area_b = (a[2] - a[0] + 1) * (a[3] - a[1] + 1), (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area_a + area_b - inter)


class _Squares:
    """An in-memory image source: 32x32 black images with white squares (``xyxy`` inclusive), every image class 0."""

    def __init__(self, images: list[tuple[list[list[int]], list[int]]]) -> None:
        self.squares = [squares for squares, _ in images]
        self.annotations = Annotations(
            records=[ImageRecord(f"img{i}", 0, np.array([gt], dtype=float), size=(32, 32))
                     for i, (_, gt) in enumerate(images)], num_classes=2)

    def load(self, index: int) -> Image.Image:
        pixels = np.zeros((32, 32, 3), dtype=np.uint8)
        for x0, y0, x1, y1 in self.squares[index]:
            pixels[y0:y1 + 1, x0:x1 + 1] = 255
        return Image.fromarray(pixels)


def _brightness_net() -> CAMNet:
    """A GAP CAMNet whose class 0 map is ``brightness - 1/2`` and class 1 map its negative (1x1 conv, identity
    normalisation): class 0 wins iff more than half of the image is white; its CAM, min-max normalised, is 1 on white
    and 0 on black, so its box is the largest white square."""
    conv = nn.Conv2d(3, 2, 1)
    model = CAMNet(conv, nn.Identity(), num_features=2, num_classes=2, pool="gap", mean=(0.0, 0.0, 0.0),
                   std=(1.0, 1.0, 1.0))
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1 / 3] * 3, [-1 / 3] * 3]).view(2, 3, 1, 1))
        conv.bias.copy_(torch.tensor([-0.5, 0.5]))
        model.classifier.weight.copy_(torch.eye(2))
        model.classifier.bias.zero_()
    return model


def test_paper_metrics_golden_and_equal_to_the_rates_of_their_rows() -> None:
    # Replaces the bounds checks of a finished run (0 <= err <= 100, top-5 <= top-1, loc >= cls), which hold by
    # construction. Four 32x32 images of class 0, hand-computed (the network input is the image itself: no resize):
    #   0: white square 0..27 (784 of 1024 px white): class 0, box = GT box      -> cls, loc, GT-known right
    #   1: white square 4..11 (64 px):                class 1 (wrong)             -> cls, loc wrong; GT-known right
    #   2: white squares 0..23 (576 px) and 28..31, GT box the small one: class 0, box the big square (IoU 0)
    #                                                                             -> cls right; loc, GT-known wrong
    #   3: white square 4..31 (784 px): as image 0
    # top-1 cls err 25, top-1 loc err 50, GT-known loc err 25; and each metric is the rate of its per-image rows with
    # the devkit rule written out (IoU of inclusive boxes >= 0.5 with a GT box, and the right class for top-1).
    source = _Squares([([[0, 0, 27, 27]], [0, 0, 27, 27]), ([[4, 4, 11, 11]], [4, 4, 11, 11]),
                       ([[0, 0, 23, 23], [28, 28, 31, 31]], [28, 28, 31, 31]), ([[4, 4, 31, 31]], [4, 4, 31, 31])])
    settings = ProtocolSettings(protocol="paper", topk=2, cam_threshold=0.2, cam_curve_interval=0.01,
                                iou_thresholds=(30, 50, 70), box_method="exact", tau_policy="oracle", tau=None,
                                tau_folds=2, cam_method="cam", scorecam_batch_size=1)
    out = evaluate_model(_brightness_net(), source, settings, image_size=32, batch_size=3, num_workers=0, device=CPU,
                         fused=False)
    assert (out.metrics["top1_cls_err"], out.metrics["top1_loc_err"], out.metrics["gt_known_loc_err"]) == (25, 50, 25)
    rows = out.rows
    assert rows is not None and [r["image_id"] for r in rows] == ["img0", "img1", "img2", "img3"]
    cls_wrong, loc_wrong, known_wrong = [], [], []
    for row in rows:
        gts = [[float(v) for v in box.split()] for box in row["gt_boxes"].split(";")]
        box = [row[f"box_{k}"] for k in ("x0", "y0", "x1", "y1")]
        known = [row[f"gt_known_{k}"] for k in ("x0", "y0", "x1", "y1")]
        cls_wrong.append(row["pred1"] != row["label"])
        loc_wrong.append(row["pred1"] != row["label"] or max(_iou(box, g) for g in gts) < 0.5)
        known_wrong.append(max(_iou(known, g) for g in gts) < 0.5)
    assert (cls_wrong, loc_wrong, known_wrong) == ([False, True, False, False], [False, True, True, False],
                                                   [False, False, True, False])
    assert out.metrics["top1_cls_err"] == 100 * np.mean(cls_wrong)
    assert out.metrics["top1_loc_err"] == 100 * np.mean(loc_wrong)
    assert out.metrics["gt_known_loc_err"] == 100 * np.mean(known_wrong)
