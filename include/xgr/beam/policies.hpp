// xgr/beam/policies.hpp — the three ways a beam step can vary, chosen at compile time.
//
//   BeamSearcher<Exec, Normalize, Select, Filter>
//
// Normalize decides over which columns a row's log-softmax is taken (this changes the scores, so it
// is part of the function). Select is a MaskedTopK policy (xgr/topk/policies.hpp) and Filter is how
// the trie's allowed tokens reach the selection; neither changes the result, only its cost. The
// defaults are HF-compatible and fast; the others are the baselines every speed-up is measured
// against.
#pragma once

#include <cstddef>

#include "xgr/topk/policies.hpp"

namespace xgr::beam {

// Default: log_softmax over the whole logits row, as HF transformers' beam search does.
struct FullVocabLogSoftmax {
  static constexpr bool whole_row = true;
};

// log_softmax over the level's own token slice [level_offset, level_offset + codebook size): the
// probability of a code given that a code of this level comes next.
struct LevelSliceLogSoftmax {
  static constexpr bool whole_row = false;
};

// Default: each step lists every beam's allowed tokens (CSR) straight from the trie; the selection
// reads only those logits for its candidates.
struct SparseTrieFilter {};

// Baseline: each step materialises a dense bitset mask of beams x vocab bits and the selection
// scans every logit under it.
struct DenseMaskFilter {};

// Selection policies, re-exported under the names the beam benchmarks use.
using EarlyExitSelect = topk::EarlyExit;   // default
using NoEarlyExitSelect = topk::NoEarlyExit;
using FullSortSelect = topk::FullSort;

}  // namespace xgr::beam
