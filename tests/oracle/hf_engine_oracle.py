#!/usr/bin/env python3
"""HF transformers oracle for the reference engine (examples/engine), end to end.

Builds a small random Qwen2ForCausalLM (nothing is downloaded) with head_dim 64 (what KvPool
takes), saves it with save_pretrained (config.json + model.safetensors), writes a random catalogue
and prompts, then for every prompt and beam width B runs HF's constrained beam search

    model.generate(prompt, num_beams=B, num_return_sequences=B, max_new_tokens=L,
                   prefix_allowed_tokens_fn=<trie>, do_sample=False, length_penalty=0.0)

and the engine (`xgr_engine --model DIR --items ... --prompts ... --beams B --top 0`) on the same
folder, and checks that the engine returns the same B code tuples in the same order, with scores
(sums of log-probabilities) within 2e-4 + 1e-5·|score| of HF's sequences_scores.

Unlike hf_beam_oracle.py, which replays HF's logits into BeamSearcher, this runs the engine's own
model, KV cache and attention: it checks the safetensors and config.json readers on HF's own files,
the model's layers, RoPE positions during decode, KvPool's ancestry and the beam search together.

Usage (torch and transformers 5.x, CPU is enough):
    python3 tests/oracle/hf_engine_oracle.py --engine build/host/examples/xgr_engine
Exit status: 0 all cases pass, 1 a mismatch, 2 a setup / API problem.
"""

import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_beam_oracle import (  # noqa: E402  the shared token layout, catalogue and HF helpers
    CODEBOOK, EOS_TOKEN_ID, EXIT_MISMATCH, EXIT_SETUP, LEVEL_TOKEN_OFFSETS, LEVELS, PAD_TOKEN_ID, VOCAB,
    PrefixAllowedTokens, SetupError, Trie, hf_generate, import_hf, make_catalogue, write_items)

ABS_TOL = 2e-4
REL_TOL = 1e-5


def build_model(torch, transformers, seed):
    config = transformers.Qwen2Config(
        vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=256, tie_word_embeddings=False,
        pad_token_id=PAD_TOKEN_ID, eos_token_id=EOS_TOKEN_ID, bos_token_id=None, use_cache=True)
    torch.manual_seed(seed)
    model = transformers.Qwen2ForCausalLM(config)
    with torch.no_grad():
        # Wider than the default init (std 0.02), so that scores differ by far more than float
        # rounding and no order is decided by it; the biases too, so that they are exercised.
        generator = torch.Generator().manual_seed(seed + 17)
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.copy_(1.0 + 0.1 * torch.randn(parameter.shape, generator=generator))
            else:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * (1.0 if name == "lm_head.weight" else 0.15))
    return model.to(dtype=torch.float32).eval()


def run_engine(engine, folder, beams, extra_args):
    command = [engine, *extra_args, "--model", folder, "--items", os.path.join(folder, "items.txt"), "--prompts",
               os.path.join(folder, "prompts.txt"), "--beams", str(beams), "--top", "0",
               "--token-offset", str(LEVEL_TOKEN_OFFSETS[0])]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SetupError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    results = {}
    for line in done.stdout.splitlines():
        words = line.split()
        if not words or words[0] != "request":
            continue
        at = words.index("score")
        results.setdefault(int(words[1]), []).append(([int(w) for w in words[7:at]], float(words[at + 1])))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", required=True, help="the xgr_engine binary")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--beams", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--keep", help="keep the model folder here instead of a temporary one")
    parser.add_argument("--engine-arg", action="append", default=[],
                        help="passed to xgr_engine (repeat), e.g. --engine-arg=--device --engine-arg=cuda")
    parser.add_argument("--abs-tol", type=float, default=ABS_TOL,
                        help="score tolerance; above the default (the host path's), tuples whose HF scores lie "
                             "within 2x of it may swap places (the GPU path's bf16/fp16 rounding)")
    args = parser.parse_args()
    try:
        if any(b > CODEBOOK for b in args.beams):
            raise SetupError(f"beam widths above {CODEBOOK} can leave HF with invalid beams; use <= {CODEBOOK}")
        torch, transformers = import_hf()
        model = build_model(torch, transformers, args.seed)
        items = make_catalogue(args.seed, 300, 12)
        trie = Trie(items)
        rng = torch.Generator().manual_seed(args.seed + 1)
        prompts = [torch.randint(LEVEL_TOKEN_OFFSETS[0], VOCAB, (length,), generator=rng).tolist() for length in (9, 24, 3)]
        folder = args.keep or tempfile.mkdtemp(prefix="xgr_engine_oracle_")
        model.save_pretrained(folder, safe_serialization=True)
        write_items(os.path.join(folder, "items.txt"), items)
        with open(os.path.join(folder, "prompts.txt"), "w", encoding="ascii") as out:
            for prompt in prompts:
                out.write(" ".join(str(t) for t in prompt) + "\n")
        print(f"model folder: {folder} ({', '.join(sorted(os.listdir(folder)))})")

        failures = 0
        print("| B | request | prompt tokens | tuples equal, in order | max score diff | smallest gap |")
        print("| ---: | ---: | ---: | --- | ---: | ---: |")
        for beams in args.beams:
            ours = run_engine(args.engine, folder, beams, args.engine_arg)
            for r, prompt in enumerate(prompts):
                ids = torch.tensor([prompt])
                out = hf_generate(torch, transformers, model, ids, beams, PrefixAllowedTokens(trie, len(prompt)))
                hf_tuples = [[t - LEVEL_TOKEN_OFFSETS[l] for l, t in enumerate(row[len(prompt):].tolist())]
                             for row in out.sequences]
                hf_scores = out.sequences_scores.float().tolist()
                got = ours.get(r, [])
                our_tuples = [codes for codes, _ in got]
                same = our_tuples == hf_tuples
                if not same and args.abs_tol > ABS_TOL and sorted(our_tuples) == sorted(hf_tuples):
                    # Same tuples; every pair HF orders by more than 2 * tolerance is in HF's order.
                    at = {tuple(codes): k for k, codes in enumerate(our_tuples)}
                    same = all(at[tuple(hf_tuples[i])] < at[tuple(hf_tuples[j])]
                               for i in range(len(hf_tuples)) for j in range(i + 1, len(hf_tuples))
                               if hf_scores[i] - hf_scores[j] > 2 * args.abs_tol)
                ours_by_tuple = {tuple(codes): s for codes, s in got}
                diff = max((abs(ours_by_tuple.get(tuple(t), float("inf")) - h) for t, h in zip(hf_tuples, hf_scores)),
                           default=float("inf"))
                ok = same and len(got) == beams and diff <= args.abs_tol + REL_TOL * max(abs(h) for h in hf_scores)
                gap = min((hf_scores[i] - hf_scores[i + 1] for i in range(len(hf_scores) - 1)), default=0.0)
                print(f"| {beams} | {r} | {len(prompt)} | {'yes' if same else 'NO'} | {diff:.2e} | {gap:.2e} |")
                if not ok:
                    failures += 1
                    print(f"  HF : {list(zip(hf_tuples, hf_scores))}")
                    print(f"  xgr: {got}")
        if failures:
            print(f"FAILED: {failures} case(s) differ")
            return EXIT_MISMATCH
        print("PASSED: the engine returned HF's items, in HF's order, with HF's scores")
        return 0
    except SetupError as error:
        print(f"setup error: {error}", file=sys.stderr)
        return EXIT_SETUP


if __name__ == "__main__":
    sys.exit(main())
