#!/usr/bin/env bash
# Installs what xgr's build, tests, examples and benchmarks need, from Debian/Ubuntu packages, and
# only what is missing: a machine that already has everything (or has no package registry, like a
# GPU box with the tools preinstalled) is left untouched.
#
# The CUDA Toolkit is not installed here: CUDA parts are built where nvcc exists (PATH or
# /usr/local/cuda/bin) and skipped elsewhere.
set -euo pipefail

missing=()
have_command() { command -v "$1" >/dev/null 2>&1; }
have_header() {
  local header
  for header in "$@"; do
    [ -e "/usr/include/$header" ] || [ -e "/usr/local/include/$header" ] || return 1
  done
}

have_command cmake || missing+=(cmake)
have_command g++ || missing+=(g++)
have_command ninja || missing+=(ninja-build)
have_command git || missing+=(git)
have_header doctest/doctest.h || missing+=(doctest-dev)
have_header fmt/core.h || missing+=(libfmt-dev)
have_header benchmark/benchmark.h || missing+=(libbenchmark-dev)

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: everything is already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
