"""Training engine: exact resume, refusals on resume, parameter groups, schedules, checkpoints, recipes and the
frozen-feature cache."""

from __future__ import annotations

import functools
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import GLIBC, synthetic_source
from wsol.data.datasets import WSOLDataset, build_source
from wsol.data.transforms import build_train_transform
from wsol.engine.checkpoint import load_checkpoint, load_model_file, model_spec, save_checkpoint
from wsol.engine.cpu_malloc import set_cpu_malloc
from wsol.engine.features import (PooledFeatures, PooledHead, cached_pooled_features, extract_pooled_features,
                                  fit_linear_svm)
from wsol.engine.optim import build_param_groups, lr_lambda
from wsol.engine.recipes import TrainSettings, frozen_modules, train_model
from wsol.engine.trainer import EpochSampler, seed_everything
from wsol.models import build_model

CPU = torch.device("cpu")
SETTINGS = TrainSettings(
    recipe="full", epochs=2, max_iters=None, batch_size=8, accumulate_grad_batches=2,
    optimizer=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9, nesterov=True), lr=0.05,
    weight_decay=5e-4, new_layer_lr_mult=10.0, bias_lr_mult=2.0, schedule="step", schedule_unit="iter",
    milestones=(3,), gamma=0.1, warmup_iters=2, amp=True, channels_last=False, sync_bn=False, num_workers=0,
    checkpoint_every=100, snapshot_every=None, log_every=1, feature_cache=True, svm_C=1.0, svm_max_iter=1000)


def _source(n: int = 36, split: str = "train") -> Any:
    return synthetic_source(split, n, 4)


def _train(tmp: Path, *, seed: int = 0, settings: TrainSettings = SETTINGS, resume: Any = None,
           stop_after: int | None = None, fingerprint: dict | None = None, cache: Path | None = None,
           dropout: float = 0.0) -> tuple:
    seed_everything(seed)
    model = build_model("small_cnn", num_classes=4, width=4)
    if dropout:
        model.dropout = torch.nn.Dropout(dropout)
    spec = model_spec("small_cnn", 4, "gap", {"width": 4})
    source = _source()
    result = train_model(
        model, source, tmp, settings=settings, seed=1, spec=spec, fingerprint=fingerprint or {"v": 1}, device=CPU,
        # random crop + flip: augmentation randomness is part of what must resume exactly
        make_train_dataset=lambda m: WSOLDataset(source, build_train_transform(36, 32, True, m.mean, m.std)),
        image_size=32, cache_dir=None if cache is None else str(cache), data_root=None, arch="small_cnn",
        resume=resume, stop_after=stop_after)
    return model, result


def test_resume_is_exact_and_the_log_has_no_duplicates(tmp_path: Path) -> None:
    model_a, result = _train(tmp_path / "a")
    assert result.steps == 2 * (36 // 8)
    _, partial = _train(tmp_path / "b", stop_after=3)
    assert partial.steps == 3  # stopped mid-epoch 0 (4 steps per epoch)
    # a different init: everything must come from the checkpoint
    model_c, _ = _train(tmp_path / "b", seed=123, resume=tmp_path / "b" / "checkpoints" / "last.pt")
    for (name, a), c in zip(model_a.state_dict().items(), model_c.state_dict().values()):
        assert torch.equal(a, c), name
    assert load_model_file(tmp_path / "b" / "model.pt")["spec"]["kwargs"] == {"width": 4}
    log_a = (tmp_path / "a" / "train_log.csv").read_text()
    assert log_a == (tmp_path / "b" / "train_log.csv").read_text()  # rewritten to the resumed step: no duplicates
    assert log_a.count("\n") == 1 + result.steps


def test_resumed_run_counts_the_training_time_of_its_earlier_processes(tmp_path: Path) -> None:
    _, partial = _train(tmp_path, stop_after=3)
    ckpt = tmp_path / "checkpoints" / "last.pt"
    state = load_checkpoint(ckpt)
    assert 0 < state["seconds"] <= partial.seconds
    state["seconds"] = 1000.0  # as if the first process had trained for 1000 s before it was stopped
    save_checkpoint(ckpt, state)
    _, resumed = _train(tmp_path, resume=ckpt)
    assert 1000.0 < resumed.seconds < 1000.0 + 600  # train_seconds of the run: both processes, not the last one only
    assert load_checkpoint(ckpt)["seconds"] > 1000.0


def test_resume_is_exact_with_dropout_and_loader_workers(tmp_path: Path) -> None:
    # Dropout on the CPU draws from the global generator, so nothing else may move it: a DataLoader drawing its
    # workers' base seed from it at each epoch start (the resumed run starts one mid-epoch) broke this.
    settings = replace(SETTINGS, num_workers=2)
    model_a, _ = _train(tmp_path / "a", settings=settings, dropout=0.5)
    _train(tmp_path / "b", settings=settings, dropout=0.5, stop_after=3)
    model_b, _ = _train(tmp_path / "b", settings=settings, dropout=0.5, seed=123,
                        resume=tmp_path / "b" / "checkpoints" / "last.pt")
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), name


def test_resuming_a_finished_run_trains_nothing_and_keeps_its_numbers(tmp_path: Path) -> None:
    _, first = _train(tmp_path)
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt["finished"] and ckpt["step"] == first.steps
    _, again = _train(tmp_path, resume=tmp_path / "checkpoints" / "last.pt")
    assert again.steps == first.steps and again.final_loss == first.final_loss and again.train_acc == first.train_acc


def test_resume_refuses_changed_settings(tmp_path: Path) -> None:
    _train(tmp_path, stop_after=2, fingerprint={"batch_size": 8, "lr": 0.05})
    with pytest.raises(ValueError, match=r"the run's settings changed:\n  lr: 0.05 in the checkpoint, 0.1 now"):
        _train(tmp_path, resume=tmp_path / "checkpoints" / "last.pt", fingerprint={"batch_size": 8, "lr": 0.1})


@pytest.mark.parametrize("content,match", [(b"", "empty checkpoint"), (b"PK\x03\x04garbage", "unreadable checkpoint")])
def test_bad_checkpoint_files_are_named(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "last.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        load_checkpoint(path)


def test_non_dict_and_partial_checkpoints_are_refused(tmp_path: Path) -> None:
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "list.pt")
    torch.save({"model": {}}, tmp_path / "model_only.pt")
    with pytest.raises(ValueError, match="not a resumable wsol checkpoint"):
        load_checkpoint(tmp_path / "model_only.pt")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_param_groups_separate_new_layers_and_biases() -> None:
    model = build_model("small_cnn", num_classes=4, width=4)
    groups = build_param_groups(model, lr=0.01, weight_decay=5e-4, new_layer_lr_mult=10.0, bias_lr_mult=2.0,
                                new_modules=model.new_modules())
    by_name = {g["name"]: g for g in groups}
    # small_cnn: convs without bias + BN in backbone and head; the classifier has weight and bias
    assert set(by_name) == {"backbone_weight", "backbone_norm", "new_weight", "new_norm", "new_bias"}
    assert by_name["backbone_weight"]["lr"] == pytest.approx(0.01)
    assert by_name["new_weight"]["lr"] == pytest.approx(0.1)
    assert by_name["new_bias"]["lr"] == pytest.approx(0.2)
    assert by_name["new_bias"]["params"] == [model.classifier.bias]
    assert by_name["backbone_weight"]["weight_decay"] == 5e-4 and by_name["new_norm"]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_lr_schedules_golden() -> None:
    # the CAM authors' solver: x0.1 at 40k, 80k, 120k of 160k iterations
    step = lr_lambda("step", total_steps=160000, milestones=[40000, 80000, 120000], gamma=0.1, warmup_steps=0)
    assert step(39999) == 1.0 and step(40000) == pytest.approx(0.1) and step(159999) == pytest.approx(1e-3)
    no_steps = dict(milestones=[], gamma=0.1)  # what the cosine configs set (train/default.yaml); cosine ignores them
    assert lr_lambda("cosine", total_steps=100, warmup_steps=0, **no_steps)(50) == pytest.approx(0.5)
    assert lr_lambda("cosine", total_steps=100, warmup_steps=4, **no_steps)(0) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="unknown schedule 'poly'"):
        lr_lambda("poly", total_steps=10, warmup_steps=0, **no_steps)


def test_lambda_lr_keeps_the_group_multipliers(tmp_path: Path) -> None:
    # After 4 steps of the step schedule (milestone 3, gamma 0.1) with warm-up 2, the classifier bias group (lr x10
    # new layers x2 bias) is at 0.05 * 20 * 0.1.
    settings = replace(SETTINGS, epochs=1)
    _train(tmp_path, settings=settings)
    groups = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["optimizer"]["param_groups"]
    lrs = sorted(g["lr"] for g in groups)
    assert lrs[-1] == pytest.approx(0.05 * 20 * 0.1) and lrs[0] == pytest.approx(0.05 * 0.1)


def test_sampler_resumes_mid_epoch_and_splits_global_batches_over_ranks() -> None:
    full = list(EpochSampler(10, seed=3, epoch=2, batch_size=2))
    assert sorted(i for _, i in full) == list(range(10))
    assert list(EpochSampler(10, seed=3, epoch=2, batch_size=2, start=4)) == full[4:]
    assert full != list(EpochSampler(10, seed=3, epoch=2 + 1, batch_size=2))
    one = list(EpochSampler(9, seed=0, epoch=0, batch_size=4))  # 2 global batches, the 9th image dropped
    r0 = list(EpochSampler(9, seed=0, epoch=0, batch_size=4, rank=0, world_size=2))
    r1 = list(EpochSampler(9, seed=0, epoch=0, batch_size=4, rank=1, world_size=2))
    assert len(one) == 8 and r0 == one[0:2] + one[4:6] and r1 == one[2:4] + one[6:8]


def test_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="divisible by world_size x accumulate_grad_batches"):
        _train(tmp_path, settings=replace(SETTINGS, batch_size=7))
    with pytest.raises(ValueError, match="fewer than one batch"):
        _train(tmp_path, settings=replace(SETTINGS, batch_size=64))
    with pytest.raises(ValueError, match="train.epochs must be >= 1"):
        replace(SETTINGS, epochs=0)
    with pytest.raises(ValueError, match="train.max_iters must be >= 1"):
        replace(SETTINGS, max_iters=0)
    with pytest.raises(ValueError, match="unknown train.recipe"):
        replace(SETTINGS, recipe="linear_probe")


# ----------------------------------------------------------------------------- frozen features and head recipes
def test_pooled_features_are_the_model_pooling_of_each_view() -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=4, width=4).eval()
    source = _source(6)
    pooled = extract_pooled_features(model, source, image_size=32, hflip=True, batch_size=4, num_workers=0,
                                     device=CPU)
    assert pooled.shape == (2, 6, 2, 16)
    feats = PooledFeatures(pooled, torch.zeros(6), [], {})
    from wsol.data.transforms import build_eval_transform

    x = build_eval_transform(32, model.mean, model.std)(source.load(3))[None]
    with torch.no_grad():
        f = model.forward_features(x.flip(-1))
    torch.testing.assert_close(feats.of("gap")[1, 3], f.mean((2, 3))[0])
    torch.testing.assert_close(feats.of("gmp")[1, 3], f.amax((2, 3))[0])
    # the head on a pooled vector = the model's own head on the map (one classifier, shared modules)
    head = PooledHead(model).eval()
    with torch.no_grad():
        torch.testing.assert_close(head(feats.of("gap")[1, 3:4]), model.forward_head(f))


def test_feature_cache_is_shared_by_poolings_and_refuses_other_inputs(tmp_path: Path) -> None:
    settings = replace(SETTINGS, recipe="head", batch_size=6, accumulate_grad_batches=1, epochs=2)
    _, gap = _train(tmp_path / "gap", settings=settings, cache=tmp_path / "cache")
    files = list((tmp_path / "cache").glob("features-*.pt"))
    assert len(files) == 1 and gap.history[-1]["features_cached"] is False
    model, second = _train(tmp_path / "gap2", settings=settings, cache=tmp_path / "cache")
    assert second.history[-1]["features_cached"] is True and list((tmp_path / "cache").glob("*.pt")) == files
    # the backbone is untouched by the head recipe; only the classifier moved
    seed_everything(0)
    fresh = build_model("small_cnn", num_classes=4, width=4)
    for name, t in fresh.state_dict().items():
        if not name.startswith("classifier"):
            assert torch.equal(t, model.state_dict()[name]), name
    assert not torch.equal(fresh.classifier.weight, model.classifier.weight)
    # a cache file whose recorded key differs (e.g. another model's) is refused, not reused
    state = torch.load(files[0], weights_only=True)
    torch.save({**state, "key": {**state["key"], "arch": "other"}}, files[0])
    with pytest.raises(ValueError, match="feature cache made for other inputs"):
        _train(tmp_path / "gap3", settings=settings, cache=tmp_path / "cache")


def test_linear_svm_classifier_gives_the_cam_identity(tmp_path: Path) -> None:
    model, result = _train(tmp_path, settings=replace(SETTINGS, recipe="linear_svm"), cache=tmp_path / "c")
    assert result.steps == 0 and 0.0 <= result.train_acc <= 1.0
    # (the SVM's rows and their classes: tests/test_conventions.py::test_linear_svm_rows_belong_to_their_classes)
    feats = torch.randn(40, 5)
    labels = torch.arange(40) % 2
    w, b, info = fit_linear_svm(feats, labels, C=1.0, seed=0, max_iter=1000)
    assert w.shape == (2, 5) and torch.equal(w[0], -w[1])  # binary: the two classes' scores are opposite


def test_frozen_modules_per_recipe() -> None:
    model = build_model("small_cnn", num_classes=4, width=4)
    frozen, new = frozen_modules(model, "head")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.weight", "classifier.bias"} and new == [model.classifier, model.method_modules]
    assert model.backbone in frozen and model.classifier not in frozen and model.dropout not in frozen
    assert model.method_modules not in frozen  # a method's layers (none for CAM) train with the classifier
    frozen, new = frozen_modules(model, "full")
    assert frozen == () and all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("first_size, dies_at, second_size, redone", [
    (3, 2, 3, [[3, 4, 5], [6]]),  # parts [0-2] kept: only the unfinished chunks are done
    (2, 3, 4, [[0, 1, 2, 3], [4, 5, 6]]),  # parts [0, 1], [2, 3] are not chunks of 4 images: redone
])
def test_feature_extraction_resumes_from_its_finished_chunks(first_size: int, dies_at: int, second_size: int,
                                                             redone: list, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import wsol.engine.features as features

    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=4, width=4).eval()
    source = _source(7)
    kw = dict(arch="small_cnn", image_size=32, hflip=True, batch_size=2, num_workers=0, device=CPU, data_root=None)
    reference = cached_pooled_features(model, source, cache_dir=None, **kw)
    real, calls = features.extract_pooled_features, []

    def dies(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(list(kwargs["indices"]))
        if len(calls) == dies_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "extract_pooled_features", dies)
    with pytest.raises(KeyboardInterrupt) as raised:
        cached_pooled_features(model, source, cache_dir=tmp_path, chunk_size=first_size, **kw)
    assert len(list(tmp_path.glob("*.part*.pt"))) == dies_at - 1  # the finished chunks are kept, and Ctrl-C says so
    assert raised.value.__notes__ == [f"{dies_at - 1} of {-(-7 // first_size)} feature chunks are kept in {tmp_path}; "
                                      "the next run with the same inputs continues from them"]
    calls.clear()
    monkeypatch.setattr(features, "extract_pooled_features", lambda *a, **k: calls.append(list(k["indices"])) or real(*a, **k))
    feats = cached_pooled_features(model, source, cache_dir=tmp_path, chunk_size=second_size, **kw)
    assert calls == redone
    assert not list(tmp_path.glob("*.part*.pt")) and len(list(tmp_path.glob("features-*.pt"))) == 1
    torch.testing.assert_close(feats.pooled, reference.pooled)


# ----------------------------------------------------------------------------- images that fail at load time
class _BrokenFiles:
    """A synthetic source whose images ``bad`` fail to load (as a truncated JPEG does), under ``on_error``."""

    def __init__(self, n: int, bad: set[int], on_error: str) -> None:
        self.inner, self.bad, self.on_error = _source(n), bad, on_error
        self.annotations = self.inner.annotations

    def load(self, index: int) -> Any:
        from wsol.data.images import ImageLoadError

        if index in self.bad:
            raise ImageLoadError(f"/data/{self.annotations.records[index].image_id}", "truncated: no JPEG end marker")
        return self.inner.load(index)


def _train_on(source: Any, tmp: Path, settings: TrainSettings, cache: Path | None = None) -> tuple:
    seed_everything(0)
    model = build_model("small_cnn", num_classes=4, width=4)
    result = train_model(
        model, source, tmp, settings=settings, seed=1, spec=model_spec("small_cnn", 4, "gap", {"width": 4}),
        fingerprint={"v": 1}, device=CPU,
        make_train_dataset=lambda m: WSOLDataset(source, build_train_transform(36, 32, True, m.mean, m.std)),
        image_size=32, cache_dir=None if cache is None else str(cache), data_root=None, arch="small_cnn")
    return model, result


@pytest.mark.parametrize("recipe", ["full", "head"])
def test_training_skips_images_that_fail_to_load_only_when_asked(recipe: str, tmp_path: Path) -> None:
    from wsol.data.images import ImageLoadError

    settings = replace(SETTINGS, recipe=recipe, amp=False, epochs=2)
    ids = [r.image_id for r in _source(36).annotations.records]
    with pytest.raises(ImageLoadError, match=rf"/data/{ids[5]}: truncated"):
        _train_on(_BrokenFiles(36, {5}, "raise"), tmp_path / "raise", settings, cache=tmp_path / "c1")
    model, result = _train_on(_BrokenFiles(36, {5, 17}, "skip"), tmp_path / "skip", settings, cache=tmp_path / "c2")
    assert result.steps == settings.epochs * (36 // settings.batch_size)  # the run finished, same schedule
    assert result.skipped == {ids[5]: f"/data/{ids[5]}: truncated: no JPEG end marker",
                              ids[17]: f"/data/{ids[17]}: truncated: no JPEG end marker"}
    assert all(torch.isfinite(p).all() for p in model.parameters())
    if recipe == "full":  # the checkpoint keeps the list, so a resumed run still reports it
        assert load_checkpoint(tmp_path / "skip" / "checkpoints" / "last.pt")["skipped"] == result.skipped
    else:  # the cache keeps it, so a run served from the cache still reports it
        _, again = _train_on(_BrokenFiles(36, {5, 17}, "skip"), tmp_path / "skip2", settings, cache=tmp_path / "c2")
        assert again.history[-1]["features_cached"] is True and again.skipped == result.skipped


def test_skipped_images_have_nan_rows_that_kept_drops(tmp_path: Path) -> None:
    """Head recipe: a skipped image gets a NaN row (the others are unchanged) and is not trained on."""
    settings = replace(SETTINGS, recipe="head", amp=False, epochs=2, batch_size=6, accumulate_grad_batches=1)
    model = build_model("small_cnn", num_classes=4, width=4).eval()
    skipped: dict[str, str] = {}
    pooled = extract_pooled_features(model, _BrokenFiles(8, {2, 5}, "skip"), image_size=32, hflip=True, batch_size=3,
                                     num_workers=0, device=CPU, skipped=skipped)
    full = extract_pooled_features(model, _source(8), image_size=32, hflip=True, batch_size=3, num_workers=0,
                                   device=CPU)
    assert torch.isnan(pooled[:, [2, 5]]).all() and sorted(skipped) == sorted(
        _source(8).annotations.records[i].image_id for i in (2, 5))
    keep = [0, 1, 3, 4, 6, 7]
    torch.testing.assert_close(pooled[:, keep], full[:, keep])
    ids = [r.image_id for r in _source(8).annotations.records]
    kept = PooledFeatures(pooled, torch.arange(8) % 4, ids, {}, skipped).kept()
    assert kept.image_ids == [ids[i] for i in keep] and torch.equal(kept.labels, torch.tensor([0, 1, 3, 0, 2, 3]))
    assert not torch.isnan(kept.pooled).any()


def test_a_training_batch_with_no_loadable_image_is_an_error(tmp_path: Path) -> None:
    settings = replace(SETTINGS, amp=False, epochs=1, batch_size=4, accumulate_grad_batches=1)
    with pytest.raises(RuntimeError, match="every image of a training batch failed to load"):
        _train_on(_BrokenFiles(36, set(range(36)), "skip"), tmp_path, settings)


@pytest.mark.parametrize("recipe", ["head", "full"])
def test_resumed_run_equals_uninterrupted_run_for_every_recipe(recipe: str, tmp_path: Path) -> None:
    # dropout (Lite's 0.2 before the classifier) and the head recipe's choice of view (plain or mirror) draw from the
    # RNGs: an interrupted and resumed run must still give the uninterrupted run's weights bit for bit
    settings = replace(SETTINGS, recipe=recipe, batch_size=6, accumulate_grad_batches=1, epochs=3)
    cache = tmp_path / "cache"

    def train(run: str, **kw: Any) -> Any:
        seed_everything(kw.pop("init_seed", 0))
        model = build_model("small_cnn", num_classes=4, width=4)
        model.dropout = torch.nn.Dropout(0.5)  # randomness at every step
        source = _source()
        train_model(model, source, tmp_path / run, settings=settings, seed=1,
                    spec=model_spec("small_cnn", 4, "gap", {"width": 4}), fingerprint={"v": 1}, device=CPU,
                    make_train_dataset=lambda m: WSOLDataset(source, build_train_transform(36, 32, True, m.mean,
                                                                                         m.std)),
                    image_size=32, cache_dir=str(cache), data_root=None, arch="small_cnn", **kw)
        return model

    whole = train("whole")
    train("parts", stop_after=4)  # mid-epoch (6 steps per epoch)
    train("parts", stop_after=9, init_seed=7, resume=tmp_path / "parts" / "checkpoints" / "last.pt")
    parts = train("parts", init_seed=9, resume=tmp_path / "parts" / "checkpoints" / "last.pt")
    for (name, a), b in zip(whole.state_dict().items(), parts.state_dict().values()):
        assert torch.equal(a, b), name
    assert (tmp_path / "whole" / "train_log.csv").read_text() == (tmp_path / "parts" / "train_log.csv").read_text()


# ----------------------------------------------------------------------------- cpu_malloc
def _in_fresh_process(code: str, *args: str) -> str:
    """stdout of ``code`` run in a new interpreter (the allocator setting is process-wide and sticks)."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True,
                          timeout=120).stdout


@pytest.mark.skipif(not GLIBC, reason="cpu_malloc=reuse acts on glibc's malloc only")
def test_cpu_malloc_reuse_stops_refaulting_freed_large_blocks() -> None:
    # Allocate, touch and free a 64 MiB tensor 20 times. glibc's default maps it afresh every time and faults its
    # 16,384 pages in again; with reuse the heap keeps freed blocks, and once it holds enough of them (a few rounds:
    # torch's 64-byte-aligned requests do not fit the block they freed exactly) no round faults any more.
    code = """
import resource, sys, torch
from wsol.engine.cpu_malloc import set_cpu_malloc, cpu_malloc_in_effect
in_effect = set_cpu_malloc(sys.argv[1])
def faults():
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(64 << 20, dtype=torch.uint8).fill_(1)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
rounds = [faults() for _ in range(20)]
print(in_effect, cpu_malloc_in_effect(), sum(rounds[-5:]))
"""
    system = _in_fresh_process(code, "system").split()
    reuse = _in_fresh_process(code, "reuse").split()
    assert system[:2] == ["system", "system"] and reuse[:2] == ["reuse", "reuse"]
    assert int(system[2]) >= 5 * 16  # 5 x 16,384 with 4 KiB pages; 5 x 32 if every mapping got 2 MiB huge pages
    assert int(reuse[2]) <= int(system[2]) // 100


@pytest.mark.skipif(not GLIBC, reason="cpu_malloc=reuse acts on glibc's malloc only")
def test_cpu_malloc_changes_no_number_of_a_training_step() -> None:
    code = """
import hashlib, sys, torch, torch.nn.functional as F
from wsol.engine.cpu_malloc import set_cpu_malloc
from wsol.models import build_model
set_cpu_malloc(sys.argv[1])
torch.manual_seed(0)
model = build_model("efficientnet_lite0", num_classes=10)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
for _ in range(2):
    x, y = torch.randn(4, 3, 96, 96), torch.randint(0, 10, (4,))
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
digest = hashlib.sha256()
for t in model.state_dict().values():
    digest.update(t.detach().contiguous().numpy().tobytes())
print(digest.hexdigest())
"""
    assert _in_fresh_process(code, "system") == _in_fresh_process(code, "reuse")


def test_cpu_malloc_names_a_bad_mode() -> None:
    with pytest.raises(ValueError, match=r"cpu_malloc='keep': expected one of \['reuse', 'system'\]"):
        set_cpu_malloc("keep")
