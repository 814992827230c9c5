"""The value sets of the run settings that are a choice among names, each written once.

Each tuple is the set of values one setting takes. The module that implements the concept checks its input against
the tuple (and exports it under the same name), and ``wsol.conf`` builds the config schema's Enums from it, so the
config, its error messages ("expected one of [...]") and the library accept the same names. This module imports
nothing: the schema and the torch-free modules can use it without loading torch, which every owning package
(``wsol.evaluation``, ``wsol.models``, ``wsol.engine``) imports.
"""

from __future__ import annotations

__all__ = ["BOX_METHODS", "CAM_METHODS", "CPU_MALLOC", "POOLS", "PROTOCOLS", "RECIPES", "SCHEDULES", "SCHEDULE_UNITS",
           "TAU_POLICIES"]

#: ``eval.protocol`` (``wsol.evaluation.protocols``).
PROTOCOLS = ("paper", "wsolevaluation", "cam16_heuristics")
#: ``cam.method``: the CAM, then the post-hoc maps (``wsol.posthoc``).
CAM_METHODS = ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "scorecam", "center")
#: ``eval.tau_policy`` (``wsol.metrics.threshold``).
TAU_POLICIES = ("oracle", "fixed", "heldout", "crossfold")
#: ``eval.box_method`` (``wsol.metrics.boxacc.BoxAccEvaluator``).
BOX_METHODS = ("auto", "exact", "fast")
#: ``model.pool`` (``wsol.models.base.global_pool``); the order is also the layout of cached pooled features.
POOLS = ("gap", "gmp")
#: ``train.recipe`` (``wsol.engine.recipes``).
RECIPES = ("full", "last_stage", "head", "linear_svm")
#: ``train.scheduler.name`` (``wsol.engine.optim.lr_lambda``).
SCHEDULES = ("step", "cosine", "constant")
#: ``train.scheduler.unit`` (``wsol.engine.recipes.TrainSettings``).
SCHEDULE_UNITS = ("epoch", "iter")
#: ``cpu_malloc`` (``wsol.engine.cpu_malloc``).
CPU_MALLOC = ("reuse", "system")
