#!/usr/bin/env bash
# Regenerates requirements/lock.txt from requirements/requirements.in: every transitive dependency pinned
# to an exact version with its sha256 hashes, resolved for the platform the image and CI run on
# (Linux x86_64, glibc 2.28+, Python 3.11), whatever machine runs this script.
#
#   scripts/lock.sh [--upgrade]     # --upgrade: newest compatible versions instead of keeping the pins
#
# Uses the uv of the kit's venv (.venv, itself pinned by the lock); without one, installs uv's locked
# version into a throwaway venv first. Review `git diff requirements/lock.txt`, then rebuild the
# environment with scripts/install.sh.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --upgrade) extra+=(--upgrade); shift ;;
    *) echo "lock.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

uv="$root/.venv/bin/uv"
if [ ! -x "$uv" ]; then
  uv_version=$(sed -n 's/^uv==\([^ ]*\).*/\1/p' requirements/lock.txt)
  if [ -z "$uv_version" ]; then
    echo "lock.sh: no uv pin in requirements/lock.txt and no .venv/bin/uv" >&2
    exit 3
  fi
  tools=$(mktemp -d)
  trap 'rm -rf "$tools"' EXIT
  "${PYTHON:-python3}" -m venv "$tools/venv"
  "$tools/venv/bin/python" -m pip install --disable-pip-version-check --quiet "uv==$uv_version"
  uv="$tools/venv/bin/uv"
fi

"$uv" pip compile requirements/requirements.in \
  --generate-hashes \
  --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 \
  --no-header \
  --annotation-style line \
  "${extra[@]}" \
  -o requirements/lock.txt
