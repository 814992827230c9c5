"""``wsol-visualize RUN_DIR``: a grid of CAM overlays of one run (the command line; the work is ``write_overlay_grid``).

The grid shows, as the CAM paper's Fig. 3-4, each selected image with the top-1 class's CAM (``--which gt_known``: the
GT class's), GT boxes in green, the predicted box in red with its IoU, and the top classes with their probabilities
(``wsol.report.overlays`` selects and loads, ``wsol.visualize`` draws).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from wsol.boxes import FAILURE_CATEGORIES
from wsol.report.overlays import SELECTIONS, write_overlay_grid

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """``wsol-visualize RUN_DIR --n 16 --select worst --out grid.png``: a grid of CAM overlays of a run."""
    parser = argparse.ArgumentParser(
        prog="wsol-visualize", description=(main.__doc__ or "").replace("``", ""),
        epilog="Reads RUN_DIR/predictions.csv (paper protocol), the CAM store RUN_DIR/cams (eval.save_cams=true; "
               "without it: boxes only) and the images named by RUN_DIR/config.yaml.")
    parser.add_argument("run_dir", help="a run dir holding predictions.csv")
    parser.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    parser.add_argument("--select", default="random", choices=SELECTIONS,
                        help="worst/best: lowest/highest IoU first; failures: wrong boxes, most confident first; "
                             "random: a seeded sample (default)")
    parser.add_argument("--category", choices=FAILURE_CATEGORIES,
                        help="only top-1 failures of this cause (see wsol.report.classify_failure)")
    parser.add_argument("--which", default="top1", choices=("top1", "gt_known"),
                        help="box and heat map of the top-1 class (default) or of the GT class")
    parser.add_argument("--seed", type=int, default=0, help="seed of --select random")
    parser.add_argument("--ncols", type=int, default=4, help="panels per row (default 4)")
    parser.add_argument("--out", help="PNG to write (default RUN_DIR/overlays_<select>.png)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.run_dir) / f"overlays_{args.select}.png"
    try:
        if out.exists() and not args.force:
            raise FileExistsError(f"refusing to overwrite {out} (pass --force to replace it)")
        notes = write_overlay_grid(args.run_dir, out, n=args.n, select=args.select, seed=args.seed,
                                   which=args.which, category=args.category, ncols=args.ncols)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"wsol-visualize: error: {err}", file=sys.stderr)
        raise SystemExit(2) from err
    for note in notes:
        print(f"wsol-visualize: {note}", file=sys.stderr)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
