#!/usr/bin/env bash
# Regenerate BENCHMARKS.md's CPU tables on a quiet machine, each between its markers:
#   1. ONNX Runtime vs eager PyTorch (fp32), 1 and 2 threads, batch 1 and 8, with a load column per row;
#   2. int8 ORT vs fp32 ORT, same grid, with file sizes, peak memory, VNNI, and ORT profiler top ops where int8
#      misses 1.8x;
#   3. torch.compile (inductor) vs eager at batch 8, and the eager-vs-ORT profile breakdown of FocalNet-T at batch 8.
# Models: one per family plus every EfficientMod variant. Raw results go to $OUT (default output/cpu_benchmarks).
# Rows taken while the 1-minute load average is above 0.75 x cores (plus the row's own threads beyond one) are measured
# again after 30 s and marked LOADED if the machine stays busy: stop other jobs first.
#
#   tools/run_cpu_benchmarks.sh            # all three (about 20 minutes on an idle 2-core machine)
#   tools/run_cpu_benchmarks.sh onnx int8  # only some of them
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-output/cpu_benchmarks}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

FAMILIES="zoo_focalnet_tiny_srf zoo_smt_tiny zoo_gridpe_pvt_v2_b0"
EFFICIENTMOD="zoo_efficientmod_xxs zoo_efficientmod_xs zoo_efficientmod_s zoo_efficientmod_s_conv"
GRID="--threads 1 2 --batches 1 8 --repeats 5 --warmup 1"
PARTS=${*:-onnx int8 paths}
for part in $PARTS; do
  case $part in onnx|int8|paths) ;; *) echo "unknown part '$part' (choose from: onnx int8 paths)" >&2; exit 2 ;; esac
done

uptime
for part in $PARTS; do
  start=$(date +%s)
  case $part in
    onnx)  $PY tools/bench_onnx.py $FAMILIES $EFFICIENTMOD $GRID --json "$OUT/onnx.json" --write-benchmarks ;;
    int8)  $PY tools/bench_onnx.py --int8 --profile $FAMILIES $EFFICIENTMOD $GRID --json "$OUT/int8.json" \
             --write-benchmarks ;;
    # compile vs eager at batch 8 only: each inductor compile (one per model and batch) costs about a minute
    paths) $PY tools/bench_cpu_paths.py $FAMILIES zoo_efficientmod_xxs --threads 1 2 --batches 8 --repeats 5 \
             --profile --json "$OUT/cpu_paths.json" --write-benchmarks ;;
  esac
  echo "== $part took $(( $(date +%s) - start )) s"
done
uptime
