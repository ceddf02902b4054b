#!/usr/bin/env python3
"""External anchor for one BeamSearcher step: the same step in eager PyTorch on the GPU.

Per shape (requests R x beams B x codebook C, vocab V = C, fp32), what an HF-style constrained beam
search does for one level, timed with CUDA events (median of 30 warm runs):

    scores = log_softmax(logits, -1)            # [R*B, V], over the full row
    scores += beam_scores[:, None]
    scores.masked_fill_(banned, -inf)           # banned = ~allowed, precomputed (see below)
    values, idx = scores.view(R, B*V).topk(B)
    parents, tokens = idx // V, idx % V
    history = history.index_select(0, parents + request offsets); history[:, level] = tokens

The dense bool mask is built outside the timing from a random catalogue of the same kind as
benchmarks/bench_beam.cu's (random code tuples, L = 3, codebook C per level), with 10^6 items by
default (items only change the mask density): at level 1 each beam's allowed codes are the
children of a distinct random level-0 prefix, at level 2 of a random existing level-1 prefix. The
inversion ~mask is done outside the timing too (PyTorch gets the benefit of the doubt). Also timed:
torch.topk(k=B) alone over the random logits viewed as [R, B*V] (the DESIGN.md anchor), and over
the masked scores. Before every timed run a buffer of twice the L2 size is read (untimed), as in
bench_beam.cu, so no run finds its inputs in L2.

    python3 benchmarks/torch/beam_step_anchor.py --json torch_beam.json [--levels 1 2] [--items 1000000]
"""
import argparse
import json
import statistics

import torch

LEVELS = 3
DEVICE = "cuda"  # the catalogue and mask helpers also run on "cpu", for a smoke test without a GPU


def catalogue(codebook: int, items: int, seed: int) -> torch.Tensor:
    """Random code tuples [items, 3] (int64) on the GPU."""
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    return torch.randint(0, codebook, (items, LEVELS), device=DEVICE, generator=g)


def allowed_mask(codes: torch.Tensor, requests: int, beams: int, codebook: int, level: int, seed: int):
    """Dense bool mask [R*B, C]: row r allows the children of beam r's prefix. Returns (mask, prefixes)."""
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    rows = requests * beams
    if level == 1:
        # Distinct level-0 prefixes per request, drawn from the codes that have items.
        present = torch.zeros(codebook, dtype=torch.bool, device=DEVICE)
        present[codes[:, 0]] = True
        existing = present.nonzero().squeeze(1)
        prefixes = torch.stack([existing[torch.randperm(existing.numel(), device=DEVICE, generator=g)[:beams]]
                                for _ in range(requests)])
        if prefixes.shape[1] < beams:
            raise SystemExit(f"only {existing.numel()} level-0 prefixes exist for {beams} beams")
        prefixes = prefixes.reshape(rows)
        children = torch.zeros(codebook, codebook, dtype=torch.bool, device=DEVICE)
        children[codes[:, 0], codes[:, 1]] = True
        mask = children[prefixes]
        history_prefix = prefixes[:, None]
    elif level == 2:
        # Random existing level-1 prefixes (pairs): those of random items.
        pairs = codes[:, 0] * codebook + codes[:, 1]
        order = torch.argsort(pairs)
        sorted_pairs = pairs[order]
        chosen = pairs[torch.randint(0, codes.shape[0], (rows,), device=DEVICE, generator=g)]
        lo = torch.searchsorted(sorted_pairs, chosen, right=False)
        hi = torch.searchsorted(sorted_pairs, chosen, right=True)
        counts = hi - lo
        row_of = torch.repeat_interleave(torch.arange(rows, device=DEVICE), counts)
        first = torch.repeat_interleave(lo, counts)
        within = torch.arange(row_of.numel(), device=DEVICE) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        item = order[first + within]
        mask = torch.zeros(rows, codebook, dtype=torch.bool, device=DEVICE)
        mask[row_of, codes[item, 2]] = True
        history_prefix = torch.stack([chosen // codebook, chosen % codebook], dim=1)
    else:
        raise ValueError(f"level {level}: 1 or 2")
    return mask, history_prefix


def beam_step(logits, beam_scores, banned, history, requests: int, beams: int, vocab: int, level: int):
    scores = torch.log_softmax(logits, dim=-1)
    scores += beam_scores[:, None]
    scores.masked_fill_(banned, float("-inf"))
    values, idx = scores.view(requests, beams * vocab).topk(beams, dim=1)
    parents = idx // vocab
    tokens = idx % vocab
    rows = (parents + torch.arange(requests, device=logits.device)[:, None] * beams).view(-1)
    new_history = history.index_select(0, rows)
    new_history[:, level] = tokens.view(-1)
    return values, new_history


class Flush:
    """Reads 2 x L2 bytes between timed runs (untimed): no run finds its inputs in L2."""

    def __init__(self) -> None:
        l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20)
        self.buffer = torch.ones(max(2 * l2, 64 << 20) // 4, dtype=torch.float32, device=DEVICE)

    def __call__(self) -> None:
        self.buffer.sum()


def median_us(fn, flush: Flush, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        flush()
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) * 1e3)
    return statistics.median(times)


def measure(requests: int, beams: int, codebook: int, items: int, level: int, codes, flush: Flush, repeats: int) -> dict:
    vocab = codebook
    rows = requests * beams
    g = torch.Generator(device=DEVICE).manual_seed(1234 + level)
    logits = torch.randn(rows, vocab, device=DEVICE, generator=g) * 2.0
    # Beam scores of live beams: sums of earlier log-probabilities, negative, best first per request.
    beam_scores = -(torch.rand(requests, beams, device=DEVICE, generator=g) * 5.0 * level).sort(dim=1).values.view(rows)
    mask, prefix = allowed_mask(codes, requests, beams, codebook, level, seed=99 + level)
    banned = ~mask
    history = torch.zeros(rows, LEVELS, dtype=torch.int64, device=DEVICE)
    history[:, :level] = prefix
    allowed_per_beam = mask.sum(dim=1).float().mean().item()
    del mask

    step_us = median_us(lambda: beam_step(logits, beam_scores, banned, history, requests, beams, vocab, level), flush, repeats)
    flat_logits = logits.view(requests, beams * vocab)
    topk_us = median_us(lambda: torch.topk(flat_logits, k=beams, dim=1), flush, repeats)
    masked = torch.log_softmax(logits, dim=-1).add_(beam_scores[:, None]).masked_fill_(banned, float("-inf"))
    flat_masked = masked.view(requests, beams * vocab)
    topk_masked_us = median_us(lambda: torch.topk(flat_masked, k=beams, dim=1), flush, repeats)
    del logits, beam_scores, banned, history, masked, flat_logits, flat_masked
    torch.cuda.empty_cache()
    return {"requests": requests, "beams": beams, "codebook": codebook, "vocab": vocab, "items": items, "level": level,
            "allowed_per_beam": allowed_per_beam, "torch_step_us": step_us, "torch_topk_us": topk_us,
            "torch_topk_masked_us": topk_masked_us}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default="torch_beam.json")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--items", type=int, nargs="+", default=[1000000])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    flush = Flush()
    rows = []
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| level | requests | beams | C | items | allowed/beam | torch step µs | torch.topk µs | topk (masked) µs |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for codebook in (1024, 8192):
        for items in args.items:
            codes = catalogue(codebook, items, seed=codebook * 31 + items)
            for level in args.levels:
                for requests in (1, 8, 32):
                    for beams in (128, 256, 512):
                        row = measure(requests, beams, codebook, items, level, codes, flush, args.repeats)
                        rows.append(row)
                        print(f"| {level} | {requests} | {beams} | {codebook} | {items} | {row['allowed_per_beam']:.1f} | "
                              f"{row['torch_step_us']:.1f} | {row['torch_topk_us']:.1f} | {row['torch_topk_masked_us']:.1f} |",
                              flush=True)
            del codes
            torch.cuda.empty_cache()
    with open(args.json, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
