#!/usr/bin/env bash
# What is run on a GPU machine to produce the records in docs/benchmarks/: the CUDA build with all
# tests, the benchmarks (JSON), and the PyTorch anchors. Usage: scripts/gpu-check.sh OUTPUT_DIR [BENCH_FILTER]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/gpu-check}
filter=${2:-.}
mkdir -p "$out"
{
  date -u +%Y-%m-%dT%H:%MZ
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  nvcc --version | tail -1
  cmake --version | head -1
  git rev-parse --short HEAD 2>/dev/null || true
} > "$out/device.txt"
cat "$out/device.txt"

cmake --workflow --preset cuda > "$out/cuda_workflow.log" 2>&1
echo "cuda workflow exit $?"
grep -E "tests passed|Passed|Failed|Skipped" "$out/cuda_workflow.log"
build/cuda/tests/xgr_cuda_tests > "$out/cuda_tests.log" 2>&1
echo "cuda tests exit $?"; tail -4 "$out/cuda_tests.log"
build/cuda/examples/xgr_topk_example > "$out/topk_example.log" 2>&1; tail -1 "$out/topk_example.log"

cmake --preset bench > /dev/null && cmake --build build/bench > "$out/bench_build.log" 2>&1
timeout 400 build/bench/benchmarks/xgr_benchmarks --benchmark_filter="$filter" --benchmark_out="$out/xgr_benchmarks.json" \
  > "$out/benchmarks.log" 2>&1
echo "benchmarks exit $?"
if [ "$filter" = "." ] || [ "$filter" = "topk" ]; then
  PYTHONUNBUFFERED=1 timeout 120 python3 benchmarks/torch/topk_anchor.py --json "$out/torch_topk.json" > "$out/torch_topk.log" 2>&1
  echo "torch anchor exit $?"
fi
