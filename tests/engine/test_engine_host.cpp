// The host engine end to end: KV-cached decode with beam reorders against a cache-free model run,
// and beam search against brute-force enumeration of the catalogue.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "engine/engine.hpp"
#include "engine/model.hpp"
#include "support/engine_configs.hpp"
#include "support/random.hpp"
#include "xgr/items/io.hpp"

namespace {

using xgr::engine::HostModel;
using xgr::engine::ModelConfig;

// Last-token logits of one prompt, run from scratch in a pool of its own (no cache reuse).
std::vector<float> fresh_last_logits(const HostModel& model, const std::vector<std::uint32_t>& prompt) {
  xgr::engine::HostPool pool({model.kv_shape(), 64, (prompt.size() + 63) / 64, 1, prompt.size(), 1, 1});
  xgr::engine::HostBatch batch(1);
  const std::vector<xgr::KvRequest> requests{pool.admit({prompt.size(), 1})};
  pool.describe(xgr::exec::host, std::span<const xgr::KvRequest>(requests), batch);
  std::vector<float> logits(model.config().vocab_size);
  model.prefill(pool, batch, prompt, logits);
  return logits;
}

double log_softmax_at(const std::vector<float>& logits, std::size_t token) {
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float x : logits) sum += std::exp(static_cast<double>(x) - max);
  return static_cast<double>(logits[token]) - max - std::log(sum);
}

// The score of a code tuple: log-probabilities of its tokens after the prompt, each position run
// from scratch.
double brute_force_score(const HostModel& model, std::vector<std::uint32_t> prompt, const std::vector<std::uint32_t>& codes,
                         const std::vector<std::uint32_t>& offsets) {
  double score = 0.0;
  for (std::size_t level = 0; level < codes.size(); ++level) {
    const std::uint32_t token = offsets[level] + codes[level];
    score += log_softmax_at(fresh_last_logits(model, prompt), token);
    prompt.push_back(token);
  }
  return score;
}

}  // namespace

TEST_CASE("with beams covering the catalogue, both modes return every item tuple in brute-force score order") {
  auto rng = xgr::test::make_rng(901);
  constexpr std::size_t levels = 3, codebook = 4;
  const std::vector<std::uint32_t> offsets{0, 4, 8};
  for (const bool tied : {false, true}) {
    CAPTURE(tied);
    // A tiny catalogue: 12 items over 4 x 4 x 4 codes (two share a tuple on purpose).
    xgr::ItemTable table;
    table.codebook_sizes = {codebook, codebook, codebook};
    std::uniform_int_distribution<std::uint32_t> code(0, codebook - 1);
    for (std::uint64_t item = 0; item < 11; ++item) {
      table.item_ids.push_back(500 + item);
      for (std::size_t l = 0; l < levels; ++l) table.codes.push_back(code(rng));
    }
    table.item_ids.push_back(511);
    for (std::size_t l = 0; l < levels; ++l) table.codes.push_back(table.codes[l]);  // item 511 repeats item 500's codes
    const xgr::ItemTrie trie = xgr::build_item_trie(table);

    const ModelConfig config = xgr::test::small_model_config(16, tied);  // 12 code tokens + 4 others
    const HostModel model(config, xgr::engine::random_weights(config, rng(), 0.3f));
    xgr::engine::HostEngine engine(model, trie, offsets, {2, 64, 64, 64});

    // Three users (two groups), prompts of different lengths, beams enough to keep every prefix.
    std::vector<xgr::engine::Request> requests;
    for (const std::size_t length : {5, 13, 1}) {
      std::vector<std::uint32_t> prompt(length);
      for (std::uint32_t& t : prompt) t = static_cast<std::uint32_t>(rng() % config.vocab_size);
      requests.push_back({prompt, 64});
    }
    const std::vector<xgr::engine::Response> responses = engine.serve(requests);
    REQUIRE(responses.size() == requests.size());

    // The baseline mode (a prompt copy per beam, KV copied along every reorder, full sort, dense
    // masks) computes the same function.
    xgr::engine::HostEngine<xgr::engine::BaselineMode> baseline(model, trie, offsets, {2, 64, 64, 64});
    const std::vector<xgr::engine::Response> baseline_responses = baseline.serve(requests);
    REQUIRE(baseline_responses.size() == responses.size());
    for (std::size_t r = 0; r < responses.size(); ++r) {
      REQUIRE(baseline_responses[r].items.size() == responses[r].items.size());
      for (std::size_t k = 0; k < responses[r].items.size(); ++k) {
        CHECK(baseline_responses[r].items[k].codes == responses[r].items[k].codes);
        CHECK(baseline_responses[r].items[k].item == responses[r].items[k].item);
        CHECK(baseline_responses[r].items[k].score == doctest::Approx(responses[r].items[k].score).epsilon(1e-6));
      }
    }

    for (std::size_t r = 0; r < requests.size(); ++r) {
      CAPTURE(r);
      // Brute force: every distinct tuple of the catalogue, scored from scratch, best first.
      std::vector<std::pair<double, std::vector<std::uint32_t>>> expected;
      for (std::size_t i = 0; i < table.size(); ++i) {
        std::vector<std::uint32_t> codes(table.codes.begin() + static_cast<std::ptrdiff_t>(i * levels),
                                         table.codes.begin() + static_cast<std::ptrdiff_t>((i + 1) * levels));
        if (std::any_of(expected.begin(), expected.end(), [&](const auto& e) { return e.second == codes; })) continue;
        expected.emplace_back(brute_force_score(model, requests[r].prompt_tokens, codes, offsets), codes);
      }
      std::sort(expected.begin(), expected.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
      const auto& got = responses[r].items;
      REQUIRE(got.size() == expected.size());
      for (std::size_t k = 0; k < got.size(); ++k) {
        CAPTURE(k);
        // The k-th best tuple, unless float rounding may swap it with a neighbour scored within 1e-5
        // (the engine sums float log-probs, the brute force doubles).
        const auto near_tie = [&](std::size_t j) {
          return j < expected.size() && std::abs(expected[j].first - expected[k].first) < 1e-5 && got[k].codes == expected[j].second;
        };
        CHECK((got[k].codes == expected[k].second || near_tie(k + 1) || (k > 0 && near_tie(k - 1))));
        CHECK(got[k].score == doctest::Approx(expected[k].first).epsilon(1e-4));
      }
      // A tuple several items share reports them all (item 511 repeats item 500's codes, and
      // random items may too).
      const std::vector<std::uint32_t> shared_codes(table.codes.begin(), table.codes.begin() + levels);
      std::uint32_t sharing = 0;
      for (std::size_t i = 0; i < table.size(); ++i) {
        sharing += std::equal(shared_codes.begin(), shared_codes.end(), table.codes.begin() + static_cast<std::ptrdiff_t>(i * levels));
      }
      const auto shared = std::find_if(got.begin(), got.end(), [&](const auto& item) { return item.codes == shared_codes; });
      REQUIRE(shared != got.end());
      CHECK(shared->item == 500);  // the first item of the tuple in catalogue order
      CHECK(shared->items_sharing_codes == sharing);
      CHECK(sharing >= 2);
    }
  }
}

TEST_CASE("the engine rejects requests outside its limits before serving any") {
  xgr::ItemTable table;
  table.codebook_sizes = {4, 4};
  table.item_ids = {1, 2};
  table.codes = {0, 1, 2, 3};
  const xgr::ItemTrie trie = xgr::build_item_trie(table);
  const ModelConfig config = xgr::test::small_model_config(8, true);
  const HostModel model(config, xgr::engine::random_weights(config, 7));
  xgr::engine::HostEngine engine(model, trie, {0, 4}, {2, 8, 16, 64});
  using Requests = std::vector<xgr::engine::Request>;
  CHECK_THROWS_AS((void)engine.serve(Requests{{{}, 2}}), xgr::Error);                         // empty prompt
  CHECK_THROWS_AS((void)engine.serve(Requests{{std::vector<std::uint32_t>(17, 1), 2}}), xgr::Error);  // too long
  CHECK_THROWS_AS((void)engine.serve(Requests{{{1, 2}, 9}}), xgr::Error);                      // too many beams
  CHECK_THROWS_AS((void)engine.serve(Requests{{{1, 8}, 2}}), xgr::Error);                      // token outside the vocabulary
  CHECK(engine.serve(Requests{{{1, 2, 3}, 2}}).size() == 1);
}
