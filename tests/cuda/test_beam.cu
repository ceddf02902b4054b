// The CUDA ItemTrie helpers and BeamSearcher against the host reference: every step's beams
// (live counts, scores bit for bit, trie nodes, token histories, ancestry) and the final results.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "support/random.hpp"
#include "xgr/beam/cuda.cuh"
#include "xgr/items/cuda.cuh"
#include "xgr/items/io.hpp"

namespace {

struct Shape {
  std::vector<std::uint32_t> codebooks;
  std::size_t items;
  bool separate_token_ranges;  // levels' tokens side by side in the vocab, or all starting at 0
  std::size_t extra_vocab;     // tokens no level uses (specials)
  std::vector<std::uint32_t> widths;
  std::size_t top_k_per_beam;
  enum class Logits { smooth, ties, with_inf_and_nan } logits;
};

xgr::ItemTrie random_trie(std::mt19937_64& rng, const std::vector<std::uint32_t>& codebooks, std::size_t items) {
  std::vector<std::uint32_t> codes(items * codebooks.size());
  // Skewed codes (a few popular prefixes) so fan-outs vary a lot between nodes.
  for (std::size_t item = 0; item < items; ++item) {
    for (std::size_t level = 0; level < codebooks.size(); ++level) {
      const std::uint64_t a = rng() % codebooks[level];
      const std::uint64_t b = rng() % codebooks[level];
      codes[item * codebooks.size() + level] = static_cast<std::uint32_t>(level == 0 ? std::min(a, b) : a);
    }
  }
  std::vector<xgr::ItemId> ids(items);
  for (auto& id : ids) id = rng();
  return xgr::ItemTrie::build(codebooks, {codes.data(), items, codebooks.size(), codebooks.size()}, ids);
}

template <class T>
std::vector<T> random_logits(std::mt19937_64& rng, std::size_t rows, std::size_t vocab, Shape::Logits kind) {
  std::vector<T> logits(rows * vocab);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<int> few(-3, 3);
  std::uniform_int_distribution<int> percent(0, 99);
  for (auto& value : logits) {
    float x = kind == Shape::Logits::ties ? static_cast<float>(few(rng)) : normal(rng);
    if (kind == Shape::Logits::with_inf_and_nan) {
      const int p = percent(rng);
      if (p < 5) x = -std::numeric_limits<float>::infinity();
      if (p == 5) x = std::numeric_limits<float>::quiet_NaN();
    }
    value = xgr::from_float<T>(x);
  }
  return logits;
}

template <class T>
std::vector<T> copy_to_host(std::span<const T> device) {
  std::vector<T> host(device.size());
  if (!device.empty()) XGR_CUDA_CHECK(cudaMemcpy(host.data(), device.data(), device.size_bytes(), cudaMemcpyDeviceToHost));
  return host;
}

std::vector<std::uint32_t> bits_of(std::span<const float> values) {
  std::vector<std::uint32_t> bits(values.size());
  std::memcpy(bits.data(), values.data(), values.size_bytes());
  return bits;
}

// Fills device outputs with 0x5a bytes so that nothing unwritten can pass. On the searcher's stream:
// a plain cudaMemset runs on the default stream, which a non-blocking stream does not wait for.
template <class... Buffers>
void poison_on(cudaStream_t stream, Buffers&... buffers) {
  (XGR_CUDA_CHECK(cudaMemsetAsync(buffers.data(), 0x5a, buffers.bytes(), stream)), ...);
}

template <class T, class Normalize, class Select, class Filter>
void compare_search(std::mt19937_64& rng, const Shape& shape) {
  const xgr::ItemTrie trie = random_trie(rng, shape.codebooks, shape.items);
  xgr::Stream stream;
  const xgr::exec::cuda exec = stream.exec();
  const xgr::DeviceItemTrie device_trie(trie, exec);

  xgr::BeamConfig config;
  config.max_requests = shape.widths.size() + 1;  // the batch need not fill the searcher
  config.max_beam_width = *std::max_element(shape.widths.begin(), shape.widths.end());
  config.top_k_per_beam = shape.top_k_per_beam;
  std::uint32_t next_token = 0;
  for (std::uint32_t codebook : shape.codebooks) {
    config.level_token_offsets.push_back(shape.separate_token_ranges ? next_token : 0);
    next_token = shape.separate_token_ranges ? next_token + codebook : std::max(next_token, codebook);
  }
  config.vocab = next_token + shape.extra_vocab;

  xgr::BeamSearcher<xgr::exec::host_t, Normalize, Select, Filter> host(xgr::exec::host, trie, config);
  xgr::BeamSearcher<xgr::exec::cuda, Normalize, Select, Filter> device(exec, device_trie, config);
  host.begin(xgr::exec::host, shape.widths);
  device.begin(exec, shape.widths);
  const std::size_t slots = host.slot_count();
  REQUIRE(device.slot_count() == slots);

  xgr::DeviceBuffer<T> device_logits(slots * config.vocab);
  for (std::size_t level = 0; level < trie.levels(); ++level) {
    CAPTURE(level);
    const std::vector<T> logits = random_logits<T>(rng, slots, config.vocab, shape.logits);
    XGR_CUDA_CHECK(cudaMemcpyAsync(device_logits.data(), logits.data(), logits.size() * sizeof(T), cudaMemcpyHostToDevice, stream.get()));
    host.step(xgr::exec::host, xgr::matrix_view(logits.data(), slots, config.vocab));
    device.step(exec, xgr::MatrixView<const T>{device_logits.data(), slots, config.vocab, config.vocab});
    stream.synchronize();

    const std::vector<std::uint32_t> live = copy_to_host(device.live_beams());
    const std::vector<float> scores = copy_to_host(device.beam_scores());
    const std::vector<std::uint32_t> nodes = copy_to_host(device.trie_nodes());
    const std::vector<std::uint32_t> ancestry = copy_to_host(device.ancestry(level));
    const std::vector<std::uint32_t> tokens = copy_to_host(std::span<const std::uint32_t>(device.tokens().data, slots * trie.levels()));
    REQUIRE(live == std::vector<std::uint32_t>(host.live_beams().begin(), host.live_beams().end()));
    CHECK(ancestry == std::vector<std::uint32_t>(host.ancestry(level).begin(), host.ancestry(level).end()));
    for (std::size_t request = 0; request < shape.widths.size(); ++request) {
      for (std::uint32_t slot = 0; slot < live[request]; ++slot) {
        const std::size_t row = host.row_begin()[request] + slot;
        CAPTURE(row);
        REQUIRE(bits_of({&scores[row], 1}) == bits_of({&host.beam_scores()[row], 1}));
        REQUIRE(nodes[row] == host.trie_nodes()[row]);
        for (std::size_t l = 0; l <= level; ++l) REQUIRE(tokens[row * trie.levels() + l] == host.tokens()(row, l));
      }
    }
  }

  // Final results, device outputs poisoned first so nothing unwritten can pass.
  const std::size_t levels = trie.levels();
  std::vector<std::uint32_t> codes(slots * levels), item_counts(slots), counts(shape.widths.size());
  std::vector<float> scores(slots);
  std::vector<xgr::ItemId> ids(slots);
  host.finalize(xgr::exec::host, {xgr::matrix_view(codes.data(), slots, levels), scores, ids, item_counts, counts});
  xgr::DeviceBuffer<std::uint32_t> d_codes(slots * levels), d_item_counts(slots), d_counts(shape.widths.size());
  xgr::DeviceBuffer<float> d_scores(slots);
  xgr::DeviceBuffer<xgr::ItemId> d_ids(slots);
  poison_on(stream.get(), d_codes, d_item_counts, d_counts, d_scores, d_ids);
  device.finalize(exec, {xgr::matrix_view(d_codes.data(), slots, levels), d_scores.span(), d_ids.span(), d_item_counts.span(), d_counts.span()});
  stream.synchronize();
  CHECK(copy_to_host<std::uint32_t>(d_codes.span()) == codes);
  CHECK(bits_of(copy_to_host<float>(d_scores.span())) == bits_of(scores));
  CHECK(copy_to_host<xgr::ItemId>(d_ids.span()) == ids);
  CHECK(copy_to_host<std::uint32_t>(d_item_counts.span()) == item_counts);
  CHECK(copy_to_host<std::uint32_t>(d_counts.span()) == counts);
}

std::vector<Shape> standard_shapes() {
  using L = Shape::Logits;
  return {
      {{16, 16, 16}, 300, true, 2, {8, 8, 8}, 0, L::smooth},
      {{5}, 4, true, 0, {3, 9}, 0, L::smooth},                          // one level; width above the valid set
      {{7, 11}, 0, false, 3, {4}, 0, L::smooth},                        // empty catalogue: no results
      {{37, 37, 37}, 2000, false, 0, {1, 17, 64}, 0, L::ties},          // many equal scores
      {{64, 64, 64}, 5000, true, 5, {32, 5, 100}, 0, L::with_inf_and_nan},
      {{256, 256, 256}, 20000, true, 0, {128, 128, 256}, 0, L::smooth},
      {{256, 256, 256}, 20000, false, 1, {256, 100}, 7, L::smooth},     // per-beam cap below the width
      {{100, 1000, 10}, 3000, true, 0, {300, 1}, 500, L::smooth},       // cap above the width: no effect
      {{1000, 1000}, 30000, false, 0, {1024, 333}, 0, L::smooth},       // widest beams
      {{8, 8, 8, 8, 8, 8, 8, 8}, 3000, true, 0, {50, 20}, 0, L::smooth}, // eight levels
  };
}

// Each shape through the normalisation's variants: full-vocab and level-slice rows of fp32, the
// dense-mask baseline, bf16 and fp16.
void compare_normalisations(std::mt19937_64& rng, const std::vector<Shape>& shapes) {
  for (const Shape& shape : shapes) {
    CAPTURE(shape.items);
    compare_search<float, xgr::beam::FullVocabLogSoftmax, xgr::beam::EarlyExitSelect, xgr::beam::SparseTrieFilter>(rng, shape);
    compare_search<float, xgr::beam::LevelSliceLogSoftmax, xgr::beam::EarlyExitSelect, xgr::beam::SparseTrieFilter>(rng, shape);
    compare_search<float, xgr::beam::FullVocabLogSoftmax, xgr::beam::NoEarlyExitSelect, xgr::beam::DenseMaskFilter>(rng, shape);
    compare_search<xgr::bfloat16, xgr::beam::FullVocabLogSoftmax, xgr::beam::EarlyExitSelect, xgr::beam::SparseTrieFilter>(rng, shape);
    compare_search<xgr::half, xgr::beam::LevelSliceLogSoftmax, xgr::beam::EarlyExitSelect, xgr::beam::SparseTrieFilter>(rng, shape);
  }
}

// `widths` followed by widths of up to 512 until the beams number `rows`.
std::vector<std::uint32_t> widths_for_rows(std::size_t rows, std::vector<std::uint32_t> widths) {
  std::size_t total = std::accumulate(widths.begin(), widths.end(), std::size_t{0});
  for (; total < rows; total += widths.back()) widths.push_back(static_cast<std::uint32_t>(std::min<std::size_t>(512, rows - total)));
  return widths;
}

// Sums of terms_per_sum consecutive exp_fixed terms, the way the normalisation kernel sums them.
__global__ void exp_fixed_sums_kernel(const float* xs, std::size_t sums, int terms_per_sum, std::uint64_t* out) {
  const std::size_t sum_index = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (sum_index >= sums) return;
  xgr::beam::ExpFixedSum sum;
  for (int i = 0; i < terms_per_sum; ++i) sum.add(xs[sum_index * terms_per_sum + i]);
  out[sum_index] = sum.join();
}

}  // namespace

TEST_CASE("The device's split sum of exp_fixed terms equals the host's 64-bit sum, term by term and in 32s") {
  std::mt19937_64 rng = xgr::test::make_rng(300);
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> xs{0.0f, -0.0f, -30.0f, -29.99f, -30.01f, -29.9f, -inf, std::numeric_limits<float>::quiet_NaN(),
                        1e-30f, -1e-30f, -0.34657359f, -0.34657362f, -1.0397208f, -43.0f, -1e30f};
  std::uniform_real_distribution<float> range(-32.0f, 0.0f);
  std::uniform_real_distribution<float> near_zero(-2.0f, 0.0f);
  while (xs.size() % 32 != 0 || xs.size() < (1u << 20)) xs.push_back(xs.size() % 3 == 0 ? near_zero(rng) : range(rng));
  const auto d_xs = xgr::to_device<float>(xs);
  for (int terms_per_sum : {1, 32}) {
    CAPTURE(terms_per_sum);
    const std::size_t sums = xs.size() / terms_per_sum;
    xgr::DeviceBuffer<std::uint64_t> d_sums(sums);
    exp_fixed_sums_kernel<<<static_cast<unsigned>((sums + 255) / 256), 256>>>(d_xs.data(), sums, terms_per_sum, d_sums.data());
    XGR_CUDA_CHECK(cudaGetLastError());
    const std::vector<std::uint64_t> got = copy_to_host<std::uint64_t>(d_sums.span());
    std::size_t mismatches = 0;
    for (std::size_t i = 0; i < sums; ++i) {
      std::uint64_t want = 0;
      for (int t = 0; t < terms_per_sum; ++t) want += xgr::beam::exp_fixed(xs[i * terms_per_sum + t]);
      if (got[i] != want && mismatches++ < 5) {
        FAIL_CHECK("sum " << i << " (first x " << xs[i * terms_per_sum] << "): device " << got[i] << ", host " << want);
      }
    }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("CUDA allowed sets equal the host's: CSR tokens and bitset rows") {
  std::mt19937_64 rng = xgr::test::make_rng(301);
  for (int round = 0; round < 6; ++round) {
    const std::vector<std::uint32_t> codebooks{50, 300, 7};
    const xgr::ItemTrie trie = random_trie(rng, codebooks, 1 + rng() % 5000);
    const xgr::DeviceItemTrie device_trie(trie, xgr::exec::cuda{});
    // The scan's blocks take 2,048 rows each, a cluster up to 8 of them a pass: rows for one block,
    // for several blocks in one pass, and for several passes.
    const std::size_t rows = round % 3 == 0 ? 1 + rng() % 3000 : round % 3 == 1 ? 4000 + rng() % 12000 : 17000 + rng() % 24000;
    std::vector<std::uint32_t> nodes(rows);
    for (auto& node : nodes) {
      const auto pick = rng() % 10;
      node = pick == 0 ? xgr::no_trie_node : static_cast<std::uint32_t>(rng() % trie.node_count());  // leaves included
    }
    const std::uint32_t token_offset = static_cast<std::uint32_t>(rng() % 40);
    const std::size_t total = xgr::allowed_token_count(trie.view(), nodes);
    std::vector<std::uint32_t> row_ptr(rows + 1), columns(total);
    xgr::allowed_tokens(xgr::exec::host, trie.view(), nodes, token_offset, row_ptr, columns);

    const auto d_nodes = xgr::to_device<std::uint32_t>(nodes);
    xgr::DeviceBuffer<std::uint32_t> d_row_ptr(rows + 1), d_columns(std::max<std::size_t>(total, 1));
    xgr::allowed_tokens(xgr::exec::cuda{}, device_trie.view(), d_nodes.span(), token_offset, d_row_ptr.span(), d_columns.span());
    XGR_CUDA_CHECK(cudaDeviceSynchronize());
    CHECK(copy_to_host<std::uint32_t>(d_row_ptr.span()) == row_ptr);
    CHECK(copy_to_host<std::uint32_t>(d_columns.span().first(total)) == columns);

    const std::size_t words = (token_offset + 300 + 31) / 32 + 1;
    std::vector<std::uint32_t> mask(rows * words);
    xgr::allowed_mask(xgr::exec::host, trie.view(), nodes, token_offset, xgr::matrix_view(mask.data(), rows, words));
    xgr::DeviceBuffer<std::uint32_t> d_mask(rows * words);
    XGR_CUDA_CHECK(cudaMemset(d_mask.data(), 0xff, d_mask.bytes()));  // stale bits must be cleared
    xgr::allowed_mask(xgr::exec::cuda{}, device_trie.view(), d_nodes.span(), token_offset, xgr::matrix_view(d_mask.data(), rows, words));
    XGR_CUDA_CHECK(cudaDeviceSynchronize());
    CHECK(copy_to_host<std::uint32_t>(d_mask.span()) == mask);
  }
}

TEST_CASE("CUDA allowed tokens never write past an undersized buffer") {
  std::mt19937_64 rng = xgr::test::make_rng(302);
  const xgr::ItemTrie trie = random_trie(rng, {64, 64}, 2000);
  const xgr::DeviceItemTrie device_trie(trie, xgr::exec::cuda{});
  std::vector<std::uint32_t> nodes(5000, 0);  // 5,000 roots (three of the scan's blocks), up to 64 children each
  const auto d_nodes = xgr::to_device<std::uint32_t>(nodes);
  xgr::DeviceBuffer<std::uint32_t> d_row_ptr(5001), d_columns(1000 + 16);
  XGR_CUDA_CHECK(cudaMemset(d_columns.data(), 0xab, d_columns.bytes()));
  xgr::allowed_tokens(xgr::exec::cuda{}, device_trie.view(), d_nodes.span(), 0, d_row_ptr.span(), d_columns.span().first(1000));
  XGR_CUDA_CHECK(cudaDeviceSynchronize());
  const auto row_ptr = copy_to_host<std::uint32_t>(d_row_ptr.span());
  const auto columns = copy_to_host<std::uint32_t>(d_columns.span());
  CHECK(row_ptr.back() == 1000);
  CHECK(std::is_sorted(row_ptr.begin(), row_ptr.end()));
  for (std::size_t i = 1000; i < columns.size(); ++i) CHECK(columns[i] == 0xababababu);
}

TEST_CASE("CUDA BeamSearcher equals the host reference step by step (default policies, f32)") {
  std::mt19937_64 rng = xgr::test::make_rng(303);
  for (const Shape& shape : standard_shapes()) {
    CAPTURE(shape.items);
    CAPTURE(shape.codebooks.size());
    compare_search<float, xgr::beam::FullVocabLogSoftmax, xgr::beam::EarlyExitSelect, xgr::beam::SparseTrieFilter>(rng, shape);
  }
}

TEST_CASE("CUDA BeamSearcher baselines and policies select the same beams as the host") {
  std::mt19937_64 rng = xgr::test::make_rng(304);
  for (const Shape& shape : standard_shapes()) {
    CAPTURE(shape.items);
    compare_search<float, xgr::beam::FullVocabLogSoftmax, xgr::beam::FullSortSelect, xgr::beam::SparseTrieFilter>(rng, shape);
    compare_search<float, xgr::beam::FullVocabLogSoftmax, xgr::beam::NoEarlyExitSelect, xgr::beam::DenseMaskFilter>(rng, shape);
    compare_search<float, xgr::beam::FullVocabLogSoftmax, xgr::beam::EarlyExitSelect, xgr::beam::DenseMaskFilter>(rng, shape);
    compare_search<float, xgr::beam::LevelSliceLogSoftmax, xgr::beam::EarlyExitSelect, xgr::beam::SparseTrieFilter>(rng, shape);
  }
}

TEST_CASE("CUDA BeamSearcher equals the host reference on half and bfloat16 logits") {
  std::mt19937_64 rng = xgr::test::make_rng(305);
  for (const Shape& shape : standard_shapes()) {
    CAPTURE(shape.items);
    compare_search<xgr::half, xgr::beam::FullVocabLogSoftmax, xgr::beam::EarlyExitSelect, xgr::beam::SparseTrieFilter>(rng, shape);
    compare_search<xgr::bfloat16, xgr::beam::FullVocabLogSoftmax, xgr::beam::EarlyExitSelect, xgr::beam::SparseTrieFilter>(rng, shape);
  }
}

TEST_CASE("CUDA BeamSearcher on a GR-sized batch: 4 requests x 256 beams x 8192 codes") {
  std::mt19937_64 rng = xgr::test::make_rng(306);
  using L = Shape::Logits;
  const Shape shape{{8192, 8192, 8192}, 200000, false, 0, {256, 256, 256, 256}, 0, L::smooth};
  compare_search<float, xgr::beam::FullVocabLogSoftmax, xgr::beam::EarlyExitSelect, xgr::beam::SparseTrieFilter>(rng, shape);
  const Shape capped{{8192, 8192, 8192}, 200000, false, 0, {256, 128}, 64, L::smooth};
  compare_search<float, xgr::beam::FullVocabLogSoftmax, xgr::beam::EarlyExitSelect, xgr::beam::SparseTrieFilter>(rng, capped);
}

// Many requests whose beams have many children each: at level 1, a request's 128 beams have about
// 32,768 allowed entries, more than the fused selection stages, yet enough requests share the GPU
// that the beam step takes the fused kernel, reading the scores the normalisation wrote beside
// the tokens (BeamSearcher::fused_selection_pays). Uneven widths; every element type.
TEST_CASE("CUDA BeamSearcher on 32 requests of beams with 256 children each equals the host reference") {
  std::mt19937_64 rng = xgr::test::make_rng(309);
  using L = Shape::Logits;
  std::vector<std::uint32_t> widths(32, 128);
  widths[5] = 77;
  widths[17] = 1;
  widths[30] = 100;
  const Shape shape{{128, 256}, 100000, true, 3, widths, 0, L::smooth};
  compare_search<float, xgr::beam::FullVocabLogSoftmax, xgr::beam::EarlyExitSelect, xgr::beam::SparseTrieFilter>(rng, shape);
  compare_search<xgr::bfloat16, xgr::beam::FullVocabLogSoftmax, xgr::beam::EarlyExitSelect, xgr::beam::SparseTrieFilter>(rng, shape);
  compare_search<xgr::half, xgr::beam::LevelSliceLogSoftmax, xgr::beam::EarlyExitSelect, xgr::beam::SparseTrieFilter>(rng, shape);
  const Shape ties{{128, 256}, 100000, false, 0, widths, 0, L::ties};
  compare_search<float, xgr::beam::FullVocabLogSoftmax, xgr::beam::EarlyExitSelect, xgr::beam::SparseTrieFilter>(rng, ties);
}

// Level 0, where each request has one live beam, the root, with more children than the fused
// selection stages in shared memory (about 17,000 and 14,000 in the two catalogues): one row's few
// score hints cannot number k, so the fused kernel selects without a bound, staging what fits and
// spilling the rest into the workspace (BeamSearcher::fused_selection_pays counts one live beam a
// request at level 0).
TEST_CASE("CUDA BeamSearcher at level 0 with more root children than the fused selection stages") {
  std::mt19937_64 rng = xgr::test::make_rng(311);
  using L = Shape::Logits;
  const Shape shapes[] = {{{20000, 64}, 60000, true, 0, {300, 1, 64}, 0, L::smooth},
                          {{16000, 16}, 60000, false, 0, {512, 512}, 0, L::ties}};
  for (const Shape& shape : shapes) {
    std::mt19937_64 same = rng;  // compare_search builds its trie first, from the same draws
    REQUIRE(random_trie(same, shape.codebooks, shape.items).nodes_at_depth(1) > xgr::topk::cuda_detail::hinted_staged_capacity);
    compare_search<float, xgr::beam::FullVocabLogSoftmax, xgr::beam::EarlyExitSelect, xgr::beam::SparseTrieFilter>(rng, shape);
  }
}

// Rows of 2,049 to 8,192 normalised columns, which the normalisation keeps in registers 32 values a
// thread: a few rows or a thousand, dead and live beams side by side, normalised slices that start
// past column 0 (vectorized for fp32, not for 16-bit types at 3,072), infinities, NaN and ties,
// every element type.
TEST_CASE("CUDA BeamSearcher on rows of 2,049 to 8,192 normalised columns equals the host reference") {
  std::mt19937_64 rng = xgr::test::make_rng(308);
  using L = Shape::Logits;
  const std::vector<Shape> shapes{
      {{4096}, 100, false, 0, {5, 9}, 0, L::smooth},                              // 14 rows
      {{3000, 4000}, 20000, true, 1192, {200, 300, 64}, 0, L::with_inf_and_nan},  // vocab 8,192
      {{4096, 4096}, 50000, false, 0, {512, 512}, 0, L::ties},                    // 1,024 rows
      {{3072, 5120}, 30000, true, 0, {640, 100}, 0, L::smooth},                   // level slices from column 3,072
  };
  compare_normalisations(rng, shapes);
}

// Rows of up to 1,024 normalised columns, which the normalisation gives a warp each (8 to a
// block) where the rows number at least 8 per multiprocessor and have at most 256 children on
// average (BeamSearcher::warp_rows_pay): row counts that leave the last block's warps partly idle,
// beams of about 20 to 180 children (walked 4 a thread at a time) next to levels of 500 to 1,000
// children that keep a block a row, widths of 1 to 512, vectorized rows (1,024 and 512 columns)
// and rows that are not (1,021 columns, and a slice from column 1,000), infinities, NaN and ties,
// every element type.
TEST_CASE("CUDA BeamSearcher on many rows of up to 1,024 normalised columns (a warp a row) equals the host reference") {
  std::mt19937_64 rng = xgr::test::make_rng(310);
  using L = Shape::Logits;
  const std::size_t warp_rows = 8 * static_cast<std::size_t>(xgr::detail::multiprocessor_count());
  const std::vector<Shape> shapes{
      {{1024, 1024}, 200000, false, 0, widths_for_rows(warp_rows + 333, {512, 1, 77}), 0, L::smooth},  // 1,024 columns
      {{1000, 21}, 20000, true, 0, widths_for_rows(warp_rows + 5, {64, 9}), 0, L::ties},               // 1,021, not vectorized
      {{512, 512, 512}, 60000, false, 0, widths_for_rows(warp_rows + 100, {256}), 0, L::smooth},       // 512, vectorized
      {{1000, 1024}, 100000, true, 0, widths_for_rows(warp_rows, {128, 100}), 0, L::with_inf_and_nan},  // slices from column 1,000
  };
  compare_normalisations(rng, shapes);
}

TEST_CASE("CUDA BeamSearcher reuses its buffers across batches of different shapes") {
  std::mt19937_64 rng = xgr::test::make_rng(307);
  const xgr::ItemTrie trie = random_trie(rng, {32, 32, 32}, 3000);
  xgr::Stream stream;
  const xgr::DeviceItemTrie device_trie(trie, stream.exec());
  xgr::BeamConfig config;
  config.max_requests = 4;
  config.max_beam_width = 64;
  config.vocab = 32;
  xgr::BeamSearcher host(xgr::exec::host, trie, config);
  xgr::BeamSearcher device(stream.exec(), device_trie, config);
  for (int batch = 0; batch < 6; ++batch) {
    std::vector<std::uint32_t> widths(1 + rng() % 4);
    for (auto& width : widths) width = static_cast<std::uint32_t>(1 + rng() % 64);
    host.begin(xgr::exec::host, widths);
    device.begin(stream.exec(), widths);
    const std::size_t slots = host.slot_count();
    xgr::DeviceBuffer<float> d_logits(slots * 32);
    for (std::size_t level = 0; level < 3; ++level) {
      const auto logits = random_logits<float>(rng, slots, 32, Shape::Logits::smooth);
      // On the searcher's stream: the previous step may still be reading d_logits.
      XGR_CUDA_CHECK(cudaMemcpyAsync(d_logits.data(), logits.data(), logits.size() * sizeof(float), cudaMemcpyHostToDevice, stream.get()));
      host.step(xgr::exec::host, xgr::matrix_view(logits.data(), slots, 32));
      device.step(stream.exec(), xgr::MatrixView<const float>{d_logits.data(), slots, 32, 32});
    }
    stream.synchronize();
    const auto scores = copy_to_host(device.beam_scores());
    CHECK(bits_of(scores) == bits_of(host.beam_scores()));
    CHECK(copy_to_host(device.live_beams()) == std::vector<std::uint32_t>(host.live_beams().begin(), host.live_beams().end()));
  }
}

TEST_CASE("CUDA BeamSearcher steps captured into a CUDA graph replay on new batches of the same shape") {
  std::mt19937_64 rng = xgr::test::make_rng(309);
  const xgr::ItemTrie trie = random_trie(rng, {64, 64, 64}, 4000);
  xgr::Stream stream;
  const xgr::exec::cuda exec = stream.exec();
  const xgr::DeviceItemTrie device_trie(trie, exec);
  xgr::BeamConfig config;
  config.max_requests = 3;
  config.max_beam_width = 48;
  config.vocab = 64;
  xgr::BeamSearcher host(xgr::exec::host, trie, config);
  xgr::BeamSearcher device(exec, device_trie, config);
  const std::size_t levels = trie.levels();
  // The shape a graph is valid for: request count, row count and widest request. The widths' order
  // changes between batches (row layouts are device data, not kernel arguments).
  std::vector<std::uint32_t> widths{48, 17, 30};
  const std::size_t slots = 48 + 17 + 30;
  std::vector<xgr::DeviceBuffer<float>> d_logits;
  for (std::size_t level = 0; level < levels; ++level) d_logits.emplace_back(slots * config.vocab);
  auto logits_view = [&](std::size_t level) { return xgr::MatrixView<const float>{d_logits[level].data(), slots, config.vocab, config.vocab}; };
  cudaGraphExec_t graph = nullptr;
  for (int batch = 0; batch < 3; ++batch) {
    CAPTURE(batch);
    std::shuffle(widths.begin(), widths.end(), rng);
    host.begin(xgr::exec::host, widths);
    device.begin(exec, widths);
    for (std::size_t level = 0; level < levels; ++level) {
      const auto logits = random_logits<float>(rng, slots, config.vocab, Shape::Logits::smooth);
      XGR_CUDA_CHECK(cudaMemcpyAsync(d_logits[level].data(), logits.data(), logits.size() * sizeof(float), cudaMemcpyHostToDevice, stream.get()));
      host.step(xgr::exec::host, xgr::matrix_view(logits.data(), slots, config.vocab));
    }
    device.step(exec, logits_view(0));
    if (graph == nullptr) {  // levels 1.. captured once, from the first batch's step() calls
      cudaGraph_t captured = nullptr;
      XGR_CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
      for (std::size_t level = 1; level < levels; ++level) device.step(exec, logits_view(level));
      XGR_CUDA_CHECK(cudaStreamEndCapture(stream.get(), &captured));
      XGR_CUDA_CHECK(cudaGraphInstantiate(&graph, captured, 0));
      XGR_CUDA_CHECK(cudaGraphDestroy(captured));
      CHECK(device.steps_done() == levels);
    } else {
      CHECK(device.steps_done() == 1);
      device.resume_at(levels);
    }
    XGR_CUDA_CHECK(cudaGraphLaunch(graph, stream.get()));
    std::vector<std::uint32_t> codes(slots * levels), item_counts(slots), counts(widths.size());
    std::vector<float> scores(slots);
    std::vector<xgr::ItemId> ids(slots);
    host.finalize(xgr::exec::host, {xgr::matrix_view(codes.data(), slots, levels), scores, ids, item_counts, counts});
    xgr::DeviceBuffer<std::uint32_t> d_codes(slots * levels), d_item_counts(slots), d_counts(widths.size());
    xgr::DeviceBuffer<float> d_scores(slots);
    xgr::DeviceBuffer<xgr::ItemId> d_ids(slots);
    poison_on(stream.get(), d_codes, d_item_counts, d_counts, d_scores, d_ids);
    device.finalize(exec, {xgr::matrix_view(d_codes.data(), slots, levels), d_scores.span(), d_ids.span(), d_item_counts.span(), d_counts.span()});
    stream.synchronize();
    CHECK(copy_to_host<std::uint32_t>(d_codes.span()) == codes);
    CHECK(bits_of(copy_to_host<float>(d_scores.span())) == bits_of(scores));
    CHECK(copy_to_host<xgr::ItemId>(d_ids.span()) == ids);
    CHECK(copy_to_host<std::uint32_t>(d_counts.span()) == counts);
  }
  XGR_CUDA_CHECK(cudaGraphExecDestroy(graph));
  CHECK_THROWS_AS(device.resume_at(levels + 1), xgr::Error);
  xgr::BeamSearcher fresh(exec, device_trie, config);
  CHECK_THROWS_AS(fresh.resume_at(0), xgr::Error);  // no batch begun
}

TEST_CASE("CUDA BeamSearcher rejects bad calls before launching anything") {
  std::mt19937_64 rng = xgr::test::make_rng(308);
  const xgr::ItemTrie trie = random_trie(rng, {16, 16}, 100);
  const xgr::DeviceItemTrie device_trie(trie, xgr::exec::cuda{});
  xgr::BeamConfig config;
  config.max_requests = 2;
  config.max_beam_width = 8;
  config.vocab = 16;
  xgr::BeamSearcher device(xgr::exec::cuda{}, device_trie, config);
  xgr::DeviceBuffer<float> logits(16 * 16);
  XGR_CUDA_CHECK(cudaMemset(logits.data(), 0, logits.bytes()));  // the valid steps below read it (default stream, as they run)
  const xgr::MatrixView<const float> view{logits.data(), 16, 16, 16};
  CHECK_THROWS_AS(device.step(xgr::exec::cuda{}, view), xgr::Error);  // no begin()
  const std::vector<std::uint32_t> too_wide{9};
  CHECK_THROWS_AS(device.begin(xgr::exec::cuda{}, too_wide), xgr::Error);
  const std::vector<std::uint32_t> too_many{1, 1, 1};
  CHECK_THROWS_AS(device.begin(xgr::exec::cuda{}, too_many), xgr::Error);
  const std::vector<std::uint32_t> widths{8, 8};
  device.begin(xgr::exec::cuda{}, widths);
  CHECK_THROWS_AS(device.step(xgr::exec::cuda{}, xgr::MatrixView<const float>{logits.data(), 15, 16, 16}), xgr::Error);
  device.step(xgr::exec::cuda{}, view);
  device.step(xgr::exec::cuda{}, view);
  CHECK_THROWS_AS(device.step(xgr::exec::cuda{}, view), xgr::Error);  // both levels decoded
  config.vocab = 15;  // level tokens [0, 16) do not fit
  CHECK_THROWS_AS(xgr::BeamSearcher(xgr::exec::cuda{}, device_trie, config), xgr::Error);
  XGR_CUDA_CHECK(cudaDeviceSynchronize());
}
