"""Cost as the evaluation set grows to ILSVRC's size -> ``results/bench/scale.md``.

    python scripts/bench_scale.py --metadata ../shared/data/wsolevaluation_metadata/ILSVRC/test --work /tmp/scale \\
        [--sizes 5000 20000 50000] [--kill-size 5000] [--out results/bench/scale.md] [-- OVERRIDE ...]

For each size N: the first N images of the real ILSVRC val ground truth as an ILSVRC-shaped set
(``scripts/make_ilsvrc_like.py``: real sizes, classes and boxes, synthetic pixels), then one ``wsol-evaluate`` of a
small model (``model=small_cnn``, random weights of seed 0: the numbers are not the point, their identity is) with the
CAM store on, in a fresh process: its wall time (should grow linearly), its peak RSS (``wait4``'s ``ru_maxrss`` of
that process; the default ``eval.num_workers=0`` keeps every stage in it — should stay flat) and the CAM store's bytes
per image. At ``--kill-size`` the same evaluation is run again into another folder, SIGKILLed once the store holds
``--kill-at`` of the images (a hard kill: no handler runs), and restarted with the same command; its metrics must be
identical to the uninterrupted run's. Overrides after ``--`` go to every ``wsol-evaluate`` (e.g. ``eval.shard_size=64``
for a small dry run). Generated sets are kept in ``--work`` and reused while their manifest matches.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from _bench import load_conditions
from make_ilsvrc_like import make

from wsol.conf import yaml_default

TIMING_KEYS = {"eval_seconds", "git_commit", "wall_seconds", "versions", "device_name", "started", "finished"}


def command(root: Path, run_dir: Path, overrides: list[str]) -> list[str]:
    exe = Path(sys.executable).with_name("wsol-evaluate")
    return [str(exe), "model=small_cnn", "data=wsol_metadata", f"data.root={root}", "data.num_classes=1000",
            "eval.save_cams=true", f"hydra.run.dir={run_dir}", *overrides]


def run(cmd: list[str], log: Path, kill_when: int | None = None, store: Path | None = None,
        shard_size: int = 0) -> dict:
    """Run ``cmd`` to its end (or SIGKILL it once ``store`` holds ``kill_when`` images); wall s, peak RSS MiB, rc."""
    t0 = time.perf_counter()
    with log.open("a") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        killed = False
        while kill_when is not None and proc.poll() is None:
            if stored_images(store, shard_size) >= kill_when:
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.2)
        _, status, usage = os.wait4(proc.pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    if not killed and rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {rc}); see {log}")
    return {"wall_s": time.perf_counter() - t0, "peak_rss_mib": usage.ru_maxrss / 1024, "rc": rc, "killed": killed}


def stored_images(store: Path, shard_size: int) -> int:
    """Images in the store's finished shards (each ``shard_*.pt`` is written whole, atomically, ``shard_size`` images)."""
    return len(list(store.glob("shard_*.pt"))) * shard_size if store.is_dir() else 0


def scores(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in TIMING_KEYS and not k.endswith("_seconds")}


def store_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in store.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    overrides = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--metadata", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True, help="generated sets and run dirs (large: ~17 KB/image)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 50000])
    parser.add_argument("--kill-size", type=int, help="the size re-run with a kill and a restart (default: the smallest)")
    parser.add_argument("--kill-at", type=float, default=0.6)
    parser.add_argument("--workers", type=int, default=2, help="processes that write the generated images")
    parser.add_argument("--out", type=Path, help="write the table here (Markdown); printed either way")
    args = parser.parse_args(argv)
    shard_size = next((int(o.split("=", 1)[1]) for o in overrides if o.startswith("eval.shard_size=")),
                      yaml_default("eval/default", "shard_size"))
    kill_size = args.kill_size or min(args.sizes)
    if kill_size not in args.sizes:
        parser.error(f"--kill-size {kill_size} is not one of --sizes {args.sizes}")
    conditions = [load_conditions()]
    rows, identical = [], None
    for n in sorted(args.sizes):
        t0 = time.perf_counter()
        root = make(args.metadata, n, args.work / f"ilsvrc_like_{n}", workers=args.workers)
        made = time.perf_counter() - t0
        run_dir = args.work / f"run_{n}"
        if (run_dir / "metrics.json").is_file():
            raise SystemExit(f"{run_dir}: a finished run is there; remove it to measure again")
        result = run(command(root, run_dir, overrides), args.work / f"run_{n}.log")
        rows.append({"n": n, **result, "store_bytes_per_image": store_bytes(run_dir / "cams") / n,
                     "generate_s": made})
        print(json.dumps(rows[-1]), flush=True)
        if n == kill_size:
            kill_dir = args.work / f"run_{n}_killed"
            cmd = command(root, kill_dir, overrides)
            first = run(cmd, args.work / f"run_{n}_killed.log", kill_when=int(args.kill_at * n),
                        store=kill_dir / "cams", shard_size=shard_size)
            done_at_kill = stored_images(kill_dir / "cams", shard_size)
            second = run(cmd, args.work / f"run_{n}_killed.log")
            identical = scores(kill_dir) == scores(run_dir)
            rows[-1]["kill"] = {"killed": first["killed"], "stored_at_kill": done_at_kill,
                                "restart_wall_s": second["wall_s"], "identical": identical}
            print(json.dumps(rows[-1]["kill"]), flush=True)
        conditions.append(load_conditions())
    base = rows[0]["wall_s"] / rows[0]["n"]
    lines = ["| images | wall s | ms / image | x linear from the smallest | peak RSS MiB | CAM store bytes / image |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        per = r["wall_s"] / r["n"]
        lines.append(f"| {r['n']:,} | {r['wall_s']:.1f} | {1000 * per:.2f} | {per / base:.2f} | "
                     f"{r['peak_rss_mib']:.0f} | {r['store_bytes_per_image']:.0f} |")
    kill = next(r["kill"] for r in rows if "kill" in r)
    lines.append("")
    lines.append(f"Kill test at {kill_size:,} images: SIGKILL with {kill['stored_at_kill']:,} images stored "
                 f"({'killed' if kill['killed'] else 'NOT killed: the run ended first'}), restart took "
                 f"{kill['restart_wall_s']:.1f} s; metrics {'identical' if kill['identical'] else 'DIFFERENT'} to "
                 "the uninterrupted run's.")
    lines.append("")
    lines.append("Machine load before and after each size: " + " | ".join(conditions))
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(f"# Evaluation cost as the set grows\n\n```bash\npython scripts/bench_scale.py "
                            f"{' '.join(sys.argv[1:])}\n```\n\n{table}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
