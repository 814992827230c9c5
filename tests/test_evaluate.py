"""Protocol scorers on hand-made CAMs, and the evaluation loop on tiny synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsol.data.datasets import build_source
from wsol.data.records import ImageRecord
from wsol.evaluate import PaperScorer, WsolEvalScorer, evaluate_model
from wsol.models import build_model


def _blob_cam() -> torch.Tensor:
    """A 6x8 map: a large blob (values 5..9) at rows 1-3, cols 1-4 and a small peak 10 at (5, 7)."""
    cam = torch.zeros(6, 8)
    cam[1:4, 1:5] = torch.tensor([[5.0, 6, 6, 5], [6, 9, 8, 6], [5, 6, 6, 5]])
    cam[5, 7] = 10.0
    return cam


def test_paper_scorer_golden() -> None:
    # CAMs given at the image's own size (6x8), so the upsampling is the identity. At 20% of the
    # range [0, 10] pixels >= 2 are kept: the blob (12 px) beats the peak (1 px): box x 1-4, y 1-3.
    blob, empty = _blob_cam(), torch.zeros(6, 8)
    empty[0, 0] = 1.0  # a single-pixel map: its box is (0, 0, 0, 0)
    cams = torch.stack([torch.stack([blob, empty, blob])])  # [1, 3, 6, 8]: top-2 classes + GT class
    records = [ImageRecord("a", 3, np.array([[1, 1, 4, 3]], dtype=float), size=(8, 6))]
    scorer = PaperScorer(topk=2, cam_threshold=0.2)
    scorer.update(records, [(8, 6)], np.array([[5, 3, 3]]), cams)
    out = scorer.compute().metrics
    # top-1 guess is class 5 (wrong class), top-2 guess is class 3 but with the empty map's box
    assert out["top1_cls_err"] == 100.0 and out["top2_cls_err"] == 0.0
    assert out["top1_loc_err"] == 100.0 and out["top2_loc_err"] == 100.0
    assert out["gt_known_loc_err"] == 0.0  # the GT class's map is the blob: exact box

    # the same maps, but the top-2 class carries the blob: top-2 localization is right
    scorer = PaperScorer(topk=2, cam_threshold=0.2)
    scorer.update(records, [(8, 6)], np.array([[5, 3, 3]]), torch.stack([torch.stack([empty, blob, blob])]))
    assert scorer.compute().metrics["top2_loc_err"] == 0.0


def test_paper_scorer_threshold_changes_the_box() -> None:
    # At 95% only the peak (10) survives: box (7, 5, 7, 5), IoU with the blob's box is 0.
    records = [ImageRecord("a", 0, np.array([[1, 1, 4, 3]], dtype=float), size=(8, 6))]
    cams = _blob_cam().expand(1, 2, 6, 8)
    scorer = PaperScorer(topk=1, cam_threshold=0.95)
    scorer.update(records, [(8, 6)], np.array([[0, 0]]), cams)
    assert scorer.compute().metrics["gt_known_loc_err"] == 100.0
    with pytest.raises(ValueError, match="cam_threshold must be in \\(0, 1\\), got 1.0"):
        PaperScorer(topk=1, cam_threshold=1.0)


def test_wsoleval_scorer_box_in_224_space() -> None:
    # The GT class's CAM is a 7x7 map with one hot cell; the image is 448x448, so its GT box
    # (covering the hot cell's area, 64..127 px) becomes 32..63 in the 224 space; at the best tau
    # the contour of the bicubic blob matches it (IoU >= 0.5), so MaxBoxAcc is 100.
    cam = torch.zeros(1, 2, 7, 7)
    cam[0, 1, 1, 1] = 1.0
    records = [ImageRecord("a", 2, np.array([[64, 64, 127, 127]], dtype=float), size=(448, 448))]
    scorer = WsolEvalScorer(topk=1, cam_curve_interval=0.01, iou_thresholds=(30, 50, 70))
    scorer.update(records, [(448, 448)], np.array([[4, 2]]), cam)
    out = scorer.compute()
    assert out.metrics["top1_cls_err"] == 100.0
    assert out.metrics["maxboxacc"] == 100.0
    assert out.curves["boxacc"]["tau"].shape == (100,)


def test_evaluate_model_all_protocols_on_tiny_data() -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=4, width=4)
    source = build_source("synthetic", split="test", num_images={"test": 12}, num_classes=4, render_size=32,
                          scale_range=(0.15, 0.7), aspect_range=(0.35, 0.8), two_instance_prob=0.2, part_prob=0.7,
                          max_distractors=3, seed=0)
    paper = evaluate_model(model, source, protocol="paper", image_size=32, topk=3, batch_size=5).metrics
    assert paper["n_images"] == 12 and set(paper) >= {"top1_loc_err", "top3_loc_err", "gt_known_loc_err"}
    ws = evaluate_model(model, source, protocol="wsolevaluation", image_size=32, topk=3, batch_size=5)
    assert 0 <= ws.metrics["maxboxacc"] <= 100 and 0 <= ws.metrics["maxboxacc_v2"] <= 100
    # classification does not depend on the protocol
    assert ws.metrics["top1_cls_err"] == paper["top1_cls_err"]
    c16 = evaluate_model(model, source, protocol="cam16_heuristics", image_size=32, batch_size=20).metrics
    assert c16["n_images"] == 12 and 0 <= c16["top5_loc_err"] <= c16["top1_loc_err"] <= 100
    with pytest.raises(ValueError, match="unknown eval.protocol 'devkit'"):
        evaluate_model(model, source, protocol="devkit")


def test_model_without_classifier_is_refused() -> None:
    class NoHead(torch.nn.Module):
        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            return x

    source = build_source("synthetic", split="test", num_images={"test": 2}, num_classes=4, render_size=32,
                          scale_range=(0.15, 0.7), aspect_range=(0.35, 0.8), two_instance_prob=0.2, part_prob=0.7,
                          max_distractors=3, seed=0)
    with pytest.raises(TypeError, match="classifier must be an nn.Linear"):
        evaluate_model(NoHead(), source)  # type: ignore[arg-type]


def _openimages_fixture(root) -> None:  # noqa: ANN001
    """Two 40x30 images of class 1 with an instance mask each; the first also has an ignore mask."""
    from PIL import Image as PILImage

    (root / "test" / "c").mkdir(parents=True)
    (root / "metadata" / "test").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        PILImage.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(root / "test" / "c" / f"{name}.jpg")
        m = np.zeros((30, 40), np.uint8)
        m[5:20, 10:30] = 255
        PILImage.fromarray(m).save(root / "test" / "c" / f"{name}_m.png")
    ig = np.zeros((30, 40), np.uint8)
    ig[0:25, 0:35] = 255
    PILImage.fromarray(ig).save(root / "test" / "c" / "a_ignore.png")
    meta = root / "metadata" / "test"
    (meta / "image_ids.txt").write_text("test/c/a.jpg\ntest/c/b.jpg\n")
    (meta / "class_labels.txt").write_text("test/c/a.jpg,1\ntest/c/b.jpg,1\n")
    (meta / "image_sizes.txt").write_text("")
    (meta / "localization.txt").write_text("test/c/a.jpg,test/c/a_m.png,test/c/a_ignore.png\n"
                                           "test/c/b.jpg,test/c/b_m.png,\n")


def test_wsoleval_mask_reading(tmp_path) -> None:  # noqa: ANN001
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


def test_pxap_through_the_pipeline(tmp_path) -> None:  # noqa: ANN001
    from wsol.evaluate import _mask_loader

    _openimages_fixture(tmp_path)
    source = build_source("openimages", split="test", root=str(tmp_path), num_classes=3)
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=3, width=4)
    out = evaluate_model(model, source, protocol="wsolevaluation", image_size=32, topk=2,
                         load_mask=_mask_loader(source))
    assert 0 <= out.metrics["pxap"] <= 100 and "maxboxacc" not in out.metrics  # masks, no boxes
    assert "pxap" in out.curves
