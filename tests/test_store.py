"""CAM store: sharded fp16 round trip, bounded-memory reading, incomplete / corrupt stores, resume from the finished
shards, fp16 overflow, wsolevaluation score-map export, re-scoring stored CAMs against the network, and what must not
give a number: a duplicated shard, images of another size than the stored frames, a full disk mid-store."""

from __future__ import annotations

import json
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import synthetic_source
from wsol.conf import yaml_default
from wsol.data.datasets import build_source
from wsol.evaluation import ProtocolSettings, evaluate_model, rescore_store
from wsol.evaluation.store import CAMStore, CAMStoreWriter, check_matches, export_wsoleval_scoremaps, records_digest
from wsol.models import build_model

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
META = {"dataset": "toy", "split": "val", "topk": 2}
#: The run's shard size (eval.shard_size, its one home) where a test is not about shards.
SHARD_SIZE = yaml_default("eval/default", "shard_size")


def _batch(start: int, b: int, seed: int) -> Batch:
    """``b`` images with indices ``start..start+b-1``: top-2 + GT classes, 4x5 CAMs of magnitude ~100."""
    g = torch.Generator().manual_seed(seed)
    sizes = torch.stack([torch.arange(start, start + b) + 10, torch.full((b,), 7)], 1)
    return (torch.arange(start, start + b), sizes, torch.randint(0, 9, (b, 3), generator=g),
            torch.rand(b, 3, generator=g), torch.randn(b, 3, 4, 5, generator=g) * 100)


def _write(path: Path, batches: list[Batch], shard_size: int = 4, meta: dict[str, Any] = META) -> CAMStore:
    with CAMStoreWriter(path, shard_size=shard_size, meta=meta) as writer:
        for b in batches:
            writer.add(*b)
    return CAMStore(path)


# ----------------------------------------------------------------------------- round trip
def test_round_trip_across_shards_with_partial_last(tmp_path: Path) -> None:
    # 10 images in batches of 3, 4, 3 and shards of 4: shards of 4 + 4 + 2.
    batches = [_batch(0, 3, 0), _batch(3, 4, 1), _batch(7, 3, 2)]
    store = _write(tmp_path / "s", batches)
    assert len(store) == 10 and store.meta == META
    index = json.loads((tmp_path / "s" / "index.json").read_text())
    assert index["format_version"] == 2 and index["dtype"] == "float16" and index["num_images"] == 10
    assert index["cam_shape"] == [3, 4, 5]
    assert [(s["file"], s["count"]) for s in index["shards"]] == [
        ("shard_r000_00000.pt", 4), ("shard_r000_00001.pt", 4), ("shard_r000_00002.pt", 2)]
    assert not list((tmp_path / "s").glob("*.tmp*")) and not list((tmp_path / "s").glob("journal*"))

    got = list(store.iter_batches(batch_size=3))
    assert [len(b["indices"]) for b in got] == [3, 1, 3, 1, 2]  # a batch never spans two shards
    expected = {k: torch.cat([b[i] for b in batches]) for i, k in enumerate(("indices", "sizes", "classes",
                                                                            "scores", "cams"))}
    for key in ("indices", "sizes", "classes", "scores"):
        assert torch.equal(torch.cat([b[key] for b in got]), expected[key]), key
    cams = torch.cat([b["cams"] for b in got])
    assert cams.dtype == torch.float32
    assert torch.equal(cams, expected["cams"].half().float())  # exact up to the float16 rounding
    assert not torch.equal(cams, expected["cams"])  # ... which did happen: the test cannot pass by accident
    # Per-shard max |CAM| of the stored values.
    assert index["shards"][2]["max_abs_cam"] == float(expected["cams"][8:].half().float().abs().max())
    assert all(s["nonfinite"] == 0 for s in index["shards"])


def test_one_add_larger_than_several_shards(tmp_path: Path) -> None:
    store = _write(tmp_path / "s", [_batch(0, 11, 0)], shard_size=3)
    assert [s["count"] for s in store.index["shards"]] == [3, 3, 3, 2]
    assert torch.equal(torch.cat([b["indices"] for b in store.iter_batches(100)]), torch.arange(11))


def test_empty_store(tmp_path: Path) -> None:
    store = _write(tmp_path / "s", [])
    assert len(store) == 0 and list(store.iter_batches()) == [] and store.index["cam_shape"] is None


# ----------------------------------------------------------------------------- bounded memory
def test_reader_holds_one_shard_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _write(tmp_path / "s", [_batch(0, 10, 0)], shard_size=4)
    real_load = torch.load
    loaded: list[weakref.ref] = []  # the cams tensor of every shard loaded so far
    alive_at_load: list[int] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        assert kwargs.get("weights_only") is True  # no pickled code from a store
        alive_at_load.append(sum(r() is not None for r in loaded))
        shard = real_load(*args, **kwargs)
        loaded.append(weakref.ref(shard["cams"]))
        return shard

    monkeypatch.setattr(torch, "load", spy)
    batches = store.iter_batches(batch_size=2)
    kept = [next(batches)]
    assert len(loaded) == 1  # lazy: only the first shard so far
    kept += list(batches)  # the caller keeps every batch ...
    assert len(loaded) == 3
    assert alive_at_load == [0, 0, 0]  # ... yet each shard was released before the next was loaded
    assert sum(r() is not None for r in loaded) == 0
    assert len(kept) == 5  # 2 + 2 | 2 + 2 | 2


# ----------------------------------------------------------------------------- incomplete / corrupt stores
def test_interrupted_write_leaves_a_recognisably_incomplete_store(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="interrupted"):
        with CAMStoreWriter(tmp_path / "s", shard_size=2, meta=META) as writer:
            writer.add(*_batch(0, 3, 0))  # one full shard on disk
            raise RuntimeError("interrupted")
    assert (tmp_path / "s" / "shard_r000_00000.pt").is_file()
    assert not (tmp_path / "s" / "index.json").exists()
    with pytest.raises(FileNotFoundError, match=r"index.json missing: .* not a complete CAM store .*eval.resume"):
        CAMStore(tmp_path / "s")
    # A new writer refuses to mix its shards with the stale ones, and never overwrites a complete store.
    with pytest.raises(FileExistsError, match="incomplete CAM store"):
        CAMStoreWriter(tmp_path / "s", meta=META, shard_size=SHARD_SIZE)
    _write(tmp_path / "t", [_batch(0, 2, 0)])
    with pytest.raises(FileExistsError, match="already there"):
        CAMStoreWriter(tmp_path / "t", meta=META, shard_size=SHARD_SIZE)


def test_missing_corrupt_and_mismatched_shards_name_the_file(tmp_path: Path) -> None:
    store_dir = tmp_path / "s"
    _write(store_dir, [_batch(0, 6, 0)], shard_size=4)  # shards of 4 + 2
    shard0, shard1 = store_dir / "shard_r000_00000.pt", store_dir / "shard_r000_00001.pt"
    good1 = shard1.read_bytes()

    shard1.write_bytes(good1[: len(good1) // 2])  # truncated
    with pytest.raises(ValueError, match=r"shard_r000_00001.pt: unreadable CAM shard"):
        list(CAMStore(store_dir).iter_batches())

    shard1.write_bytes(shard0.read_bytes())  # a valid shard, but of 4 images where the index says 2
    with pytest.raises(ValueError, match=r"shard_r000_00001.pt: indices is \(\(4,\).* says 2 images"):
        list(CAMStore(store_dir).iter_batches())

    shard = torch.load(shard0, weights_only=True)
    torch.save({**shard, "cams": shard["cams"][:, :, :3]}, shard1.with_suffix(".x"))  # wrong CAM shape
    torch.save({k: v[:2] for k, v in torch.load(shard1.with_suffix(".x"), weights_only=True).items()}, shard1)
    with pytest.raises(ValueError, match=r"shard_r000_00001.pt: cams is"):
        list(CAMStore(store_dir).iter_batches())

    shard1.unlink()  # missing: refused on opening, before any work
    with pytest.raises(FileNotFoundError, match=r"shard_r000_00001.pt: shard listed in index.json is missing"):
        CAMStore(store_dir)


def test_unsupported_format_version(tmp_path: Path) -> None:
    _write(tmp_path / "s", [_batch(0, 2, 0)])
    index_path = tmp_path / "s" / "index.json"
    index_path.write_text(json.dumps({**json.loads(index_path.read_text()), "format_version": 99}))
    with pytest.raises(ValueError, match=r"index.json: unsupported CAM store format_version 99"):
        CAMStore(tmp_path / "s")


# ----------------------------------------------------------------------------- writer validation
def test_fp16_overflow_is_refused_naming_the_image(tmp_path: Path) -> None:
    idx, sizes, classes, scores, cams = _batch(10, 3, 0)
    cams[1, 0, 0, 0] = -7e4  # beyond -65504: float16 would give -inf
    writer = CAMStoreWriter(tmp_path / "s", meta=META, shard_size=SHARD_SIZE)
    with pytest.raises(ValueError, match=r"image indices \[11\] exceeds the float16 range"):
        writer.add(idx, sizes, classes, scores, cams)
    cams[1, 0, 0, 0] = 65504.0  # the largest float16 is fine
    writer.add(idx, sizes, classes, scores, cams)
    writer.close()
    assert CAMStore(tmp_path / "s").index["shards"][0]["max_abs_cam"] == 65504.0


def test_nonfinite_cams_are_stored_faithfully_and_counted(tmp_path: Path) -> None:
    idx, sizes, classes, scores, cams = _batch(0, 2, 0)
    cams[0, 2, 1, 1], cams[1, 0, 0, 0] = float("nan"), float("inf")
    store = _write(tmp_path / "s", [(idx, sizes, classes, scores, cams)])
    got = next(store.iter_batches())["cams"]
    assert got[0, 2, 1, 1].isnan() and got[1, 0, 0, 0] == float("inf")
    assert store.index["shards"][0]["nonfinite"] == 2


def test_writer_rejects_bad_batches(tmp_path: Path) -> None:
    writer = CAMStoreWriter(tmp_path / "s", meta=META, shard_size=SHARD_SIZE)
    idx, sizes, classes, scores, cams = _batch(0, 2, 0)
    with pytest.raises(ValueError, match="inconsistent batch shapes"):
        writer.add(idx, sizes, classes, scores, cams[:1])
    with pytest.raises(ValueError, match="indices must be an integer tensor"):
        writer.add(idx.float(), sizes, classes, scores, cams)
    with pytest.raises(ValueError, match="meta topk=2 means 3"):  # the re-scorer relies on topk
        writer.add(idx, sizes, classes[:, :2], scores[:, :2], cams[:, :2])
    writer.add(idx, sizes, classes, scores, cams)
    with pytest.raises(ValueError, match=r"differ from the store's \[B,3,4,5\]"):
        writer.add(*_batch(2, 2, 1)[:4], torch.zeros(2, 3, 4, 6))
    with pytest.raises(ValueError, match=r"image indices \[1\] are repeated"):
        writer.add(*_batch(1, 2, 1))
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.add(*_batch(5, 1, 0))
    with pytest.raises(ValueError, match="JSON-serialisable"):
        CAMStoreWriter(tmp_path / "u", meta={"arch": object()}, shard_size=SHARD_SIZE)


# ----------------------------------------------------------------------------- wsolevaluation export
def _scale_to_unit(cam: np.ndarray) -> np.ndarray:
    """A stand-in for ``wsoleval_scoremap``: min-max at feature resolution, float32."""
    return ((cam - cam.min()) / (cam.max() - cam.min())).astype(np.float32)


def test_export_names_contents_and_refusal_to_overwrite(tmp_path: Path) -> None:
    ids = ["val/a.JPEG", "val/sub/b.JPEG", "c.png"]
    batch = _batch(0, 3, 0)
    store = _write(tmp_path / "s", [batch], meta={**META, "image_ids": ids})
    out = tmp_path / "maps"
    assert export_wsoleval_scoremaps(store, ids, out, _scale_to_unit) == 3
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "c.png.npy", "val/a.JPEG.npy", "val/sub/b.JPEG.npy"]
    # The GT class's CAM is the last of the k+1 maps.
    got = np.load(out / "val" / "sub" / "b.JPEG.npy")
    np.testing.assert_array_equal(got, _scale_to_unit(batch[4][1, -1].half().float().numpy()))

    (out / "c.png.npy").unlink()
    with pytest.raises(FileExistsError, match=r"a.JPEG.npy exists \(2 of 3"):
        export_wsoleval_scoremaps(store, ids, out, _scale_to_unit)
    assert not (out / "c.png.npy").exists()  # checked up front: a refusal writes nothing
    assert export_wsoleval_scoremaps(store, ids, out, lambda cam: np.ones_like(cam), overwrite=True) == 3
    assert np.load(out / "val" / "a.JPEG.npy").min() == 1.0


def test_export_validates_ids_and_score_maps(tmp_path: Path) -> None:
    ids = ["a.jpg", "b.jpg"]
    store = _write(tmp_path / "s", [_batch(0, 2, 0)], meta={**META, "image_ids": ids})
    bare = _write(tmp_path / "t", [_batch(0, 2, 0)])
    with pytest.raises(ValueError, match="outside the 1 image ids"):
        export_wsoleval_scoremaps(bare, ["a.jpg"], tmp_path / "m", _scale_to_unit)
    with pytest.raises(ValueError, match="not a relative path"):
        export_wsoleval_scoremaps(bare, ["../a.jpg", "b.jpg"], tmp_path / "m", _scale_to_unit)
    with pytest.raises(ValueError, match=r"score map of 'a.jpg' holds NaN or values outside \[0, 1\]"):
        export_wsoleval_scoremaps(store, ids, tmp_path / "m", lambda cam: cam)


# ----------------------------------------------------------------------------- resume
def test_resume_continues_from_the_journaled_shards(tmp_path: Path) -> None:
    full = [_batch(0, 4, 0), _batch(4, 4, 1), _batch(8, 2, 2)]
    reference = _write(tmp_path / "ref", full, shard_size=4)
    with pytest.raises(RuntimeError):
        with CAMStoreWriter(tmp_path / "s", shard_size=4, meta=META) as writer:
            writer.add(*full[0])  # shard 0 written and journaled
            writer.add(*full[1])  # shard 1 written and journaled
            raise RuntimeError("killed")
    (tmp_path / "s" / "shard_r000_00099.pt").write_bytes(b"orphan")  # written, never journaled: recomputed
    with pytest.raises(ValueError, match="written for other inputs"):
        CAMStoreWriter(tmp_path / "s", shard_size=4, meta={**META, "split": "test"}, resume=True)
    writer = CAMStoreWriter(tmp_path / "s", shard_size=4, meta=META, resume=True)
    assert writer.done_indices == set(range(8)) and not (tmp_path / "s" / "shard_r000_00099.pt").exists()
    with pytest.raises(ValueError, match=r"image indices \[7\] are repeated"):
        writer.add(*_batch(7, 1, 0))
    writer.add(*full[2])
    writer.close()
    got, ref = CAMStore(tmp_path / "s"), reference
    assert len(got) == 10
    for a, b in zip(got.iter_batches(100), ref.iter_batches(100)):
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_check_matches_refuses_other_data() -> None:
    from wsol.data.records import ImageRecord

    recs = [ImageRecord("a.jpg", 0), ImageRecord("b.jpg", 1)]
    meta = {"dataset": "toy", "split": "test", **records_digest(recs)}
    check_matches(meta, recs, "s")
    with pytest.raises(ValueError, match="the labels differ"):
        check_matches(meta, [ImageRecord("a.jpg", 0), ImageRecord("b.jpg", 2)], "s")
    with pytest.raises(ValueError, match="the image ids"):
        check_matches(meta, [ImageRecord("b.jpg", 0), ImageRecord("a.jpg", 1)], "s")
    with pytest.raises(ValueError, match="number of images"):
        check_matches(meta, recs[:1], "s")


# ----------------------------------------------------------------------------- re-scoring
def _settings(protocol: str, topk: int = 3, **kw: Any) -> ProtocolSettings:
    base = dict(protocol=protocol, topk=topk, cam_threshold=0.2, cam_curve_interval=0.01, iou_thresholds=(30, 50, 70),
                box_method="exact", tau_policy="oracle", tau=None, tau_folds=2, cam_method="cam",
                scorecam_batch_size=64)
    return ProtocolSettings(**{**base, **kw})


def test_rescoring_stored_cams_equals_the_direct_evaluation(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=4, width=4)
    source = synthetic_source("test", 16, 4)
    store = CAMStoreWriter(tmp_path / "cams", shard_size=5, meta={"topk": 3})
    direct = evaluate_model(model, source, _settings("paper"), image_size=32, batch_size=6, num_workers=0,
                            device=torch.device("cpu"), store=store, fused=False)
    again = rescore_store(CAMStore(tmp_path / "cams"), source, _settings("paper"), batch_size=7)
    for key, v in direct.metrics.items():  # what is stored is what was scored: identical
        if key != "eval_seconds":
            assert again.metrics[key] == v, key
    assert again.rows == direct.rows
    ws = rescore_store(CAMStore(tmp_path / "cams"), source, _settings("wsolevaluation"))
    assert 0 <= ws.metrics["maxboxacc"] <= 100
    with pytest.raises(ValueError, match="holds 'cam' maps"):
        rescore_store(CAMStore(tmp_path / "cams"), source, _settings("cam16_heuristics", topk=5))


def test_rescoring_with_a_smaller_topk_reads_the_gt_map_from_the_last_column(tmp_path: Path) -> None:
    # Slip caught: with k=1 the GT-class CAM must still be the LAST stored map, not column k.
    torch.manual_seed(1)
    model = build_model("small_cnn", num_classes=4, width=4)
    source = synthetic_source("test", 12, 4)
    store = CAMStoreWriter(tmp_path / "cams", shard_size=5, meta={"topk": 3})
    evaluate_model(model, source, _settings("paper"), image_size=32, batch_size=6, num_workers=0,
                   device=torch.device("cpu"), store=store, fused=False)
    stored = CAMStore(tmp_path / "cams")
    k3 = rescore_store(stored, source, _settings("paper", topk=3)).metrics
    k1 = rescore_store(stored, source, _settings("paper", topk=1)).metrics
    assert k1["gt_known_loc_err"] == k3["gt_known_loc_err"]
    assert k1["top1_loc_err"] == k3["top1_loc_err"] and k1["top1_cls_err"] == k3["top1_cls_err"]
    with pytest.raises(ValueError, match="holds the top-3 classes"):
        rescore_store(stored, source, _settings("paper", topk=4))


# ----------------------------------------------------------------------------- duplicated shards, other frames
def test_a_duplicated_shard_is_refused_naming_both_files(tmp_path: Path) -> None:
    import shutil

    store_dir = tmp_path / "s"
    _write(store_dir, [_batch(0, 6, 0)], shard_size=4)  # shards of 4 + 2
    index_path = store_dir / "index.json"
    good = json.loads(index_path.read_text())
    # a copy of shard 0 added to the index: n would count its 4 images twice
    shutil.copy(store_dir / "shard_r000_00000.pt", store_dir / "shard_r000_00002.pt")
    first = good["shards"][0]
    index_path.write_text(json.dumps({**good, "num_images": 10, "shards": [*good["shards"],
                                                                           {**first, "file": "shard_r000_00002.pt"}]}))
    with pytest.raises(ValueError, match=r"image index 0 is stored in both shard_r000_00000.pt and "
                                         r"shard_r000_00002.pt .*scored twice"):
        list(CAMStore(store_dir).iter_batches())
    with pytest.raises(ValueError, match="stored in both"):
        CAMStore(store_dir).read_indices()  # the score-map export's reader too
    # the same shard listed twice: refused on opening
    index_path.write_text(json.dumps({**good, "num_images": 10, "shards": [*good["shards"], first]}))
    with pytest.raises(ValueError, match=r"index.json: shard shard_r000_00000.pt is listed twice"):
        CAMStore(store_dir)


def test_a_duplicated_shard_in_an_incomplete_store_is_refused_on_resume(tmp_path: Path) -> None:
    import shutil

    with pytest.raises(RuntimeError):
        with CAMStoreWriter(tmp_path / "s", shard_size=4, meta=META) as writer:
            writer.add(*_batch(0, 4, 0))
            raise RuntimeError("killed")
    journal = tmp_path / "s" / "journal_r000.json"
    copy = tmp_path / "s" / "journal_r001.json"  # another rank's journal claiming the same shard
    shutil.copy(journal, copy)
    with pytest.raises(ValueError, match=r"journal_r001.json: shard shard_r000_00000.pt is journaled twice"):
        CAMStoreWriter(tmp_path / "s", shard_size=4, meta=META, resume=True)
    entry = json.loads(journal.read_text())  # ... or a copy of the shard under another name
    shutil.copy(tmp_path / "s" / "shard_r000_00000.pt", tmp_path / "s" / "shard_r001_00000.pt")
    copy.write_text(json.dumps({**entry, "shards": [{**entry["shards"][0], "file": "shard_r001_00000.pt"}]}))
    with pytest.raises(ValueError, match=r"image index 0 is stored in both shard_r000_00000.pt and shard_r001_00000"):
        CAMStoreWriter(tmp_path / "s", shard_size=4, meta=META, resume=True)


def test_rescoring_against_images_of_another_size_is_refused_naming_one(tmp_path: Path) -> None:
    # the same ids and labels rendered at 64 px (data.render_size=64, or a resized copy): the stored maps belong to
    # the 32 px frame, the boxes to the 64 px one
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=4, width=4)
    source = synthetic_source("test", 8, 4, render_size=32)
    evaluate_model(model, source, _settings("paper"), image_size=32, batch_size=4, num_workers=0,
                   device=torch.device("cpu"),
                   store=CAMStoreWriter(tmp_path / "cams", meta={"topk": 3}, shard_size=SHARD_SIZE), fused=False)
    bigger = synthetic_source("test", 8, 4, render_size=64)
    check_matches(records_digest(source.annotations.records), bigger.annotations.records, "s")  # ids, labels agree
    with pytest.raises(ValueError, match=r"image 'test/000000.png' was 32x32 when its CAMs were stored but is 64x64 "
                                         r"here \(another data.render_size or a resized copy\?\)"):
        rescore_store(CAMStore(tmp_path / "cams"), bigger, _settings("paper"))
    assert rescore_store(CAMStore(tmp_path / "cams"), source, _settings("paper")).metrics["n_images"] == 8


def test_disk_full_while_writing_a_shard_keeps_the_finished_ones(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import wsol.evaluation.store as store_module

    real, count = store_module.atomic_torch_save, [0]

    def full_on_the_second(obj: Any, path: Path) -> None:
        count[0] += 1
        if count[0] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(obj, path)

    monkeypatch.setattr(store_module, "atomic_torch_save", full_on_the_second)
    writer = CAMStoreWriter(tmp_path / "s", shard_size=4, meta=META)
    with pytest.raises(OSError) as raised:
        writer.add(*_batch(0, 8, 0))
    assert raised.value.filename == str(tmp_path / "s" / "shard_r000_00001.pt")
    assert raised.value.__notes__ == [f"1 finished CAM shard(s) are kept in {tmp_path / 's'}; the same command in "
                                      "this run dir continues from them (eval.resume=true)"]
    monkeypatch.setattr(store_module, "atomic_torch_save", real)
    resumed = CAMStoreWriter(tmp_path / "s", shard_size=4, meta=META, resume=True)
    assert resumed.done_indices == {0, 1, 2, 3}  # the journal lists the finished shard only
    resumed.add(*[t[4:] for t in _batch(0, 8, 0)])
    resumed.close()
    assert len(CAMStore(tmp_path / "s")) == 8
