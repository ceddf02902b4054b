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
// for selection; the trie mask materialised densely — so that both run in one binary, side by side.
// They compute the same results (the engine tests check it).
struct XgrMode {
  using Cache = HostPool;
  using Select = beam::EarlyExitSelect;
  using Filter = beam::SparseTrieFilter;
  static constexpr const char* name = "xgr";
};
struct BaselineMode {
  using Cache = HostCopyOnFork;
  using Select = beam::FullSortSelect;
  using Filter = beam::DenseMaskFilter;
  static constexpr const char* name = "baseline";
};

struct EngineLimits {
  std::size_t max_group_requests = 8;  // requests prefilled and decoded together
  std::size_t max_beams = 64;
  std::size_t max_prompt_tokens = 1024;
  std::size_t page_tokens = 64;
};

template <class Mode = XgrMode>
class HostEngine {
  using Cache = typename Mode::Cache;
  static constexpr bool copy_on_fork = std::is_same_v<Cache, HostCopyOnFork>;

 public:
  // `level_token_offsets[l]` maps level l's code c to token offset + c; the model's vocabulary must
  // hold every level's range.
  HostEngine(const HostModel& model, const ItemTrie& trie, std::vector<std::uint32_t> level_token_offsets, const EngineLimits& limits)
      : model_(model),
        trie_(trie),
        limits_(limits),
        pool_(cache_config(model, trie, limits)),
        batch_(limits.max_group_requests),
        searcher_(exec::host, trie, beam_config(model, limits, std::move(level_token_offsets))) {}

  [[nodiscard]] std::size_t levels() const noexcept { return trie_.levels(); }

  // Serves requests in groups of at most max_group_requests; every request must fit the limits
  // (Error(invalid_argument) names the first that does not).
  [[nodiscard]] std::vector<Response> serve(std::span<const Request> requests) {
    for (std::size_t i = 0; i < requests.size(); ++i) validate(requests[i], i);
    std::vector<Response> responses;
    responses.reserve(requests.size());
    for (std::size_t begin = 0; begin < requests.size(); begin += limits_.max_group_requests) {
      const std::size_t end = std::min(requests.size(), begin + limits_.max_group_requests);
      serve_group(requests.subspan(begin, end - begin), responses);
    }
    return responses;
  }

 private:
  // Sized for a full group of the longest prompts and widest beams, so a validated group always fits.
  static auto cache_config(const HostModel& model, const ItemTrie& trie, const EngineLimits& limits) {
    const std::size_t steps = std::max<std::size_t>(1, trie.levels());
    if constexpr (copy_on_fork) {
      const std::size_t pages_per_beam = (limits.max_prompt_tokens + steps + limits.page_tokens - 1) / limits.page_tokens;
      return CopyOnForkConfig{model.kv_shape(),          limits.page_tokens,       limits.max_group_requests * limits.max_beams * pages_per_beam,
                              limits.max_group_requests, limits.max_prompt_tokens, limits.max_beams, steps};
    } else {
      const std::size_t pages = (limits.max_prompt_tokens + limits.page_tokens - 1) / limits.page_tokens;
      return KvPoolConfig{model.kv_shape(),          limits.page_tokens,       limits.max_group_requests * pages,
                          limits.max_group_requests, limits.max_prompt_tokens, limits.max_beams, steps};
    }
  }
  static BeamConfig beam_config(const HostModel& model, const EngineLimits& limits, std::vector<std::uint32_t> offsets) {
    BeamConfig config;
    config.max_requests = limits.max_group_requests;
    config.max_beam_width = limits.max_beams;
    config.vocab = model.config().vocab_size;
    config.level_token_offsets = std::move(offsets);
    return config;
  }

  void validate(const Request& request, std::size_t index) const {
    const std::string which = "request " + std::to_string(index);
    require_argument(!request.prompt_tokens.empty() && request.prompt_tokens.size() <= limits_.max_prompt_tokens, "HostEngine::serve",
                     which + " has " + std::to_string(request.prompt_tokens.size()) + " prompt tokens; the engine takes 1.." +
                         std::to_string(limits_.max_prompt_tokens));
    require_argument(request.beams >= 1 && request.beams <= limits_.max_beams, "HostEngine::serve",
                     which + " asks for " + std::to_string(request.beams) + " beams; the engine takes 1.." + std::to_string(limits_.max_beams));
    for (std::uint32_t token : request.prompt_tokens) {
      require_argument(token < model_.config().vocab_size, "HostEngine::serve",
                       which + " has token " + std::to_string(token) + " outside the vocabulary");
    }
  }

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
    if constexpr (copy_on_fork) kv::fork(exec::host, pool_, batch_);  // every beam its own prompt copy

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
      if constexpr (copy_on_fork) {
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
    for (std::size_t i = 0; i < group.size(); ++i) {
      Response response;
      for (std::uint32_t k = 0; k < counts[i]; ++k) {
        const std::size_t row = searcher_.row_begin()[i] + k;
        response.items.push_back({item_ids[row], item_counts[row], {codes.begin() + static_cast<std::ptrdiff_t>(row * L),
                                                                     codes.begin() + static_cast<std::ptrdiff_t>((row + 1) * L)},
                                  scores[row]});
      }
      responses.push_back(std::move(response));
    }
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
