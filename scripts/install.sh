#!/usr/bin/env bash
# The one install recipe of gpt4allj-kit, used by the README, CI and the Dockerfile alike.
#
#   scripts/install.sh [--venv DIR] [--dev]
#
# Installs every dependency from a lock with --require-hashes, then DeepSpeed, then the kit itself
# (editable, from this checkout: the image keeps its configs/ and train.py beside it) without
# re-resolving anything. Two locks, both written by scripts/lock.sh:
#   requirements/lock.txt      the runtime set: exactly what the image holds (the default);
#   requirements/dev-lock.txt  --dev: the same runtime pins plus the test and lint tools (CI, developers).
# With --venv the environment is created first. The interpreter is $PYTHON, or python<minor> for the
# minor in .python-version (the one the locks are resolved for); it must be a final release of that minor.
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
    --dev) lock="$root/requirements/dev-lock.txt"; shift ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

minor=$(tr -d '[:space:]' < "$root/.python-version")
python="${PYTHON:-python$minor}"
if [ -n "$venv" ] && [ -x "$venv/bin/python" ]; then
  python="$venv/bin/python"
fi
# A pre-release interpreter (Ubuntu 22.04's python3.11 is 3.11.0~rc1) installs the lock and then fails to
# import torch; a different minor gets wheels the lock was not resolved for. Refuse both up front.
found=$("$python" -c 'import sys; v = sys.version_info; print(f"{v.major}.{v.minor} {v.releaselevel} {sys.version.split()[0]}")' 2>/dev/null) \
  || { echo "install.sh: no Python $minor interpreter ('$python' does not run): install CPython $minor or set PYTHON" >&2; exit 3; }
read -r found_minor level full <<<"$found"
if [ "$found_minor" != "$minor" ] || [ "$level" != "final" ]; then
  echo "install.sh: '$python' is Python $full ($level); the locks need a final release of Python $minor (.python-version)" >&2
  exit 3
fi
if [ -n "$venv" ] && [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
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
