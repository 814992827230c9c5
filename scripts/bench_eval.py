"""End-to-end evaluation on CPU, side by side: ``wsol`` vs a peer pipeline a researcher would assemble.

    /work/venv-bench/bin/python scripts/bench_eval.py --data ../shared/data/ilsvrc_val_mini/acuity227 \
        --wsolevaluation /path/to/wsolevaluation [--threads 2] [--rounds 2]

Both score the same real images with the same pretrained EfficientNet-Lite0 under wsolevaluation's protocol
(MaxBoxAcc V1 and V2, step 0.01), one process, same thread count:
    * peer: torchcam's ``CAM`` for the GT class (batch forward + hooks), the map resized to 224 (cv2 bicubic) and
      min-max normalised as wsolevaluation's ``inference.py`` does, one ``.npy`` per image, then wsolevaluation's
      own ``BoxEvaluator`` (V1 and V2) over the saved maps;
    * wsol: ``wsol.evaluation.evaluate_model`` with the CAM store on (top-5 + GT CAMs, fp16 shards).
The wsol time is also split into its stages (decode+resize, forward+CAMs, score maps + MaxBoxAcc, store writes).
Needs torchcam and munch (benchmark-only extras: ``pip install torchcam munch`` in a separate venv) and a
wsolevaluation checkout.
Prints ms/image, ratios, bytes/image on disk, and checks that both give the same MaxBoxAcc (same maps: the GT
class's CAM; torchcam's CAM is the same weighted sum).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch


def _peer(model, source, suite: Path, work: Path, batch: int) -> tuple[dict, float, int]:  # noqa: ANN001
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
    t0 = time.perf_counter()
    extractor = CAM(model, target_layer="head", fc_layer="classifier")  # model.head: the last feature map
    for start in range(0, len(records), batch):
        idx = list(range(start, min(start + batch, len(records))))
        x = torch.stack([transform(source.load(i)) for i in idx])
        labels = [records[i].label for i in idx]
        scores = model(x)
        cams = extractor(class_idx=labels, scores=scores, normalized=False)[0]  # [B, h, w] raw CAMs
        for i, cam in zip(idx, cams):
            m = cv2.resize(cam.detach().numpy().astype(np.float64), (224, 224), interpolation=cv2.INTER_CUBIC)
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
                              cam_threshold_list=list(np.arange(0, 1, 0.01)), iou_threshold_list=[30, 50, 70],
                              mask_root=None, multi_contour_eval=multi)
        for i, image_id in enumerate(ids):
            ev.accumulate(np.load(maps_dir / f"{i}.npy"), image_id)
        acc = ev.compute()
        out[name] = acc[1] if not multi else float(np.mean(acc))
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in maps_dir.iterdir())
    return out, seconds, size


def _ours(model, source, work: Path, batch: int, workers: int) -> tuple[dict, float, int]:  # noqa: ANN001
    from wsol.evaluation import ProtocolSettings, evaluate_model
    from wsol.evaluation.store import CAMStoreWriter

    s = ProtocolSettings(protocol="wsolevaluation", topk=5, cam_threshold=0.2, cam_curve_interval=0.01,
                         iou_thresholds=(30, 50, 70), box_method="fast", tau_policy="oracle", tau=None, tau_folds=2)
    store_dir = work / f"store_{workers}"
    t0 = time.perf_counter()
    store = CAMStoreWriter(store_dir, meta={"topk": 5})
    out = evaluate_model(model, source, s, image_size=224, batch_size=batch, num_workers=workers,
                         device=torch.device("cpu"), store=store)
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in store_dir.iterdir())
    return {"maxboxacc": out.metrics["maxboxacc"], "maxboxacc_v2": out.metrics["maxboxacc_v2"]}, seconds, size


def _stages(model, source, batch: int) -> dict[str, float]:  # noqa: ANN001
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
    t0 = time.perf_counter()
    with torch.inference_mode():
        feats = [model.forward_features(x[i:i + batch]) for i in range(0, len(x), batch)]
    t["forward_features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cams = torch.cat([forward_cams(model, x[i:i + batch], labels[i:i + batch], 5)[2] for i in range(0, len(x), batch)])
    t["forward+head+top5+GT CAMs"] = time.perf_counter() - t0
    del feats
    t0 = time.perf_counter()
    maps = [wsoleval_scoremap(c[-1].numpy()) for c in cams]
    t["score maps (bicubic 224, min-max)"] = time.perf_counter() - t0
    ev = BoxAccEvaluator(0.01, (30, 50, 70), method="fast")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a wsolevaluation-metadata dataset (DIR/images, DIR/metadata)")
    parser.add_argument("--wsolevaluation", required=True, help="a checkout of clovaai/wsolevaluation")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)

    from wsol.data.datasets import build_source
    from wsol.models import build_model

    data = _integer_box_copy(Path(args.data), Path(tempfile.mkdtemp(prefix="bench_eval_data_")))
    source = build_source("wsol_metadata", split="test", root=str(data), num_classes=1000)
    source.metadata_dir = str(data / "metadata")
    model = build_model("efficientnet_lite0", pretrained=True).eval()
    n = len(source.annotations)
    rows = []
    for r in range(args.rounds):
        work = Path(tempfile.mkdtemp(prefix="bench_eval_"))
        try:
            with torch.inference_mode():
                peer, t_peer, b_peer = _peer(model, source, Path(args.wsolevaluation), work, args.batch)
            ours0, t0_, b_ours = _ours(model, source, work, args.batch, 0)
            ours2, t2_, _ = _ours(model, source, work, args.batch, 2)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        assert abs(peer["maxboxacc"] - ours0["maxboxacc"]) < 1e-9, (peer, ours0)
        rows.append((t_peer, t0_, t2_))
        print(f"round {r}: peer {1000 * t_peer / n:.1f} ms/img, wsol {1000 * t0_ / n:.1f} (workers 0), "
              f"{1000 * t2_ / n:.1f} (workers 2) ms/img; MaxBoxAcc {ours0['maxboxacc']:.2f} = peer's "
              f"{peer['maxboxacc']:.2f}; V2 {ours0['maxboxacc_v2']:.2f} vs peer {peer['maxboxacc_v2']:.2f}")
    best = np.min(np.array(rows), 0)
    print(f"\n{n} images, {args.threads} threads, best of {args.rounds} rounds (ms/image):")
    print(f"  peer (torchcam + .npy + wsolevaluation BoxEvaluator V1+V2): {1000 * best[0] / n:7.1f}")
    print(f"  wsol evaluate_model + CAM store, num_workers=0:              {1000 * best[1] / n:7.1f}  "
          f"speed-up x{best[0] / best[1]:.2f}")
    print(f"  wsol evaluate_model + CAM store, num_workers=2:              {1000 * best[2] / n:7.1f}  "
          f"speed-up x{best[0] / best[2]:.2f}")
    print(f"  on disk: peer {b_peer / n:,.0f} bytes/image, wsol store {b_ours / n:,.0f} bytes/image (top-5 + GT)")
    stages = _stages(model, source, args.batch)
    print("\nwsol stages (ms/image):")
    for k, v in stages.items():
        print(f"  {k:<36} {1000 * v / n:7.2f}")


if __name__ == "__main__":
    main()
