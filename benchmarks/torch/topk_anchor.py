#!/usr/bin/env python3
"""External anchor for MaskedTopK: torch.topk(k = beams) over each request's beams x vocab logits.

Same shapes as benchmarks/bench_topk.cu (fp32, unmasked), timed with CUDA events (median of 30
after warm-up), rotating over several input copies so that no iteration reads from L2. Prints a
markdown table and writes JSON:  python3 benchmarks/torch/topk_anchor.py --json out.json
"""
import argparse
import json
import statistics

import torch


def time_topk(requests: int, beams: int, vocab: int, repeats: int = 30) -> float:
    elements = requests * beams * vocab
    copies = max(1, min(8, (256 << 20) // (elements * 4)))
    inputs = [torch.randn(requests, beams * vocab, device="cuda") * 2.0 for _ in range(copies)]
    for x in inputs:
        torch.topk(x, k=beams, dim=1)
    torch.cuda.synchronize()
    times = []
    for i in range(repeats):
        x = inputs[i % copies]
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.topk(x, k=beams, dim=1)
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) * 1e3)
    del inputs
    torch.cuda.empty_cache()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", default="torch_topk.json")
    args = parser.parse_args()
    rows = []
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| requests | beams | vocab | torch.topk µs |")
    print("| ---: | ---: | ---: | ---: |")
    for vocab in (8192, 32768):
        for requests in (1, 8, 32):
            for beams in (128, 256, 512):
                us = time_topk(requests, beams, vocab)
                rows.append({"requests": requests, "beams": beams, "vocab": vocab, "torch_topk_us": us})
                print(f"| {requests} | {beams} | {vocab} | {us:.1f} |", flush=True)
    with open(args.json, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
