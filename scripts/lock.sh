#!/usr/bin/env bash
# Regenerates the two locks, every transitive dependency pinned to an exact version with its sha256 hashes,
# resolved for the platform the image and CI run on (Linux x86_64, glibc 2.28+, the Python minor in
# .python-version), whatever machine runs this script:
#   requirements/requirements.in -> requirements/lock.txt      the runtime set, what the image installs
#   requirements/dev.in          -> requirements/dev-lock.txt  the same runtime pins plus the dev tools
#
#   scripts/lock.sh [--upgrade]     # --upgrade: newest compatible versions instead of keeping the pins
#
# The dev lock is resolved under the runtime lock as a constraint, so a package in both has one version and
# one set of hashes (tests/test_lock.py checks it). Uses the uv of the kit's venv (.venv); without one,
# installs uv's version from the dev lock into a throwaway venv first. Review `git diff requirements/`, then
# rebuild the environment with scripts/install.sh.
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
  uv_version=$(sed -n 's/^uv==\([^ ]*\).*/\1/p' requirements/dev-lock.txt)
  if [ -z "$uv_version" ]; then
    echo "lock.sh: no uv pin in requirements/dev-lock.txt and no .venv/bin/uv" >&2
    exit 3
  fi
  tools=$(mktemp -d)
  trap 'rm -rf "$tools"' EXIT
  "${PYTHON:-python3}" -m venv "$tools/venv"
  "$tools/venv/bin/python" -m pip install --disable-pip-version-check --quiet "uv==$uv_version"
  uv="$tools/venv/bin/uv"
fi

python_version=$(tr -d '[:space:]' < .python-version)
compile=(pip compile --generate-hashes --python-version "$python_version"
  --python-platform x86_64-manylinux_2_28 --no-header --annotation-style line)
"$uv" "${compile[@]}" "${extra[@]}" requirements/requirements.in -o requirements/lock.txt
"$uv" "${compile[@]}" "${extra[@]}" requirements/dev.in -c requirements/lock.txt -o requirements/dev-lock.txt
