"""Benchmark: the cost of CAMs for the top-5 classes + the GT class, relative to a plain forward pass, on CPU.

    /work/venv-bench/bin/python scripts/bench_cam_overhead.py [--batch-size 16] [--image-size 224] [--rounds 7]
        [--threads 2] [--csv results/bench/cam_overhead.csv]

(torchcam and grad-cam are benchmark-only extras, installed in a separate venv; without them only our own
path is timed.) ResNet-50 with random weights (the cost does not depend on the weights), 6 maps per image:

- ``plain``: ``model(x)``, eval, ``torch.inference_mode()``;
- ``ours``: ``f = model.forward_features(x)``, ``logits = model.forward_head(f)``, ``cam_classes`` (top-5 + GT)
  and ``compute_cams(f, classifier.weight, classes)``: one forward and one einsum, ``[B, 6, 7, 7]``;
- ``ours+up``: the same plus what the evaluation does next, ``upsample_cams`` to 224 x 224 and ``normalize_cams``;
- ``cams_only``: ``cam_classes`` + ``compute_cams`` alone on stored features (the part ``ours`` adds to the
  forward pass, timed on its own because the difference of two noisy forward timings is not resolvable);
- ``torchcam``: ``torchcam.methods.CAM(model, "layer4", "fc")`` hooks, one forward, then one extractor call per
  class rank (its API takes one class per image per call), ``normalized=False``;
- ``gradcam``: ``pytorch_grad_cam.GradCAM(model, [model.layer4[-1]])``, one call per class rank (forward +
  backward each; it returns maps already ReLU'd, min-max normalised and resized to the input).

torchcam and grad-cam get torchvision's ResNet-50 carrying the same weights as our model. Rounds interleave the
methods (the machine is shared); the table gives the median wall time per batch, its ratio to ``plain``, and
the load conditions. Before timing, the maps are checked against each other: ours == torchcam's raw CAMs, and
grad-cam's maps == ours after ReLU, min-max and the same resize (for a GAP + linear network Grad-CAM's channel
weights are the classifier row divided by h*w, so the normalised maps coincide).
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from _bench import load_conditions, timed

from wsol.cam import cam_classes, compute_cams, normalize_cams, upsample_cams
from wsol.models import build_model

TOPK = 5


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--csv", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = build_model("resnet50", num_classes=1000).eval()
    tv = torchvision.models.resnet50(weights=None).eval()
    own = {k.removeprefix("backbone."): v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    own.update({"fc.weight": model.classifier.weight.detach(), "fc.bias": model.classifier.bias.detach()})
    tv.load_state_dict(own)  # the same network, in torchvision's layout, for the hook-based libraries
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    labels = torch.randint(0, 1000, (args.batch_size,))
    size = (args.image_size, args.image_size)

    with torch.inference_mode():
        features = model.forward_features(x)
        logits = model.forward_head(features)
        classes = cam_classes(logits, labels, TOPK)  # [B, 6]
        reference = compute_cams(features, model.classifier.weight, classes)
        torch.testing.assert_close(tv(x), logits, atol=1e-4, rtol=1e-4)

    def plain() -> None:
        with torch.inference_mode():
            model(x)

    def ours() -> torch.Tensor:
        with torch.inference_mode():
            f = model.forward_features(x)
            out = model.forward_head(f)
            return compute_cams(f, model.classifier.weight, cam_classes(out, labels, TOPK))

    def ours_up() -> torch.Tensor:
        with torch.inference_mode():
            return normalize_cams(upsample_cams(ours(), size), "minmax")

    def cams_only() -> torch.Tensor:
        with torch.inference_mode():
            return compute_cams(features, model.classifier.weight, cam_classes(logits, labels, TOPK))

    methods: dict[str, Callable[[], object]] = {"plain": plain, "ours": ours, "ours+up": ours_up,
                                                "cams_only": cams_only}
    notes: list[str] = []
    try:
        from torchcam.methods import CAM

        extractor = CAM(tv, target_layer="layer4", fc_layer="fc")

        def torchcam_cams() -> torch.Tensor:
            with torch.inference_mode():
                scores = tv(x)
                ranks = cam_classes(scores, labels, TOPK)
                maps = [extractor(class_idx=ranks[:, j].tolist(), scores=scores, normalized=False)[0]
                        for j in range(ranks.shape[1])]
            return torch.stack(maps, dim=1)

        torch.testing.assert_close(torchcam_cams(), reference, atol=1e-4, rtol=1e-4)
        methods["torchcam"] = torchcam_cams
    except ImportError as err:
        notes.append(f"torchcam not installed ({err}); not timed")
    try:
        import cv2
        import numpy as np
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        gradcam = GradCAM(model=tv, target_layers=[tv.layer4[-1]])

        def gradcam_cams() -> np.ndarray:
            ranks = classes.tolist()  # the same classes as ours (grad-cam would get them from its own forward)
            maps = [gradcam(input_tensor=x, targets=[ClassifierOutputTarget(r[j]) for r in ranks])
                    for j in range(classes.shape[1])]
            return np.stack(maps, axis=1)

        # grad-cam: ReLU, min-max per map (eps 1e-7), cv2 bilinear resize, then min-max again when it
        # aggregates its target layers (a resized map's max falls slightly below the grid's). Ours through the
        # same steps:
        def min_max(maps: torch.Tensor) -> torch.Tensor:
            flat = maps.flatten(2)
            flat = flat - flat.amin(dim=2, keepdim=True)
            return (flat / (flat.amax(dim=2, keepdim=True) + 1e-7)).view_as(maps)

        mine = min_max(reference.clamp(min=0)).numpy()
        expected = min_max(torch.from_numpy(np.stack([[cv2.resize(m, size) for m in maps] for maps in mine])))
        expected = expected.numpy()
        np.testing.assert_allclose(gradcam_cams(), expected, atol=1e-3)
        methods["gradcam"] = gradcam_cams
    except ImportError as err:
        notes.append(f"grad-cam not installed ({err}); not timed")

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ResNet-50 random weights, batch "
          f"{args.batch_size}, {args.image_size} px, {reference.shape[1]} maps per image (top-{TOPK} + GT)")
    for note in notes:
        print(note)
    print(f"maps agree: ours == torchcam raw CAM; grad-cam == ours after ReLU + min-max + resize\n"
          f"start: {load_conditions()}", flush=True)
    for fn in methods.values():  # warm-up
        fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
    for r in range(args.rounds):
        for name, fn in methods.items():
            times[name].append(timed(fn))
        print(f"round {r + 1}/{args.rounds} ({load_conditions()})", flush=True)
    print(f"end: {load_conditions()}")

    plain_ms = statistics.median(w for w, _ in times["plain"]) * 1e3
    rows = []
    for name, values in times.items():
        walls = [w * 1e3 for w, _ in values]
        cpus = [c * 1e3 for _, c in values]
        med = statistics.median(walls)
        rows.append({"method": name, "batch_size": args.batch_size, "image_size": args.image_size,
                     "maps_per_image": reference.shape[1], "rounds": len(walls), "median_ms": round(med, 2),
                     "min_ms": round(min(walls), 2), "max_ms": round(max(walls), 2),
                     "median_cpu_ms": round(statistics.median(cpus), 2), "ratio_to_plain": round(med / plain_ms, 4)})
    print("\n| method | median ms / batch (min-max) | CPU ms | / plain forward |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['method']} | {row['median_ms']:.1f} ({row['min_ms']:.1f}-{row['max_ms']:.1f}) "
              f"| {row['median_cpu_ms']:.1f} | {row['ratio_to_plain']:.4f} |")
    cams_ms = statistics.median(w for w, _ in times["cams_only"]) * 1e3
    print(f"\nour CAM overhead (cams_only / plain): {100 * cams_ms / plain_ms:.3f}% of the forward pass")
    if args.csv is not None:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
