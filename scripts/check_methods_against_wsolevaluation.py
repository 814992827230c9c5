"""Feed the same tensors, weights and random draws to clovaai/wsolevaluation's own method code and to wsol.methods.

wsol does not ship or copy that suite: point ``--wsolevaluation`` at your own checkout of it (only its ``wsol/method``
package is imported; its ``cutmix`` calls ``.cuda()`` and ``np.int``, both patched here to run on a CPU with current
NumPy). Example:

    python scripts/check_methods_against_wsolevaluation.py --wsolevaluation ~/src/wsolevaluation \\
        --out results/methods/check_against_wsolevaluation.md

What is compared (exits 1 if anything differs):
* HaS: the hidden pixels and the hidden image, from the same Python ``random`` draws (224 x 224 inputs, grid 4).
* ADL: the importance map, the drop mask and the layer's output, for both outcomes of its coin.
* ACoL: the label's attention, the erased features, both branches' logits, the loss and the test-time map
  (``return_cam``), with the reference's 1x1-conv classifier heads holding wsol's linear branches' weights.
* SPG: the three targets (``get_mask``) and the total loss (``get_loss``), from the same class map and branch outputs.
* CutMix: the box, the mixed images, the two label sets, the kept share ``lam`` and the mixed loss.
Tensors are real-sized (224 x 224 inputs; EfficientNet-Lite0-shaped activations: 1280 x 7 x 7 features) and random.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

ROWS: list[tuple[str, str, str]] = []


def _record(method: str, what: str, a: torch.Tensor | float, b: torch.Tensor | float) -> bool:
    """One compared quantity: identical (bit for bit), or the max abs difference when not."""
    ta, tb = torch.as_tensor(a).detach(), torch.as_tensor(b).detach()
    if ta.shape != tb.shape:
        ROWS.append((method, what, f"SHAPES DIFFER {tuple(ta.shape)} vs {tuple(tb.shape)}"))
        return False
    if torch.equal(ta, tb):
        ROWS.append((method, what, "identical"))
        return True
    diff = float((ta.double() - tb.double()).abs().max())
    ok = diff <= 1e-5 * max(1.0, float(ta.double().abs().max()))
    ROWS.append((method, what, f"{'equal to float32 rounding' if ok else 'DIFFERENT'}: max |diff| {diff:.3g}"))
    return ok


def load_reference(suite: Path) -> Any:
    """wsolevaluation's ``wsol.method`` package (imported under its own name, then removed from ``sys.modules``)."""
    if not hasattr(np, "int"):
        np.int = int  # type: ignore[attr-defined]  # the suite's cutmix predates NumPy 1.24
    saved = {k: v for k, v in sys.modules.items() if k == "wsol" or k.startswith("wsol.")}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, str(suite))
    try:
        import importlib  # noqa: PLC0415

        # the submodules themselves (the package's __init__ re-exports functions under the same names)
        ref = SimpleNamespace(**{name: importlib.import_module(f"wsol.method.{name}")
                                 for name in ("acol", "adl", "cutmix", "has", "spg", "util")})
        ref.AcolBase = ref.acol.AcolBase
    finally:
        sys.path.remove(str(suite))
        for k in [k for k in sys.modules if k == "wsol" or k.startswith("wsol.")]:
            del sys.modules[k]
        sys.modules.update(saved)
    return ref


def check_has(ref: Any) -> bool:
    from wsol.methods.has import apply_has, has_hidden_mask

    x = torch.randn(4, 3, 224, 224)
    random.seed(17)
    expected = ref.has.has(x.clone(), 4, 0.5)
    random.seed(17)  # the same draws, in the reference's order (image, then cell row, then cell column)
    draws = torch.tensor([random.random() for _ in range(4 * 56 * 56)], dtype=torch.float64).view(4, 56, 56)
    hidden = has_hidden_mask(draws, 4, 0.5, 224, 224)
    ok = _record("HaS", "hidden pixels (share {:.3f})".format(float(hidden.float().mean())),
                 (expected == 0).all(1, keepdim=True), hidden)
    return _record("HaS", "hidden image", expected, apply_has(x, hidden)) and ok


def check_adl(ref: Any) -> bool:
    from wsol.methods.adl import adl_maps, adl_select

    ok = True
    x = torch.randn(4, 192, 7, 7) + 0.3
    for seed, outcome in ((0, "importance map (coin 0)"), (1, "drop mask (coin 1)")):
        layer = ref.adl.ADL(0.75, 0.9).train()
        torch.manual_seed(seed)
        expected = layer(x)
        torch.manual_seed(seed)
        draw = float(torch.rand([]))  # the reference's one draw per layer and forward
        importance, drop = adl_maps(x, 0.9)
        attention = x.mean(1, keepdim=True)
        ok &= _record("ADL", f"importance map, seed {seed}", torch.sigmoid(attention), importance)
        ok &= _record("ADL", f"drop mask, seed {seed}", layer._drop_mask(attention), drop)
        ok &= _record("ADL", f"layer output: {outcome}", expected, x.mul(adl_select(importance, drop, draw, 0.75)))
    return ok


def _conv_from_linear(linear: nn.Linear) -> nn.Conv2d:
    conv = nn.Conv2d(linear.in_features, linear.out_features, 1)
    with torch.no_grad():
        conv.weight.copy_(linear.weight[:, :, None, None])
        conv.bias.copy_(linear.bias)
    return conv


def check_acol(ref: Any) -> bool:
    from wsol.methods import attach_method
    from wsol.methods.acol import acol_erase
    from wsol.methods.base import linear_class_maps
    from wsol.models import build_model
    from wsol.cam import normalize_cams

    torch.manual_seed(2)
    model = build_model("efficientnet_lite0", num_classes=10).eval()
    method = attach_method(model, {"name": "acol", "threshold": 0.7})
    nn.init.normal_(model.classifier.weight, std=0.05)
    nn.init.normal_(model.method_modules["classifier_b"].weight, std=0.05)
    features = torch.relu(torch.randn(4, 1280, 7, 7))
    labels = torch.tensor([3, 0, 9, 5])

    class Reference(ref.AcolBase):  # the reference's ACoL logic with 1x1-conv heads holding wsol's weights
        def __init__(self) -> None:
            super().__init__()
            self.classifier_A = _conv_from_linear(model.classifier)
            self.classifier_B = _conv_from_linear(model.method_modules["classifier_b"])
            self.avgpool = nn.AdaptiveAvgPool2d(1)

    reference = Reference().eval()
    out = reference._acol_logits(feature=features, labels=labels, drop_threshold=0.7)
    attention = ref.util.get_attention(out["feat_map_a"], labels)
    ours_attention = normalize_cams(linear_class_maps(features, model.classifier, labels.view(-1, 1)), "minmax")
    ok = _record("ACoL", "attention of the label (branch A, normalised)", attention, ours_attention)
    ok &= _record("ACoL", "erased features", ref.acol._erase_attention(features, attention, 0.7),
                  acol_erase(features, ours_attention, 0.7))
    with torch.no_grad():
        logits_a, logits_b = method.branch_logits(model, features, labels)
        ok &= _record("ACoL", "branch A logits", out["logits"], logits_a)
        ok &= _record("ACoL", "branch B logits (on the erased features)", out["logit_b"], logits_b)
        ok &= _record("ACoL", "loss", ref.acol.get_loss(out, labels),
                      F.cross_entropy(logits_a, labels) + F.cross_entropy(logits_b, labels))
        # test time (the reference's return_cam: labels given)
        norm_a = ref.util.normalize_tensor(out["feat_map_a"].detach().clone())
        norm_b = ref.util.normalize_tensor(out["feat_map_b"].detach().clone())
        expected = torch.max(norm_a, norm_b)[range(4), labels]
        ok &= _record("ACoL", "test-time map of the label", expected,
                      method.class_maps(model, features, labels.view(-1, 1))[:, 0])
    return ok


def check_spg(ref: Any) -> bool:
    from wsol.methods.spg import spg_guidance_loss, spg_target

    torch.manual_seed(3)
    b, classes = 4, 10
    feat_map = torch.randn(b, classes, 7, 7) * 3  # the class maps of the 1x1-conv classifier (bias included)
    labels = torch.tensor([1, 4, 4, 8])
    logits_b1, logits_b2, logits_c = (torch.randn(b, 1, 7, 7) * 2 for _ in range(3))
    logits = feat_map.mean((2, 3))
    thresholds = ((0.7, 0.01), (0.5, 0.05), (0.7, 0.1))
    attention, fused = ref.spg.compute_attention(feat_map=feat_map, labels=labels, logits_b1=logits_b1,
                                                 logits_b2=logits_b2)
    up = nn.Upsample(size=(224, 224), mode="bilinear")
    b2i = torch.sigmoid(up(logits_b2))
    ok = True
    for name, pre, (h, low) in (("B2 target (from the class map)", attention, thresholds[0]),
                                ("B1 target (from sigmoid B2)", b2i, thresholds[1]),
                                ("C target (from the fused B maps)", fused, thresholds[2])):
        ok &= _record("SPG", name, ref.spg.get_mask(pre.detach(), h, low), spg_target(pre.detach(), h, low))
    output = {"attention": attention, "fused_attention": fused, "logits": logits, "logits_b1": logits_b1,
              "logits_b2": logits_b2, "logits_c": logits_c}
    expected = ref.spg.get_loss(output, labels, thresholds)
    ours = F.cross_entropy(logits, labels) + spg_guidance_loss(feat_map[range(b), labels].unsqueeze(1), logits_b1,
                                                               logits_b2, logits_c, thresholds, (224, 224))
    return _record("SPG", "total loss", expected, ours) and ok


def check_cutmix(ref: Any) -> bool:
    from wsol.methods.cutmix import apply_cutmix, cutmix_box

    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]  # the reference moves its perm
    ok = True
    for seed in (0, 1, 2):
        x = torch.randn(8, 3, 224, 224)
        target = torch.randint(0, 10, (8,))
        logits = torch.randn(8, 10)
        np.random.seed(seed)
        torch.manual_seed(seed)
        mixed_ref, ta, tb, lam_ref = ref.cutmix.cutmix(x.clone(), target, 1.0)
        np.random.seed(seed)
        torch.manual_seed(seed)
        lam = np.random.beta(1.0, 1.0)  # the reference's draws, in its order: beta, permutation, centre x, centre y
        perm = torch.randperm(8)
        c2, c3 = np.random.randint(224), np.random.randint(224)
        box = cutmix_box(224, 224, float(lam), int(c2), int(c3))
        mixed, kept = apply_cutmix(x, perm, box)
        ok &= _record("CutMix", f"mixed images, seed {seed} (box rows {box[0]}:{box[2]} cols {box[1]}:{box[3]})",
                      mixed_ref, mixed)
        ok &= _record("CutMix", f"labels a / b, seed {seed}", torch.stack([ta, tb]), torch.stack([target,
                                                                                                  target[perm]]))
        ok &= _record("CutMix", f"kept share lam, seed {seed}", float(lam_ref), kept)
        loss_ref = F.cross_entropy(logits, ta) * lam_ref + F.cross_entropy(logits, tb) * (1.0 - lam_ref)
        loss = F.cross_entropy(logits, target) * kept + F.cross_entropy(logits, target[perm]) * (1.0 - kept)
        ok &= _record("CutMix", f"mixed loss, seed {seed}", loss_ref, loss)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wsolevaluation", type=Path, required=True, help="a checkout of clovaai/wsolevaluation")
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args()
    ref = load_reference(args.wsolevaluation)
    ok = all([check_has(ref), check_adl(ref), check_acol(ref), check_spg(ref), check_cutmix(ref)])
    lines = ["| method | compared | result |", "|---|---|---|"] + [f"| {m} | {w} | {r} |" for m, w, r in ROWS]
    table = "\n".join(lines)
    print(table)
    print("ALL IDENTICAL (or equal to float32 rounding where noted)" if ok else "SOME OUTPUTS DIFFER")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            "# wsol.methods against wsolevaluation's own method code\n\n"
            "Same tensors, weights and random draws fed to both (`scripts/check_methods_against_wsolevaluation.py`):\n\n"
            "```bash\npython scripts/check_methods_against_wsolevaluation.py --wsolevaluation ~/src/wsolevaluation "
            f"--out {args.out}\n```\n\n{table}\n\n"
            + ("Every output is identical, or equal to float32 rounding where the two compute the same sum in another "
               "order (noted in the row).\n" if ok else "**Some outputs differ** (rows marked DIFFERENT).\n"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
