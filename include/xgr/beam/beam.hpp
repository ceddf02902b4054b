// xgr/beam/beam.hpp — BeamSearcher: trie-constrained beam search over semantic-ID codes.
//
// A batch holds requests, each with its own beam width B_r <= max_beam_width. Rows of the logits are
// *beam slots*: request r owns rows [row_begin(r), row_begin(r) + B_r) in every step, with
// row_begin(r) = B_0 + ... + B_{r-1}. Its live beams occupy the first live_beams(r) slots, best
// first; the logits of the other slots are never read. The fixed layout keeps every step the same
// shape (one CUDA graph serves all steps) and lets beams reorder by index, never by moving data.
//
// One step at level l (0 <= l < L), for every live beam b with score s_b at trie node n_b:
//
//   lse_b        = log_sum_exp(logits[b][normalized columns])         (xgr/beam/log_softmax.hpp)
//   offset_b     = s_b - lse_b                                        (one float subtraction)
//   score(b, t)  = logits[b][t] + offset_b                           (one float addition)
//
// for every allowed token t = level_token_offset[l] + c, c a child code of n_b in the trie. All
// other tokens score -inf (HF's prefix_allowed_tokens_fn). Among the request's candidates the B_r
// highest scores survive, ties broken by the lower flattened index (slot * vocab + t); NaN and -inf
// never survive, so a request may keep fewer than B_r beams (dead ends, tiny catalogues). With
// top_k_per_beam = K > 0 each beam first keeps only its own K best candidates (the B x K candidate
// pool of production GR engines); K >= B_r changes nothing, since a request's top B_r never needs
// more than B_r candidates of one beam.
//
// The survivors become the new beams in order: slot j gets parent slot, token, score, trie node and
// token history, and ancestry(l) records each new slot's parent row — what a KV cache needs to
// reorder beams by index (parents(l) wraps it as the BeamParents that kv::record_parents takes).
// After L steps finalize() writes, per slot, the codes, the score, the first
// item id of the tuple and how many items share it.
//
// Implementations (identical selections, bit for bit):
//   xgr/beam/host.hpp   BeamSearcher<exec::host_t, ...>   the readable reference
//   xgr/beam/cuda.cuh   BeamSearcher<exec::cuda, ...>     fused normalisation + MaskedTopK kernels
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "xgr/beam/log_softmax.hpp"
#include "xgr/beam/policies.hpp"
#include "xgr/core/beam_parents.hpp"
#include "xgr/core/error.hpp"
#include "xgr/core/view.hpp"
#include "xgr/items/trie.hpp"
#include "xgr/topk/topk.hpp"

namespace xgr {

// Sizes a searcher is built for; every buffer is allocated once from them.
struct BeamConfig {
  std::size_t max_requests = 1;
  std::size_t max_beam_width = 1;                   // B_r <= max_beam_width <= max_topk_k (1024)
  std::size_t vocab = 0;                            // logits row length
  std::vector<std::uint32_t> level_token_offsets;   // token of code c at level l = offset[l] + c; empty = all 0
  std::size_t top_k_per_beam = 0;                   // 0: no per-beam cap
};

// Written to codes of slots past a request's count.
inline constexpr std::uint32_t no_code = 0xffffffffu;

// Where finalize() writes, in the memory space of the implementation (device for exec::cuda).
// Row = beam slot: request r's results are rows [row_begin(r), row_begin(r) + counts[r]), best first.
// Slots past the count hold codes no_code, score -inf, item id 0 and item count 0.
struct BeamResults {
  MatrixView<std::uint32_t> codes;    // slots x levels
  std::span<float> scores;            // slots
  std::span<ItemId> item_ids;         // slots: the first item of the tuple (input-table order)
  std::span<std::uint32_t> item_counts;  // slots: items sharing the tuple (> 1: duplicates)
  std::span<std::uint32_t> counts;    // requests: live beams
};

template <class Exec, class Normalize = beam::FullVocabLogSoftmax, class Select = beam::EarlyExitSelect,
          class Filter = beam::SparseTrieFilter>
class BeamSearcher;

namespace beam::detail {

// The normalised columns of a row at one level: [begin, end).
template <class Normalize>
constexpr std::pair<std::size_t, std::size_t> normalized_columns(std::size_t vocab, std::uint32_t level_offset,
                                                                 std::uint32_t codebook) noexcept {
  if constexpr (Normalize::whole_row) {
    return {0, vocab};
  } else {
    return {level_offset, level_offset + codebook};
  }
}

// Checks a configuration against the trie it will search; returns the per-level token offsets.
inline std::vector<std::uint32_t> validate_config(const BeamConfig& config, std::span<const std::uint32_t> codebook_sizes) {
  const char* op = "BeamSearcher";
  const std::size_t levels = codebook_sizes.size();
  require_argument(levels >= 1, op, "the trie has no levels (build it first)");
  require_argument(config.max_requests >= 1, op, "max_requests must be at least 1");
  require_argument(config.max_beam_width >= 1 && config.max_beam_width <= max_topk_k, op,
                   [&] { return "max_beam_width must be in [1, " + std::to_string(max_topk_k) + "], got " +
                                    std::to_string(config.max_beam_width); });
  require_argument(config.vocab >= 1 && config.vocab <= max_normalized_vocab, op,
                   [&] { return "vocab must be in [1, " + std::to_string(max_normalized_vocab) + "], got " +
                                    std::to_string(config.vocab); });
  require_argument(config.top_k_per_beam <= max_topk_k, op,
                   [&] { return "top_k_per_beam must be at most " + std::to_string(max_topk_k); });
  require_argument(config.max_beam_width <= (std::size_t{0xffffffffu} - 1) / config.vocab, op,
                   "max_beam_width x vocab does not fit 32-bit flat candidate indices");
  std::vector<std::uint32_t> offsets = config.level_token_offsets;
  if (offsets.empty()) offsets.assign(levels, 0);
  require_argument(offsets.size() == levels, op,
                   [&] { return "level_token_offsets needs one entry per trie level (" + std::to_string(levels) + "), got " +
                                    std::to_string(offsets.size()); });
  for (std::size_t level = 0; level < levels; ++level) {
    require_argument(std::size_t{offsets[level]} + codebook_sizes[level] <= config.vocab, op,
                     [&] { return "level " + std::to_string(level) + "'s tokens [" + std::to_string(offsets[level]) + ", " +
                                      std::to_string(std::size_t{offsets[level]} + codebook_sizes[level]) +
                                      ") do not fit the vocab of " + std::to_string(config.vocab); });
  }
  return offsets;
}

// Checks a batch's beam widths, then writes row_begin (requests + 1 entries; the caller reserves
// max_requests + 1 once). A failed check leaves row_begin as it was.
inline void plan_rows(const BeamConfig& config, std::span<const std::uint32_t> beam_widths, std::vector<std::uint32_t>& row_begin) {
  const char* op = "BeamSearcher::begin";
  require_argument(!beam_widths.empty() && beam_widths.size() <= config.max_requests, op, [&] {
    return "a batch needs 1 to max_requests = " + std::to_string(config.max_requests) + " requests, got " +
           std::to_string(beam_widths.size());
  });
  for (std::size_t request = 0; request < beam_widths.size(); ++request) {  // every check before the first write
    require_argument(beam_widths[request] >= 1 && beam_widths[request] <= config.max_beam_width, op, [&] {
      return "request " + std::to_string(request) + " has beam width " + std::to_string(beam_widths[request]) +
             ", outside [1, max_beam_width = " + std::to_string(config.max_beam_width) + "]";
    });
  }
  row_begin.assign(beam_widths.size() + 1, 0);  // within the capacity reserved at construction: no allocation
  for (std::size_t request = 0; request < beam_widths.size(); ++request) {
    row_begin[request + 1] = row_begin[request] + beam_widths[request];
  }
}

template <class T>
void validate_logits(MatrixView<const T> logits, std::size_t slots, std::size_t vocab, std::size_t step, std::size_t levels) {
  const char* op = "BeamSearcher::step";
  require_argument(slots > 0, op, "no batch: call begin() first");
  require_argument(step < levels, op,
                   [&] { return "all " + std::to_string(levels) +
                                    " levels are decoded; call finalize() or begin() a new batch"; });
  require_argument(logits.rows >= slots && logits.cols == vocab, op,
                   [&] { return "logits must be beam slots x vocab = " + std::to_string(slots) + " x " + std::to_string(vocab) +
                                    ", got " + std::to_string(logits.rows) + " x " + std::to_string(logits.cols); });
  require_argument(logits.data != nullptr && logits.row_stride >= logits.cols, op, "logits are null or badly strided");
}

inline void validate_results(const BeamResults& out, std::size_t slots, std::size_t requests, std::size_t levels,
                             std::size_t steps_done) {
  const char* op = "BeamSearcher::finalize";
  require_argument(steps_done == levels, op,
                   [&] { return "finalize() needs all " + std::to_string(levels) + " levels decoded, " +
                                    std::to_string(steps_done) + " are"; });
  require_argument(out.codes.rows >= slots && out.codes.cols >= levels && out.codes.data != nullptr, op,
                   "codes must hold beam slots x levels");
  require_argument(out.scores.size() >= slots && out.item_ids.size() >= slots && out.item_counts.size() >= slots, op,
                   [&] { return "scores, item_ids and item_counts need one entry per beam slot (" + std::to_string(slots) +
                                    ")"; });
  require_argument(out.counts.size() >= requests, op, "counts needs one entry per request");
}

}  // namespace beam::detail
}  // namespace xgr
