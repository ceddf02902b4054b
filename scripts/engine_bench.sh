#!/usr/bin/env bash
# The engine benchmark of docs/benchmarks/engine.md, on a machine with a GPU, torch and transformers:
# GR-small under open-loop load in xgr and baseline modes, HF generate on the same model and
# catalogue, and the throughput-vs-P99 plot.
#
#   scripts/engine_bench.sh build/cuda/examples/xgr_engine OUT_DIR
#
# XGR_RATES / XGR_BASELINE_RATES override the offered rates (requests/s), XGR_DURATION the seconds
# of arrivals per rate, XGR_MODEL_DIR where the saved model goes (about 0.6 GB).
set -u
engine=$1
out=$2
mkdir -p "$out"
rates=${XGR_RATES:-100,200,300,400,450,500,600}
baseline_rates=${XGR_BASELINE_RATES:-2,5,10,20}
duration=${XGR_DURATION:-3}
model_dir=${XGR_MODEL_DIR:-/tmp/xgr_gr_small}

"$engine" --preset gr-small --load "$rates" --duration "$duration" --json "$out/xgr.json" | tee "$out/xgr.md"
# Copy-on-fork KV of 4 requests of 2049 tokens x 256 beams is 35 GB: the baseline runs groups of 4.
"$engine" --preset gr-small --mode baseline --group 4 --load "$baseline_rates" --duration "$duration" --json "$out/baseline.json" |
  tee "$out/baseline.md"
"$engine" --preset gr-small --users 8 --save-default "$model_dir" > /dev/null
python3 benchmarks/torch/engine_hf_anchor.py --folder "$model_dir" --beams 128 256 --requests 4 --json "$out/hf.json" | tee "$out/hf.md"
python3 scripts/engine_plot.py --report "xgr mode=$out/xgr.json" --report "baseline mode=$out/baseline.json" --hf "$out/hf.json" \
  --out "$out/engine_gr_small.png"
