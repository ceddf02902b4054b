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

struct EngineLimits {
  std::size_t max_group_requests = 8;  // requests prefilled and decoded together
  std::size_t max_beams = 64;
  std::size_t max_prompt_tokens = 1024;
  std::size_t page_tokens = 64;
};

class HostEngine {
 public:
  // `level_token_offsets[l]` maps level l's code c to token offset + c; the model's vocabulary must
  // hold every level's range.
  HostEngine(const HostModel& model, const ItemTrie& trie, std::vector<std::uint32_t> level_token_offsets, const EngineLimits& limits)
      : model_(model),
        trie_(trie),
        limits_(limits),
        pool_(pool_config(model, trie, limits)),
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
  static KvPoolConfig pool_config(const HostModel& model, const ItemTrie& trie, const EngineLimits& limits) {
    const std::size_t pages = (limits.max_prompt_tokens + limits.page_tokens - 1) / limits.page_tokens;
    return {model.kv_shape(), limits.page_tokens, limits.max_group_requests * pages, limits.max_group_requests,
            limits.max_prompt_tokens, limits.max_beams, std::max<std::size_t>(1, trie.levels())};
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
      kv::record_parents(exec::host, pool_, batch_, searcher_.parents(step));
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
  HostPool pool_;
  HostBatch batch_;
  BeamSearcher<exec::host_t> searcher_;
};

}  // namespace xgr::engine
