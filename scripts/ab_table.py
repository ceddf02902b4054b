#!/usr/bin/env python3
"""A/B table of builds' benchmark runs (Google Benchmark console output of xgr_benchmarks).

Usage: scripts/ab_table.py BASE.log NEW.log [MORE.log ...] [--names base,new,...]
       (two logs also take --base-name NAME --new-name NAME)

Each log may hold several runs of the same filter appended one after another (interleave the
builds' runs, base then new, on one machine). The table takes each benchmark's best time over the
runs of its log: the least disturbed measurement of the same work. Rows are in the order of BASE;
each further build gets a ratio column (its time / base), and the last lines give the median and
the range of each build's ratios.
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
    parser.add_argument("logs", nargs="+", metavar="LOG", help="the base build's log, then each other build's")
    parser.add_argument("--names", help="comma-separated build names, one per log")
    parser.add_argument("--base-name", default="base")
    parser.add_argument("--new-name", default="new")
    args = parser.parse_args()
    if len(args.logs) < 2:
        parser.error("give the base build's log and at least one more")
    names = args.names.split(",") if args.names else [args.base_name, args.new_name] + [f"new{i}" for i in range(2, len(args.logs))]
    if len(names) != len(args.logs):
        parser.error(f"--names gives {len(names)} names for {len(args.logs)} logs")
    order, base = best_times(args.logs[0])
    builds = [best_times(path)[1] for path in args.logs[1:]]
    rows = [name for name in order if all(name in build for build in builds)]
    if not rows:
        sys.exit("no benchmark appears in every log")
    others = names[1:]
    if len(builds) == 1:
        header = f"| benchmark | {names[0]} µs | {others[0]} µs | ratio |"
    else:
        header = "| benchmark | " + " | ".join(f"{name} µs" for name in names) + " | " + " | ".join(f"{name} / {names[0]}" for name in others) + " |"
    print(header)
    print("| --- |" + " ---: |" * (len(names) + len(others)))
    ratios = [[] for _ in builds]
    for name in rows:
        row = [build[name] / base[name] for build in builds]
        for column, ratio in zip(ratios, row):
            column.append(ratio)
        cells = " | ".join(f"{build[name]:.1f}" for build in [base] + builds)
        print(f"| {name} | {cells} | " + " | ".join(f"{ratio:.2f}" for ratio in row) + " |")
    every = set(order).union(*builds)
    missing = len(every) - len(rows)
    print()
    for name, column in zip(others, ratios):
        label = f"{len(rows)} rows" if len(builds) == 1 else f"{name}: {len(rows)} rows"
        print(f"{label}: median {statistics.median(column):.2f}, range {min(column):.2f}-{max(column):.2f}"
              + (f"; {missing} rows not in every log" if missing else ""))


if __name__ == "__main__":
    main()
