// beam_example — trie-constrained beam search over a small semantic-ID catalogue.
//
// A catalogue of 2,000 items, each named by 3 codes from codebooks of 16 (so some items share a
// tuple), is written to an item file, loaded back and built into an ItemTrie. A toy "model" gives
// every beam a row of logits that depends only on the tokens it has decoded. Two requests (two
// users) are searched together, with beam widths 8 and 4: 3 steps, each allowing a beam only the
// codes that extend a valid item prefix. The host reference always runs. Built as CUDA (XGR_CUDA=ON)
// and run where a GPU exists, the CUDA searcher runs the same search and must agree bit for bit.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <xgr/beam/host.hpp>
#include <xgr/items/io.hpp>
#include <xgr/xgr.hpp>
#if defined(__CUDACC__)
#include <xgr/beam/cuda.cuh>
#include <xgr/xgr.cuh>
#endif

namespace {

constexpr std::size_t levels = 3, codebook = 16;
// Token of code c at level l = 16 l + c; tokens 48..63 belong to no level (a real vocabulary has
// more than the codes), so full-vocabulary log-softmax gives them some of the probability.
constexpr std::size_t vocab = levels * codebook + 16;

// The toy model: user `user`'s logit for `token` after the decoded `prefix`, a hash mapped to
// [-4, 4). Any pure function of (user, prefix, token) would do; a real one is a transformer.
float toy_logit(std::uint32_t user, const std::uint32_t* prefix, std::size_t length, std::uint32_t token) {
  std::uint32_t h = (2166136261u ^ user) * 16777619u;  // FNV-1a over the words
  for (std::size_t i = 0; i < length; ++i) h = (h ^ prefix[i]) * 16777619u;
  h = (h ^ token) * 16777619u;
  h ^= h >> 15;
  h *= 0x2c1b3c6du;
  h ^= h >> 12;
  return static_cast<float>(h >> 8) * (8.0f / 16777216.0f) - 4.0f;
}

// One step's logits: a row per beam slot, from each live beam's first `level` tokens (host copies
// of the searcher's state). Rows of dead slots are never read.
void fill_logits(std::vector<float>& logits, std::span<const std::uint32_t> row_begin, std::span<const std::uint32_t> live,
                 const std::uint32_t* tokens, std::size_t level) {
  for (std::size_t request = 0; request + 1 < row_begin.size(); ++request) {
    for (std::uint32_t slot = 0; slot < live[request]; ++slot) {
      const std::size_t row = row_begin[request] + slot;
      for (std::uint32_t token = 0; token < vocab; ++token) {
        logits[row * vocab + token] = toy_logit(static_cast<std::uint32_t>(request), tokens + row * levels, level, token);
      }
    }
  }
}

}  // namespace

int main() {
  // 1. The catalogue: item id -> 3 codes. A server loads it from a file at start-up.
  xgr::ItemTable table;
  table.codebook_sizes = {codebook, codebook, codebook};
  std::mt19937 rng(2024);
  std::uniform_int_distribution<std::uint32_t> code(0, codebook - 1);
  for (std::uint64_t item = 0; item < 2000; ++item) {
    table.item_ids.push_back(100000 + item);
    for (std::size_t level = 0; level < levels; ++level) table.codes.push_back(code(rng));
  }
  const std::string path = (std::filesystem::temp_directory_path() / "xgr_beam_example_items.txt").string();
  xgr::save_item_table(path, table, xgr::ItemFileFormat::text);  // "xgr-items 1", "codebook 16 16 16", "100000 3 9 14", ...
  const xgr::ItemTrie trie = xgr::build_item_trie(xgr::load_item_table(path));
  std::filesystem::remove(path);
  std::printf("catalogue: %zu items, %zu distinct code tuples (%zu items repeat an earlier item's codes), %zu trie nodes\n", trie.item_count(),
              trie.leaf_count(), trie.report().duplicate_items, trie.node_count());

  // 2. The searcher, sized once for the largest batch it will see.
  xgr::BeamConfig config;
  config.max_requests = 2;
  config.max_beam_width = 8;
  config.vocab = vocab;
  config.level_token_offsets = {0, 16, 32};
  xgr::BeamSearcher searcher(xgr::exec::host, trie, config);

  // 3. One batch: request 0 with 8 beams, request 1 with 4; beam slots 0..7 and 8..11.
  const std::vector<std::uint32_t> widths{8, 4};
  const std::size_t slots = 12;
  std::vector<float> logits(slots * vocab, 0.0f);
  searcher.begin(xgr::exec::host, widths);
  for (std::size_t level = 0; level < levels; ++level) {
    fill_logits(logits, searcher.row_begin(), searcher.live_beams(), searcher.tokens().data, level);  // the model's turn
    searcher.step(xgr::exec::host, xgr::matrix_view<const float>(logits.data(), slots, vocab));
  }
  std::vector<std::uint32_t> codes(slots * levels), item_counts(slots), counts(2);
  std::vector<float> scores(slots);
  std::vector<xgr::ItemId> item_ids(slots);
  searcher.finalize(xgr::exec::host, {xgr::matrix_view(codes.data(), slots, levels), scores, item_ids, item_counts, counts});

  for (std::size_t request = 0; request < 2; ++request) {
    std::printf("request %zu (beam width %u): %u items\n", request, widths[request], counts[request]);
    for (std::uint32_t rank = 0; rank < counts[request]; ++rank) {
      const std::size_t row = searcher.row_begin()[request] + rank;
      std::printf("  %u. item %llu  codes (%2u %2u %2u)  log-prob %8.4f", rank + 1, static_cast<unsigned long long>(item_ids[row]),
                  codes[row * levels], codes[row * levels + 1], codes[row * levels + 2], static_cast<double>(scores[row]));
      if (item_counts[row] > 1) std::printf("  (and %u more with these codes)", item_counts[row] - 1);
      std::printf("\n");
    }
  }

#if defined(__CUDACC__)
  if (xgr::cuda_device_count() == 0) {
    std::printf("CUDA searcher: built, but no CUDA device here; the CUDA part is skipped\n");
    return 0;
  }
  xgr::Stream stream;
  const xgr::DeviceItemTrie device_trie(trie, stream.exec());
  xgr::BeamSearcher<xgr::exec::cuda> device_searcher(stream.exec(), device_trie, config);
  xgr::DeviceBuffer<float> device_logits(slots * vocab);
  std::vector<std::uint32_t> live(2), tokens(slots * levels);
  device_searcher.begin(stream.exec(), widths);
  for (std::size_t level = 0; level < levels; ++level) {
    // The toy model runs on the host, so each step's beams come back first (a real model runs on
    // the device and reads tokens() there).
    xgr::copy_async(std::span<std::uint32_t>(live), device_searcher.live_beams(), stream.get());
    xgr::copy_async(std::span<std::uint32_t>(tokens), std::span<const std::uint32_t>(device_searcher.tokens().data, slots * levels),
                    stream.get());
    stream.synchronize();
    fill_logits(logits, device_searcher.row_begin(), live, tokens.data(), level);
    xgr::copy_async(device_logits.span(), std::span<const float>(logits), stream.get());
    device_searcher.step(stream.exec(), xgr::MatrixView<const float>{device_logits.data(), slots, vocab, vocab});
  }
  xgr::DeviceBuffer<std::uint32_t> device_codes(slots * levels), device_item_counts(slots), device_counts(2);
  xgr::DeviceBuffer<float> device_scores(slots);
  xgr::DeviceBuffer<xgr::ItemId> device_item_ids(slots);
  device_searcher.finalize(stream.exec(), {xgr::matrix_view(device_codes.data(), slots, levels), device_scores.span(),
                                           device_item_ids.span(), device_item_counts.span(), device_counts.span()});
  stream.synchronize();
  const auto cuda_codes = xgr::to_host<std::uint32_t>(device_codes.span());
  const auto cuda_scores = xgr::to_host<float>(device_scores.span());
  const auto cuda_item_ids = xgr::to_host<xgr::ItemId>(device_item_ids.span());
  const auto cuda_item_counts = xgr::to_host<std::uint32_t>(device_item_counts.span());
  const auto cuda_counts = xgr::to_host<std::uint32_t>(device_counts.span());
  bool same = cuda_counts[0] == counts[0] && cuda_counts[1] == counts[1];
  for (std::size_t row = 0; row < slots; ++row) {
    same = same && cuda_scores[row] == scores[row] && cuda_item_ids[row] == item_ids[row] && cuda_item_counts[row] == item_counts[row];
    for (std::size_t level = 0; level < levels; ++level) same = same && cuda_codes[row * levels + level] == codes[row * levels + level];
  }
  std::printf("CUDA searcher: %s\n", same ? "identical to the host reference" : "DIFFERS from the host reference");
  return same ? 0 : 1;
#else
  return 0;
#endif
}
