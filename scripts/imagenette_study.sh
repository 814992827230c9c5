#!/usr/bin/env bash
# The Imagenette localization study (results/imagenette/): every run of it, then the tables and figures.
#
#   IMAGENETTE=/path/to/imagenette2 GT=/path/to/ILSVRC/val/ground/truth scripts/imagenette_study.sh [PHASE...]
#
# PHASE: head ($ARCHS: Lite0/1/2 x GAP/GMP x $SEEDS: 3 seeds, head recipe), svm (linear SVM, the paper's section 4), baseline (the
# unmodified 1000-class models), last_stage (Lite0 GAP/GMP x 3 seeds), test2x ($ARCHS: the seed-0 head GAP and GMP
# models evaluated at twice their training input, e.g. Lite0 at 448 px: 14x14 maps without a new feature cache),
# hires (Lite0 GAP trained and evaluated at 448 px), methods (the training-time WSOL methods $METHODS, Lite0
# last_stage GAP, each seed of $METHOD_SEEDS for every method before the next seed), posthoc (the post-hoc maps
# $CAM_METHODS of the trained models $POSTHOC_MODELS), posthoc_subset ($SUBSET_METHODS on the first
# $SUBSET_PER_CLASS test images of each class), report (tables + figures into results/imagenette/),
# report_methods (results/methods/). Default: all of them but methods, posthoc and report_methods, in that order.
# Runs record the commit they were made with, so the script refuses a checkout with uncommitted changes.
# Every run is a named wsol run under $OUT (default outputs/imagenette); a finished run is not redone, an
# interrupted one resumes (train.resume=auto), so the script can simply be started again.
# Each run: wsol-run (paper protocol, CAMs stored), then wsol-evaluate on the stored CAMs under wsolevaluation
# (step 0.001; tau by 2-fold crossfold on the 500 test images — no held-out split with boxes exists here — and
# the oracle tau as the upper bound).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
IMAGENETTE=${IMAGENETTE:?set IMAGENETTE to the Imagenette2 folder (train/, val/)}
GT=${GT:?set GT to the ILSVRC2012 val ground truth (e.g. wsolevaluation metadata/ILSVRC/test)}
OUT=${OUT:-outputs/imagenette}
SEEDS=${SEEDS:-0 1 2}
ARCHS=${ARCHS:-lite0 lite1 lite2}              # head, svm, baseline and test2x phases
LAST_STAGE_SEEDS=${LAST_STAGE_SEEDS:-$SEEDS}   # last_stage trains Lite0's last stage: ~45 min a run on 2 CPU cores
POOLS=${POOLS:-gap gmp}                        # head, svm, last_stage and test2x phases
METHODS=${METHODS:-has acol spg adl cutmix}      # methods phase (configs/method/*; cam is the last_stage phase)
METHOD_SEEDS=${METHOD_SEEDS:-0 1}
CAM_METHODS=${CAM_METHODS:-gradcam gradcampp xgradcam layercam center}   # posthoc phase (cam.method)
POSTHOC_MODELS=${POSTHOC_MODELS:-lite0_last_stage_gap_s0 lite0_head_gap_s0 lite1_head_gap_s0 lite2_head_gap_s0}
SUBSET_METHODS=${SUBSET_METHODS:-cam scorecam}   # posthoc_subset phase: maps too costly for all 500 test images,
SUBSET_PER_CLASS=${SUBSET_PER_CLASS:-10}         # on the first N of each class (and the CAM on the same images)
SUBSET_MODELS=${SUBSET_MODELS:-lite0_last_stage_gap_s0}
PHASES=${*:-head svm baseline last_stage test2x hires report}
DATA=(data.root="$IMAGENETTE" data.gt="$GT")
if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
  echo "error: the checkout has uncommitted changes; every run records the commit it was made with, so commit" \
       "first (or run the study from a clean worktree: git worktree add ../study HEAD)" >&2
  exit 2
fi
mkdir -p "$OUT/logs"

run() {  # run NAME EXPERIMENT [overrides...]: train + paper protocol, then wsolevaluation on the stored CAMs
  local name=$1 exp=$2; shift 2
  local dir="$OUT/$name"
  echo "[$(date +%H:%M:%S)] $name"
  "$BIN/wsol-run" experiment="$exp" "${DATA[@]}" hydra.run.dir="$dir" train.resume=auto eval.save_cams=true \
    "$@" >"$OUT/logs/$name.log" 2>&1
  "$BIN/wsol-evaluate" cams="$dir/cams" eval.protocol=wsolevaluation eval.tau_policy=crossfold \
    eval.cam_curve_interval=0.001 hydra.run.dir="$dir/wsoleval" >>"$OUT/logs/$name.log" 2>&1
}

evaluate_pretrained() {  # the unmodified ImageNet model, 1000-way, on the same 500 images
  local arch=$1 size=$2 dir="$OUT/baseline_$1"
  echo "[$(date +%H:%M:%S)] baseline_$arch"
  "$BIN/wsol-evaluate" model=efficientnet_"$arch" model.pretrained=true data=imagenette "${DATA[@]}" \
    data.imagenet_labels=true data.num_classes=1000 data.image_size="$size" eval.save_cams=true \
    hydra.run.dir="$dir" >"$OUT/logs/baseline_$arch.log" 2>&1
  "$BIN/wsol-evaluate" cams="$dir/cams" eval.protocol=wsolevaluation eval.tau_policy=crossfold \
    eval.cam_curve_interval=0.001 hydra.run.dir="$dir/wsoleval" >>"$OUT/logs/baseline_$arch.log" 2>&1
}

evaluate_posthoc() {  # evaluate_posthoc RUN METHOD [N]: RUN's model with cam.method=METHOD -> posthoc_<RUN>_<METHOD>
  # (with N: on the first N test images of each class, data.test_per_class=N -> posthoc_<RUN>_<METHOD>_sub<N>)
  local src=$1 method=$2 per_class=${3:-} name size subset=()
  name="posthoc_$1_$2${per_class:+_sub$per_class}"
  [[ -n $per_class ]] && subset=(data.test_per_class="$per_class")
  local dir="$OUT/$name"
  size=$("$BIN/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["image_size"])' "$OUT/$src/metrics.json")
  echo "[$(date +%H:%M:%S)] $name"
  "$BIN/wsol-evaluate" checkpoint="$OUT/$src/model.pt" data=imagenette "${DATA[@]}" data.image_size="$size" \
    "${subset[@]}" cam.method="$method" eval.save_cams=true hydra.run.dir="$dir" >"$OUT/logs/$name.log" 2>&1
  "$BIN/wsol-evaluate" cams="$dir/cams" cam.method="$method" eval.protocol=wsolevaluation eval.tau_policy=crossfold \
    eval.cam_curve_interval=0.001 hydra.run.dir="$dir/wsoleval" >>"$OUT/logs/$name.log" 2>&1
}

evaluate_at_2x() {  # evaluate_at_2x RUN: RUN's model on the test images at twice its input size -> <RUN>_test<SIZE>
  local src=$1 size name dir
  size=$(( 2 * $("$BIN/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["image_size"])' \
                  "$OUT/$src/metrics.json") ))
  name="${src%_s*}_test${size}_s${src##*_s}"
  dir="$OUT/$name"
  echo "[$(date +%H:%M:%S)] $name"
  "$BIN/wsol-evaluate" checkpoint="$OUT/$src/model.pt" data=imagenette "${DATA[@]}" data.image_size="$size" \
    eval.save_cams=true hydra.run.dir="$dir" >"$OUT/logs/$name.log" 2>&1
  "$BIN/wsol-evaluate" cams="$dir/cams" eval.protocol=wsolevaluation eval.tau_policy=crossfold \
    eval.cam_curve_interval=0.001 hydra.run.dir="$dir/wsoleval" >>"$OUT/logs/$name.log" 2>&1
}

for phase in $PHASES; do
  case $phase in
    head)
      for arch in $ARCHS; do for pool in $POOLS; do for seed in $SEEDS; do
        run "${arch}_head_${pool}_s$seed" "imagenette/${arch}_head" model.pool=$pool seed=$seed
      done; done; done ;;
    svm)
      for arch in $ARCHS; do for pool in $POOLS; do
        run "${arch}_svm_${pool}_s0" "imagenette/${arch}_svm" model.pool=$pool seed=0
      done; done ;;
    baseline)
      for arch in $ARCHS; do
        case $arch in lite0) size=224 ;; lite1) size=240 ;; lite2) size=260 ;; esac
        evaluate_pretrained "$arch" "$size"
      done ;;
    last_stage)
      for pool in $POOLS; do for seed in $LAST_STAGE_SEEDS; do
        run "lite0_last_stage_${pool}_s$seed" imagenette/lite0_last_stage model.pool=$pool seed=$seed
      done; done ;;
    test2x)
      for arch in $ARCHS; do for pool in $POOLS; do evaluate_at_2x "${arch}_head_${pool}_s0"; done; done ;;
    methods)  # one seed of every method first, then the next seed
      for seed in $METHOD_SEEDS; do for method in $METHODS; do
        run "lite0_last_stage_${method}_s$seed" imagenette/lite0_last_stage model.pool=gap method="$method" seed=$seed
      done; done ;;
    posthoc)  # every post-hoc map of every model (the model's own CAM is its run)
      for model in $POSTHOC_MODELS; do for method in $CAM_METHODS; do evaluate_posthoc "$model" "$method"; done; done ;;
    posthoc_subset)  # Score-CAM costs ~20-30 s per image on 2 CPU cores: 100 images, beside the CAM on them
      for model in $SUBSET_MODELS; do for method in $SUBSET_METHODS; do
        evaluate_posthoc "$model" "$method" "$SUBSET_PER_CLASS"; done; done ;;
    report_methods)
      "$BIN/python" scripts/methods_report.py "$OUT" results/methods --committed results/methods/runs.csv \
        --committed results/imagenette/runs.csv ;;
    hires)  # 448 px input: Lite0's map becomes 14x14, the resolution the paper's surgery aims for
      run lite0_head_gap_448_s0 imagenette/lite0_head model.pool=gap seed=0 data.image_size=448 ;;
    report)
      "$BIN/python" scripts/imagenette_report.py "$OUT" results/imagenette --committed results/imagenette ;;
    *) echo "unknown phase $phase" >&2; exit 2 ;;
  esac
done
