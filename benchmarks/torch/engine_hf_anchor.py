#!/usr/bin/env python3
"""HF transformers anchor for the engine benchmark: constrained beam search with `generate` on the
same model, catalogue and prompts that `xgr_engine` serves.

    xgr_engine --preset gr-small --users 8 --save-default DIR     # config.json, model.safetensors,
                                                                   # items.txt, prompts.txt
    python3 benchmarks/torch/engine_hf_anchor.py --folder DIR --beams 128 256 --requests 4

Each request runs alone (HF beam search expands the prompt to B copies, so batching requests
multiplies memory by B again), as

    model.generate(prompt, num_beams=B, num_return_sequences=B, max_new_tokens=L, do_sample=False,
                   prefix_allowed_tokens_fn=<the catalogue's trie>, length_penalty=0.0)

in bf16 on the GPU with SDPA attention, timed with CUDA synchronisation around each call after one
warm-up call. Its throughput is 1 / mean latency (one request at a time), and it meets a latency
SLO only if a lone request does.
"""

import argparse
import json
import statistics
import sys
import time


def read_items(path):
    with open(path, encoding="ascii") as lines:
        if next(lines).split() != ["xgr-items", "1"]:
            raise SystemExit(f"{path}: not a text item table (save it with xgr_engine --save-default)")
        codebooks = [int(w) for w in next(lines).split()[1:]]
        tuples = [tuple(int(w) for w in line.split()[1:]) for line in lines if line.strip()]
    return codebooks, tuples


def build_trie(codebooks, tuples, token_offset):
    """prefix of codes -> sorted allowed token ids of the next level."""
    offsets, at = [], token_offset
    for size in codebooks:
        offsets.append(at)
        at += size
    children = {}
    for codes in tuples:
        for level in range(len(codes)):
            children.setdefault(codes[:level], set()).add(offsets[level] + codes[level])
    return offsets, {prefix: sorted(tokens) for prefix, tokens in children.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", required=True, help="written by xgr_engine --save-default")
    parser.add_argument("--beams", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--requests", type=int, default=4, help="prompts of prompts.txt timed per beam width")
    parser.add_argument("--token-offset", type=int, default=0)
    parser.add_argument("--slo-ms", type=float, default=50.0)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()

    import torch
    import transformers
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.cuda.get_device_name(0)}")
    codebooks, tuples = read_items(f"{args.folder}/items.txt")
    offsets, allowed = build_trie(codebooks, tuples, args.token_offset)
    levels = len(codebooks)
    with open(f"{args.folder}/prompts.txt", encoding="ascii") as lines:
        prompts = [[int(w) for w in line.split()] for line in lines if line.strip()][: args.requests]
    model = transformers.Qwen2ForCausalLM.from_pretrained(args.folder, dtype=torch.bfloat16, attn_implementation="sdpa")
    model = model.to("cuda").eval()

    def generate(prompt, beams):
        ids = torch.tensor([prompt], device="cuda")
        start = len(prompt)

        def allowed_tokens(_batch, input_ids):
            generated = input_ids[start:].tolist()
            codes = tuple(t - offsets[level] for level, t in enumerate(generated))
            return allowed.get(codes, [0])

        config = transformers.GenerationConfig(num_beams=beams, num_return_sequences=beams, max_new_tokens=levels, do_sample=False,
                                               length_penalty=0.0, early_stopping=True, pad_token_id=0, eos_token_id=None,
                                               use_cache=True)
        with torch.no_grad():
            return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config,
                                  prefix_allowed_tokens_fn=allowed_tokens)

    rows = []
    print("| beams | requests | prompt tokens | mean ms | max ms | throughput /s (one at a time) | meets P99 <= %g ms |" % args.slo_ms)
    print("| ---: | ---: | --- | ---: | ---: | ---: | --- |")
    for beams in args.beams:
        try:
            generate(prompts[0], beams)  # warm-up: kernels, allocator, cuBLAS heuristics
            latencies = []
            for prompt in prompts:
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                generate(prompt, beams)
                torch.cuda.synchronize()
                latencies.append((time.perf_counter() - t0) * 1e3)
        except torch.OutOfMemoryError as error:
            print(f"| {beams} | - | - | out of memory | - | 0 | no |  ({str(error).splitlines()[0]})")
            rows.append({"beams": beams, "error": "out of memory"})
            torch.cuda.empty_cache()
            continue
        mean = statistics.mean(latencies)
        row = {"beams": beams, "requests": len(prompts), "prompt_tokens": [len(p) for p in prompts], "mean_ms": mean,
               "max_ms": max(latencies), "throughput_per_s": 1e3 / mean, "meets_slo": max(latencies) <= args.slo_ms}
        rows.append(row)
        lengths = ", ".join(str(len(p)) for p in prompts)
        print(f"| {beams} | {len(prompts)} | {lengths} | {mean:.1f} | {max(latencies):.1f} | {row['throughput_per_s']:.2f} | "
              f"{'yes' if row['meets_slo'] else 'no'} |")
        sys.stdout.flush()
    if args.json:
        with open(args.json, "w", encoding="ascii") as out:
            json.dump(rows, out, indent=2)


if __name__ == "__main__":
    main()
