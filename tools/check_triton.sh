#!/usr/bin/env bash
# Run the kernel tests (under TRITON_INTERPRET=1) and the quick static report against another Triton version,
# installed without its dependencies into a gitignored folder that later runs reuse:
#
#   tools/check_triton.sh 3.6.0                   # installs into .triton/3.6.0 (pip, once)
#   TRITON_DIR=/path/to/triton36 tools/check_triton.sh 3.6.0   # a Triton already unpacked there: no download
#   tools/check_triton.sh 3.8.0                   # the environment's own Triton when it is that version
#   tools/check_triton.sh 3.6.0 --dtype float32 bfloat16 --json out.json   # extra arguments go to the report
#
# MODZOO_SLOW=1 adds the slow kernel tests (k = 15, four focal levels).
# Exit status: 0 when the tests and the report pass, 2 on bad arguments, else the failing step's status.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if [ $# -lt 1 ] || [ -z "$1" ] || [ "${1#-}" != "$1" ]; then
    echo "error: give one Triton version first, e.g. tools/check_triton.sh 3.6.0" >&2
    exit 2
fi
VERSION=$1
shift
OWN=$("$PY" -c 'import triton; print(triton.__version__)')
if [ -z "${TRITON_DIR:-}" ] && [ "$OWN" = "$VERSION" ]; then
    DIR="(the environment's own)"  # nothing to install
    export PYTHONPATH="$PWD"
else
    DIR=${TRITON_DIR:-.triton/$VERSION}
    if [ ! -d "$DIR/triton" ]; then
        "$PY" -m pip install --quiet --no-deps --target "$DIR" "triton==$VERSION"
    fi
    case $DIR in /*) ;; *) DIR="$PWD/$DIR" ;; esac
    export PYTHONPATH="$DIR:$PWD"
fi
FOUND=$("$PY" -c 'import triton; print(triton.__version__)')
if [ "$FOUND" != "$VERSION" ] && [ "${FOUND%.0}" != "$VERSION" ] && [ "$FOUND" != "${VERSION%.0}" ]; then
    echo "error: $DIR holds Triton $FOUND, not $VERSION; remove it or point TRITON_DIR elsewhere" >&2
    exit 2
fi
echo "Triton $FOUND from $DIR"
TRITON_INTERPRET=1 "$PY" -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_kernels_integration.py
"$PY" tools/kernel_static_report.py --quick "$@"
