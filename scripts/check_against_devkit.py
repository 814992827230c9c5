"""Score one prediction file with the ILSVRC devkit's own ``eval_clsloc.m`` (under GNU Octave) and with
``wsol-score devkit``, on all 50,000 ILSVRC2012 val images, and compare.

wsol does not ship the devkit: point ``--devkit`` at a folder holding the devkit's ``eval_clsloc.m`` and
``compute_overlap.m`` (the ILSVRC2014 devkit, also in the CAM authors' repository under ``evaluation/``), and
``--cache-mat`` at its cached val ground truth (``cache_groundtruth.mat``). Needs ``octave`` on the PATH.

The predictions are generated (seeded): 1-5 guesses per image, a third with the right class and a GT box
jittered by up to 35% of its size (IoUs spread around 0.5), the rest random; a random 1,762-image blacklist.

    python scripts/check_against_devkit.py --devkit ~/src/CAM/evaluation --cache-mat cache_groundtruth.mat
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from wsol.data.formats import read_devkit_mat_objects
from wsol.score import main as score_main


def write_case(objs: list, out: Path, seed: int = 0) -> None:
    """Devkit inputs (1-based devkit ids) and wsol inputs (0-based, metadata folder) for the same guesses."""
    rng = np.random.default_rng(seed)
    ids = [f"val/ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(len(objs))]
    dev_lines, wsol_lines = [], []
    for entries in objs:
        groups = []
        for _ in range(int(rng.integers(1, 6)) if rng.random() < 0.1 else 5):
            if rng.random() < 0.35:
                label = entries[0][0]
                x0, y0, x1, y1 = entries[int(rng.integers(len(entries)))][1]
                w, h = x1 - x0 + 1, y1 - y0 + 1
                b = np.round(np.array([x0, y0, x1, y1]) + rng.uniform(-0.35, 0.35, 4) * [w, h, w, h]).astype(int)
                box = [min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])]
            else:
                label = int(rng.integers(1, 1001))
                x0, y0 = (int(v) for v in rng.integers(0, 300, 2))
                box = [x0, y0, x0 + int(rng.integers(1, 300)), y0 + int(rng.integers(1, 300))]
            groups.append((label, box))
        dev_lines.append(" ".join(f"{lab} {' '.join(map(str, b))}" for lab, b in groups))
        wsol_lines.append(" ".join(f"{lab - 1} {' '.join(map(str, b))}" for lab, b in groups))
    (out / "pred_devkit.txt").write_text("\n".join(dev_lines) + "\n")
    (out / "pred_wsol.txt").write_text("\n".join(wsol_lines) + "\n")
    (out / "gt_labels.txt").write_text("\n".join(str(e[0][0]) for e in objs) + "\n")
    blacklist = sorted(rng.choice(len(objs), 1762, replace=False) + 1)
    (out / "blacklist.txt").write_text("\n".join(map(str, blacklist)) + "\n")
    meta = out / "gt" / "metadata"
    meta.mkdir(parents=True)
    (meta / "image_ids.txt").write_text("\n".join(ids) + "\n")
    (meta / "class_labels.txt").write_text("\n".join(f"{ids[i]},{e[0][0] - 1}" for i, e in enumerate(objs)) + "\n")
    (meta / "image_sizes.txt").write_text("\n".join(f"{i},4000,4000" for i in ids) + "\n")  # not used here
    (meta / "localization.txt").write_text("".join(f"{ids[i]},{','.join(str(int(v)) for v in b)}\n"
                                                   for i, e in enumerate(objs) for _, b in e))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devkit", type=Path, required=True, help="folder with eval_clsloc.m, compute_overlap.m")
    parser.add_argument("--cache-mat", type=Path, required=True, help="the devkit's cached val ground truth")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_case(read_devkit_mat_objects(args.cache_mat), work)
        for name in ("eval_clsloc.m", "compute_overlap.m"):
            shutil.copy(args.devkit / name, work / name)
        shutil.copy(args.cache_mat, work / "cache.mat")
        (work / "run.m").write_text(
            "for k = 1:5\n  [c, l] = eval_clsloc('pred_devkit.txt', 'gt_labels.txt', '', '', k, "
            "'blacklist.txt', 'cache.mat');\n  printf('%d %.10f %.10f\\n', k, 100*c, 100*l);\nend\n")
        proc = subprocess.run(["octave", "--no-gui", "-q", "run.m"], cwd=work, capture_output=True, text=True)
        devkit = {}
        for line in proc.stdout.splitlines():  # eval_clsloc also prints progress lines
            fields = line.split()
            if len(fields) != 3 or not fields[0].isdigit():
                continue
            k, cls, loc = fields
            devkit[f"top{k}_cls_err"], devkit[f"top{k}_loc_err"] = float(cls), float(loc)
        if len(devkit) != 10:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            return 2
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            rc = score_main(["devkit", "--pred", str(work / "pred_wsol.txt"), "--gt", str(work / "gt"),
                             "--blacklist", str(work / "blacklist.txt")])
        if rc:
            return rc
        ours = json.loads(buffer.getvalue())
    worst = max(abs(devkit[k] - ours[k]) for k in devkit)
    print(json.dumps({"devkit (octave)": devkit, "wsol": {k: ours[k] for k in devkit}}, indent=1))
    # the devkit prints through %.10f: agreement to 1e-9 percent is identity
    print("identical" if worst < 1e-9 else f"DIFFERENT (max |diff| = {worst:g})")
    return 0 if worst < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
