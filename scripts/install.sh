#!/usr/bin/env bash
# The one install recipe of gpt4allj-kit, used by the README, CI and the Dockerfile alike.
#
#   scripts/install.sh [--venv DIR]
#
# Installs every dependency from requirements/lock.txt with --require-hashes, then DeepSpeed, then the
# kit itself (editable, from this checkout: the image keeps its configs/ and train.py beside it)
# without re-resolving anything. With --venv the environment is created first (python3.11).
#
# DeepSpeed ships only as an sdist whose setup.py imports torch, so it cannot be built in pip's isolated
# build env: it is installed after torch, with --no-build-isolation and DS_BUILD_OPS=0, which builds no
# C++/CUDA op ahead of time; its ops are JIT-compiled on first use on the machine that runs them. To
# prebuild the GPU ops in an image instead, set DS_BUILD_OPS=1 (or DS_BUILD_FUSED_ADAM=1 ...) and
# TORCH_CUDA_ARCH_LIST (e.g. "8.0;9.0") in the environment of this script; it passes them through.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lock="$root/requirements/lock.txt"
venv=""
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) venv="$2"; shift 2 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

python="${PYTHON:-python3.11}"
if [ -n "$venv" ]; then
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  python="$venv/bin/python"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A lock entry is a "name==version \" line followed by its indented hash lines.
awk -v want=deepspeed -v out_ds="$work/deepspeed.txt" -v out_rest="$work/rest.txt" '
  /^[A-Za-z0-9]/ { split($1, a, "=="); target = (a[1] == want) ? out_ds : out_rest }
  /^[ A-Za-z0-9]/ && target != "" { print > target }
' "$lock"

pip=("$python" -m pip --disable-pip-version-check)
"${pip[@]}" install --require-hashes --no-deps -r "$work/rest.txt"
DS_BUILD_OPS="${DS_BUILD_OPS:-0}" "${pip[@]}" install --require-hashes --no-deps --no-build-isolation \
  -r "$work/deepspeed.txt"
"${pip[@]}" install --no-deps --no-build-isolation -e "$root"
"${pip[@]}" check
