#!/usr/bin/env python3
"""Turns the console output of `xgr_benchmarks --benchmark_filter=topk` plus the JSON of
benchmarks/torch/topk_anchor.py into the markdown table of docs/benchmarks/topk.md.

    python3 scripts/topk_table.py benchmarks.log torch_topk.json > table.md
"""
import json
import re
import sys

MASKS = {0: "none", 1: "bitset 1%", 2: "bitset 10%", 3: "bitset 100%", 4: "sparse 1%"}
ROW = re.compile(r"^topk/(\w+)/req:(\d+)/beams:(\d+)/vocab:(\d+)/mask:(\d)/\S+\s+(.*)$")


def main() -> None:
    log_path, torch_path = sys.argv[1], sys.argv[2]
    torch = {(r["requests"], r["beams"], r["vocab"]): r["torch_topk_us"] for r in json.load(open(torch_path))["rows"]}
    print("| dtype | req | beams | vocab | mask | xgr µs | floor µs | × floor | host-paced µs | full sort µs | × vs sort | torch.topk µs | × vs torch |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for line in open(log_path):
        match = ROW.match(line.strip())
        if not match:
            continue
        dtype, req, beams, vocab, mask, rest = match.groups()
        req, beams, vocab, mask = int(req), int(beams), int(vocab), int(mask)
        if "ERROR" in rest:
            print(f"| {dtype} | {req} | {beams} | {vocab} | {MASKS[mask]} | error: {rest} | | | | | | | |")
            continue
        # Time unit CPU unit Iterations GB/s floor_us full_sort_us host_paced_us median_us x_floor x_vs_sort
        # (counters print in name order)
        fields = rest.split()
        numbers = [f for f in fields[5:]]

        def value(text: str) -> float:
            scale = {"k": 1e3, "M": 1e6}.get(text[-1], 1.0)
            return float(text[:-1] if text[-1] in "kM" else text) * scale

        _, floor_us, sort_us, host_us, median_us, x_floor, x_sort = (value(n) for n in numbers[:7])
        anchor = torch.get((req, beams, vocab)) if dtype == "f32" and mask == 0 else None
        torch_cells = f"{anchor:.0f} | {anchor / median_us:.1f}" if anchor else "– | –"
        print(f"| {dtype} | {req} | {beams} | {vocab} | {MASKS[mask]} | {median_us:.1f} | {floor_us:.1f} | {x_floor:.1f} | "
              f"{host_us:.1f} | {sort_us:.0f} | {x_sort:.0f} | {torch_cells} |")


if __name__ == "__main__":
    main()
