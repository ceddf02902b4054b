// examples/engine/engine.hpp — serving GR requests with the library's primitives (host path).
//
// A request is a user's history, already turned into prompt tokens (an item's L codes, each offset
// into its level's token range), and a beam width. Serving a group of requests is fixed-step: the
// group is admitted into the KvPool once, prefilled together, then decodes exactly L levels
// together —
//
//   prefill                      prompts -> KV pages, last-token logits        (HostModel::prefill)
//   level 0                      BeamSearcher::step on those logits: up to B level-0 codes per request
//   level l = 1 .. L-1           kv::record_parents(level l-1's reorder is already in the searcher)
//                                HostModel::decode(tokens chosen at l-1)  -> logits
//                                BeamSearcher::step(l)
//   finalize                     item ids, codes and scores, best first
//
// — and is released. No request joins or leaves a group mid-way (GR decodes a fixed number of steps,
// so there is nothing to gain from LLM-style continuous batching); a server keeps several groups in
// flight instead (the CUDA engine does, through StreamPipeline). This file is the host reference of
// that loop: exact, slow, and the oracle for the device path.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/model.hpp"
#include "xgr/beam/host.hpp"
#include "xgr/items/trie.hpp"
#include "xgr/kv/host.hpp"

namespace xgr::engine {

struct Request {
  std::vector<std::uint32_t> prompt_tokens;
  std::size_t beams = 1;
};

struct RecommendedItem {
  ItemId item = 0;
  std::uint32_t items_sharing_codes = 0;  // > 1: several catalogue items have these codes
  std::vector<std::uint32_t> codes;
  float score = 0.0f;                      // sum of the L log-probabilities
};

struct Response {
  std::vector<RecommendedItem> items;  // best first; fewer than beams when the catalogue allows fewer
};

// Policies of a serving mode. XgrMode is the library's way; BaselineMode switches each to what LLM
// serving does — a private copy of the prompt KV per beam, copied along every reorder; a full sort
// for selection; the trie mask materialised densely; on the device also one group at a time — so
// that both run in one binary, side by side. They compute the same results (the engine tests check
// it).
struct XgrMode {
  template <class T, MemorySpace Space>
  using Cache = KvPool<T, kv::PageMajor, Space>;
  using Select = beam::EarlyExitSelect;
  using Filter = beam::SparseTrieFilter;
  static constexpr bool copy_on_fork = false;
  static constexpr bool overlap_groups = true;  // CUDA engine: several groups in flight
  static constexpr bool decode_graphs = true;   // CUDA engine: decode rounds replayed from CUDA graphs
  static constexpr const char* name = "xgr";
};
struct BaselineMode {
  template <class T, MemorySpace Space>
  using Cache = CopyOnForkKvCache<T, Space>;
  using Select = beam::FullSortSelect;
  using Filter = beam::DenseMaskFilter;
  static constexpr bool copy_on_fork = true;
  static constexpr bool overlap_groups = false;
  static constexpr bool decode_graphs = false;
  static constexpr const char* name = "baseline";
};

struct EngineLimits {
  std::size_t max_group_requests = 8;  // requests prefilled and decoded together
  std::size_t max_beams = 64;
  std::size_t max_prompt_tokens = 1024;
  std::size_t page_tokens = 64;
};

namespace detail {

// The KV cache of a mode, sized for a full group of the longest prompts and widest beams, so that a
// validated group always fits.
template <class Mode>
auto cache_config(const KvShape& shape, std::size_t levels, const EngineLimits& limits) {
  const std::size_t steps = std::max<std::size_t>(1, levels);
  if constexpr (Mode::copy_on_fork) {
    const std::size_t pages_per_beam = (limits.max_prompt_tokens + steps + limits.page_tokens - 1) / limits.page_tokens;
    return CopyOnForkConfig{shape,
                            limits.page_tokens,
                            limits.max_group_requests * limits.max_beams * pages_per_beam,
                            limits.max_group_requests,
                            limits.max_prompt_tokens,
                            limits.max_beams,
                            steps};
  } else {
    const std::size_t pages = (limits.max_prompt_tokens + limits.page_tokens - 1) / limits.page_tokens;
    return KvPoolConfig{shape, limits.page_tokens, limits.max_group_requests * pages, limits.max_group_requests, limits.max_prompt_tokens,
                        limits.max_beams, steps};
  }
}

inline BeamConfig beam_config(std::size_t vocab, const EngineLimits& limits, std::vector<std::uint32_t> offsets) {
  BeamConfig config;
  config.max_requests = limits.max_group_requests;
  config.max_beam_width = limits.max_beams;
  config.vocab = vocab;
  config.level_token_offsets = std::move(offsets);
  return config;
}

// Error(invalid_argument) naming the request unless it fits the limits and the vocabulary.
inline void validate_request(const Request& request, std::size_t index, const EngineLimits& limits, std::size_t vocab, const char* op) {
  const std::string which = "request " + std::to_string(index);
  require_argument(!request.prompt_tokens.empty() && request.prompt_tokens.size() <= limits.max_prompt_tokens, op,
                   [&] { return which + " has " + std::to_string(request.prompt_tokens.size()) +
                                    " prompt tokens; the engine takes 1.." + std::to_string(limits.max_prompt_tokens); });
  require_argument(request.beams >= 1 && request.beams <= limits.max_beams, op,
                   [&] { return which + " asks for " + std::to_string(request.beams) + " beams; the engine takes 1.." +
                                    std::to_string(limits.max_beams); });
  for (std::uint32_t token : request.prompt_tokens) {
    require_argument(token < vocab, op,
                     [&] { return which + " has token " + std::to_string(token) + " outside the vocabulary"; });
  }
}

// One response per request of a finalized group, from host copies of BeamSearcher::finalize's output.
inline void collect_responses(std::size_t requests, std::size_t levels, std::span<const std::uint32_t> row_begin,
                              std::span<const std::uint32_t> counts, std::span<const std::uint32_t> codes, std::span<const float> scores,
                              std::span<const ItemId> item_ids, std::span<const std::uint32_t> item_counts, std::vector<Response>& out) {
  for (std::size_t i = 0; i < requests; ++i) {
    Response response;
    for (std::uint32_t k = 0; k < counts[i]; ++k) {
      const std::size_t row = row_begin[i] + k;
      const auto first = codes.begin() + static_cast<std::ptrdiff_t>(row * levels);
      response.items.push_back({item_ids[row], item_counts[row], {first, first + static_cast<std::ptrdiff_t>(levels)}, scores[row]});
    }
    out.push_back(std::move(response));
  }
}

}  // namespace detail

template <class Mode = XgrMode>
class HostEngine {
  using Cache = typename Mode::template Cache<float, MemorySpace::host>;

 public:
  // `level_token_offsets[l]` maps level l's code c to token offset + c; the model's vocabulary must
  // hold every level's range.
  HostEngine(const HostModel& model, const ItemTrie& trie, std::vector<std::uint32_t> level_token_offsets, const EngineLimits& limits)
      : model_(model),
        trie_(trie),
        limits_(limits),
        pool_(detail::cache_config<Mode>(model.kv_shape(), trie.levels(), limits)),
        batch_(limits.max_group_requests),
        searcher_(exec::host, trie, detail::beam_config(model.config().vocab_size, limits, std::move(level_token_offsets))) {}

  [[nodiscard]] std::size_t levels() const noexcept { return trie_.levels(); }

  // Serves requests in groups of at most max_group_requests; every request must fit the limits
  // (Error(invalid_argument) names the first that does not).
  [[nodiscard]] std::vector<Response> serve(std::span<const Request> requests) {
    for (std::size_t i = 0; i < requests.size(); ++i) detail::validate_request(requests[i], i, limits_, model_.config().vocab_size, "HostEngine::serve");
    std::vector<Response> responses;
    responses.reserve(requests.size());
    for (std::size_t begin = 0; begin < requests.size(); begin += limits_.max_group_requests) {
      const std::size_t end = std::min(requests.size(), begin + limits_.max_group_requests);
      serve_group(requests.subspan(begin, end - begin), responses);
    }
    return responses;
  }

 private:
  void serve_group(std::span<const Request> group, std::vector<Response>& responses) {
    // Admission: the pool is sized for a full group, so a validated group always fits.
    std::vector<KvRequest> admitted;
    std::vector<std::uint32_t> tokens, widths;
    for (const Request& request : group) {
      admitted.push_back(pool_.admit({request.prompt_tokens.size(), request.beams}));
      tokens.insert(tokens.end(), request.prompt_tokens.begin(), request.prompt_tokens.end());
      widths.push_back(static_cast<std::uint32_t>(request.beams));
    }
    pool_.describe(exec::host, std::span<const KvRequest>(admitted), batch_);

    const std::size_t vocab = model_.config().vocab_size;
    const std::size_t rows = batch_.view().total_beams;
    std::vector<float> last(group.size() * vocab), logits(rows * vocab, 0.0f);
    model_.prefill(pool_, batch_, tokens, last);
    if constexpr (Mode::copy_on_fork) kv::fork(exec::host, pool_, batch_);  // every beam its own prompt copy

    searcher_.begin(exec::host, widths);
    // Level 0: each request has one live beam, its first slot; it scores on the prompt's last logits.
    for (std::size_t i = 0; i < group.size(); ++i) {
      std::copy_n(last.data() + i * vocab, vocab, logits.data() + std::size_t{searcher_.row_begin()[i]} * vocab);
    }
    searcher_.step(exec::host, matrix_view<const float>(logits.data(), rows, vocab));
    std::vector<std::uint32_t> step_tokens(rows);
    for (std::size_t level = 1; level < levels(); ++level) {
      // The tokens chosen at level - 1 go through the model at decode step level - 1; dead slots
      // feed token 0 (their logits are never read).
      const std::size_t step = level - 1;
      if constexpr (Mode::copy_on_fork) {
        kv::reorder(exec::host, pool_, batch_, searcher_.parents(step));  // copies the parents' decode KV
      } else {
        kv::record_parents(exec::host, pool_, batch_, searcher_.parents(step));  // B indices, no KV moves
      }
      const MatrixView<const std::uint32_t> chosen = searcher_.tokens();
      const std::span<const std::uint32_t> nodes = searcher_.trie_nodes();
      for (std::size_t row = 0; row < rows; ++row) step_tokens[row] = nodes[row] == no_trie_node ? 0 : chosen(row, step);
      model_.decode(pool_, batch_, step, step_tokens, logits);
      searcher_.step(exec::host, matrix_view<const float>(logits.data(), rows, vocab));
    }

    const std::size_t L = levels();
    std::vector<std::uint32_t> codes(rows * L), item_counts(rows), counts(group.size());
    std::vector<float> scores(rows);
    std::vector<ItemId> item_ids(rows);
    searcher_.finalize(exec::host, {matrix_view(codes.data(), rows, L), scores, item_ids, item_counts, counts});
    detail::collect_responses(group.size(), L, searcher_.row_begin(), counts, codes, scores, item_ids, item_counts, responses);
    for (const KvRequest& request : admitted) pool_.release(request);
  }

  const HostModel& model_;
  const ItemTrie& trie_;
  EngineLimits limits_;
  Cache pool_;
  HostBatch batch_;
  BeamSearcher<exec::host_t, beam::FullVocabLogSoftmax, typename Mode::Select, typename Mode::Filter> searcher_;
};

}  // namespace xgr::engine
