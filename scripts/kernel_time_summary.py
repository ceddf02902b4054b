#!/usr/bin/env python3
"""Share of GPU time per kernel from Nsight Compute's per-kernel summary.

    ncu --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel --csv \
        PROGRAM ARGS > kernels.csv
    python3 scripts/kernel_time_summary.py kernels.csv [--top 25]

Sums invocations x average duration per kernel name (templates folded by their first 90
characters) and prints each kernel's share of the total, largest first.
"""

import argparse
import collections
import csv


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    header = None
    totals = collections.defaultdict(lambda: [0, 0.0])
    with open(args.csv, encoding="utf-8", errors="replace") as f:
        for row in csv.reader(f):
            if "Kernel Name" in row:
                header = row
                continue
            if header is None or len(row) != len(header):
                continue
            fields = dict(zip(header, row))
            try:
                calls = int(fields["Invocations"])
                average_ns = float(fields["Average"].replace(",", ""))
            except (KeyError, ValueError):
                continue
            entry = totals[fields["Kernel Name"][:90]]
            entry[0] += calls
            entry[1] += calls * average_ns
    total_ns = sum(ns for _, ns in totals.values())
    print(f"total GPU time {total_ns / 1e6:.2f} ms")
    print("| share | ms | calls | kernel |")
    print("| ---: | ---: | ---: | --- |")
    for name, (calls, ns) in sorted(totals.items(), key=lambda item: -item[1][1])[: args.top]:
        print(f"| {ns / total_ns * 100:.1f} % | {ns / 1e6:.2f} | {calls} | `{name}` |")


if __name__ == "__main__":
    main()
