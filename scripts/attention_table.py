#!/usr/bin/env python3
"""Markdown tables from the attention/ rows of xgr_benchmarks' JSON (docs/benchmarks/attention.md),
optionally joined with benchmarks/torch/attention_anchor.py's JSON.

Usage: scripts/attention_table.py xgr_benchmarks.json [torch_attention.json]
"""
import json
import sys


def fields(name):
    """The key:value parts of a row name, e.g. {'req': '8', 'beams': '256', 'prompt': '2048'}."""
    return dict(p.split(":", 1) for p in name.split("/") if ":" in p)


def main(path, torch_path=None):
    rows = [b for b in json.load(open(path))["benchmarks"] if b["name"].startswith("attention/")]
    torch = {}
    if torch_path:
        for r in json.load(open(torch_path))["rows"]:
            torch[(r["requests"], r["beams"], r["prompt"])] = r
    for b in rows:
        if b["name"].startswith("attention/tensor_core_ceiling"):
            print(f"Tensor-core ceiling (cuBLAS bf16 GEMM 8192³, fp32 accumulate): {b['TFLOPS']:.0f} TFLOPS\n")
    print("| requests | beams | prompt | staged µs | host-paced µs | KV floor µs | TC floor µs | x max floor | TFLOPS | splits | mma.sync µs "
          "| per-beam copy µs | staged speed-up | SDPA expanded µs | x SDPA expanded | SDPA shared µs |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for b in rows:
        if not b["name"].startswith("attention/decode/"):
            continue
        f = fields(b["name"])
        key = (int(f["req"]), int(f["beams"]), int(f["prompt"]))
        per_beam = b.get("per_beam_us", 0.0)
        per_beam_text = f"{per_beam:.0f}" if per_beam > 0 else f"does not fit ({b['per_beam_GiB']:.0f} GiB)"
        speedup = f"{b['speedup']:.1f}×" if per_beam > 0 else "—"
        t = torch.get(key, {})
        expanded = t.get("sdpa_expanded_us", 0.0)
        expanded_text = f"{expanded:.0f}" if expanded > 0 else ("skipped (> 40 GiB)" if t else "—")
        ratio = f"{expanded / b['median_us']:.1f}×" if expanded > 0 else "—"
        shared = f"{t['sdpa_shared_us']:.0f}" if t else "—"
        print(f"| {key[0]} | {key[1]} | {key[2]} | {b['median_us']:.1f} | {b.get('host_paced_us', 0.0):.1f} | {b['kv_floor_us']:.1f} | {b['tc_floor_us']:.1f} | "
              f"{b['x_floor']:.2f} | {b['TFLOPS']:.0f} | {b['splits']:.0f} | {b.get('mma_sync_us', 0.0):.1f} | {per_beam_text} | {speedup} | {expanded_text} | {ratio} | {shared} |")
    prefill = [b for b in rows if b["name"].startswith("attention/prefill/")]
    if prefill:
        print()
        print("| prefill requests | prompt | µs | TC floor µs | x floor | TFLOPS |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for b in prefill:
            f = fields(b["name"])
            print(f"| {f['req']} | {f['prompt']} | {b['median_us']:.1f} | {b['tc_floor_us']:.1f} | {b['x_floor']:.2f} | {b['TFLOPS']:.0f} |")
    memory = [b for b in rows if b["name"].startswith("attention/memory/")]
    for b in memory:
        f = fields(b["name"])
        print()
        print(f"| requests of P={f['P']}, B={f['B']} (8 layers, 4 kv heads, d 128, bf16) in {f['budget_GiB']} GiB of KV | fit |")
        print("| --- | ---: |")
        print(f"| KvPool (shared prefix + beam regions) | {b['staged_requests']:.0f} |")
        print(f"| copy-on-fork (a prompt copy per beam) | {b['per_beam_requests']:.0f} |")
        print(f"| ratio (target ≥ B/2 = {b['B_over_2']:.0f}) | {b['ratio']:.0f}× |")


if __name__ == "__main__":
    main(*sys.argv[1:3])
