#!/usr/bin/env python3
"""A/B table of two builds' benchmark runs (Google Benchmark console output of xgr_benchmarks).

Usage: scripts/ab_table.py BASE.log NEW.log [--base-name NAME] [--new-name NAME]

Each log may hold several runs of the same filter appended one after another (interleave the two
builds' runs, base then new, on one machine). The table takes each benchmark's best time over the
runs of its log: the least disturbed measurement of the same work. Rows are in the order of BASE;
the last line gives the median and the range of the ratios (new / base).
"""
import argparse
import re
import statistics
import sys

UNITS = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
ROW = re.compile(r"^(\S+/manual_time)\s+([0-9.]+) (ns|us|ms|s)\b")


def best_times(path):
    best = {}
    order = []
    with open(path, encoding="utf-8", errors="replace") as log:
        for line in log:
            match = ROW.match(line)
            if not match:
                continue
            name = re.sub(r"/iterations:\d+/manual_time$", "", match.group(1))
            micros = float(match.group(2)) * UNITS[match.group(3)]
            if name not in best:
                order.append(name)
                best[name] = micros
            else:
                best[name] = min(best[name], micros)
    return order, best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base")
    parser.add_argument("new")
    parser.add_argument("--base-name", default="base")
    parser.add_argument("--new-name", default="new")
    args = parser.parse_args()
    order, base = best_times(args.base)
    _, new = best_times(args.new)
    rows = [name for name in order if name in new]
    if not rows:
        sys.exit("no benchmark appears in both logs")
    print(f"| benchmark | {args.base_name} µs | {args.new_name} µs | ratio |")
    print("| --- | ---: | ---: | ---: |")
    ratios = []
    for name in rows:
        ratio = new[name] / base[name]
        ratios.append(ratio)
        print(f"| {name} | {base[name]:.1f} | {new[name]:.1f} | {ratio:.2f} |")
    missing = [name for name in order if name not in new] + [name for name in new if name not in base]
    print(f"\n{len(rows)} rows: median {statistics.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f}"
          + (f"; {len(missing)} rows in only one log" if missing else ""))


if __name__ == "__main__":
    main()
