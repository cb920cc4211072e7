#!/usr/bin/env bash
# Regenerate BENCHMARKS.md's CPU tables on a quiet machine, each between its markers:
#   deploy (default): every CPU path side by side (eager, torch.compile, ONNX Runtime fp32/int8, OpenVINO fp32/int8),
#          one model per family plus every EfficientMod variant, batch 1 and 8, 1 and 2 threads, latency, throughput,
#          peak memory, parity, load per row; also README.md's per-family recommendation. Estimated at about 20 minutes
#          on an idle 2-core machine (each torch.compile, one per model and batch, takes most of a minute).
#   onnx, int8, paths: the older, narrower tables (ORT vs eager; int8 vs fp32 ORT with profiles; torch.compile vs
#          eager with the eager-vs-ORT profile breakdown of FocalNet-T), about 20 minutes together.
# Raw results go to $OUT (default output/cpu_benchmarks). Rows taken while the 1-minute load average is above
# 0.75 x cores (plus the row's own threads beyond one) are measured again after 30 s and marked LOADED if the machine
# stays busy: stop other jobs first.
#
#   tools/run_cpu_benchmarks.sh                 # the side-by-side table and the README recommendation
#   tools/run_cpu_benchmarks.sh onnx int8 paths # the older tables
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-output/cpu_benchmarks}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

FAMILIES="zoo_focalnet_tiny_srf zoo_smt_tiny zoo_gridpe_pvt_v2_b0"
EFFICIENTMOD="zoo_efficientmod_xxs zoo_efficientmod_xs zoo_efficientmod_s zoo_efficientmod_s_conv"
GRID="--threads 1 2 --batches 1 8 --repeats 5 --warmup 1"
PARTS=${*:-deploy}
for part in $PARTS; do
  case $part in deploy|onnx|int8|paths) ;;
    *) echo "unknown part '$part' (choose from: deploy onnx int8 paths)" >&2; exit 2 ;;
  esac
done
if [[ " $PARTS " == *" deploy "* ]] && ! $PY -c 'import openvino, nncf' 2>/dev/null; then
  echo "the side-by-side table needs OpenVINO and NNCF: $PY -m pip install -e '.[openvino]'" >&2; exit 2
fi

uptime
for part in $PARTS; do
  start=$(date +%s)
  case $part in
    deploy) $PY tools/bench_cpu_deploy.py $FAMILIES $EFFICIENTMOD $GRID --json "$OUT/cpu_deploy.json" \
              --write-benchmarks --write-readme ;;
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
