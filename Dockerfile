# syntax=docker/dockerfile:1
# gpt4allj-kit: the pinned GPT4All-J reproduction as one image.
#
# Build it with docker/build.sh (it fills the label build args below from the checkout and checks them):
#   docker/build.sh                                  # -> gpt4allj-kit:<kit version>
#   docker/build.sh --build-arg DS_BUILD_OPS=1 --build-arg TORCH_CUDA_ARCH_LIST="8.0;9.0"
# Run it:
#   docker run --rm --gpus all --ipc=host gpt4allj-kit:0.1.0 reproduce --revision v1.2-jazzy
#   docker run --rm gpt4allj-kit:0.1.0 reproduce --profile smoke      # CPU smoke check of the image
#
# The base is NVIDIA's CUDA devel image for the CUDA that torch 2.14.1 (+cu130) was built with: the
# devel flavour carries nvcc and the headers DeepSpeed needs to compile its ops. It is referenced by tag
# AND digest; override all three args together to use another base (a mirror, a local import). There is
# no tag-only fallback: an empty CUDA_DIGEST leaves an invalid FROM reference and the build stops there
# (docker/build.sh refuses earlier, with a clear message).
#
# Why Ubuntu 24.04: the image's Python must be a released CPython of the minor the lock is resolved for
# (.python-version, the same for CI). Ubuntu 22.04's python3.11 is 3.11.0~rc1, a release candidate that
# torch 2.14.1 cannot import under (sys.get_int_max_str_digits is missing), and no signed archive that a
# build reaches offers a released 3.11 for 22.04. Ubuntu 24.04's own python3 is 3.12.3, a release, from
# the distribution's signed archive: no third-party PPA, no interpreter built from source.
#
# UNCHECKED DIGEST: no registry is reachable where this kit is developed, so CUDA_DIGEST below was not
# checked against Docker Hub. It is the digest that public build scripts pin for this tag (found by a code
# search, 2026-06 and 2026-09; another script pins sha256:ae7f6504... for the same tag, an older push).
# Check it before relying on it: `docker buildx imagetools inspect nvidia/cuda:13.0.2-cudnn-devel-ubuntu24.04`.
# CI builds this Dockerfile unchanged on a local Ubuntu 24.04 rootfs passed through these three args
# (docker/ci-build.sh).
ARG CUDA_IMAGE=nvidia/cuda
ARG CUDA_TAG=13.0.2-cudnn-devel-ubuntu24.04
ARG CUDA_DIGEST=sha256:e071e85c52ad91fc9ea24158ff5330876b2d1a5c4ac83ccc6066976835873c01

FROM ${CUDA_IMAGE}:${CUDA_TAG}@${CUDA_DIGEST}

ARG CUDA_IMAGE
ARG CUDA_TAG
ARG CUDA_DIGEST
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_INPUT=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Python comes from Ubuntu's own archive (python3 = 3.12 on 24.04), reached through the same mirror as
# the base and signed by Ubuntu. apt versions are not pinned (the archive drops superseded versions, which
# would break every rebuild); the digest-pinned base fixes the OS, and the exact package versions installed
# are recorded in /etc/gpt4allj-kit/dpkg.txt. scripts/install.sh refuses an interpreter that is not a final
# release of the minor in .python-version, so a base with the wrong or a pre-release Python fails the build.
# python3-dev: headers for DeepSpeed's JIT-built ops; g++/ninja-build: their compiler and build tool.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates g++ ninja-build python3 python3-dev python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /etc/gpt4allj-kit \
 && dpkg-query -W -f '${Package}=${Version}\n' > /etc/gpt4allj-kit/dpkg.txt

# A non-root user owns only what the kit writes: its outputs and the caches. Ubuntu's 24.04 images ship a
# user `ubuntu` with uid 1000; the kit's user takes that uid over so that `KIT_UID=1000` means `kit`.
ARG KIT_UID=1000
RUN existing=$(getent passwd "${KIT_UID}" | cut -d: -f1) \
 && if [ -n "${existing}" ]; then userdel --remove "${existing}"; fi \
 && useradd --create-home --uid "${KIT_UID}" --shell /bin/bash kit \
 && mkdir -p /cache/huggingface /cache/gpt4allj-kit /cache/torch_extensions /cache/triton /cache/inductor \
      /opt/gpt4allj-kit/outputs \
 && chown -R kit:kit /cache /opt/gpt4allj-kit/outputs

WORKDIR /opt/gpt4allj-kit

# Dependencies: the SAME lock and the SAME install script that the README and CI use
# (scripts/install.sh: --require-hashes, DeepSpeed with --no-build-isolation, the kit editable with
# --no-deps). DeepSpeed's GPU ops are JIT-compiled on first use for the GPUs at hand (DS_BUILD_OPS=0);
# to prebuild them instead pass --build-arg DS_BUILD_OPS=1 and --build-arg TORCH_CUDA_ARCH_LIST="8.0;9.0"
# (no GPU is visible during a build, so the target architectures must be named).
ARG DS_BUILD_OPS=0
ARG TORCH_CUDA_ARCH_LIST=""
COPY requirements/lock.txt requirements/lock.txt
COPY scripts/install.sh scripts/install.sh
COPY pyproject.toml README.md .python-version ./
COPY cli/ cli/
RUN --mount=type=cache,target=/root/.cache/pip \
    if [ "${DS_BUILD_OPS}" != "0" ] && [ -z "${TORCH_CUDA_ARCH_LIST}" ]; then \
      echo "DS_BUILD_OPS=${DS_BUILD_OPS} needs --build-arg TORCH_CUDA_ARCH_LIST (e.g. \"8.0;9.0\")" >&2; exit 1; \
    fi \
 && PYTHON=python3 bash scripts/install.sh --venv /opt/venv

# The rest of the checkout (configs/, train.py, reports/ ...): the documented accelerate command runs
# verbatim from this directory. .dockerignore keeps outputs, caches, venvs and .git out.
COPY . .

# The labels tell what is inside; build.sh fills them and these checks keep them honest.
ARG KIT_VERSION=""
ARG KIT_LOCK_SHA256=""
ARG GIT_COMMIT=unknown
RUN lock_sha=$(sha256sum requirements/lock.txt | cut -d' ' -f1) \
 && version=$(/opt/venv/bin/python -c 'import gpt4allj_kit; print(gpt4allj_kit.__version__)') \
 && if [ "${KIT_LOCK_SHA256}" != "${lock_sha}" ] || [ "${KIT_VERSION}" != "${version}" ]; then \
      echo "build args KIT_VERSION='${KIT_VERSION}' KIT_LOCK_SHA256='${KIT_LOCK_SHA256}' do not match" \
           "the checkout (${version}, ${lock_sha}): build with docker/build.sh" >&2; exit 1; \
    fi
LABEL org.opencontainers.image.title="gpt4allj-kit" \
      org.opencontainers.image.description="Pinned reproduction of GPT4All-J training and evaluation" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${KIT_VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.base.name="${CUDA_IMAGE}:${CUDA_TAG}" \
      org.opencontainers.image.base.digest="${CUDA_DIGEST}" \
      gpt4allj-kit.lock.sha256="${KIT_LOCK_SHA256}" \
      gpt4allj-kit.deepspeed.build-ops="${DS_BUILD_OPS}" \
      gpt4allj-kit.deepspeed.cuda-arch-list="${TORCH_CUDA_ARCH_LIST}"

# Caches live on the /cache volume (models and data by revision, DeepSpeed's compiled ops, compiler
# caches) so that they outlive containers; tokens are never set here: pass HF_TOKEN / WANDB_API_KEY at
# run time (docker run -e HF_TOKEN, compose passes them through; a build needing one would use --secret).
ENV PATH=/opt/venv/bin:${PATH} \
    GPT4ALLJ_KIT_ROOT=/opt/gpt4allj-kit \
    GPT4ALLJ_KIT_GIT_COMMIT=${GIT_COMMIT} \
    HF_HOME=/cache/huggingface \
    GPT4ALLJ_KIT_CACHE=/cache/gpt4allj-kit \
    TORCH_EXTENSIONS_DIR=/cache/torch_extensions \
    TRITON_CACHE_DIR=/cache/triton \
    TORCHINDUCTOR_CACHE_DIR=/cache/inductor
VOLUME ["/cache", "/opt/gpt4allj-kit/outputs"]

USER ${KIT_UID}
# No HEALTHCHECK: this is a batch tool, not a service. The image's smoke check is
#   docker run --rm IMAGE reproduce --profile smoke
ENTRYPOINT ["gpt4allj-kit"]
CMD ["reproduce", "--revision", "v1.2-jazzy"]
