#!/usr/bin/env python3
"""Throughput against P99 latency for the engine's load reports (xgr_engine --load ... --json FILE).

    python3 scripts/engine_plot.py --report xgr=xgr.json --report baseline=baseline.json \
        [--hf hf.json] [--slo-ms 50] --out engine.png

One line per report (a point per offered rate), the SLO as a horizontal line, and HF generate's
one-request-at-a-time throughput (benchmarks/torch/engine_hf_anchor.py --json) as points at their
latency. Needs matplotlib.
"""

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", action="append", required=True, help="LABEL=FILE, a JSON list of load reports")
    parser.add_argument("--hf", help="the HF anchor's JSON rows")
    parser.add_argument("--slo-ms", type=float, default=50.0)
    parser.add_argument("--title", default="GR-small on one H100: throughput vs P99 latency")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    for spec in args.report:
        label, path = spec.split("=", 1)
        with open(path, encoding="ascii") as f:
            rows = sorted(json.load(f), key=lambda r: r["rate_per_s"])
        axes.plot([r["throughput_per_s"] for r in rows], [r["p99_ms"] for r in rows], marker="o", label=label)
        for r in rows:
            axes.annotate(f"{r['rate_per_s']:g}/s", (r["throughput_per_s"], r["p99_ms"]), fontsize=7, xytext=(3, 3),
                          textcoords="offset points")
    if args.hf:
        with open(args.hf, encoding="ascii") as f:
            rows = [r for r in json.load(f) if "mean_ms" in r]
        axes.scatter([r["throughput_per_s"] for r in rows], [r["max_ms"] for r in rows], marker="x", color="black",
                     label="HF generate, one request at a time")
        for r in rows:
            axes.annotate(f"B={r['beams']}", (r["throughput_per_s"], r["max_ms"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes.axhline(args.slo_ms, color="grey", linestyle="--", linewidth=1, label=f"P99 SLO {args.slo_ms:g} ms")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("throughput (requests/s)")
    axes.set_ylabel("P99 latency (ms)")
    axes.set_title(args.title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
