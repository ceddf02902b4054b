#!/usr/bin/env python3
"""Markdown tables from the pipeline/ rows of xgr_benchmarks' JSON (docs/benchmarks/pipeline.md).

Usage: scripts/pipeline_table.py xgr_benchmarks.json
"""
import json
import sys


def fields(name):
    """The key:value parts of a row name, e.g. {'prep_us': '50', 'kernels': '3', 'mode': 'overlap'}."""
    return dict(p.split(":", 1) for p in name.removesuffix("_median").split("/") if ":" in p)


def main(path):
    rows = [b for b in json.load(open(path))["benchmarks"] if b["name"].startswith("pipeline/")]
    # Rows run with repetitions report aggregates: keep the median of each counter.
    if any(b.get("run_type") == "aggregate" for b in rows):
        rows = [b for b in rows if b.get("aggregate_name") == "median"]
    chain = [b for b in rows if b["name"].startswith("pipeline/chain/")]
    print("| prep µs | kernels | mode | batches/s | µs/batch | ideal µs | x ideal | serial sum µs | p50 µs | p99 µs |")
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for b in chain:
        parts = fields(b["name"])
        print(f"| {parts['prep_us']} | {parts['kernels']} | {parts['mode']} | {b['batches_per_s']:.0f} | {b['us_per_batch']:.1f} | "
              f"{b['ideal_us']:.1f} | {b['x_ideal']:.2f} | {b['serial_sum_us']:.1f} | {b['p50_latency_us']:.0f} | {b['p99_latency_us']:.0f} |")
    print()
    print("| stage times (alone) | prep µs | h2d µs | kernels µs | d2h µs | post µs |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for b in chain:
        parts = fields(b["name"])
        if parts["mode"] == "serial":
            print(f"| prep {parts['prep_us']}, kernels {parts['kernels']} | {b['prep_us']:.1f} | {b['h2d_us']:.1f} | "
                  f"{b['kernels_us']:.1f} | {b['d2h_us']:.1f} | {b['post_us']:.1f} |")
    launch = [b for b in rows if b["name"].startswith("pipeline/launch/")]
    if launch:
        print()
        print("| decode step (3 rounds x 8 tiny kernels) | launches per step | host enqueue µs per step | wall µs per step |")
        print("| --- | ---: | ---: | ---: |")
        for b in launch:
            print(f"| {fields(b['name'])['mode']} | {b['launches_per_step']:.0f} | {b['enqueue_us']:.2f} | {b['step_us']:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1])
