#!/usr/bin/env bash
# What is run on a GPU machine to produce the records in docs/benchmarks/: the CUDA build with all
# tests, the benchmarks (JSON), and the PyTorch anchors. Usage: scripts/gpu-check.sh OUTPUT_DIR [BENCH_FILTER]
#
#   BENCH_FILTER        Google Benchmark regex (default "." = everything). The PyTorch anchors run
#                       with it: topk_anchor.py for "." and "topk", beam_step_anchor.py for "." and
#                       filters starting with "beam", attention_anchor.py for "." and filters
#                       starting with "attention"; the engine benchmark (scripts/engine_bench.sh,
#                       HF generate included) and the fp32 HF oracle for "." and "engine".
#   XGR_SKIP_TESTS=1    skip the `cuda` workflow and its tests (benchmark-only records, e.g. to fit
#                       a 10-minute command: scripts/gpu-check.sh OUT beam/ with it takes ~5 min).
#   XGR_BENCH_TIMEOUT   seconds for xgr_benchmarks (default 400).
#
# Writes to OUTPUT_DIR: device.txt, build.log (cuda workflow + bench build), cuda_tests.log
# (tests + examples), xgr_benchmarks.json, benchmarks.log, torch_topk.json, torch_beam.json,
# torch_attention.json, torch.log (the anchors' output), engine/ and engine.log (the engine benchmark),
# engine_oracle_fp32.log (the GPU engine against HF).
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

: > "$out/build.log"
: > "$out/torch.log"
if [ "${XGR_SKIP_TESTS:-0}" != "1" ]; then
  cmake --workflow --preset cuda >> "$out/build.log" 2>&1
  echo "cuda workflow exit $?"
  grep -E "tests passed|Passed|Failed|Skipped" "$out/build.log"
  build/cuda/tests/xgr_cuda_tests > "$out/cuda_tests.log" 2>&1
  echo "cuda tests exit $?"; tail -4 "$out/cuda_tests.log"
  { echo "== xgr_topk_example"; build/cuda/examples/xgr_topk_example; } >> "$out/cuda_tests.log" 2>&1; tail -1 "$out/cuda_tests.log"
else
  echo "cuda workflow and tests skipped (XGR_SKIP_TESTS=1)"
fi

{ echo "== bench build"; cmake --preset bench && cmake --build build/bench; } >> "$out/build.log" 2>&1
echo "bench build exit $?"
# Line-buffered (stdbuf), so that a run cut by the timeout still leaves every finished row in the log.
line_buffered=()
command -v stdbuf > /dev/null && line_buffered=(stdbuf -oL)
timeout "${XGR_BENCH_TIMEOUT:-400}" ${line_buffered[@]+"${line_buffered[@]}"} build/bench/benchmarks/xgr_benchmarks --benchmark_filter="$filter" \
  --benchmark_out="$out/xgr_benchmarks.json" > "$out/benchmarks.log" 2>&1
echo "benchmarks exit $?"
if [ "$filter" = "." ] || [ "$filter" = "topk" ]; then
  echo "== topk_anchor.py" >> "$out/torch.log"
  PYTHONUNBUFFERED=1 timeout 120 python3 benchmarks/torch/topk_anchor.py --json "$out/torch_topk.json" >> "$out/torch.log" 2>&1
  echo "torch topk anchor exit $?"
fi
if [ "$filter" = "." ] || [ "${filter#beam}" != "$filter" ]; then
  echo "== beam_step_anchor.py" >> "$out/torch.log"
  PYTHONUNBUFFERED=1 timeout 300 python3 benchmarks/torch/beam_step_anchor.py --json "$out/torch_beam.json" >> "$out/torch.log" 2>&1
  echo "torch beam anchor exit $?"
  # The beam table last (the JSON when xgr_benchmarks finished, else its console log).
  bench_results="$out/xgr_benchmarks.json"
  python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$bench_results" 2>/dev/null || bench_results="$out/benchmarks.log"
  torch_results=()
  [ -s "$out/torch_beam.json" ] && torch_results=("$out/torch_beam.json")
  python3 scripts/beam_table.py "$bench_results" ${torch_results[@]+"${torch_results[@]}"}
fi
if [ "$filter" = "." ] || [ "${filter#attention}" != "$filter" ]; then
  echo "== attention_anchor.py" >> "$out/torch.log"
  PYTHONUNBUFFERED=1 timeout 200 python3 benchmarks/torch/attention_anchor.py --json "$out/torch_attention.json" >> "$out/torch.log" 2>&1
  echo "torch attention anchor exit $?"
  torch_results=()
  [ -s "$out/torch_attention.json" ] && torch_results=("$out/torch_attention.json")
  python3 scripts/attention_table.py "$out/xgr_benchmarks.json" ${torch_results[@]+"${torch_results[@]}"}
fi
if [ "$filter" = "." ] || [ "${filter#engine}" != "$filter" ]; then
  # The engine benchmark needs the CUDA engine binary of the cuda workflow above.
  if [ -x build/cuda/examples/xgr_engine ]; then
    # The GPU path against HF float32 generate: --dtype fp32 must return HF's items in HF's order.
    timeout 300 python3 tests/oracle/hf_engine_oracle.py --engine build/cuda/examples/xgr_engine --engine-arg=--dtype \
      --engine-arg=fp32 > "$out/engine_oracle_fp32.log" 2>&1
    echo "engine HF oracle (fp32, GPU) exit $?"
    timeout 400 scripts/engine_bench.sh build/cuda/examples/xgr_engine "$out/engine" > "$out/engine.log" 2>&1
    echo "engine benchmark exit $?"
  else
    echo "engine benchmark skipped: build/cuda/examples/xgr_engine is missing (run without XGR_SKIP_TESTS)"
  fi
fi
