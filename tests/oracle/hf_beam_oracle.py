#!/usr/bin/env python3
"""HF transformers oracle for xgr::BeamSearcher (DESIGN.md §3, "Oracle").

Builds a small random Qwen2ForCausalLM from a config (nothing is downloaded), a random catalogue of
semantic-ID items, and runs HF's constrained beam search

    model.generate(prompts, num_beams=B, num_return_sequences=B, max_new_tokens=L,
                   prefix_allowed_tokens_fn=<trie>, do_sample=False, length_penalty=0.0, ...)

recording the raw logits of every step (output_logits). The replay tool (tests/oracle/beam_replay.cpp)
feeds those logits, row for row, to xgr::BeamSearcher and prints what it selected. The oracle then
checks, per request:

  * final results: the B generated code tuples in HF's order (`sequences`), their scores against
    HF's `sequences_scores` (length_penalty=0: plain sums of log-probs) within abs 1e-4 + rel 1e-5,
    and the item ids (first item of each tuple in catalogue order);
  * per step: xgr's (parent beam, token, score) of every slot against HF's own selection, rebuilt
    from HF's per-step log-probs (`scores`) with HF's algorithm; that rebuild is itself checked
    against HF's `sequences`, `sequences_scores` and `beam_indices` first, so a change in HF's
    semantics is reported as such, not as an xgr bug.

Why replaying HF's logits is a fair test: HF keeps its running beams sorted best first after each
step, which is exactly xgr's slot order, so HF's logits row r*B + j at step l belongs to xgr's slot j
of request r — as long as both made the same selections so far. Any divergence changes the result.

Usage (on a machine with torch and transformers 5.x; see tests/oracle/README.md):

    python3 tests/oracle/hf_beam_oracle.py --replay build/cuda/tests/xgr_beam_replay [--exec cuda]

Exit status: 0 all cases pass, 1 a mismatch, 2 a setup / API problem (clear message on stderr).
"""

import argparse
import inspect
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile

# ---- token layout: the one place that defines it ---------------------------------------------------
LEVELS = 3                      # L: codes per item, decode steps per request
CODEBOOK = 16                   # codes per level
PAD_TOKEN_ID = 0                # special tokens 0..1: never allowed by the trie
EOS_TOKEN_ID = 1
SPECIAL_TOKENS = 2
LEVEL_TOKEN_OFFSETS = [SPECIAL_TOKENS + CODEBOOK * level for level in range(LEVELS)]  # token = offset[l] + code
VOCAB = LEVEL_TOKEN_OFFSETS[-1] + CODEBOOK  # 50

# ---- tolerances and file formats (tests/oracle/README.md) -----------------------------------------
ABS_TOL = 1e-4
REL_TOL = 1e-5
LOGITS_MAGIC = b"XGRLOGIT"
LOGITS_VERSION = 1
REPLAY_HEADER = "xgr-beam-replay 1"
EXIT_MISMATCH = 1
EXIT_SETUP = 2
EXIT_SKIPPED = 77  # the replay tool's "no CUDA device / no CUDA build"

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class SetupError(Exception):
    """Anything that keeps the oracle from running: missing packages, an API mismatch, bad options."""


def close(a, b):
    return abs(a - b) <= ABS_TOL + REL_TOL * abs(b)


# ---- catalogue and trie ---------------------------------------------------------------------------

def make_catalogue(seed, item_count, duplicate_count):
    """Random items: list of (item id, code tuple) in catalogue order. Every level-0 code occurs, so
    step 0 always offers CODEBOOK candidates; every deeper beam has at least one child, so any
    B <= CODEBOOK leaves at least B valid candidates at every step (HF never pads with -inf beams)."""
    rng = random.Random(seed)
    tuples = [tuple(rng.randrange(CODEBOOK) for _ in range(LEVELS)) for _ in range(item_count)]
    present = {t[0] for t in tuples}
    for code in range(CODEBOOK):
        if code not in present:
            tuples.append((code,) + tuple(rng.randrange(CODEBOOK) for _ in range(LEVELS - 1)))
    for _ in range(duplicate_count):  # the same tuple under another id: xgr reports the first id
        tuples.insert(rng.randrange(len(tuples) + 1), tuples[rng.randrange(len(tuples))])
    ids = rng.sample(range(1, 1_000_000), len(tuples))
    return list(zip(ids, tuples))


class Trie:
    def __init__(self, items):
        self.children = {}     # code prefix -> sorted child codes
        self.items = {}        # full tuple -> item ids in catalogue order
        for item_id, codes in items:
            self.items.setdefault(codes, []).append(item_id)
            for level in range(LEVELS):
                self.children.setdefault(codes[:level], set()).add(codes[level])
        self.children = {prefix: sorted(codes) for prefix, codes in self.children.items()}
        self.allowed = {prefix: [LEVEL_TOKEN_OFFSETS[len(prefix)] + c for c in codes]
                        for prefix, codes in self.children.items()}


class PrefixAllowedTokens:
    """HF's prefix_allowed_tokens_fn: the trie's children of the generated suffix, as token ids."""

    def __init__(self, trie, prompt_len):
        self.trie = trie
        self.prompt_len = prompt_len
        self.calls = 0
        self.unexpected = []  # suffixes that are not a valid item prefix (a search gone astray)

    def __call__(self, batch_id, input_ids):
        self.calls += 1
        generated = [int(t) for t in input_ids[self.prompt_len:].tolist()]
        codes = tuple(t - LEVEL_TOKEN_OFFSETS[level] for level, t in enumerate(generated[:LEVELS]))
        allowed = self.trie.allowed.get(codes) if len(generated) < LEVELS else None
        if allowed is None:
            # Only a beam that is not a valid prefix gets here: HF raises on an empty list, so give
            # it the pad token (its score stays -inf); the oracle reports the case as unusable.
            self.unexpected.append((batch_id, generated))
            return [PAD_TOKEN_ID]
        return allowed


def write_items(path, items):
    with open(path, "w", encoding="ascii") as out:
        out.write("xgr-items 1\n")
        out.write("codebook " + " ".join(str(CODEBOOK) for _ in range(LEVELS)) + "\n")
        for item_id, codes in items:
            out.write(f"{item_id} " + " ".join(str(c) for c in codes) + "\n")


def write_logits(path, step_logits, requests, beam_width):
    """step_logits: LEVELS tensors of (requests * beam_width) x VOCAB float32 (HF's output_logits)."""
    with open(path, "wb") as out:
        out.write(LOGITS_MAGIC)
        out.write(struct.pack("<5I", LOGITS_VERSION, LEVELS, requests, beam_width, VOCAB))
        out.write(struct.pack(f"<{LEVELS}I", *LEVEL_TOKEN_OFFSETS))
        for tensor in step_logits:
            values = tensor.detach().to("cpu").float().contiguous().view(-1).tolist()
            out.write(struct.pack(f"<{len(values)}f", *values))


# ---- the replay tool ------------------------------------------------------------------------------

def run_replay(replay, items_path, logits_path, exec_kind, output_path):
    command = [replay, "--items", items_path, "--logits", logits_path, "--exec", exec_kind]
    proc = subprocess.run(command, capture_output=True, text=True)
    with open(output_path, "w", encoding="ascii") as out:
        out.write(proc.stdout)
    if proc.returncode == EXIT_SKIPPED:
        raise SetupError(f"the replay tool skipped --exec {exec_kind}: {proc.stderr.strip()}")
    if proc.returncode != 0:
        raise SetupError(f"the replay tool failed (exit {proc.returncode}): {' '.join(command)}\n{proc.stderr.strip()}")
    return parse_replay(proc.stdout)


def parse_replay(text):
    """The replay tool's text format (tests/oracle/README.md) -> dict."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != REPLAY_HEADER:
        raise SetupError(f"the replay output does not start with '{REPLAY_HEADER}'")
    batch = lines[1].split()
    if batch[0] != "batch":
        raise SetupError("the replay output's second line is not the batch line")
    shape = {batch[i]: int(batch[i + 1]) for i in range(1, len(batch) - 1, 2)}
    steps, results, current, announced = {}, {}, None, {}
    for number, line in enumerate(lines[2:], start=3):
        words = line.split()
        if not words:
            continue
        try:
            if words[0] == "step":
                key = (int(words[1]), int(words[3]))
                announced[key] = int(words[5])
                current = steps.setdefault(key, [])
            elif words[0] == "slot":
                current.append({"parent": int(words[3]), "token": int(words[5]), "score": float(words[7])})
            elif words[0] == "result":
                key = ("result", int(words[2]))
                announced[key] = int(words[4])
                current = results.setdefault(int(words[2]), [])
            elif words[0] == "beam":
                at = words.index("score")
                current.append({"codes": [int(w) for w in words[3:at]], "score": float(words[at + 1]),
                                "item": int(words[at + 3]), "items": int(words[at + 5])})
            else:
                raise ValueError(f"unknown record '{words[0]}'")
        except (ValueError, IndexError, AttributeError) as error:
            raise SetupError(f"replay output line {number} is malformed ({error}): {line}")
    for key, count in announced.items():
        got = len(results[key[1]]) if key[0] == "result" else len(steps[key])
        if got != count:
            raise SetupError(f"replay output: {key} announces {count} lines, has {got}")
    return {"shape": shape, "steps": steps, "results": results}


# ---- HF ------------------------------------------------------------------------------------------

def import_hf():
    try:
        import torch
        import transformers
    except ImportError as error:
        raise SetupError(f"this oracle needs torch and transformers 5.x: {error}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    missing = [name for name in ("Qwen2Config", "Qwen2ForCausalLM", "GenerationConfig", "LogitsProcessorList")
               if not hasattr(transformers, name)]
    if missing:
        raise SetupError(f"transformers {transformers.__version__} lacks {', '.join(missing)}: API mismatch")
    if int(transformers.__version__.split(".")[0]) < 5:
        print(f"warning: written against transformers 5.x, found {transformers.__version__}; "
              "the HF self-consistency check below will tell whether its beam search still matches")
    return torch, transformers


def build_model(torch, transformers, seed, device, lm_head_std):
    config = transformers.Qwen2Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False,
        pad_token_id=PAD_TOKEN_ID, eos_token_id=EOS_TOKEN_ID, bos_token_id=None, use_cache=True)
    torch.manual_seed(seed)
    model = transformers.Qwen2ForCausalLM(config)
    with torch.no_grad():
        # The default init (std 0.02) gives near-uniform logits; a wider head spreads the scores so
        # that float rounding (xgr's log-sum-exp vs torch's) never decides an order.
        generator = torch.Generator().manual_seed(seed + 17)
        model.lm_head.weight.copy_(torch.randn(model.lm_head.weight.shape, generator=generator) * lm_head_std)
    return model.to(device=device, dtype=torch.float32).eval()


def hf_generate(torch, transformers, model, prompts, beam_width, prefix_fn):
    gen_config = transformers.GenerationConfig(
        num_beams=beam_width, num_return_sequences=beam_width, max_new_tokens=LEVELS, do_sample=False,
        length_penalty=0.0, early_stopping=True, output_logits=True, output_scores=True,
        return_dict_in_generate=True, pad_token_id=PAD_TOKEN_ID, eos_token_id=EOS_TOKEN_ID, use_cache=True)
    kwargs = {"input_ids": prompts, "attention_mask": torch.ones_like(prompts), "generation_config": gen_config}
    if "prefix_allowed_tokens_fn" in inspect.signature(model.generate).parameters:
        kwargs["prefix_allowed_tokens_fn"] = prefix_fn
    else:  # the processor that generate() would build from it
        from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor
        print("note: generate() has no prefix_allowed_tokens_fn argument; passing PrefixConstrainedLogitsProcessor")
        kwargs["logits_processor"] = transformers.LogitsProcessorList([PrefixConstrainedLogitsProcessor(prefix_fn, beam_width)])
    with torch.no_grad():
        out = model.generate(**kwargs)

    requests, prompt_len = prompts.shape
    rows = requests * beam_width
    for name in ("sequences", "sequences_scores", "logits", "scores"):
        if getattr(out, name, None) is None:
            raise SetupError(f"generate(return_dict_in_generate=True, output_scores=True, output_logits=True) returned "
                             f"no `{name}` ({type(out).__name__}): transformers API mismatch")
    if tuple(out.sequences.shape) != (rows, prompt_len + LEVELS):
        raise SetupError(f"HF sequences have shape {tuple(out.sequences.shape)}, expected {(rows, prompt_len + LEVELS)} "
                         "(requests x beams, prompt + L tokens): did the search stop early?")
    if not torch.equal(out.sequences[:, :prompt_len].cpu(), prompts.repeat_interleave(beam_width, dim=0).cpu()):
        raise SetupError("HF sequences do not start with the prompts in request-major order: API mismatch")
    if tuple(out.sequences_scores.shape) != (rows,):
        raise SetupError(f"HF sequences_scores has shape {tuple(out.sequences_scores.shape)}, expected {(rows,)}")
    for name in ("logits", "scores"):
        steps = getattr(out, name)
        if len(steps) != LEVELS or any(tuple(t.shape) != (rows, VOCAB) for t in steps):
            raise SetupError(f"HF `{name}` holds {[tuple(t.shape) for t in steps]}, expected {LEVELS} x {(rows, VOCAB)}")
    return out


def rebuild_hf_selection(torch, step_scores, requests, beam_width):
    """HF's beam search (GenerationMixin._beam_search, transformers 5.x) from its own per-step processed
    log-probs `scores`: running beam scores start at [0, -1e9, ...]; each step adds them to the
    log-probs, takes topk(2B) over beams x vocab (sorted), and the best B that did not finish become
    the next running beams, in that order. No beam finishes before the last step here (EOS is never
    allowed), and at the last step the top B are the finished hypotheses, again in that order.
    Returns per step: parents, tokens, scores (requests x B, CPU) and the smallest score gap."""
    running = torch.zeros((requests, beam_width), dtype=torch.float32, device=step_scores[0].device)
    running[:, 1:] = -1e9
    steps = []
    for log_probs in step_scores:
        accumulated = (log_probs.view(requests, beam_width, VOCAB) + running[:, :, None]).view(requests, -1)
        values, indices = torch.topk(accumulated, k=min(2 * beam_width, accumulated.shape[1]))
        selected, flat = values[:, :beam_width], indices[:, :beam_width]
        running = selected
        # The closest call of the step: gaps between consecutive selected scores and between the last
        # selected one and the best candidate left out (if that one is a real candidate).
        ranked = values[:, :beam_width + 1].cpu().tolist()
        gaps = [row[i] - row[i + 1] for row in ranked for i in range(len(row) - 1)
                if math.isfinite(row[i + 1]) and row[i + 1] > -1e8]
        steps.append({"parents": (flat // VOCAB).cpu().tolist(), "tokens": (flat % VOCAB).cpu().tolist(),
                      "scores": selected.cpu().tolist(), "margin": min(gaps) if gaps else math.inf})
    return steps


def hf_paths(steps, requests, beam_width):
    """Follows the per-step parents back from the last step: per request and final beam j, the
    generated tokens and the beam (within the request) each step's token was chosen from."""
    paths = []
    for request in range(requests):
        per_request = []
        for j in range(beam_width):
            tokens, parents, slot = [], [], j
            for step in reversed(steps):
                tokens.append(step["tokens"][request][slot])
                parents.append(step["parents"][request][slot])
                slot = step["parents"][request][slot]
            per_request.append({"tokens": tokens[::-1], "parents": parents[::-1]})
        paths.append(per_request)
    return paths


# ---- one case ------------------------------------------------------------------------------------

def run_case(torch, transformers, model, prompts, items, trie, beam_width, args, work_dir):
    requests, prompt_len = prompts.shape
    case = {"beam_width": beam_width, "requests": requests, "prompt_len": prompt_len, "problems": [], "notes": []}
    problems = case["problems"]
    level0 = len(trie.children[()])
    if beam_width > level0 or beam_width < 1:
        raise SetupError(f"B = {beam_width} needs 1 <= B <= {level0} (level-0 codes of the catalogue), "
                         "else HF pads with -inf beams")

    prefix_fn = PrefixAllowedTokens(trie, prompt_len)
    out = hf_generate(torch, transformers, model, prompts, beam_width, prefix_fn)
    if prefix_fn.unexpected:
        raise SetupError(f"B = {beam_width}: HF asked for the continuations of {len(prefix_fn.unexpected)} "
                         f"non-item prefixes (first: {prefix_fn.unexpected[0]}); the case is unusable")

    hf_tokens = out.sequences[:, prompt_len:].cpu().view(requests, beam_width, LEVELS).tolist()
    hf_scores = out.sequences_scores.float().cpu().view(requests, beam_width).tolist()
    beam_indices = getattr(out, "beam_indices", None)
    hf_beam_indices = beam_indices.cpu().view(requests, beam_width, -1).tolist() if beam_indices is not None else None

    # 1. Our model of HF's algorithm must reproduce HF's own answer (same tensors, same ops). First,
    # HF's per-step scores must be log_softmax(raw logits) with the disallowed tokens at -inf and no
    # other processing: that is what xgr computes from the raw logits.
    hf_self = []
    for t in range(LEVELS):
        expected = torch.log_softmax(out.logits[t].float(), dim=-1)
        finite = torch.isfinite(out.scores[t])
        worst = (out.scores[t][finite] - expected[finite]).abs().max().item() if finite.any() else 0.0
        if worst > 1e-5 or bool((out.scores[t][~finite] != -math.inf).any()):
            hf_self.append(f"step {t}: HF scores are not log_softmax(logits) masked to -inf (max |diff| {worst:.3g}): "
                           "another logits processor is active")
    steps = rebuild_hf_selection(torch, out.scores, requests, beam_width)
    paths = hf_paths(steps, requests, beam_width)
    case["min_margin"] = min(step["margin"] for step in steps)
    for t, step in enumerate(steps):
        for request in range(requests):
            for slot in range(beam_width):
                token, score = step["tokens"][request][slot], step["scores"][request][slot]
                level_tokens = range(LEVEL_TOKEN_OFFSETS[t], LEVEL_TOKEN_OFFSETS[t] + CODEBOOK)
                if not (math.isfinite(score) and score > -1e8 and token in level_tokens):
                    raise SetupError(f"B = {beam_width}, step {t}, request {request}: HF kept beam {slot} with token "
                                     f"{token} and score {score} (not a valid candidate): B exceeds the valid candidates")
    for request in range(requests):
        for j in range(beam_width):
            path = paths[request][j]
            if path["tokens"] != hf_tokens[request][j]:
                hf_self.append(f"request {request} beam {j}: rebuilt tokens {path['tokens']}, HF sequences {hf_tokens[request][j]}")
            rebuilt = steps[-1]["scores"][request][j]
            if abs(rebuilt - hf_scores[request][j]) > 1e-6 * max(1.0, abs(rebuilt)):
                hf_self.append(f"request {request} beam {j}: rebuilt score {steps[-1]['scores'][request][j]!r}, "
                               f"HF sequences_scores {hf_scores[request][j]!r}")
            if hf_beam_indices is not None:
                expected = [request * beam_width + p for p in path["parents"]]
                if hf_beam_indices[request][j][:LEVELS] != expected:
                    hf_self.append(f"request {request} beam {j}: rebuilt beam indices {expected}, "
                                   f"HF beam_indices {hf_beam_indices[request][j]}")
    if hf_beam_indices is None:
        case["notes"].append("generate() returned no beam_indices; parents were checked against the rebuilt selection only")
    case["hf_self_consistent"] = not hf_self
    for line in hf_self:
        problems.append("HF semantics differ from the oracle's model of them: " + line)

    # 2. The same logits through xgr.
    case_dir = os.path.join(work_dir, f"B{beam_width}")
    os.makedirs(case_dir, exist_ok=True)
    items_path = os.path.join(case_dir, "items.txt")
    logits_path = os.path.join(case_dir, "logits.bin")
    write_items(items_path, items)
    write_logits(logits_path, out.logits, requests, beam_width)
    with open(os.path.join(case_dir, "hf.json"), "w", encoding="ascii") as hf_file:
        json.dump({"prompts": prompts.cpu().tolist(), "tokens": hf_tokens, "scores": hf_scores,
                   "beam_indices": hf_beam_indices, "rebuilt_steps": steps}, hf_file, indent=1)
    replay = run_replay(args.replay, items_path, logits_path, args.exec, os.path.join(case_dir, "replay.txt"))
    if replay["shape"] != {"requests": requests, "beam_width": beam_width, "levels": LEVELS, "vocab": VOCAB}:
        raise SetupError(f"the replay tool reports the batch {replay['shape']}")

    # 3. Per step: xgr's slots against HF's running beams.
    step_mismatches = 0
    for t, step in enumerate(steps):
        for request in range(requests):
            ours = replay["steps"].get((t, request), [])
            if len(ours) != beam_width:
                problems.append(f"step {t} request {request}: xgr keeps {len(ours)} beams, HF {beam_width}")
                step_mismatches += 1
                continue
            for slot in range(beam_width):
                want = (step["parents"][request][slot], step["tokens"][request][slot])
                got = (ours[slot]["parent"], ours[slot]["token"])
                if got != want or not close(ours[slot]["score"], step["scores"][request][slot]):
                    step_mismatches += 1
                    if step_mismatches <= 10:
                        problems.append(f"step {t} request {request} slot {slot}: xgr (parent, token, score) = "
                                        f"({got[0]}, {got[1]}, {ours[slot]['score']:.7g}), HF ({want[0]}, {want[1]}, "
                                        f"{step['scores'][request][slot]:.7g})")
    case["step_mismatches"] = step_mismatches

    # 4. Final results: codes in HF's order, scores, item ids.
    final_mismatches, max_score_error = 0, 0.0
    for request in range(requests):
        ours = replay["results"].get(request, [])
        if len(ours) != beam_width:
            problems.append(f"request {request}: xgr returns {len(ours)} results, HF {beam_width}")
            final_mismatches += 1
            continue
        for j in range(beam_width):
            want_codes = [tok - LEVEL_TOKEN_OFFSETS[level] for level, tok in enumerate(hf_tokens[request][j])]
            want_items = trie.items.get(tuple(want_codes), [])
            got = ours[j]
            error = abs(got["score"] - hf_scores[request][j])
            max_score_error = max(max_score_error, error)
            reasons = []
            if got["codes"] != want_codes:
                reasons.append(f"codes {got['codes']} vs HF {want_codes}")
            if not close(got["score"], hf_scores[request][j]):
                reasons.append(f"score {got['score']:.7g} vs HF {hf_scores[request][j]:.7g}")
            if not want_items or got["item"] != want_items[0] or got["items"] != len(want_items):
                reasons.append(f"item {got['item']} (x{got['items']}) vs catalogue {want_items[:1]} (x{len(want_items)})")
            if reasons:
                final_mismatches += 1
                if final_mismatches <= 10:
                    problems.append(f"request {request} beam {j}: " + "; ".join(reasons))
    case["final_mismatches"] = final_mismatches
    case["max_score_error"] = max_score_error
    if case["min_margin"] < ABS_TOL:
        case["notes"].append(f"closest score gap {case['min_margin']:.3g} is inside the tolerance: an order difference "
                             "there would be float rounding (xgr's log-sum-exp vs torch's), not a selection bug")
    case["passed"] = not problems
    case["work_dir"] = case_dir
    return case


def print_table(cases):
    header = f"{'B':>3} {'requests':>8} {'HF self-check':>13} {'step diffs':>10} {'final diffs':>11} " \
             f"{'max |dscore|':>12} {'min gap':>9}  verdict"
    print(header)
    print("-" * len(header))
    for case in cases:
        print(f"{case['beam_width']:>3} {case['requests']:>8} {'ok' if case['hf_self_consistent'] else 'DIFFERS':>13} "
              f"{case['step_mismatches']:>10} {case['final_mismatches']:>11} {case['max_score_error']:>12.3g} "
              f"{case['min_margin']:>9.3g}  {'PASS' if case['passed'] else 'FAIL'}")
    for case in cases:
        for line in case["problems"]:
            print(f"  B={case['beam_width']}: {line}")
        for line in case["notes"]:
            print(f"  B={case['beam_width']} note: {line}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replay", default="build/cuda/tests/xgr_beam_replay", help="the xgr_beam_replay binary")
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None, help="where HF runs (default: cuda if present)")
    parser.add_argument("--exec", choices=["host", "cuda"], default="host", help="BeamSearcher implementation in the replay")
    parser.add_argument("--beams", default="4,8,16", help="comma-separated beam widths, each <= %d" % CODEBOOK)
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--prompt-len", type=int, default=12)
    parser.add_argument("--items", type=int, default=300, help="random catalogue items (plus duplicates)")
    parser.add_argument("--duplicates", type=int, default=12, help="extra items repeating an earlier tuple")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--lm-head-std", type=float, default=0.25, help="init std of the output head")
    parser.add_argument("--work-dir", default=None, help="where the case files go (default: a new temp folder, kept)")
    parser.add_argument("--out-json", default=None, help="write a JSON summary here")
    args = parser.parse_args()

    try:
        if not os.path.isfile(args.replay) and os.path.isfile(os.path.join(REPO_ROOT, args.replay)):
            args.replay = os.path.join(REPO_ROOT, args.replay)
        if not os.path.isfile(args.replay):
            raise SetupError(f"replay tool {args.replay} not found: build it with "
                             "`cmake --preset cuda && cmake --build build/cuda --target xgr_beam_replay`")
        beam_widths = [int(b) for b in args.beams.split(",") if b.strip()]
        torch, transformers = import_hf()
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cuda" and not torch.cuda.is_available():
            raise SetupError("--device cuda, but torch sees no CUDA device")
        print(f"HF device: {device}" + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else "")
              + f"; replay: {args.replay} --exec {args.exec}")
        work_dir = args.work_dir or tempfile.mkdtemp(prefix="xgr_hf_oracle_")
        os.makedirs(work_dir, exist_ok=True)

        items = make_catalogue(args.seed, args.items, args.duplicates)
        trie = Trie(items)
        model = build_model(torch, transformers, args.seed, device, args.lm_head_std)
        prompts = torch.randint(SPECIAL_TOKENS, VOCAB, (args.requests, args.prompt_len),
                                generator=torch.Generator().manual_seed(args.seed + 1)).to(device)
        print(f"catalogue: {len(items)} items, {len(trie.items)} distinct tuples, L = {LEVELS}, codebook {CODEBOOK}, "
              f"level token offsets {LEVEL_TOKEN_OFFSETS}, vocab {VOCAB}; {args.requests} prompts of {args.prompt_len} "
              f"tokens; files in {work_dir}")
        cases = [run_case(torch, transformers, model, prompts, items, trie, b, args, work_dir) for b in beam_widths]
    except SetupError as error:
        print(f"hf_beam_oracle: SETUP ERROR: {error}", file=sys.stderr)
        return EXIT_SETUP

    print_table(cases)
    passed = all(case["passed"] for case in cases)
    if args.out_json:
        summary = {"passed": passed, "torch": torch.__version__, "transformers": transformers.__version__,
                   "device": device, "exec": args.exec, "seed": args.seed, "levels": LEVELS, "codebook": CODEBOOK,
                   "vocab": VOCAB, "level_token_offsets": LEVEL_TOKEN_OFFSETS, "abs_tol": ABS_TOL, "rel_tol": REL_TOL,
                   "cases": cases}
        with open(args.out_json, "w", encoding="ascii") as out:
            json.dump(summary, out, indent=1, default=str)
    print("hf_beam_oracle: " + ("PASS" if passed else "FAIL") + f" ({sum(c['passed'] for c in cases)}/{len(cases)} cases)")
    return 0 if passed else EXIT_MISMATCH


if __name__ == "__main__":
    sys.exit(main())
