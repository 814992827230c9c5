"""End-to-end evaluation, side by side: ``wsol`` vs a peer pipeline a researcher would assemble (CPU or GPU).

    /work/venv-bench/bin/python scripts/bench_eval.py --data ../shared/data/ilsvrc_val_mini/acuity227 \
        --wsolevaluation /path/to/wsolevaluation [--threads 2] [--rounds 2]
    # on a GPU (scripts/gpu_check.sh): Imagenette val images at their original sizes, step 0.001
    python scripts/bench_eval.py --imagenette DIR --gt GT --wsolevaluation SUITE --device cuda --step 0.001 \
        --model resnet50 --random-weights --workers 16 --peer-workers 16 --peer-images 100 --rounds 1 --json OUT

Both score the same real images with the same network under wsolevaluation's protocol (MaxBoxAcc V1 and V2, step
``--step``, default 0.01), one process, same thread count, same allocator setting (``--cpu-malloc``, default the
jobs' ``cpu_malloc=reuse``; ``system`` for glibc's defaults):
    * peer: torchcam's ``CAM`` for the GT class (batch forward + hooks), the map resized to 224 (cv2 bicubic) and
      min-max normalised as wsolevaluation's ``inference.py`` does, one ``.npy`` per image, then wsolevaluation's
      own ``BoxEvaluator`` (V1 and V2) over the saved maps; images loaded by a DataLoader with ``--peer-workers``
      workers (0: in the loop, one by one); ``--peer-images N`` scores the first N images only (at step 0.001 the
      suite's per-threshold OpenCV loop takes ~0.1-0.2 s per map and pipeline);
    * wsol: ``wsol.evaluation.evaluate_model`` with the CAM store on (top-5 + GT CAMs, fp16 shards), once per
      ``--workers`` value, with the network as trained and (``--fused on|both``, default both) its inference copy
      (``eval.fused``: BatchNorm folded, SAME padding without copies).
The wsol time is also split into its stages (decode, resize, forward, CAMs, score maps, MaxBoxAcc), and each wsol
time is given as a multiple of the bare forward pass (``forward_features`` on the same batches, as trained or fused).
Data: ``--data`` (a wsolevaluation-metadata dataset, its float boxes truncated to int for the suite's reader, both
pipelines scoring that copy) or ``--imagenette DIR --gt GT`` (the test split of ``data=imagenette``, ImageNet labels;
its boxes must be integers, as in the original-size copies of ``scripts/gpu_check.py make-data``).
Network: ``--model`` (default the pretrained EfficientNet-Lite0; ``--random-weights`` for models whose ImageNet
weights are not available offline: the timing is the same).
Needs torchcam and munch (benchmark-only extras: ``pip install torchcam munch`` in a separate venv) and a
wsolevaluation checkout.
Prints ms/image, ratios, bytes/image on disk, and checks that both give the same MaxBoxAcc on the same images
(same maps: the GT class's CAM; torchcam's CAM is the same weighted sum): an assertion at the default step 0.01 on
the CPU; elsewhere reported (``--json``), since wsol scores the float16 maps it stores.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from wsol.choices import CPU_MALLOC


class _PeerItems(Dataset):
    """``(tensor, label, index)`` of a source's images, as a peer pipeline's loader would give them."""

    def __init__(self, source, transform) -> None:  # noqa: ANN001
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.source.annotations)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        return self.transform(self.source.load(i)), self.source.annotations.records[i].label, i


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peer(model, source, suite: Path, work: Path, batch: int,  # noqa: ANN001
          device: torch.device = torch.device("cpu"), workers: int = 0, step: float = 0.01) -> tuple[dict, float, int]:
    from torchcam.methods import CAM

    from wsol.data.transforms import build_eval_transform

    if not hasattr(np, "float"):
        np.float = float  # type: ignore[attr-defined]  # the suite predates NumPy 1.24
    sys.path.insert(0, str(suite))
    from evaluation import BoxEvaluator, configure_metadata  # type: ignore

    records = source.annotations.records
    transform = build_eval_transform(224, model.mean, model.std)
    maps_dir = work / "peer_maps"
    maps_dir.mkdir(parents=True)
    loader = DataLoader(_PeerItems(source, transform), batch_size=batch, num_workers=workers,
                        pin_memory=device.type == "cuda")
    t0 = time.perf_counter()
    extractor = CAM(model, target_layer="head", fc_layer="classifier")  # model.head: the last feature map
    for x, labels, idx in loader:
        scores = model(x.to(device))
        cams = extractor(class_idx=labels.tolist(), scores=scores, normalized=False)[0]  # [B, h, w] raw CAMs
        for i, cam in zip(idx.tolist(), cams.detach().cpu()):
            m = cv2.resize(cam.numpy().astype(np.float64), (224, 224), interpolation=cv2.INTER_CUBIC)
            m -= m.min()
            m /= max(m.max(), 1e-12)
            np.save(maps_dir / f"{i}.npy", m)
    extractor.remove_hooks()
    meta_dir = Path(source.metadata_dir) if hasattr(source, "metadata_dir") else None
    metadata = configure_metadata(str(meta_dir) + "/")
    out = {}
    ids = [r.image_id for r in records]
    for multi, name in ((False, "maxboxacc"), (True, "maxboxacc_v2")):
        with contextlib.redirect_stdout(io.StringIO()):
            ev = BoxEvaluator(metadata=metadata, dataset_name="ILSVRC", split="test",
                              cam_threshold_list=list(np.arange(0, 1, step)), iou_threshold_list=[30, 50, 70],
                              mask_root=None, multi_contour_eval=multi)
        for i, image_id in enumerate(ids):
            ev.accumulate(np.load(maps_dir / f"{i}.npy"), image_id)
        acc = ev.compute()
        out[name] = acc[1] if not multi else float(np.mean(acc))
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in maps_dir.iterdir())
    return out, seconds, size


def _ours(model, source, work: Path, batch: int, workers: int,  # noqa: ANN001
          device: torch.device = torch.device("cpu"), step: float = 0.01, fused: bool = False) -> tuple[dict, float, int]:
    from wsol.conf import yaml_default
    from wsol.evaluation import ProtocolSettings, evaluate_model
    from wsol.evaluation.store import CAMStoreWriter

    s = ProtocolSettings(protocol="wsolevaluation", topk=5, cam_threshold=0.2, cam_curve_interval=step,
                         iou_thresholds=(30, 50, 70), box_method="fast", tau_policy="oracle", tau=None, tau_folds=2,
                         cam_method="cam", scorecam_batch_size=64)
    store_dir = work / f"store_{workers}_{fused}_{len(source.annotations)}_{time.monotonic_ns()}"  # a new store each
    t0 = time.perf_counter()
    store = CAMStoreWriter(store_dir, meta={"topk": 5}, shard_size=yaml_default("eval/default", "shard_size"))
    out = evaluate_model(model, source, s, image_size=224, batch_size=batch, num_workers=workers,
                         device=device, store=store, fused=fused)
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in store_dir.iterdir())
    return {"maxboxacc": out.metrics["maxboxacc"], "maxboxacc_v2": out.metrics["maxboxacc_v2"]}, seconds, size


def _stages(model, source, batch: int, device: torch.device = torch.device("cpu"),  # noqa: ANN001
            step: float = 0.01, fused_model=None) -> dict[str, float]:  # noqa: ANN001
    """wsol's stages timed one by one (seconds for the whole set)."""
    from wsol.data.transforms import build_eval_transform
    from wsol.evaluation.inference import forward_cams
    from wsol.boxes import resize_boxes
    from wsol.metrics.boxacc import BoxAccEvaluator
    from wsol.metrics.scoremap import wsoleval_scoremap

    records = source.annotations.records
    transform = build_eval_transform(224, model.mean, model.std)
    t = {}
    t0 = time.perf_counter()
    images = [source.load(i) for i in range(len(records))]
    t["decode"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = torch.stack([transform(im) for im in images])
    t["resize+normalise"] = time.perf_counter() - t0
    labels = torch.tensor([r.label for r in records])
    if device.type != "cpu":
        t0 = time.perf_counter()
        x = x.to(device)
        _sync(device)
        t["copy to the device"] = time.perf_counter() - t0
    for name, net in (("forward_features", model), ("forward_features (fused)", fused_model)):
        if net is None:
            continue
        t0 = time.perf_counter()
        with torch.inference_mode():
            feats = [net.forward_features(x[i:i + batch]) for i in range(0, len(x), batch)]
        _sync(device)
        t[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cams = torch.cat([forward_cams(model, x[i:i + batch], labels[i:i + batch], 5)[2] for i in range(0, len(x), batch)])
    t["forward+head+top5+GT CAMs"] = time.perf_counter() - t0
    del feats
    t0 = time.perf_counter()
    maps = [wsoleval_scoremap(c[-1].numpy()) for c in cams]
    t["score maps (bicubic 224, min-max)"] = time.perf_counter() - t0
    ev = BoxAccEvaluator(step, (30, 50, 70), method="fast")
    ev.update(maps[:2], [resize_boxes(records[i].boxes, images[i].size, (224, 224), truncate=True) for i in range(2)])  # numba compile
    ev.reset()
    t0 = time.perf_counter()
    ev.update(maps, [resize_boxes(r.boxes, im.size, (224, 224), truncate=True) for r, im in zip(records, images)])
    t["MaxBoxAcc V1+V2 curves"] = time.perf_counter() - t0
    return t


def _integer_box_copy(src: Path, dst: Path) -> Path:
    """The dataset with its float boxes (rescaled images) truncated to int: wsolevaluation's metadata reader
    (``int(x0s)``) cannot read floats. Both pipelines score this copy; images are symlinked."""
    (dst / "metadata").mkdir(parents=True)
    for f in (src / "metadata").iterdir():
        text = f.read_text()
        if f.name == "localization.txt":
            text = "".join(",".join([p[0], *(str(int(float(v))) for v in p[1:])]) + "\n"
                           for p in (line.split(",") for line in text.splitlines() if line))
        (dst / "metadata" / f.name).write_text(text)
    (dst / "images").symlink_to((src / "images").resolve())
    return dst


def _metadata_of(records, dst: Path) -> Path:  # noqa: ANN001
    """wsolevaluation metadata files of ``records`` (ids, labels, stored sizes, boxes) for the suite's reader, which
    takes integer boxes only."""
    dst.mkdir(parents=True)
    boxes = []
    for r in records:
        for box in np.asarray(r.boxes).reshape(-1, 4):
            if not np.all(box == np.round(box)):
                raise ValueError(f"{r.image_id}: box {box.tolist()} is not in integer pixels; wsolevaluation reads "
                                 "integers only (use the original-size copies of gpu_check.py make-data)")
            boxes.append(f"{r.image_id}," + ",".join(str(int(v)) for v in box))
    (dst / "image_ids.txt").write_text("".join(f"{r.image_id}\n" for r in records))
    (dst / "class_labels.txt").write_text("".join(f"{r.image_id},{r.label}\n" for r in records))
    (dst / "image_sizes.txt").write_text("".join(f"{r.image_id},{r.size[0]},{r.size[1]}\n" for r in records))
    (dst / "localization.txt").write_text("".join(f"{line}\n" for line in boxes))
    return dst


def _first(source, n: int):  # noqa: ANN001, ANN202
    """The first ``n`` images of a ``FileImageSource`` (its other attributes kept)."""
    from wsol.data.records import Annotations

    ann = source.annotations
    first = replace(source, annotations=Annotations(ann.records[:n], ann.num_classes, ann.class_names, ann.blacklist))
    if hasattr(source, "metadata_dir"):
        first.metadata_dir = source.metadata_dir
    return first


def _warm_up(model, device: torch.device, step: float) -> None:  # noqa: ANN001
    """Compile the MaxBoxAcc kernels (numba, cached per machine) and load the device's kernels before any timing."""
    from wsol.metrics.boxacc import BoxAccEvaluator

    rng = np.random.default_rng(0)
    maps = [cv2.GaussianBlur(rng.random((224, 224)), (0, 0), 20) for _ in range(2)]
    maps = [(m - m.min()) / (m.max() - m.min()) for m in maps]
    BoxAccEvaluator(step, (30, 50, 70), method="fast").update(maps, [np.array([[50.0, 60, 150, 170]])] * 2)
    with torch.inference_mode():
        model(torch.randn(2, 3, 224, 224, device=device))
    _sync(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="a wsolevaluation-metadata dataset (DIR/images, DIR/metadata)")
    parser.add_argument("--imagenette", help="an Imagenette2 tree (its test split: the ILSVRC2012 val images)")
    parser.add_argument("--gt", help="with --imagenette: the ILSVRC2012 val ground truth (metadata folder)")
    parser.add_argument("--wsolevaluation", required=True, help="a checkout of clovaai/wsolevaluation")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--random-weights", action="store_true", help="no ImageNet weights (timing only)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--step", type=float, default=0.01, help="the cam_curve_interval of both pipelines")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="wsol's DataLoader workers (each)")
    parser.add_argument("--peer-workers", type=int, default=0)
    parser.add_argument("--fused", choices=["off", "on", "both"], default="both",
                        help="wsol with the network as trained (off), its inference copy (on), or each")
    parser.add_argument("--images", type=int, default=None, help="score the first N images only")
    parser.add_argument("--peer-images", type=int, default=None, help="the peer scores the first N images only")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--marginal", action="store_true",
                        help="also time wsol on the first tenth of the images: the cost of one more image, without "
                             "the fixed start-up (workers, store) that a short run over-weights")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--cpu-malloc", choices=CPU_MALLOC, default="reuse",
                        help="the jobs' cpu_malloc setting, for the whole process (both pipelines)")
    args = parser.parse_args()
    if bool(args.data) == bool(args.imagenette) or bool(args.imagenette) != bool(args.gt):
        parser.error("give --data, or --imagenette with --gt")
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    from wsol.engine.cpu_malloc import set_cpu_malloc

    cpu_malloc = set_cpu_malloc(args.cpu_malloc)
    device = torch.device(args.device)

    from wsol.conf import yaml_data_options
    from wsol.data.datasets import build_source
    from wsol.models import build_model

    scratch = Path(tempfile.mkdtemp(prefix="bench_eval_data_"))
    if args.data:
        data = _integer_box_copy(Path(args.data), scratch / "data")
        source = build_source("wsol_metadata", split="test", root=str(data), num_classes=1000,
                              **yaml_data_options("wsol_metadata"))
        source.metadata_dir = str(data / "metadata")
    else:
        source = build_source("imagenette", split="test", root=args.imagenette, num_classes=1000,
                              **yaml_data_options("imagenette", gt=args.gt, imagenet_labels=True))
        source.metadata_dir = str(_metadata_of(source.annotations.records, scratch / "metadata"))
    if args.images:
        source = _first(source, args.images)
    peer_source = _first(source, args.peer_images) if args.peer_images else source
    model = build_model(args.model, num_classes=1000, pretrained=not args.random_weights).eval().to(device)
    _warm_up(model, device, args.step)
    n, n_peer = len(source.annotations), len(peer_source.annotations)
    rows = []
    check = None
    marginal: dict[tuple[int, bool], list[float]] = {}
    variants = [(w, f) for f in {"off": [False], "on": [True], "both": [False, True]}[args.fused] for w in args.workers]
    label = {v: f"workers {v[0]}" + (", fused" if v[1] else "") for v in variants}
    for r in range(args.rounds):
        work = Path(tempfile.mkdtemp(prefix="bench_eval_"))
        try:
            with torch.inference_mode():
                peer, t_peer, b_peer = _peer(model, peer_source, Path(args.wsolevaluation), work, args.batch, device,
                                             args.peer_workers, args.step)
            ours = {(w, f): _ours(model, source, work, args.batch, w, device, args.step, f) for w, f in variants}
            if args.marginal:
                head = _first(source, max(n // 10, 8))
                for w, f in variants:
                    marginal.setdefault((w, f), []).append(
                        (ours[w, f][1] - _ours(model, head, work, args.batch, w, device, args.step, f)[1])
                        / (n - len(head.annotations)))
            if n_peer != n:  # the same images as the peer, for the MaxBoxAcc comparison
                check = _ours(model, peer_source, work, args.batch, args.workers[-1], device, args.step)[0]
        finally:
            shutil.rmtree(work, ignore_errors=True)
        same = check if check is not None else ours[variants[0]][0]
        if device.type == "cpu" and args.step == 0.01:
            assert abs(peer["maxboxacc"] - same["maxboxacc"]) < 1e-9, (peer, same)
        rows.append((t_peer, {v: t for v, (_, t, _) in ours.items()}))
        print(f"round {r}: peer {1000 * t_peer / n_peer:.1f} ms/img ({n_peer} images), "
              + ", ".join(f"wsol {1000 * t / n:.1f} ({label[v]})" for v, (_, t, _) in ours.items())
              + f" ms/img; MaxBoxAcc {same['maxboxacc']:.2f} (wsol) vs {peer['maxboxacc']:.2f} (peer); V2 "
              f"{same['maxboxacc_v2']:.2f} vs {peer['maxboxacc_v2']:.2f}", flush=True)
    best_peer = min(t for t, _ in rows)
    best = {v: min(ts[v] for _, ts in rows) for v in variants}
    b_ours = ours[variants[0]][2]
    from wsol.models.fusion import check_batch, fuse_for_inference

    fused_model = fuse_for_inference(model, check_batch(224, device)) \
        if any(f for _, f in variants) else None
    stages = _stages(model, source, args.batch, device, args.step, fused_model)
    print(f"\n{n} images ({n_peer} for the peer), {args.model} on {device}, step {args.step}, {args.threads} threads, "
          f"cpu_malloc={cpu_malloc}, best of {args.rounds} rounds (ms/image):")
    print(f"  peer (torchcam + .npy + wsolevaluation BoxEvaluator V1+V2), workers {args.peer_workers}: "
          f"{1000 * best_peer / n_peer:7.1f}")
    for v, t in best.items():
        forward = stages["forward_features (fused)" if v[1] else "forward_features"]
        print(f"  wsol evaluate_model + CAM store, {label[v]}: {1000 * t / n:7.1f}  "
              f"speed-up x{(best_peer / n_peer) / (t / n):.2f}, {t / forward:.2f}x its bare forward pass"
              + (f"; one more image: {1000 * min(marginal[v]):.2f}" if v in marginal else ""))
    print(f"  on disk: peer {b_peer / n_peer:,.0f} bytes/image, wsol store {b_ours / n:,.0f} bytes/image (top-5 + GT)")
    print("\nwsol stages (ms/image):")
    for k, v in stages.items():
        print(f"  {k:<36} {1000 * v / n:7.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "model": args.model, "pretrained": not args.random_weights, "device": str(device), "step": args.step,
            "n_images": n, "peer_images": n_peer, "rounds": args.rounds, "cpu_malloc": cpu_malloc,
            "peer": {"workers": args.peer_workers, "n_images": n_peer, "ms_per_image": 1000 * best_peer / n_peer,
                     "bytes_per_image": b_peer / n_peer, **peer},
            "wsol": [{"workers": w, "fused": f, "n_images": n, "ms_per_image": 1000 * t / n,
                      "x_forward": t / stages["forward_features (fused)" if f else "forward_features"],
                      "marginal_ms_per_image": 1000 * min(marginal[w, f]) if (w, f) in marginal else None,
                      **ours[w, f][0]} for (w, f), t in best.items()],
            "wsol_bytes_per_image": b_ours / n,
            "same_maps_check": None if check is None else {"n_images": n_peer, **check},
            "stages": {k: 1000 * v / n for k, v in stages.items()}}, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
