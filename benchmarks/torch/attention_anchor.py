#!/usr/bin/env python3
"""External anchors for staged decode attention: PyTorch SDPA on the shapes of bench_attention.cu.

One decode step of one layer, bf16, 16 query / 4 kv heads of 128 dims, for requests x beams x prompt:
  expanded   every beam attends to its own copy of the prompt KV (what a per-beam cache reads):
             q [R*B, 16, 1, 128] over k, v [R*B, 4, P, 128] (GQA via enable_gqa)
  shared     the beams of a request as queries over one shared KV:
             q [R, 16, B, 128] over k, v [R, 4, P, 128]
Timed with CUDA events, median of 20 after warm-up. Rows whose expanded KV exceeds 40 GiB are
skipped (0). Prints a markdown table and writes JSON:
  python3 benchmarks/torch/attention_anchor.py --json out.json
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F

Q_HEADS, KV_HEADS, HEAD_DIM = 16, 4, 128


def time_us(fn, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) * 1e3)
    return statistics.median(times)


def expanded(requests: int, beams: int, prompt: int) -> float:
    rows = requests * beams
    if rows * KV_HEADS * prompt * HEAD_DIM * 2 * 2 > (40 << 30):
        return 0.0
    q = torch.randn(rows, Q_HEADS, 1, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(rows, KV_HEADS, prompt, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    us = time_us(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
    del q, k, v
    torch.cuda.empty_cache()
    return us


def shared(requests: int, beams: int, prompt: int) -> float:
    q = torch.randn(requests, Q_HEADS, beams, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(requests, KV_HEADS, prompt, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    us = time_us(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
    del q, k, v
    torch.cuda.empty_cache()
    return us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", default="torch_attention.json")
    args = parser.parse_args()
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| requests | beams | prompt | SDPA expanded µs | SDPA shared µs |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for requests in (1, 8, 32):
        for beams in (128, 256, 512):
            for prompt in (1024, 2048, 4096):
                e = expanded(requests, beams, prompt)
                s = shared(requests, beams, prompt)
                rows.append({"requests": requests, "beams": beams, "prompt": prompt, "sdpa_expanded_us": e, "sdpa_shared_us": s})
                print(f"| {requests} | {beams} | {prompt} | {e:.1f} | {s:.1f} |", flush=True)
    with open(args.json, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
