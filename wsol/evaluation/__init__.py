"""Evaluation: one evaluator per protocol behind one interface (``reset`` / ``process`` / ``evaluate``), the loop
that feeds them (``inference_on_dataset``), and the CAM store that lets any protocol re-score without the network.

    base.py            CAMBatch, DatasetEvaluator, EvaluatorList
    classification.py  top-k classification error (every protocol)
    localization.py    the CAM paper's protocol (top-k / GT-known localization, devkit rules)
    wsoleval.py        wsolevaluation's MaxBoxAcc / MaxBoxAccV2 / PxAP and the threshold policy
    cam16.py           the CAM authors' released ten-crop + dt_box heuristics
    inference.py       forward_cams, inference_on_dataset, score_cam_store
    protocols.py       protocol -> evaluators; evaluate_model, rescore_store
    store.py           the sharded, resumable CAM store
"""

from wsol.evaluation.base import CAMBatch, DatasetEvaluator, EvaluatorList
from wsol.evaluation.protocols import (PROTOCOLS, EvalOutput, ProtocolSettings, build_evaluator, evaluate_model,
                                       rescore_store)

__all__ = ["CAMBatch", "DatasetEvaluator", "EvaluatorList", "PROTOCOLS", "EvalOutput", "ProtocolSettings",
           "build_evaluator", "evaluate_model", "rescore_store"]
