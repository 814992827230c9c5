"""Threshold policy: which score-map threshold tau a BoxAcc number is read at, the one implementation.

wsolevaluation reports MaxBoxAcc with the best tau of the scored split itself; that is an ORACLE number, an upper
bound on what a tau fixed in advance achieves. The policies (``TAU_POLICIES``, the values of ``eval.tau_policy``):
    * ``oracle``: the best tau of the scored split's own curve (wsolevaluation's MaxBoxAcc; an upper bound);
    * ``fixed``: a tau chosen before looking at the split (e.g. the CAM paper's 0.2), on the curve's grid;
    * ``heldout``: the best tau of a held-out split's curve (ImageNetV2, CUBV2, OpenImages val), same grid;
    * ``crossfold``: when no held-out split with boxes exists, the scored images are split into folds; each fold is
      scored at the best tau of the OTHER folds' pooled curve and the correct images are summed. No image's tau saw
      that image.
"Best" is the first maximum (the smallest such tau), as ``np.argmax`` and wsolevaluation take it.

Curves are the dicts of ``BoxAccEvaluator.curve()``: key ``tau`` (the grid) plus one accuracy array (percent of the
curve's ``n`` images) per curve key, e.g. ``boxacc_v1_iou50``. ``wsol.evaluation.wsoleval`` applies the policy to
every curve key of a run; this module holds no state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from wsol.choices import TAU_POLICIES

__all__ = ["TAU_POLICIES", "accuracy_at_tau", "best_tau", "check_tau_policy", "crossfold_accuracy", "policy_tau"]

Curve = Mapping[str, np.ndarray]


def best_tau(curve: Curve, key: str) -> tuple[float, float]:
    """``(tau, accuracy)`` at the first maximum of ``curve[key]``."""
    acc = np.asarray(curve[key])
    i = int(np.argmax(acc))
    return float(curve["tau"][i]), float(acc[i])


def accuracy_at_tau(curve: Curve, key: str, tau: float) -> float:
    """``curve[key]`` at the grid point equal to ``tau`` (within 1e-9); ValueError if tau is off the grid."""
    taus = np.asarray(curve["tau"])
    hit = np.nonzero(np.abs(taus - tau) <= 1e-9)[0]
    if len(hit) == 0:
        raise ValueError(f"tau {tau!r} is not on the curve's threshold grid (step {taus[1] - taus[0]:.6g})")
    return float(np.asarray(curve[key])[hit[0]])


def check_tau_policy(policy: str, *, tau: float | None, heldout_curve: Curve | None, folds: int,
                     grid: np.ndarray) -> None:
    """Fail before any work when a policy lacks what it needs.

    Args:
        policy: one of ``TAU_POLICIES``.
        tau: the ``fixed`` policy's tau, which must lie on ``grid``.
        heldout_curve: the ``heldout`` policy's curve, which must use ``grid``.
        folds: the ``crossfold`` policy's number of folds (>= 2).
        grid: the thresholds of the curves the policy will read.

    Raises:
        ValueError: naming the setting (``eval.tau_policy``, ``eval.tau``, ``eval.tau_folds``).
    """
    if policy not in TAU_POLICIES:
        raise ValueError(f"unknown eval.tau_policy {policy!r}; expected one of {TAU_POLICIES}")
    if policy == "fixed":
        if tau is None:
            raise ValueError("eval.tau_policy=fixed needs eval.tau")
        accuracy_at_tau({"tau": grid, "x": grid}, "x", tau)  # on the grid, or raise
    if policy == "heldout":
        if heldout_curve is None:
            raise ValueError("eval.tau_policy=heldout needs the held-out split's curve")
        held = np.asarray(heldout_curve["tau"])
        if held.shape != np.shape(grid) or not np.allclose(held, grid):
            raise ValueError("the held-out and scored curves use different threshold grids")
    if policy == "crossfold" and folds < 2:
        raise ValueError(f"eval.tau_folds must be >= 2 for crossfold, got {folds}")


def policy_tau(policy: str, curve: Curve, key: str, *, tau: float | None,
               heldout_curve: Curve | None) -> float:
    """The tau the ``oracle``, ``fixed`` or ``heldout`` policy reads ``curve[key]`` at (``crossfold`` chooses one per
    fold: ``crossfold_accuracy``). The arguments are those ``check_tau_policy`` accepted.

    Args:
        policy: ``oracle``, ``fixed`` or ``heldout``.
        curve: the scored split's curve.
        key: the curve key (each key takes its own tau, as MaxBoxAccV2 does per IoU threshold).
        tau: the ``fixed`` policy's tau; ignored otherwise.
        heldout_curve: the ``heldout`` policy's curve; ignored otherwise.
    """
    if policy == "fixed":
        return float(tau)  # type: ignore[arg-type]
    if policy == "heldout":
        return best_tau(heldout_curve, key)[0]  # type: ignore[arg-type]
    if policy != "oracle":
        raise ValueError(f"policy_tau: {policy!r} does not choose one tau for the whole split")
    return best_tau(curve, key)[0]


def crossfold_accuracy(fold_curves: Sequence[Curve], n_per_fold: Sequence[int], key: str) -> tuple[float, list[float]]:
    """BoxAcc under the ``crossfold`` policy: each fold read at the first best tau of the other folds' pooled curve.

    Counts are recovered from the percentages (``round(acc * n / 100)``, exact for any realistic ``n``) and pooled as
    integers, so the pooled curve's maxima -- and its ties -- are those of the other folds' images taken together.

    Args:
        fold_curves: one curve per fold, all on the same grid.
        n_per_fold: the number of images of each fold (its curve's denominator), each >= 1.
        key: the curve key.

    Returns:
        ``(accuracy in percent over all folds' images, [tau of fold 0, tau of fold 1, ...])``.

    Raises:
        ValueError: fewer than two folds, or an empty fold (so a fold with no other images to learn tau from).
    """
    n = np.asarray(n_per_fold, dtype=np.int64)
    if len(fold_curves) != len(n) or len(n) < 2 or (n < 1).any():
        raise ValueError(f"crossfold: every fold needs an image and a non-empty complement ({n.tolist()} images per "
                         "fold); use fewer folds")
    taus = np.asarray(fold_curves[0]["tau"])
    correct = np.stack([np.rint(np.asarray(c[key], dtype=np.float64) * m / 100.0).astype(np.int64)
                        for c, m in zip(fold_curves, n)])  # [F, T] correct images per fold and tau
    chosen, total = [], 0
    for f in range(len(n)):
        others = np.delete(correct, f, axis=0).sum(0)  # the other folds only: never this fold's own images
        i = int(np.argmax(others))
        chosen.append(float(taus[i]))
        total += int(correct[f, i])
    return 100.0 * total / int(n.sum()), chosen
