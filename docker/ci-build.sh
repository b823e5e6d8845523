#!/usr/bin/env bash
# Build the kit's image from the Dockerfile without a Docker engine, then test it as its non-root user.
#
#   docker/ci-build.sh [-t IMAGE]        # default localhost/gpt4allj-kit:ci
#
# What CI runs (.ci/run), and what a user without Docker runs: podman (rootful, `--isolation chroot`,
# `--format docker` so that the Dockerfile's SHELL is honoured) builds the Dockerfile unchanged. The CUDA
# base cannot be pulled where no registry is reachable, so a stand-in of the same distribution release
# (Ubuntu 24.04, "noble") is made with debootstrap and `podman import`ed, and passed through the
# Dockerfile's CUDA_IMAGE / CUDA_TAG / CUDA_DIGEST build args, digest included. The stand-in has no CUDA:
# what needs a GPU (CUDA, NCCL, DeepSpeed's FusedAdam JIT build) is not tested here.
#
# Then tests/container/test_image.py runs against the image (GPT4ALLJ_KIT_TEST_IMAGE): the smoke
# reproduction, file ownership, doctor, train --dry-run, labels, a run-time token absent from every output,
# cache, log and layer, and the compose doctor service. The image's size and its layers are printed.
#
# Cached between runs on one machine, and rebuilt when absent (a fresh machine passes the same way): the
# stand-in base (podman image localhost/gpt4allj-kit-base:ubuntu24.04) and podman's layer cache.
# Environment: UBUNTU_MIRROR (the archive debootstrap and the image's apt use), GPT4ALLJ_KIT_REBUILD_BASE=1.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

image=localhost/gpt4allj-kit:ci
while [ $# -gt 0 ]; do
  case "$1" in
    -t|--tag) image="$2"; shift 2 ;;
    *) echo "ci-build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

suite=noble                       # the release of nvidia/cuda:*-ubuntu24.04, the Dockerfile's base
base=localhost/gpt4allj-kit-base
base_tag=ubuntu24.04
mirror=${UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}
# Ubuntu's archive signing key (2018), the one noble's Release files are signed with, taken from the
# ubuntu-keyring package of noble itself: the .deb is pinned by sha256 and the key by its fingerprint.
keyring_deb=pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb
keyring_deb_sha256=36de43b15853ccae0028e9a767613770c704833f82586f28eb262f0311adb8a8
keyring_fpr=F6ECB3762474EDA9D21B7022871920D1991BC93C

say() { printf '[ci-build] %s\n' "$*" >&2; }
die() { printf 'ci-build.sh: %s\n' "$*" >&2; exit "${2:-3}"; }

[ "$(id -u)" -eq 0 ] || die "needs root: podman builds here with --isolation chroot as root"

install_tools() {
  local missing=()
  for tool in podman runc debootstrap curl gpg; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  # `--init` (the compose file's `init: true`) runs podman's catatonit.
  [ -x /usr/libexec/podman/catatonit ] || missing+=(catatonit)
  [ ${#missing[@]} -eq 0 ] && return
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]}; install them with this system's package manager"
  say "installing podman and its helpers (missing: ${missing[*]})"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    podman runc catatonit debootstrap curl gpg ca-certificates uidmap
}

ubuntu_keyring() {  # prints the path of a keyring holding exactly the pinned archive key
  local work=$1 deb="$1/ubuntu-keyring.deb"
  curl -fsSL --retry 3 -o "$deb" "$mirror/$keyring_deb" || die "cannot download $mirror/$keyring_deb"
  echo "$keyring_deb_sha256  $deb" | sha256sum --check --quiet - \
    || die "ubuntu-keyring .deb does not match its pinned sha256 $keyring_deb_sha256"
  dpkg-deb -x "$deb" "$work/keyring"
  local key="$work/keyring/etc/apt/trusted.gpg.d/ubuntu-keyring-2018-archive.gpg"
  local fprs
  fprs=$(gpg --batch --no-default-keyring --show-keys --with-colons "$key" 2>/dev/null | awk -F: '$1 == "fpr" {print $10}')
  [ "$fprs" = "$keyring_fpr" ] || die "Ubuntu archive key fingerprint is '$fprs', expected $keyring_fpr"
  echo "$key"
}

make_base() {
  local work rootfs key script
  work=$(mktemp -d)
  # shellcheck disable=SC2064  # expand now: $work is local
  trap "rm -rf '$work'" RETURN
  rootfs="$work/rootfs"
  key=$(ubuntu_keyring "$work")
  script=/usr/share/debootstrap/scripts/$suite
  [ -e "$script" ] || script=/usr/share/debootstrap/scripts/gutsy   # older debootstraps: same Ubuntu script
  say "debootstrap $suite from $mirror"
  debootstrap --variant=minbase --keyring="$key" --include=ca-certificates --components=main,universe \
    "$suite" "$rootfs" "$mirror" "$script" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap of $suite failed"; }

  # As in Ubuntu's own container images: the release, updates and security pockets, main and universe.
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/ubuntu.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates $suite-security
Components: main universe
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg
EOF
  install -m 0644 "$work/keyring/usr/share/keyrings/ubuntu-archive-keyring.gpg" \
    "$rootfs/usr/share/keyrings/ubuntu-archive-keyring.gpg"
  # Ubuntu's 24.04 images ship a user `ubuntu` with uid 1000; the stand-in does too, so that the
  # Dockerfile's handling of that uid is tested.
  chroot "$rootfs" useradd --create-home --uid 1000 --shell /bin/bash ubuntu
  # This machine's TLS trust (a proxy may re-sign registry traffic): its CA certificates and a pip setting
  # that points pip at the system bundle. They stay in the stand-in base, never in the kit's layers.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null
  fi
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\ntimeout = 180\n' >"$rootfs/etc/pip.conf"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

  say "importing the stand-in base as $base:$base_tag"
  tar -C "$rootfs" --numeric-owner -c . | podman import --change 'CMD ["/bin/bash"]' - "$base:$base_tag" >/dev/null
}

install_tools
if [ "${GPT4ALLJ_KIT_REBUILD_BASE:-0}" = 1 ] || ! podman image exists "$base:$base_tag"; then
  make_base
else
  say "reusing the stand-in base $base:$base_tag"
fi
digest=$(podman image inspect --format '{{.Digest}}' "$base:$base_tag")

say "building $image from the Dockerfile on $base:$base_tag@$digest"
start=$(date +%s)
DOCKER=podman bash docker/build.sh -t "$image" --format docker --isolation chroot \
  --build-arg "CUDA_IMAGE=$base" --build-arg "CUDA_TAG=$base_tag" --build-arg "CUDA_DIGEST=$digest"
say "built $image in $(( $(date +%s) - start )) s, $(podman image inspect --format '{{.Size}}' "$image") bytes; its layers:"
podman history --format '{{.Size}}\t{{.CreatedBy}}' "$image" | awk -F'\t' '$1 !~ /^0 ?B$/' | cut -c1-100 >&2

[ -x .venv/bin/python ] || bash scripts/install.sh --dev --venv .venv
GPT4ALLJ_KIT_TEST_IMAGE="$image" .venv/bin/python -m pytest tests/container/test_image.py -v
