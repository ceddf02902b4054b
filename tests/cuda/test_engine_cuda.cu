// The CUDA engine end to end against the host engine: the same model (weights rounded to the device
// type on both sides), catalogue and requests. With beams that cover the catalogue, beam search keeps
// every tuple, so both must return the same set of tuples; scores may differ by the device's bf16/fp16
// activations, so order is checked only where scores are further apart than that tolerance. (With
// weights of 0.2 the largest differences were 0.26 in bf16 and 0.04 in fp16 — a factor near the 8x
// between their mantissas, as rounding gives and a bug would not.)
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "engine/cuda_engine.cuh"
#include "engine/cuda_model.cuh"
#include "engine/engine.hpp"
#include "support/random.hpp"
#include "xgr/items/io.hpp"
#include "xgr/items/trie.hpp"

namespace {

using xgr::engine::BaselineMode;
using xgr::engine::CudaEngine;
using xgr::engine::CudaModel;
using xgr::engine::ModelConfig;
using xgr::engine::ModelWeights;
using xgr::engine::Request;
using xgr::engine::Response;
using xgr::engine::XgrMode;

ModelConfig config_of(std::size_t vocab, std::size_t heads, std::size_t kv_heads, std::size_t head_dim, bool tied) {
  ModelConfig config;
  config.hidden_size = 128;
  config.intermediate_size = 192;
  config.num_hidden_layers = 2;
  config.num_attention_heads = heads;
  config.num_key_value_heads = kv_heads;
  config.head_dim = head_dim;
  config.vocab_size = vocab;
  config.tie_word_embeddings = tied;
  return config;
}

// The weights the device sees, back in float: the host engine then differs only in activations.
template <class T>
ModelWeights rounded(ModelWeights w) {
  auto round = [](std::vector<float>& v) {
    for (float& x : v) x = xgr::to_float(xgr::from_float<T>(x));
  };
  round(w.embed);
  round(w.lm_head);
  for (auto& layer : w.layers) {
    for (std::vector<float>* m : {&layer.q_weight, &layer.k_weight, &layer.v_weight, &layer.o_weight, &layer.gate_weight, &layer.up_weight,
                                  &layer.down_weight}) {
      round(*m);
    }
  }
  return w;
}

struct World {
  xgr::ItemTable table;
  std::vector<std::uint32_t> offsets;
  std::vector<Request> requests;
};

// 3 levels x 4 codes, `items` random tuples (some shared); prompts of lengths across page and tile
// boundaries.
World random_world(std::mt19937_64& rng, std::size_t items, std::size_t vocab, std::size_t beams) {
  World w;
  w.table.codebook_sizes = {4, 4, 4};
  w.offsets = {0, 4, 8};
  std::uniform_int_distribution<std::uint32_t> code(0, 3);
  for (std::uint64_t item = 0; item < items; ++item) {
    w.table.item_ids.push_back(700 + item);
    for (int l = 0; l < 3; ++l) w.table.codes.push_back(code(rng));
  }
  for (const std::size_t length : {5, 70, 1, 130, 64, 33}) {
    std::vector<std::uint32_t> prompt(length);
    for (std::uint32_t& t : prompt) t = static_cast<std::uint32_t>(rng() % vocab);
    w.requests.push_back({prompt, beams});
  }
  return w;
}

// Same tuples (with the same first item and sharing count), scores within `tolerance`, and the same
// order wherever the host's scores are more than 2 * tolerance apart. Returns the largest score gap.
double check_same_results(const std::vector<Response>& expected, const std::vector<Response>& got, double tolerance) {
  double worst = 0.0;
  REQUIRE(got.size() == expected.size());
  for (std::size_t r = 0; r < expected.size(); ++r) {
    CAPTURE(r);
    const auto& want = expected[r].items;
    const auto& have = got[r].items;
    REQUIRE(have.size() == want.size());
    std::vector<std::size_t> position(want.size());
    for (std::size_t k = 0; k < want.size(); ++k) {
      const auto match = std::find_if(have.begin(), have.end(), [&](const auto& item) { return item.codes == want[k].codes; });
      REQUIRE(match != have.end());
      CHECK(match->item == want[k].item);
      CHECK(match->items_sharing_codes == want[k].items_sharing_codes);
      const double gap = std::abs(static_cast<double>(match->score) - want[k].score);
      CHECK(gap <= tolerance);
      worst = std::max(worst, gap);
      position[k] = static_cast<std::size_t>(match - have.begin());
    }
    for (std::size_t a = 0; a < want.size(); ++a) {
      for (std::size_t b = a + 1; b < want.size(); ++b) {
        if (want[a].score - want[b].score > 2 * tolerance) CHECK(position[a] < position[b]);
      }
    }
  }
  return worst;
}

bool identical(const std::vector<Response>& a, const std::vector<Response>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t r = 0; r < a.size(); ++r) {
    if (a[r].items.size() != b[r].items.size()) return false;
    for (std::size_t k = 0; k < a[r].items.size(); ++k) {
      const auto &x = a[r].items[k], &y = b[r].items[k];
      if (x.codes != y.codes || x.item != y.item || x.score != y.score) return false;
    }
  }
  return true;
}

template <class T>
void run_against_host(double tolerance, const char* label) {
  auto rng = xgr::test::make_rng(1201);
  double worst = 0.0;
  struct Shape {
    std::size_t heads, kv_heads, head_dim;
    bool tied;
  };
  for (const Shape shape : {Shape{4, 2, 64, true}, Shape{8, 2, 128, false}}) {
    CAPTURE(shape.head_dim);
    CAPTURE(shape.tied);
    const std::size_t vocab = 20;  // 12 code tokens + 8 others
    const World world = random_world(rng, 30, vocab, 64);
    const xgr::ItemTrie trie = xgr::build_item_trie(world.table);
    const ModelConfig config = config_of(vocab, shape.heads, shape.kv_heads, shape.head_dim, shape.tied);
    // Weights of 0.1 keep activations moderate, so that the device's rounding stays well below the
    // score changes a wrong position, reorder or cache would cause.
    const ModelWeights weights = rounded<T>(xgr::engine::random_weights(config, rng(), 0.1f));
    const xgr::engine::EngineLimits limits{2, 64, 160, 64};

    const xgr::engine::HostModel host_model(config, weights);
    xgr::engine::HostEngine<XgrMode> host(host_model, trie, world.offsets, limits);
    const std::vector<Response> expected = host.serve(world.requests);

    const CudaModel<T> model(config, weights);
    CudaEngine<XgrMode, T> engine(model, trie, world.offsets, limits, {3, 1});
    const std::vector<Response> got = engine.serve(world.requests);
    worst = std::max(worst, check_same_results(expected, got, tolerance));

    // Serving again reuses every slot's buffers and gives bit-identical results; so do one group in
    // flight and one stream per group (a race between groups would show here).
    CHECK(identical(engine.serve(world.requests), got));
    CudaEngine<XgrMode, T> serial(model, trie, world.offsets, limits, {1, 1});
    CHECK(identical(serial.serve(world.requests), got));
    CudaEngine<XgrMode, T> streams(model, trie, world.offsets, limits, {3, 0});
    CHECK(identical(streams.serve(world.requests), got));

    // The baseline mode (copy-on-fork KV, full sort, dense masks) computes the same function; its
    // per-beam attention kernel rounds differently, so it too is compared within the tolerance.
    CudaEngine<BaselineMode, T> baseline(model, trie, world.offsets, limits);
    worst = std::max(worst, check_same_results(expected, baseline.serve(world.requests), tolerance));
  }
  std::printf("CUDA engine (%s) against the host engine: largest score difference %.2e\n", label, worst);
}

}  // namespace

TEST_CASE("the CUDA engine returns the host engine's items on a catalogue its beams cover (bf16)") {
  run_against_host<xgr::bfloat16>(0.2, "bf16");
}

TEST_CASE("the CUDA engine returns the host engine's items on a catalogue its beams cover (fp16)") {
  run_against_host<xgr::half>(0.04, "fp16");
}

// The precision path: float weights, activations and KV, fp32 GEMMs and CUDA-core attention. Only
// the order of float operations differs from the host engine.
TEST_CASE("the CUDA engine returns the host engine's items on a catalogue its beams cover (fp32)") {
  run_against_host<float>(1e-3, "fp32");
}

TEST_CASE("decode rounds replayed from CUDA graphs, one per shape bucket, give the plain launches' results") {
  auto rng = xgr::test::make_rng(1203);
  const std::size_t vocab = 20;
  World world = random_world(rng, 40, vocab, 64);
  const xgr::ItemTrie trie = xgr::build_item_trie(world.table);
  const ModelConfig config = config_of(vocab, 8, 2, 128, false);
  const CudaModel<xgr::bfloat16> model(config, xgr::engine::random_weights(config, rng(), 0.1f));
  const xgr::engine::EngineLimits limits{4, 64, 1100, 64};
  CudaEngine<XgrMode, xgr::bfloat16> graphs(model, trie, world.offsets, limits, {2, 1, true});
  CudaEngine<XgrMode, xgr::bfloat16> plain(model, trie, world.offsets, limits, {2, 1, false});

  // Groups of 1..4 requests; each size has a fixed mix of beam widths (so its bucket repeats, up to
  // the attention split count that the longest prompt picks for small groups), with fresh prompts of
  // 1..1100 tokens every time. All submitted at once: two groups in flight, graphs of both slots.
  std::vector<std::vector<Request>> groups;
  std::uniform_int_distribution<std::size_t> length(1, 1100);
  for (int repeat = 0; repeat < 4; ++repeat) {
    for (std::size_t size = 1; size <= 4; ++size) {
      std::vector<Request> group;
      for (std::size_t i = 0; i < size; ++i) {
        std::vector<std::uint32_t> prompt(length(rng));
        for (std::uint32_t& t : prompt) t = static_cast<std::uint32_t>(rng() % vocab);
        group.push_back({prompt, std::size_t{64} >> ((i + size) % 3)});
      }
      groups.push_back(std::move(group));
    }
  }
  auto serve_all = [&](auto& engine) {
    std::vector<std::vector<Response>> results(groups.size());
    for (std::size_t g = 0; g < groups.size(); ++g) {
      engine.submit([&, g] { return groups[g]; },
                    [&, g](std::vector<Response>& responses, std::exception_ptr error) {
                      if (!error) results[g] = std::move(responses);
                    });
    }
    engine.drain();
    return results;
  };
  const auto want = serve_all(plain);
  const auto got = serve_all(graphs);
  const auto again = serve_all(graphs);  // every bucket replayed
  for (std::size_t g = 0; g < groups.size(); ++g) {
    CAPTURE(g);
    REQUIRE(want[g].size() == groups[g].size());
    for (const Response& response : want[g]) CHECK(!response.items.empty());
    CHECK(identical(got[g], want[g]));
    CHECK(identical(again[g], want[g]));
  }
  const xgr::PipelineStats with = graphs.stats(), without = plain.stats();
  CHECK(with.graph_fallbacks == 0);
  CHECK(with.graph_captures > 0);
  CHECK(with.graph_launches == 2 * groups.size());
  CHECK(with.device_launches > 0);  // prefill and finalize are never graphs
  CHECK(without.graph_launches == 0);
  CHECK(without.graph_captures == 0);

  // One slot: the second pass meets only buckets the first captured, and replays them all.
  CudaEngine<XgrMode, xgr::bfloat16> one_slot(model, trie, world.offsets, limits, {1, 1, true});
  const auto first = serve_all(one_slot);
  const xgr::PipelineStats after_first = one_slot.stats();
  const auto second = serve_all(one_slot);
  const xgr::PipelineStats after_second = one_slot.stats();
  for (std::size_t g = 0; g < groups.size(); ++g) {
    CAPTURE(g);
    CHECK(identical(first[g], want[g]));
    CHECK(identical(second[g], want[g]));
  }
  CHECK(after_first.graph_captures <= groups.size());
  CHECK(after_second.graph_captures == after_first.graph_captures);
  CHECK(after_second.graph_launches == 2 * groups.size());
  CHECK(after_second.graph_fallbacks == 0);
  std::printf("decode graphs: %llu buckets among %zu groups\n", static_cast<unsigned long long>(after_first.graph_captures), groups.size());
}

TEST_CASE("the CUDA engine rejects bad requests and goes on serving") {
  auto rng = xgr::test::make_rng(1202);
  const World world = random_world(rng, 20, 16, 8);
  const xgr::ItemTrie trie = xgr::build_item_trie(world.table);
  const ModelConfig config = config_of(16, 4, 2, 64, true);
  const CudaModel<xgr::bfloat16> model(config, xgr::engine::random_weights(config, rng()));
  CudaEngine<XgrMode, xgr::bfloat16> engine(model, trie, world.offsets, {2, 8, 160, 64});
  using Requests = std::vector<Request>;
  CHECK_THROWS_AS((void)engine.serve(Requests{{{}, 2}}), xgr::Error);                                 // empty prompt
  CHECK_THROWS_AS((void)engine.serve(Requests{{std::vector<std::uint32_t>(161, 1), 2}}), xgr::Error);  // too long
  CHECK_THROWS_AS((void)engine.serve(Requests{{{1, 2}, 9}}), xgr::Error);                             // too many beams
  CHECK_THROWS_AS((void)engine.serve(Requests{{{1, 16}, 2}}), xgr::Error);                            // outside the vocabulary

  // An asynchronous group with a bad request fails alone: its callback gets the error.
  std::exception_ptr error;
  bool called = false;
  CHECK_THROWS_AS(engine.submit([] { return Requests{{{1, 99}, 2}}; },
                                [&](std::vector<Response>&, std::exception_ptr e) {
                                  called = true;
                                  error = e;
                                }),
                  xgr::Error);
  engine.drain();
  CHECK(called);
  CHECK(error != nullptr);
  const std::vector<Response> responses = engine.serve(world.requests);
  REQUIRE(responses.size() == world.requests.size());
  for (const Response& response : responses) CHECK(!response.items.empty());
}

TEST_CASE("CudaModel rejects weights that do not fit the config") {
  const ModelConfig config = config_of(16, 4, 2, 64, true);
  ModelWeights weights = xgr::engine::random_weights(config, 3);
  weights.layers[1].down_weight.pop_back();
  CHECK_THROWS_AS(CudaModel<xgr::bfloat16>(config, weights), xgr::Error);
  // What the device kernels do not take: a head_dim other than 64 or 128, an intermediate size that
  // is not a multiple of 8.
  const ModelConfig odd_heads = config_of(16, 4, 2, 96, true);
  CHECK_THROWS_AS(CudaModel<xgr::bfloat16>(odd_heads, xgr::engine::random_weights(odd_heads, 3)), xgr::Error);
  ModelConfig odd_intermediate = config;
  odd_intermediate.intermediate_size = 100;
  CHECK_THROWS_AS(CudaModel<xgr::half>(odd_intermediate, xgr::engine::random_weights(odd_intermediate, 3)), xgr::Error);
}
