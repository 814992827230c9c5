"""End to end: the console entry points on a tiny synthetic dataset, a -m sweep, and the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GLIBC
from wsol.report import collect_runs, main as report_main

TINY = ["data.num_images={train:64,val:16,test:32}", "data.image_size=32", "data.resize_size=32",
        "data.crop_size=32", "data.render_size=32", "train.epochs=1", "train.batch_size=32",
        "train.log_every=1", "+model.kwargs.width=4", "device=cpu"]


def _wsol(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"wsol.{module}", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    proc = _wsol("run", f"hydra.run.dir={out}", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "top1_loc_err" in proc.stdout and "protocol=paper" in proc.stdout
    return out


def test_run_writes_metrics_and_config(tiny_run: Path) -> None:
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    for key in ("top1_cls_err", "top5_cls_err", "top1_loc_err", "top5_loc_err", "gt_known_loc_err",
                "n_images", "dataset", "arch", "pool", "protocol", "seed", "torch_version",
                "torchvision_version", "git_commit"):
        assert key in metrics, key
    assert metrics["n_images"] == 32 and metrics["dataset"] == "synthetic" and metrics["protocol"] == "paper"
    # (golden metric values: tests/test_conventions.py::test_paper_metrics_golden_and_equal_to_the_rates_of_their_rows)
    assert (tiny_run / "config.yaml").is_file() and (tiny_run / "model.pt").is_file()


def test_evaluate_checkpoint_reproduces_run(tiny_run: Path, tmp_path: Path) -> None:
    proc = _wsol("evaluate", f"hydra.run.dir={tmp_path}", f"checkpoint={tiny_run / 'model.pt'}", *TINY[:5],
                 "device=cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = json.loads((tiny_run / "metrics.json").read_text())
    b = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("top1_cls_err", "top5_cls_err", "top1_loc_err", "top5_loc_err", "gt_known_loc_err"):
        assert a[key] == b[key], key


def test_train_reports_train_acc_in_percent_with_provenance(tiny_run: Path, tmp_path: Path) -> None:
    # the same training as tiny_run's: wsol-train and wsol-run give one train_acc, in percent as every metric
    proc = _wsol("train", f"hydra.run.dir={tmp_path}", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = json.loads((tmp_path / "metrics.json").read_text())
    assert trained["train_acc"] == json.loads((tiny_run / "metrics.json").read_text())["train_acc"]
    last_acc = float((tmp_path / "train_log.csv").read_text().splitlines()[-1].split(",")[-1])  # a fraction
    assert trained["train_acc"] == round(100 * last_acc, 2)
    for key in ("git_commit", "torch_version", "torchvision_version", "wsol_version", "device_name", "world_size"):
        assert key in trained, key
    assert trained["cpu_malloc"] == ("reuse" if GLIBC else "system")  # the configs' default, applied on CPU


def test_config_mistakes_are_one_message_before_any_work(tmp_path: Path) -> None:
    # every problem at once, exit code 2, no traceback, nothing trained
    proc = _wsol("run", f"hydra.run.dir={tmp_path}", *TINY, "eval.cam_threshold=1.5", "train.log_every=0")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "eval.cam_threshold=1.5: must lie in (0, 1)" in proc.stderr and "train.log_every=0" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "checkpoints").exists()
    proc = _wsol("run", f"hydra.run.dir={tmp_path}", "data=wsol_metadata", "data.root=/nonexistent/dir")
    assert proc.returncode == 2 and "/nonexistent/dir" in proc.stderr and "Traceback" not in proc.stderr
    proc = _wsol("run", f"hydra.run.dir={tmp_path}", "eval.protocol=papr")  # does not compose: Hydra's message
    assert proc.returncode == 2 and "papr" in proc.stderr and "Traceback" not in proc.stderr
    proc = _wsol("run", *TINY, "train.resume=auto")  # a new timestamped dir: nothing can be resumed there
    assert proc.returncode == 2 and "Name the run to resume (name=NAME" in proc.stderr


def test_a_finished_run_is_not_redone(tiny_run: Path) -> None:
    before = (tiny_run / "metrics.json").read_text()
    proc = _wsol("run", f"hydra.run.dir={tiny_run}", *TINY, "train.resume=auto")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "already complete" in proc.stdout and (tiny_run / "metrics.json").read_text() == before


def test_multirun_sweep_and_report(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    proc = _wsol("run", "-m", f"hydra.sweep.dir={sweep_dir}", "model.pool=gap,gmp", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = collect_runs([sweep_dir])
    assert sorted(df["pool"]) == ["gap", "gmp"]
    report_main([str(sweep_dir), "--out", str(tmp_path / "study")])
    assert (tmp_path / "study.csv").is_file()
    assert "| synthetic" in (tmp_path / "study.md").read_text()


def test_saved_cams_rescored_without_the_network(tiny_run: Path, tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    proc = _wsol("evaluate", f"hydra.run.dir={tmp_path / 'a'}", f"checkpoint={tiny_run / 'model.pt'}", *TINY[:5],
                 "eval.protocol=wsolevaluation", "eval.save_cams=true", f"eval.export_scoremaps={maps}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(maps.rglob("*.npy"))) == 32
    # the store remembers its dataset: no data=... needed; what was stored is what was scored: identical numbers
    proc = _wsol("evaluate", f"hydra.run.dir={tmp_path / 'b'}", f"cams={tmp_path / 'a' / 'cams'}",
                 "eval.protocol=wsolevaluation", "device=cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert b["arch"] == "small_cnn" and b["top1_cls_err"] == a["top1_cls_err"]
    assert b["maxboxacc"] == a["maxboxacc"] and b["maxboxacc_v2"] == a["maxboxacc_v2"]
    assert (tmp_path / "b" / "boxacc_curve.csv").is_file()
    # score maps exported from the store alone (they were silently not written): the same files
    proc = _wsol("evaluate", f"hydra.run.dir={tmp_path / 'e'}", f"cams={tmp_path / 'a' / 'cams'}",
                 "eval.protocol=wsolevaluation", f"eval.export_scoremaps={tmp_path / 'maps2'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    exported = sorted(p.relative_to(tmp_path / "maps2") for p in (tmp_path / "maps2").rglob("*.npy"))
    assert exported == sorted(p.relative_to(maps) for p in maps.rglob("*.npy")) and len(exported) == 32
    assert all((tmp_path / "maps2" / p).read_bytes() == (maps / p).read_bytes() for p in exported)
    # ... and refuses to score them against other data
    proc = _wsol("evaluate", f"hydra.run.dir={tmp_path / 'c'}", f"cams={tmp_path / 'a' / 'cams'}", *TINY[:5],
                 "data.seed=1", "device=cpu")
    assert proc.returncode == 2 and "other data than this split" in proc.stderr


def test_one_run_gives_the_paper_errors_and_boxacc_at_the_policy_tau(tmp_path: Path) -> None:
    proc = _wsol("run", f"hydra.run.dir={tmp_path}", *TINY, "eval.save_cams=true", "eval.also=[wsolevaluation]",
                 "eval.tau_policy=crossfold")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "protocol=paper+wsolevaluation" in proc.stdout and "boxacc_at_tau" in proc.stdout
    row = json.loads((tmp_path / "metrics.json").read_text())
    assert row["protocol"] == "paper" and row["also"] == ["wsolevaluation"]
    assert {"top1_loc_err", "gt_known_loc_err", "boxacc_at_tau", "maxboxacc", "maxboxacc_v2"} <= set(row)
    assert (tmp_path / "wsolevaluation" / "boxacc_curve.csv").is_file() and (tmp_path / "predictions.csv").is_file()
    # the same numbers as re-scoring the store under wsolevaluation in a second command
    again = _wsol("evaluate", f"hydra.run.dir={tmp_path / 'again'}", f"cams={tmp_path / 'cams'}",
                  "eval.protocol=wsolevaluation", "eval.tau_policy=crossfold")
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads((tmp_path / "again" / "metrics.json").read_text())
    for key in ("boxacc_at_tau", "maxboxacc", "maxboxacc_v2", "top1_cls_err"):
        assert row[key] == second[key], key
    bad = _wsol("run", f"hydra.run.dir={tmp_path / 'bad'}", *TINY, "eval.also=[wsolevaluation]")
    assert bad.returncode == 2 and "eval.also=['wsolevaluation'] re-scores the stored maps: set eval.save_cams=true" \
        in bad.stderr
