"""Threshold policy: how the score-map threshold tau is chosen, and how the result is labelled.

wsolevaluation reports MaxBoxAcc with the best tau of the scored split itself; that is an ORACLE number,
an upper bound on what a tau fixed in advance achieves. Two honest policies:
    * ``fixed``: a tau chosen before looking at the split (e.g. the CAM paper's 0.2);
    * ``heldout``: the best tau on a held-out split's curve (ImageNetV2, CUBV2, OpenImages val), applied to
      the test split's curve.
Curves are the dicts of ``BoxAccEvaluator.curve()`` (key ``tau`` plus one accuracy array per curve key),
both on the same threshold grid.

Public API: ``best_tau``, ``accuracy_at_tau``, ``apply_threshold_policy``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["accuracy_at_tau", "apply_threshold_policy", "best_tau"]


def best_tau(curve: Mapping[str, np.ndarray], key: str) -> tuple[float, float]:
    """``(tau, accuracy)`` at the first maximum of ``curve[key]``."""
    acc = np.asarray(curve[key])
    i = int(np.argmax(acc))
    return float(curve["tau"][i]), float(acc[i])


def accuracy_at_tau(curve: Mapping[str, np.ndarray], key: str, tau: float) -> float:
    """``curve[key]`` at the grid point equal to ``tau`` (within 1e-9); ValueError if tau is off the grid."""
    taus = np.asarray(curve["tau"])
    hit = np.nonzero(np.abs(taus - tau) <= 1e-9)[0]
    if len(hit) == 0:
        raise ValueError(f"tau {tau!r} is not on the curve's threshold grid (step {taus[1] - taus[0]:.6g})")
    return float(np.asarray(curve[key])[hit[0]])


def apply_threshold_policy(
    test_curve: Mapping[str, np.ndarray],
    key: str = "boxacc_v1_iou50",
    *,
    tau: float | None = None,
    heldout_curve: Mapping[str, np.ndarray] | None = None,
) -> dict[str, float | str]:
    """Accuracy on the test split under a threshold policy, with the oracle labelled as an upper bound.

    Args:
        test_curve: the scored split's curve.
        key: which accuracy curve (e.g. ``boxacc_v1_iou50``, ``boxacc_v2_iou70``).
        tau: a fixed tau (policy ``fixed``); exclusive with ``heldout_curve``.
        heldout_curve: a held-out split's curve; its best tau is applied (policy ``heldout``).

    Returns:
        ``oracle_upper_bound`` and ``oracle_tau`` (best tau on the test split itself -- what wsolevaluation
        reports as MaxBoxAcc); ``boxacc_at_tau``, ``tau`` and ``tau_source`` (``"fixed"``, ``"heldout"``, or
        ``"oracle (upper bound)"`` when neither policy is given).
    """
    if tau is not None and heldout_curve is not None:
        raise ValueError("give either a fixed tau or a held-out curve, not both")
    oracle_tau, oracle = best_tau(test_curve, key)
    if heldout_curve is not None:
        if not np.allclose(heldout_curve["tau"], test_curve["tau"]):
            raise ValueError("the held-out and test curves use different threshold grids")
        chosen, source = best_tau(heldout_curve, key)[0], "heldout"
    elif tau is not None:
        chosen, source = float(tau), "fixed"
    else:
        chosen, source = oracle_tau, "oracle (upper bound)"
    return {
        "oracle_upper_bound": oracle,
        "oracle_tau": oracle_tau,
        "boxacc_at_tau": accuracy_at_tau(test_curve, key, chosen),
        "tau": chosen,
        "tau_source": source,
    }
