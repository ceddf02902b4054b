// BeamSearcher on GR shapes: one beam step (logits in, new beams out) on the device.
//
// A catalogue of `items` random code tuples (L = 3 levels, codebook C each, vocab = C, every
// level's tokens at offset 0) is searched by `requests` requests of `beams` beams each. Logits are
// beam slots x C, Normal(0, 2) from a fixed seed, generated on the device once per shape (one
// matrix per level, never zeros). Every iteration runs, untimed, begin() and the steps before the
// level under test, then reads a buffer of twice the L2 size (so the step finds neither its logits
// nor the searcher's state in L2, as after a model's forward pass), and times only the step under
// test with events; rows report the median. The time is the device's: the step's launches are
// enqueued behind a kernel that holds the stream, so they run back to back as when the step is
// replayed from a CUDA graph (the engine's way); `host_paced_us` also counts the device waiting
// for the host to enqueue them.
//
//   beam/step/<dtype>/level:1/policy:<p>/...  the step at level 1: B live beams per request, each
//                                             reading its full logits row (the expensive step)
//   beam/step/<dtype>/level:2/policy:default  the last step (live beams at depth-2 trie nodes)
//   beam/step/<dtype>/level:0/policy:default  the first step: one live beam a request (the root),
//                                             whose children are (nearly) every first-level code
//
// Policies (each its own row; scripts/beam_table.py joins them by shape):
//   default        FullVocabLogSoftmax, EarlyExitSelect, SparseTrieFilter
//   full_sort      FullSortSelect baseline (sorts every candidate)
//   dense_mask     DenseMaskFilter baseline (materialises a beams x vocab bitset per step)
//   no_early_exit  NoEarlyExitSelect baseline (no k-th-score bound)
// Baselines run at level 1 only; bf16 rows (default policy, level 1) only for 8 and 32 requests of
// 256 beams, C = 8192, 10^6 items.
//
// Counters: median_us (device time); host_paced_us; floor_us = the logits rows of the live beams
// read once (live rows x vocab x sizeof(T)) at the copy bandwidth measured at start-up;
// x_floor = median / floor; live_rows.
//
// Correctness first: before timing, every row runs a whole search (begin, L steps, finalize) with
// its own policy and compares codes, scores (bit for bit), item ids, item counts and per-request
// counts with those of FullSortSelect on the same input (computed once per shape and checked for
// sanity; on shapes of at most 2^22 logits per level also against the host reference searcher).
// A row that disagrees reports an error and is not timed.
//
// Memory: one catalogue lives at a time (rows are registered catalogue by catalogue, and a new
// catalogue frees the old one first); so does one shape's logits. The caches are never destroyed
// (the CUDA runtime may be gone by the time static destructors run); the process exit frees them.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "harness.cuh"
#include "random_logits.cuh"
#include "xgr/beam/cuda.cuh"
#include "xgr/beam/host.hpp"
#include "xgr/items/cuda.cuh"
#include "xgr/items/trie.hpp"

namespace {

constexpr std::size_t levels = 3;
constexpr int timed_iterations = 20;
// Shapes with at most this many logits per level are also checked against the host reference.
constexpr std::size_t host_check_max_logits = std::size_t{1} << 22;

struct Shape {
  std::size_t requests = 0;
  std::size_t beams = 0;
  std::size_t codebook = 0;  // = vocab
  std::size_t items = 0;
};

// ---- random data ------------------------------------------------------------------------------

using xgr::bench::fill_logits;
using xgr::bench::mix;

// Reads every word of the buffer (16-byte loads) and writes nothing in practice: evicts L2 without
// leaving dirty lines whose write-back would land in the timed region.
__global__ void read_through(const uint4* data, std::size_t n, unsigned* sink) {
  unsigned folded = 0;
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x) {
    const uint4 v = data[i];
    folded ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (folded == 0x9e3779b9u) *sink = folded;  // the buffer holds equal words: never true
}

class L2Flush {
 public:
  L2Flush() {
    int device = 0;
    XGR_CUDA_CHECK(cudaGetDevice(&device));
    int l2_bytes = 0;
    XGR_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device));
    const std::size_t bytes = std::max<std::size_t>(2 * static_cast<std::size_t>(l2_bytes), std::size_t{64} << 20);
    buffer_ = xgr::DeviceBuffer<uint4>(bytes / sizeof(uint4));
    sink_ = xgr::DeviceBuffer<unsigned>(1);
    XGR_CUDA_CHECK(cudaMemset(buffer_.data(), 0x5a, buffer_.bytes()));
    XGR_CUDA_CHECK(cudaDeviceSynchronize());
  }
  void operator()(cudaStream_t stream) const {
    read_through<<<1024, 256, 0, stream>>>(buffer_.data(), buffer_.size(), sink_.data());
    XGR_CUDA_CHECK_LAUNCH();
  }

 private:
  xgr::DeviceBuffer<uint4> buffer_;
  mutable xgr::DeviceBuffer<unsigned> sink_;
};

L2Flush& l2_flush() {
  static L2Flush& flush = *new L2Flush;  // never destroyed: see the file comment
  return flush;
}

// ---- catalogue cache: one (codebook, items) at a time ------------------------------------------

struct Catalogue {
  std::size_t codebook = 0;
  std::size_t items = 0;
  xgr::ItemTrie host;  // kept: the host reference searches it, and the device copy came from it
  xgr::Stream upload_stream;
  std::unique_ptr<xgr::DeviceItemTrie> device;
};

const Catalogue& catalogue(std::size_t codebook, std::size_t items) {
  static Catalogue& cache = *new Catalogue;  // never destroyed: see the file comment
  if (cache.device != nullptr && cache.codebook == codebook && cache.items == items) return cache;
  // Free the previous catalogue before building the next one: 10^7-item catalogues are large.
  cache.device.reset();
  cache.host = xgr::ItemTrie();
  cache.codebook = 0;
  cache.items = 0;

  const auto started = std::chrono::steady_clock::now();
  std::vector<std::uint32_t> codes(items * levels);
  const std::uint64_t seed = 0x5eed0000ull + codebook * 31 + items;
  for (std::size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<std::uint32_t>(mix(seed ^ mix(i)) % codebook);
  const std::vector<std::uint32_t> codebook_sizes(levels, static_cast<std::uint32_t>(codebook));
  cache.host = xgr::ItemTrie::build(codebook_sizes,
                                    xgr::matrix_view(std::span<const std::uint32_t>(codes), items, levels));
  codes = {};
  cache.device = std::make_unique<xgr::DeviceItemTrie>(cache.host, xgr::exec::cuda{cache.upload_stream.get()});
  cache.upload_stream.synchronize();
  cache.codebook = codebook;
  cache.items = items;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::fprintf(stderr, "beam: catalogue C=%zu items=%zu: %zu nodes (depth 1: %zu, depth 2: %zu, leaves %zu), built and uploaded in %.1f s\n",
               codebook, items, cache.host.node_count(), cache.host.nodes_at_depth(1), cache.host.nodes_at_depth(2),
               cache.host.leaf_count(), seconds);
  return cache;
}

// ---- logits cache: one shape at a time, one random matrix per level -----------------------------

struct Inputs {
  std::size_t rows = 0;
  std::size_t vocab = 0;
  int dtype = -1;
  xgr::DeviceBuffer<std::byte> logits[levels];

  template <class T>
  [[nodiscard]] xgr::MatrixView<const T> level(std::size_t l) const {
    return xgr::matrix_view<const T>(reinterpret_cast<const T*>(logits[l].data()), rows, vocab);
  }
};

template <class T>
constexpr int dtype_id() {
  return static_cast<int>(xgr::dtype_traits<T>::dtype);
}

template <class T>
const Inputs& inputs_for(const Shape& shape) {
  static Inputs& cache = *new Inputs;  // never destroyed: see the file comment
  const std::size_t rows = shape.requests * shape.beams;
  if (cache.rows == rows && cache.vocab == shape.codebook && cache.dtype == dtype_id<T>()) return cache;
  for (auto& buffer : cache.logits) buffer = {};
  cache.rows = 0;
  const std::size_t elements = rows * shape.codebook;
  const std::size_t bytes = elements * sizeof(T);
  std::size_t free_bytes = 0;
  std::size_t total_bytes = 0;
  XGR_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const std::size_t margin = std::size_t{2} << 30;  // searcher workspaces, the full-sort reference
  if (levels * bytes + margin > free_bytes) {
    throw xgr::Error(xgr::ErrorKind::out_of_memory, "bench_beam inputs",
                     std::to_string(levels) + " x " + std::to_string(bytes >> 20) + " MiB of logits do not fit " +
                         std::to_string(free_bytes >> 20) + " MiB free");
  }
  for (std::size_t l = 0; l < levels; ++l) {
    cache.logits[l] = xgr::DeviceBuffer<std::byte>(bytes);
    fill_logits<<<1024, 256>>>(reinterpret_cast<T*>(cache.logits[l].data()), elements, 1234 + 17 * l);
    XGR_CUDA_CHECK_LAUNCH();
  }
  // The fills ran on the legacy stream, which the searchers' non-blocking streams do not wait for.
  XGR_CUDA_CHECK(cudaDeviceSynchronize());
  cache.rows = rows;
  cache.vocab = shape.codebook;
  cache.dtype = dtype_id<T>();
  return cache;
}

// ---- results --------------------------------------------------------------------------------------

struct HostResults {
  std::vector<std::uint32_t> codes;       // slots x levels
  std::vector<std::uint32_t> score_bits;  // slots: compared bit for bit
  std::vector<xgr::ItemId> item_ids;
  std::vector<std::uint32_t> item_counts;
  std::vector<std::uint32_t> counts;      // requests
};

template <class T>
std::vector<T> to_vector(const xgr::HostBuffer<T>& buffer) {
  return std::vector<T>(buffer.data(), buffer.data() + buffer.size());
}

std::vector<std::uint32_t> bits_of(std::span<const float> scores) {
  std::vector<std::uint32_t> bits(scores.size());
  if (!scores.empty()) std::memcpy(bits.data(), scores.data(), scores.size_bytes());
  return bits;
}

struct DeviceResults {
  DeviceResults(std::size_t slot_count, std::size_t requests)
      : slots(slot_count),
        codes(slot_count * levels),
        scores(slot_count),
        item_ids(slot_count),
        item_counts(slot_count),
        counts(requests) {}

  [[nodiscard]] xgr::BeamResults view() {
    return {xgr::matrix_view(codes.data(), slots, levels), scores.span(), item_ids.span(), item_counts.span(), counts.span()};
  }

  // Every output byte 0xff before a run, so that an unwritten output cannot pass the comparison.
  void poison(cudaStream_t stream) {
    XGR_CUDA_CHECK(cudaMemsetAsync(codes.data(), 0xff, codes.bytes(), stream));
    XGR_CUDA_CHECK(cudaMemsetAsync(scores.data(), 0xff, scores.bytes(), stream));
    XGR_CUDA_CHECK(cudaMemsetAsync(item_ids.data(), 0xff, item_ids.bytes(), stream));
    XGR_CUDA_CHECK(cudaMemsetAsync(item_counts.data(), 0xff, item_counts.bytes(), stream));
    XGR_CUDA_CHECK(cudaMemsetAsync(counts.data(), 0xff, counts.bytes(), stream));
  }

  // Call after the stream that wrote them is synchronised (these copies use the legacy stream).
  [[nodiscard]] HostResults download() const {
    HostResults host;
    host.codes = to_vector(xgr::to_host<std::uint32_t>(codes.span()));
    const auto host_scores = xgr::to_host<float>(scores.span());
    host.score_bits = bits_of(std::span<const float>(host_scores.data(), host_scores.size()));
    host.item_ids = to_vector(xgr::to_host<xgr::ItemId>(item_ids.span()));
    host.item_counts = to_vector(xgr::to_host<std::uint32_t>(item_counts.span()));
    host.counts = to_vector(xgr::to_host<std::uint32_t>(counts.span()));
    return host;
  }

  std::size_t slots;
  xgr::DeviceBuffer<std::uint32_t> codes;
  xgr::DeviceBuffer<float> scores;
  xgr::DeviceBuffer<xgr::ItemId> item_ids;
  xgr::DeviceBuffer<std::uint32_t> item_counts;
  xgr::DeviceBuffer<std::uint32_t> counts;
};

// A whole search on the device: begin, every level, finalize; returns the results on the host.
template <class T, class Searcher>
HostResults search(Searcher& searcher, cudaStream_t stream, std::span<const std::uint32_t> widths, const Inputs& inputs,
                   DeviceResults& out) {
  const xgr::exec::cuda exec{stream};
  out.poison(stream);
  searcher.begin(exec, widths);
  for (std::size_t l = 0; l < levels; ++l) searcher.step(exec, inputs.level<T>(l));
  searcher.finalize(exec, out.view());
  XGR_CUDA_CHECK_LAUNCH();
  XGR_CUDA_CHECK(cudaStreamSynchronize(stream));
  return out.download();
}

// The same search with the host reference searcher.
template <class T, class Normalize>
HostResults host_search(const xgr::ItemTrie& trie, const xgr::BeamConfig& config, std::span<const std::uint32_t> widths,
                        const Inputs& inputs) {
  xgr::BeamSearcher<xgr::exec::host_t, Normalize> searcher(xgr::exec::host, trie, config);
  searcher.begin(xgr::exec::host, widths);
  for (std::size_t l = 0; l < levels; ++l) {
    const xgr::MatrixView<const T> device = inputs.level<T>(l);
    const auto logits = xgr::to_host<T>(std::span<const T>(device.data, device.rows * device.cols));
    searcher.step(xgr::exec::host, xgr::matrix_view<const T>(logits.data(), device.rows, device.cols));
  }
  const std::size_t slots = inputs.rows;
  HostResults host;
  host.codes.resize(slots * levels);
  std::vector<float> scores(slots);
  host.item_ids.resize(slots);
  host.item_counts.resize(slots);
  host.counts.resize(widths.size());
  searcher.finalize(xgr::exec::host, xgr::BeamResults{xgr::matrix_view(host.codes.data(), slots, levels), scores,
                                                      host.item_ids, host.item_counts, host.counts});
  host.score_bits = bits_of(scores);
  return host;
}

// Empty when equal; otherwise where they first differ.
std::string compare(const HostResults& got, const HostResults& want) {
  for (std::size_t r = 0; r < want.counts.size(); ++r) {
    if (got.counts[r] != want.counts[r]) {
      return "request " + std::to_string(r) + ": count " + std::to_string(got.counts[r]) + ", want " + std::to_string(want.counts[r]);
    }
  }
  for (std::size_t s = 0; s < want.score_bits.size(); ++s) {
    for (std::size_t l = 0; l < levels; ++l) {
      if (got.codes[s * levels + l] != want.codes[s * levels + l]) {
        return "slot " + std::to_string(s) + " level " + std::to_string(l) + ": code " + std::to_string(got.codes[s * levels + l]) +
               ", want " + std::to_string(want.codes[s * levels + l]);
      }
    }
    if (got.score_bits[s] != want.score_bits[s]) {
      float a = 0;
      float b = 0;
      std::memcpy(&a, &got.score_bits[s], sizeof a);
      std::memcpy(&b, &want.score_bits[s], sizeof b);
      return "slot " + std::to_string(s) + ": score " + std::to_string(a) + ", want " + std::to_string(b) + " (bits differ)";
    }
    if (got.item_ids[s] != want.item_ids[s] || got.item_counts[s] != want.item_counts[s]) {
      return "slot " + std::to_string(s) + ": item " + std::to_string(got.item_ids[s]) + " x" + std::to_string(got.item_counts[s]) +
             ", want " + std::to_string(want.item_ids[s]) + " x" + std::to_string(want.item_counts[s]);
    }
  }
  return {};
}

// What any correct search of these shapes returns: every request keeps between 1 and B beams,
// live slots hold valid codes of an existing item and finite scores, best first.
std::string sanity(const HostResults& results, const Shape& shape) {
  for (std::size_t r = 0; r < shape.requests; ++r) {
    const std::uint32_t count = results.counts[r];
    if (count == 0 || count > shape.beams) return "request " + std::to_string(r) + " kept " + std::to_string(count) + " beams";
    float previous = INFINITY;
    for (std::size_t j = 0; j < count; ++j) {
      const std::size_t slot = r * shape.beams + j;
      float score = 0;
      std::memcpy(&score, &results.score_bits[slot], sizeof score);
      if (!std::isfinite(score) || score > previous) return "slot " + std::to_string(slot) + ": score out of order or not finite";
      previous = score;
      for (std::size_t l = 0; l < levels; ++l) {
        if (results.codes[slot * levels + l] >= shape.codebook) return "slot " + std::to_string(slot) + ": code out of range";
      }
      if (results.item_counts[slot] == 0) return "slot " + std::to_string(slot) + ": no item";
    }
  }
  return {};
}

xgr::BeamConfig config_of(const Shape& shape) {
  xgr::BeamConfig config;
  config.max_requests = shape.requests;
  config.max_beam_width = shape.beams;
  config.vocab = shape.codebook;
  config.level_token_offsets.assign(levels, 0);
  config.top_k_per_beam = 0;
  return config;
}

// ---- reference cache: FullSortSelect's results for the current shape ------------------------------

struct Reference {
  Shape shape;
  int dtype = -1;
  bool whole_row = false;
  bool valid = false;
  HostResults results;
};

template <class T, class Normalize>
const HostResults& reference_for(const Shape& shape, const Catalogue& catalog, const Inputs& inputs) {
  static Reference& cache = *new Reference;  // never destroyed: see the file comment
  if (cache.valid && cache.shape.requests == shape.requests && cache.shape.beams == shape.beams &&
      cache.shape.codebook == shape.codebook && cache.shape.items == shape.items && cache.dtype == dtype_id<T>() &&
      cache.whole_row == Normalize::whole_row) {
    return cache.results;
  }
  cache.valid = false;
  const xgr::BeamConfig config = config_of(shape);
  const std::vector<std::uint32_t> widths(shape.requests, static_cast<std::uint32_t>(shape.beams));
  xgr::Stream stream;
  HostResults results;
  {
    xgr::BeamSearcher<xgr::exec::cuda, Normalize, xgr::beam::FullSortSelect, xgr::beam::SparseTrieFilter> full_sort(
        stream.exec(), *catalog.device, config);
    DeviceResults out(inputs.rows, shape.requests);
    results = search<T>(full_sort, stream.get(), widths, inputs, out);
  }
  if (const std::string problem = sanity(results, shape); !problem.empty()) {
    throw xgr::Error(xgr::ErrorKind::internal, "bench_beam reference", "FullSortSelect result is not sane: " + problem);
  }
  if (inputs.rows * inputs.vocab <= host_check_max_logits) {
    const HostResults host = host_search<T, Normalize>(catalog.host, config, widths, inputs);
    if (const std::string difference = compare(results, host); !difference.empty()) {
      throw xgr::Error(xgr::ErrorKind::internal, "bench_beam reference",
                       "FullSortSelect (device) and the host reference disagree: " + difference);
    }
  }
  cache.shape = shape;
  cache.dtype = dtype_id<T>();
  cache.whole_row = Normalize::whole_row;
  cache.results = std::move(results);
  cache.valid = true;
  return cache.results;
}

// ---- the benchmark ----------------------------------------------------------------------------------

template <class T, class Normalize, class Select, class Filter>
void beam_step(benchmark::State& state, const Shape& shape, std::size_t timed_level) {
  const Catalogue& trie = catalogue(shape.codebook, shape.items);
  const Inputs& inputs = inputs_for<T>(shape);
  const HostResults& reference = reference_for<T, Normalize>(shape, trie, inputs);
  const xgr::BeamConfig config = config_of(shape);
  const std::vector<std::uint32_t> widths(shape.requests, static_cast<std::uint32_t>(shape.beams));

  xgr::bench::CudaTimer timer(xgr::bench::CudaTimer::Timing::device);  // see the file's comment
  const xgr::exec::cuda exec{timer.stream()};
  xgr::BeamSearcher<xgr::exec::cuda, Normalize, Select, Filter> searcher(exec, *trie.device, config);

  // Correctness on this very input: this policy == FullSortSelect, bit for bit.
  {
    DeviceResults out(inputs.rows, shape.requests);
    const HostResults got = search<T>(searcher, timer.stream(), widths, inputs, out);
    if (const std::string difference = compare(got, reference); !difference.empty()) {
      state.SkipWithError(("disagrees with FullSortSelect: " + difference).c_str());
      return;
    }
  }

  const L2Flush& flush = l2_flush();
  const std::span<const std::uint32_t> batch(widths);
  const auto setup = [&](cudaStream_t stream) {
    searcher.begin(exec, batch);
    for (std::size_t l = 0; l < timed_level; ++l) searcher.step(exec, inputs.level<T>(l));
    flush(stream);
  };
  const auto timed_step = [&](cudaStream_t) { searcher.step(exec, inputs.level<T>(timed_level)); };
  timer.run(state, setup, timed_step);
  // Host-paced: the step is enqueued onto an idle stream, so the device waits for each launch.
  // Without the wait, the flush would still be running while the host enqueues, and hide it.
  const auto setup_then_idle = [&](cudaStream_t stream) {
    setup(stream);
    XGR_CUDA_CHECK(cudaStreamSynchronize(stream));
  };
  const double host_paced_s = xgr::bench::time_median_s(timer.stream(), 20, setup_then_idle, timed_step);

  // Live beams entering the step: level 1 has one per level-0 code (the root's children) up to B;
  // level 2 has one per selected depth-2 node, min(B, depth-2 nodes) (every depth-1 node has a child).
  const std::size_t per_request = std::min(shape.beams, trie.host.nodes_at_depth(timed_level));
  const std::size_t live_rows = shape.requests * per_request;
  xgr::bench::report_floor(state, timer, static_cast<double>(live_rows * shape.codebook * sizeof(T)));
  state.counters["live_rows"] = static_cast<double>(live_rows);
  state.counters["host_paced_us"] = host_paced_s * 1e6;
}

template <class T, class Normalize, class Select, class Filter>
void guarded_beam_step(benchmark::State& state, const Shape& shape, std::size_t timed_level) {
  try {
    beam_step<T, Normalize, Select, Filter>(state, shape, timed_level);
  } catch (const std::exception& error) {
    // Out of memory, an API error or a failed check: this row reports it, the others still run.
    state.SkipWithError(error.what());
  }
}

template <class T, class Select, class Filter>
void add(const char* dtype, std::size_t level, const char* policy, const Shape& shape) {
  const std::string name = std::string("beam/step/") + dtype + "/level:" + std::to_string(level) + "/policy:" + policy +
                           "/req:" + std::to_string(shape.requests) + "/beams:" + std::to_string(shape.beams) +
                           "/C:" + std::to_string(shape.codebook) + "/items:" + std::to_string(shape.items);
  benchmark::RegisterBenchmark(name.c_str(),
                               [shape, level](benchmark::State& state) {
                                 guarded_beam_step<T, xgr::beam::FullVocabLogSoftmax, Select, Filter>(state, shape, level);
                               })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond)
      ->Iterations(timed_iterations);
}

// Catalogue-major order, so that each catalogue is built once and one lives at a time; within a
// catalogue, shape-major, so that each shape's logits and reference are made once.
[[maybe_unused]] const bool registered = [] {
  using namespace xgr::beam;
  for (const std::size_t codebook : {std::size_t{1024}, std::size_t{8192}}) {
    for (const std::size_t items : {std::size_t{100000}, std::size_t{1000000}, std::size_t{10000000}}) {
      for (const std::size_t requests : {std::size_t{1}, std::size_t{8}, std::size_t{32}}) {
        for (const std::size_t beams : {std::size_t{128}, std::size_t{256}, std::size_t{512}}) {
          const Shape shape{requests, beams, codebook, items};
          add<float, EarlyExitSelect, SparseTrieFilter>("f32", 1, "default", shape);
          add<float, FullSortSelect, SparseTrieFilter>("f32", 1, "full_sort", shape);
          add<float, EarlyExitSelect, DenseMaskFilter>("f32", 1, "dense_mask", shape);
          add<float, NoEarlyExitSelect, SparseTrieFilter>("f32", 1, "no_early_exit", shape);
          add<float, EarlyExitSelect, SparseTrieFilter>("f32", 2, "default", shape);
          add<float, EarlyExitSelect, SparseTrieFilter>("f32", 0, "default", shape);
          if (codebook == 8192 && items == 1000000 && beams == 256 && requests >= 8) {
            add<xgr::bfloat16, EarlyExitSelect, SparseTrieFilter>("bf16", 1, "default", shape);
          }
        }
      }
    }
  }
  return true;
}();

}  // namespace
