#!/usr/bin/env bash
# The test command of README.md (and of .ci/run): installs what is missing, then builds and tests the
# host-only variant and the CUDA variant. Without nvcc the CUDA variant is skipped with a message;
# without a GPU its device tests build and report "Skipped" (never a pass).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "== host variant (no CUDA) =="
cmake --workflow --preset host

if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "== CUDA variant =="
  cmake --workflow --preset cuda
else
  echo "== CUDA variant: SKIPPED (nvcc not found; install the CUDA Toolkit to build it) =="
fi
