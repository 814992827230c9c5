"""CAM store: sharded fp16 round trip, incomplete / corrupt stores, overflow, export, re-scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wsol.cam_store import CAMStore, CAMStoreWriter, export_wsoleval_scoremaps
from wsol.data.datasets import build_source
from wsol.evaluate import evaluate_model, rescore_cam_store
from wsol.models import build_model


def _batch(start: int, b: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (torch.arange(start, start + b), torch.full((b, 2), 7), torch.randint(0, 9, (b, 3), generator=g),
            torch.rand(b, 3, generator=g), torch.randn(b, 3, 4, 5, generator=g) * 100)


def test_round_trip_across_shards(tmp_path: Path) -> None:
    batches = [_batch(0, 3, 0), _batch(3, 4, 1), _batch(7, 3, 2)]  # 10 images, shards of 4: 4 + 4 + 2
    with CAMStoreWriter(tmp_path / "s", shard_size=4, meta={"topk": 2}) as writer:
        for b in batches:
            writer.add(*b)
    store = CAMStore(tmp_path / "s")
    assert len(store) == 10 and store.meta == {"topk": 2}
    assert [s["count"] for s in store.index["shards"]] == [4, 4, 2]
    got = list(store.iter_batches(batch_size=3))
    assert [len(b["indices"]) for b in got] == [3, 1, 3, 1, 2]  # batches never cross a shard
    cams = torch.cat([b["cams"] for b in got])
    expected = torch.cat([b[4] for b in batches])
    assert torch.equal(cams, expected.half().float())  # exact up to the float16 rounding
    assert torch.equal(torch.cat([b["classes"] for b in got]), torch.cat([b[2] for b in batches]))
    assert torch.equal(torch.cat([b["indices"] for b in got]), torch.arange(10))


def test_incomplete_and_corrupt_stores(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with CAMStoreWriter(tmp_path / "s", shard_size=2) as writer:
            writer.add(*_batch(0, 3, 0))
            raise RuntimeError("interrupted")
    with pytest.raises(FileNotFoundError, match="not a complete CAM store"):
        CAMStore(tmp_path / "s")

    with CAMStoreWriter(tmp_path / "t", shard_size=2) as writer:
        writer.add(*_batch(0, 4, 0))
    (tmp_path / "t" / "shard_00001.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="shard_00001.pt: unreadable CAM shard"):
        list(CAMStore(tmp_path / "t").iter_batches())
    (tmp_path / "t" / "shard_00001.pt").unlink()
    with pytest.raises(FileNotFoundError, match="shard_00001.pt: shard listed in index.json is missing"):
        list(CAMStore(tmp_path / "t").iter_batches())


def test_fp16_overflow_is_refused(tmp_path: Path) -> None:
    idx, sizes, classes, scores, cams = _batch(10, 2, 0)
    cams[1, 0, 0, 0] = 1e6
    with pytest.raises(ValueError, match="image index 11 .* float16 range"):
        CAMStoreWriter(tmp_path / "s").add(idx, sizes, classes, scores, cams)


def test_export_names_and_refuses_overwrite(tmp_path: Path) -> None:
    with CAMStoreWriter(tmp_path / "s") as writer:
        writer.add(*_batch(0, 2, 0))
    ids = ["val/a.JPEG", "val/b.JPEG"]
    n = export_wsoleval_scoremaps(CAMStore(tmp_path / "s"), ids, tmp_path / "maps", lambda cam: cam * 0 + 1)
    assert n == 2 and np.load(tmp_path / "maps" / "val" / "a.JPEG.npy").shape == (4, 5)
    with pytest.raises(FileExistsError, match="a.JPEG.npy exists"):
        export_wsoleval_scoremaps(CAMStore(tmp_path / "s"), ids, tmp_path / "maps", lambda cam: cam)


def test_rescoring_stored_cams_matches_the_network(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=4, width=4)
    source = build_source("synthetic", split="test", num_images={"test": 16}, num_classes=4, image_size=32)
    with CAMStoreWriter(tmp_path / "cams", shard_size=5, meta={"topk": 3}) as store:
        direct = evaluate_model(model, source, protocol="paper", image_size=32, topk=3, batch_size=6,
                                cam_store=store).metrics
    kw = dict(topk=3, cam_threshold=0.2, cam_curve_interval=0.01, iou_thresholds=(30, 50, 70), batch_size=7)
    again = rescore_cam_store(CAMStore(tmp_path / "cams"), source, protocol="paper", **kw).metrics
    for key in ("top1_cls_err", "top3_cls_err"):
        assert again[key] == direct[key]
    for key in ("top1_loc_err", "top3_loc_err", "gt_known_loc_err"):  # fp16 may move a box: at most 1 image
        assert abs(again[key] - direct[key]) <= 100 / 16 + 1e-9
    ws = rescore_cam_store(CAMStore(tmp_path / "cams"), source, protocol="wsolevaluation", **kw).metrics
    assert 0 <= ws["maxboxacc"] <= 100
    with pytest.raises(ValueError, match="cannot be re-scored"):
        rescore_cam_store(CAMStore(tmp_path / "cams"), source, protocol="cam16_heuristics", **kw)
