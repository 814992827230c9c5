"""Score the same score maps with clovaai/wsolevaluation's own code and with ``wsol-score scoremaps``.

wsol does not ship or copy that suite: point ``--wsolevaluation`` at your own checkout of it. Example
(score maps exported by ``wsol-evaluate ... eval.protocol=wsolevaluation eval.export_scoremaps=MAPS``):

    python scripts/check_against_wsolevaluation.py --wsolevaluation ~/src/wsolevaluation \\
        --scoremap-root MAPS --gt DATASET_DIR --cam-curve-interval 0.001

``DATASET_DIR/metadata`` holds the wsolevaluation metadata files (integer box coordinates: the suite
parses them with ``int()``). Prints both JSON results and exits 1 if they differ. The suite's ``evaluation.py``
imports ``munch`` (``pip install --target DIR munch`` and put DIR on ``PYTHONPATH`` to keep it out of the
project's environment); NumPy's removed ``np.float`` alias is restored here for it. Results of this check on
real and generated score maps: ``results/bench/maxboxacc.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np

# wsol's own modules first: the reference checkout holds a package also named ``wsol``, which would shadow ours once
# its folder is on sys.path (reference_scores puts it there)
from wsol.score import main as score_main


def reference_scores(suite: Path, scoremap_root: Path, metadata_dir: Path, step: float,
                     iou_thresholds: list[int]) -> dict[str, float]:
    """MaxBoxAcc (largest contour, IoU 50) and MaxBoxAccV2 (all contours) from the suite's BoxEvaluator."""
    if not hasattr(np, "float"):
        np.float = float  # type: ignore[attr-defined]  # the suite predates NumPy 1.24
    sys.path.insert(0, str(suite))
    from evaluation import BoxEvaluator, _get_cam_loader, configure_metadata, get_image_ids  # type: ignore
    from util import t2n  # type: ignore

    out = {}
    for name, multi in (("v1", False), ("v2", True)):
        metadata = configure_metadata(str(metadata_dir) + "/")
        evaluator = BoxEvaluator(metadata=metadata, dataset_name="ILSVRC", split="test",
                                 cam_threshold_list=list(np.arange(0, 1, step)), mask_root=None,
                                 multi_contour_eval=multi, iou_threshold_list=iou_thresholds)
        for cams, ids in _get_cam_loader(get_image_ids(metadata), str(scoremap_root)):
            for cam, image_id in zip(cams, ids):
                evaluator.accumulate(t2n(cam), image_id)
        out[name] = [float(v) for v in evaluator.compute()]
    result = {"maxboxacc": out["v1"][iou_thresholds.index(50)], "maxboxacc_v2": float(np.mean(out["v2"]))}
    result.update({f"maxboxacc_v2_iou{t}": v for t, v in zip(iou_thresholds, out["v2"])})
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wsolevaluation", type=Path, required=True, help="a checkout of clovaai/wsolevaluation")
    parser.add_argument("--scoremap-root", type=Path, required=True)
    parser.add_argument("--gt", type=Path, required=True, help="dataset dir with metadata/")
    parser.add_argument("--cam-curve-interval", type=float, default=0.01)
    parser.add_argument("--iou-thresholds", type=int, nargs="+", default=[30, 50, 70])
    args = parser.parse_args()

    with contextlib.redirect_stdout(io.StringIO()):
        ref = reference_scores(args.wsolevaluation, args.scoremap_root, args.gt / "metadata",
                               args.cam_curve_interval, args.iou_thresholds)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        rc = score_main(["scoremaps", "--scoremap-root", str(args.scoremap_root), "--gt", str(args.gt),
                         "--cam-curve-interval", str(args.cam_curve_interval),
                         "--iou-thresholds", *map(str, args.iou_thresholds)])
    if rc:
        return rc
    ours = json.loads(buffer.getvalue())
    print(json.dumps({"wsolevaluation": ref, "wsol": {k: ours[k] for k in ref}}, indent=1))
    same = all(ref[k] == ours[k] for k in ref)
    print("identical" if same else "DIFFERENT")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
