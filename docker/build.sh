#!/usr/bin/env bash
# Build the gpt4allj-kit image with its labels filled from this checkout.
#
#   docker/build.sh [-t IMAGE[:TAG]] [any other `docker build` options, e.g. --build-arg ...]
#
# Computes KIT_VERSION (the package's __version__), KIT_LOCK_SHA256 (sha256 of requirements/lock.txt,
# the very file the image installs) and GIT_COMMIT (HEAD, "-dirty" when tracked files changed) and
# passes them as build args; the Dockerfile re-checks the first two against what it copied. The default
# tag is gpt4allj-kit:<version>, the name docker-compose.yml runs.
# Useful build args: DS_BUILD_OPS=1 with TORCH_CUDA_ARCH_LIST="8.0;9.0" to prebuild DeepSpeed's ops;
# CUDA_IMAGE / CUDA_TAG / CUDA_DIGEST to use another base (all three, the digest is required).
# DOCKER=podman (or buildah's `buildah bud`) selects another builder.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' cli/gpt4allj_kit/__init__.py)
[ -n "$version" ] || { echo "build.sh: cannot read __version__ from cli/gpt4allj_kit/__init__.py" >&2; exit 2; }
lock_sha=$(sha256sum requirements/lock.txt | cut -d' ' -f1)
commit=unknown
if git -C "$root" rev-parse --verify -q HEAD >/dev/null 2>&1; then
  commit=$(git -C "$root" rev-parse HEAD)
  git -C "$root" diff --quiet HEAD -- 2>/dev/null || commit="${commit}-dirty"
fi

# A base override must carry its digest: refuse here rather than let the FROM line fail obscurely.
for arg in "$@"; do
  case "${arg#--build-arg=}" in
    CUDA_DIGEST=*)
      digest=${arg#*CUDA_DIGEST=}
      [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || {
        echo "build.sh: CUDA_DIGEST must be sha256:<64 hex digits>, got '${digest}'" >&2; exit 2; }
      ;;
  esac
done

tag=()
case " $* " in
  *" -t "* | *" --tag "* | *" --tag="*) ;;
  *) tag=(-t "gpt4allj-kit:${version}") ;;
esac

set -x
exec "${DOCKER:-docker}" build "${tag[@]}" \
  --build-arg "KIT_VERSION=${version}" \
  --build-arg "KIT_LOCK_SHA256=${lock_sha}" \
  --build-arg "GIT_COMMIT=${commit}" \
  "$@" "$root"
