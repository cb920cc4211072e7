#!/usr/bin/env bash
# Set up modzoo's development/runtime environment in ./.venv from a fresh clone. Idempotent: a second run with
# nothing changed only re-checks the imports (seconds).
#
#   tools/setup_env.sh            # core: torch, modzoo (editable) with the triton and dev extras (minutes, no mmcv)
#   tools/setup_env.sh --mm       # also OpenMMLab (mmcv 2.1.0 with its compiled ops, the mm extra), the openvino
#                                 # extra (OpenVINO, NNCF) and the mobile extra (ExecuTorch, coremltools):
#                                 # everything the tests use
#
# An environment set up with --mm stays complete: a later run without it keeps OpenMMLab installed.
#
# Overridable through the environment:
#   PYTHON=python3.11                       interpreter for the venv (mmcv wheels are per CPython version)
#   MODZOO_TORCH="torch==2.14.1 torchvision==0.29.1"   the torch pair to install
#   MODZOO_WHEELHOUSE=/path/to/wheels       where to look for a prebuilt mmcv 2.1.0 wheel first
#   MODZOO_VENV=.venv                       where to create the environment (relative to the checkout, or absolute)
#   MODZOO_MM=1                             same as --mm
#
# mmcv: PyPI has no mmcv 2.x wheels, and mmseg 1.2.2 / mmdet 3.3.0 need mmcv < 2.2.0 with its compiled ops. We take
# a wheel from the first wheelhouse that has one which installs and imports (MODZOO_WHEELHOUSE, then ../shared/wheels,
# then ~/.cache/modzoo/wheels); otherwise we build mmcv 2.1.0 from the sdist (about an hour on 2 cores) and cache
# the wheel in ~/.cache/modzoo/wheels/<python>-torch<version>/ for the next run.
set -euo pipefail

WITH_MM=0
[ "${MODZOO_MM:-0}" = 1 ] && WITH_MM=1
for arg in "$@"; do
  case "$arg" in
    --mm) WITH_MM=1 ;;
    *) echo "[setup_env] unknown option $arg: the only option is --mm (also install OpenMMLab)" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${MODZOO_VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
TORCH_SPEC="${MODZOO_TORCH:-torch==2.14.1 torchvision==0.29.1}"
MMCV_VERSION=2.1.0
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/modzoo/wheels"

log() { printf '[setup_env] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

# Everything that decides what gets installed; when none of it changed since the last successful run, we only
# re-check that the environment still imports.
stamp_file="$VENV/.modzoo-setup-stamp"
stamp="$(cat pyproject.toml tools/setup_env.sh | sha256sum | cut -d' ' -f1) $TORCH_SPEC $("$PY" -c 'import sys; print(sys.version.split()[0])')"
check_core() { "$PY" -c 'import modzoo, timm, torch, pytest' 2>/dev/null; }
check_mm() {
  "$PY" - <<'EOF'
import modzoo.mm, mmcv, mmseg.models, mmdet.models  # noqa: F401  mmseg/mmdet models import the compiled mmcv ops
from mmcv.ops import nms  # noqa: F401
import executorch.runtime, coremltools  # noqa: F401  the mobile extra (--mm installs it too)
EOF
}
# the stamp's last line says what the last successful run installed: "core" or "mm" (a superset of core)
done_mode=""
if [ -f "$stamp_file" ] && [ "$(head -n 1 "$stamp_file")" = "$stamp" ]; then
  done_mode="$(sed -n 2p "$stamp_file")"
fi
if [ "$done_mode" = mm ] && check_mm 2>/dev/null; then
  log "environment up to date ($VENV, with OpenMMLab)"
  exit 0
fi
if [ "$done_mode" = core ] && [ "$WITH_MM" = 0 ] && check_core; then
  log "environment up to date ($VENV, core; tools/setup_env.sh --mm adds OpenMMLab)"
  exit 0
fi

log "installing $TORCH_SPEC"
# setuptools<82: mmengine 0.10.7 imports pkg_resources at run time (setuptools 82 removed it)
"${PIP[@]}" install -q $TORCH_SPEC "setuptools>=77,<82" wheel

if [ "$WITH_MM" = 0 ] && ! check_mm 2>/dev/null; then
  log "installing modzoo (editable) with the triton and dev extras (no OpenMMLab: tools/setup_env.sh --mm adds it)"
  "${PIP[@]}" install -q -e ".[triton,dev]"
  check_core
  printf '%s\ncore\n' "$stamp" > "$stamp_file"
  log "done: $("$PY" -c 'import torch, timm, modzoo; print(f"torch {torch.__version__}, timm {timm.__version__}, modzoo {modzoo.__version__}, {len(modzoo.list_models())} models")')"
  exit 0
fi

torch_version="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
py_tag="$("$PY" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')"
build_cache="$CACHE_ROOT/$py_tag-torch$torch_version"

mmcv_ok() { "$PY" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "'"$MMCV_VERSION"'"' 2>/dev/null; }

install_mmcv_from() {  # $1: a folder that may hold an mmcv wheel
  local house="$1"
  [ -d "$house" ] || return 1
  ls "$house"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1 || return 1
  log "trying mmcv $MMCV_VERSION from $house"
  if "${PIP[@]}" install -q --no-index --find-links "$house" --no-deps "mmcv==$MMCV_VERSION" 2>/dev/null \
      && "${PIP[@]}" install -q "mmcv==$MMCV_VERSION" --find-links "$house" \
      && mmcv_ok; then
    return 0
  fi
  log "the wheel in $house does not fit this interpreter/torch; removing it from the venv"
  "${PIP[@]}" uninstall -q -y mmcv >/dev/null 2>&1 || true
  return 1
}

build_mmcv() {
  log "building mmcv $MMCV_VERSION with CPU ops from the sdist (about an hour on 2 cores); cached in $build_cache"
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  "${PIP[@]}" download -q --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$tmp"
  tar -xzf "$tmp"/mmcv-"$MMCV_VERSION".tar.gz -C "$tmp"
  # torch >= 2.13 headers require C++20 (`#error C++20 or later compatible compiler is required to use ATen`), but
  # mmcv's setup.py hard-codes -std=c++17; torch's cpp_extension only adds its own -std when none is given.
  sed -i 's/-std=c++17/-std=c++20/g' "$tmp/mmcv-$MMCV_VERSION/setup.py"
  # mmcv's setup.py imports pkg_resources and torch: build without isolation, with an old enough setuptools
  "${PIP[@]}" install -q "setuptools<70" wheel ninja
  mkdir -p "$build_cache"
  (cd "$tmp/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 FORCE_CUDA="${FORCE_CUDA:-0}" MAX_JOBS="${MAX_JOBS:-2}" \
    "${PIP[@]}" wheel -q --no-build-isolation --no-deps . -w "$build_cache")
  # back to the runtime pin: torch 2.14 declares setuptools>=77, mmengine needs pkg_resources (<82)
  "${PIP[@]}" install -q "setuptools>=77,<82"
  install_mmcv_from "$build_cache"
}

if mmcv_ok; then
  log "mmcv $MMCV_VERSION already installed"
else
  installed=0
  for house in "${MODZOO_WHEELHOUSE:-}" "$ROOT/../shared/wheels" "$build_cache" "$CACHE_ROOT"; do
    [ -n "$house" ] || continue
    if install_mmcv_from "$house"; then
      installed=1
      # keep a copy in the cache, so a fresh clone elsewhere on this machine (no ../shared beside it) finds it
      if [ "$house" != "$build_cache" ] && [ "$house" != "$CACHE_ROOT" ]; then
        mkdir -p "$build_cache" && cp -n "$house"/mmcv-"$MMCV_VERSION"-*.whl "$build_cache"/ 2>/dev/null || true
      fi
      break
    fi
  done
  [ "$installed" = 1 ] || build_mmcv
fi

log "installing modzoo (editable) with the mm, triton, dev, openvino and mobile extras"
# openvino + nncf (plain wheels, ~200 MB installed): the OpenVINO parity tests run instead of skipping; executorch +
# coremltools (the mobile extra): the .pte and Core ML export tests run instead of skipping
"${PIP[@]}" install -q -e ".[mm,triton,dev,openvino,mobile]"

check_mm
printf '%s\nmm\n' "$stamp" > "$stamp_file"
log "done: $("$PY" -c 'import torch, timm, mmcv, mmseg, mmdet, modzoo; print(f"torch {torch.__version__}, timm {timm.__version__}, mmcv {mmcv.__version__}, mmseg {mmseg.__version__}, mmdet {mmdet.__version__}, modzoo {modzoo.__version__}, {len(modzoo.list_models())} models")')"
