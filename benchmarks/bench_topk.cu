// MaskedTopK on GR shapes: requests x beams rows of `vocab` scores, top-B per request (k = beams).
//
// Each row prints the median time of the default policy (EarlyExit), its floor (reading the scores
// and mask once at the measured copy bandwidth) and their ratio, and the median time of the
// FullSort baseline (CUB segmented radix sort) on the same input. Every row also checks that the
// two policies returned identical results, so a fast row is a correct row.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "harness.cuh"
#include "random_logits.cuh"
#include "xgr/topk/cuda.cuh"

namespace {

enum MaskCase : int { no_mask = 0, bitset_1 = 1, bitset_10 = 2, bitset_100 = 3, sparse_1 = 4 };

using xgr::bench::fill_logits;
using xgr::bench::mix;

__global__ void fill_bitset(std::uint32_t* words, std::size_t n, std::uint32_t percent, std::uint64_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x) {
    std::uint32_t word = 0;
    for (int b = 0; b < 32; ++b) word |= (mix(seed ^ (i * 32 + b)) % 100 < percent ? 1u : 0u) << b;
    words[i] = word;
  }
}

// Sparse rows with exactly `per_row` allowed columns: column j of row r is (j * step + r) % vocab.
__global__ void fill_sparse(std::uint32_t* row_ptr, std::uint32_t* columns, std::uint32_t rows, std::uint32_t per_row,
                            std::uint32_t vocab) {
  const std::uint32_t step = vocab / per_row;
  for (std::uint32_t r = blockIdx.x; r < rows; r += gridDim.x) {
    if (threadIdx.x == 0) row_ptr[r + 1] = (r + 1) * per_row;
    if (r == 0 && threadIdx.x == 0) row_ptr[0] = 0;
    for (std::uint32_t j = threadIdx.x; j < per_row; j += blockDim.x) columns[r * per_row + j] = (j * step + r) % vocab;
  }
}

template <class T>
void BM_MaskedTopK(benchmark::State& state) {
  const auto requests = static_cast<std::size_t>(state.range(0));
  const auto beams = static_cast<std::size_t>(state.range(1));
  const auto vocab = static_cast<std::size_t>(state.range(2));
  const auto mask_case = static_cast<MaskCase>(state.range(3));
  const std::size_t rows = requests * beams;
  const std::size_t elements = rows * vocab;
  const std::size_t score_bytes = elements * sizeof(T);
  // Rotate over enough copies that consecutive iterations never find their input in L2.
  const std::size_t copies = std::clamp<std::size_t>((std::size_t{256} << 20) / score_bytes, 1, 8);

  std::vector<xgr::DeviceBuffer<T>> scores;
  for (std::size_t c = 0; c < copies; ++c) {
    scores.emplace_back(elements);
    fill_logits<<<1024, 256>>>(scores.back().data(), elements, 1234 + c);
    XGR_CUDA_CHECK_LAUNCH();
  }

  const std::size_t words_per_row = (vocab + 31) / 32;
  xgr::DeviceBuffer<std::uint32_t> bits;
  xgr::DeviceBuffer<std::uint32_t> row_ptr;
  xgr::DeviceBuffer<std::uint32_t> columns;
  xgr::TopKMask mask;
  double mask_bytes = 0;
  if (mask_case >= bitset_1 && mask_case <= bitset_100) {
    const std::uint32_t percent = mask_case == bitset_1 ? 1 : mask_case == bitset_10 ? 10 : 100;
    bits = xgr::DeviceBuffer<std::uint32_t>(rows * words_per_row);
    fill_bitset<<<1024, 256>>>(bits.data(), bits.size(), percent, 99);
    XGR_CUDA_CHECK_LAUNCH();
    mask = xgr::TopKMask::bitset(xgr::matrix_view<const std::uint32_t>(bits.data(), rows, words_per_row));
    mask_bytes = static_cast<double>(bits.bytes());
  } else if (mask_case == sparse_1) {
    const auto per_row = static_cast<std::uint32_t>(vocab / 100);
    row_ptr = xgr::DeviceBuffer<std::uint32_t>(rows + 1);
    columns = xgr::DeviceBuffer<std::uint32_t>(rows * per_row);
    fill_sparse<<<1024, 256>>>(row_ptr.data(), columns.data(), static_cast<std::uint32_t>(rows), per_row, static_cast<std::uint32_t>(vocab));
    XGR_CUDA_CHECK_LAUNCH();
    mask = xgr::TopKMask::sparse(row_ptr.span(), columns.span());
    mask_bytes = static_cast<double>(row_ptr.bytes() + columns.bytes());
  }

  // The fills ran on the legacy stream, which the policies' non-blocking streams do not wait for.
  XGR_CUDA_CHECK(cudaDeviceSynchronize());
  const std::size_t k = beams;
  xgr::TopKLimits limits{requests, rows, beams, vocab, k, columns.size()};
  xgr::DeviceWorkspace workspace(std::max(xgr::masked_topk_workspace_bytes<xgr::topk::EarlyExit>(xgr::exec::cuda{}, limits),
                                          xgr::masked_topk_workspace_bytes<xgr::topk::FullSort>(xgr::exec::cuda{}, limits)));
  xgr::DeviceBuffer<float> values(requests * k);
  xgr::DeviceBuffer<std::uint32_t> indices(requests * k);
  xgr::DeviceBuffer<std::uint32_t> counts(requests);
  xgr::DeviceBuffer<float> baseline_values(requests * k);
  xgr::DeviceBuffer<std::uint32_t> baseline_indices(requests * k);
  xgr::DeviceBuffer<std::uint32_t> baseline_counts(requests);
  const xgr::TopKResult result{xgr::matrix_view(values.data(), requests, k), xgr::matrix_view(indices.data(), requests, k), counts.span()};
  const xgr::TopKResult baseline{xgr::matrix_view(baseline_values.data(), requests, k),
                                 xgr::matrix_view(baseline_indices.data(), requests, k), baseline_counts.span()};

  const auto problem_for = [&](std::size_t copy) {
    xgr::TopKProblem<T> problem;
    problem.scores = xgr::matrix_view<const T>(scores[copy].data(), rows, vocab);
    problem.k = k;
    problem.rows_per_group = beams;
    problem.mask = mask;
    return problem;
  };

  // Correctness on this very input: default policy == full sort, bit for bit.
  {
    xgr::Stream stream;
    xgr::masked_topk<xgr::topk::EarlyExit>(stream.exec(), problem_for(0), result, limits, workspace);
    stream.synchronize();  // the copies below run on the legacy stream, which does not wait for ours
    const auto got_values = xgr::to_host<float>(values.span());
    const auto got_indices = xgr::to_host<std::uint32_t>(indices.span());
    const auto got_counts = xgr::to_host<std::uint32_t>(counts.span());
    xgr::masked_topk<xgr::topk::FullSort>(stream.exec(), problem_for(0), baseline, limits, workspace);
    stream.synchronize();
    const auto want_values = xgr::to_host<float>(baseline_values.span());
    const auto want_indices = xgr::to_host<std::uint32_t>(baseline_indices.span());
    const auto want_counts = xgr::to_host<std::uint32_t>(baseline_counts.span());
    for (std::size_t i = 0; i < requests * k; ++i) {
      if (got_indices[i] != want_indices[i] || got_values[i] != want_values[i]) {
        state.SkipWithError("EarlyExit and FullSort disagree");
        return;
      }
    }
    for (std::size_t g = 0; g < requests; ++g) {
      if (got_counts[g] != want_counts[g]) {
        state.SkipWithError("EarlyExit and FullSort disagree on counts");
        return;
      }
    }
  }

  std::size_t copy = 0;
  // Device time of the launches back to back (see CudaTimer::Timing); the host-paced time, which
  // also counts the device waiting for the host to enqueue the four launches, is reported next to it.
  xgr::bench::CudaTimer timer(xgr::bench::CudaTimer::Timing::device);
  timer.run(state, [&](cudaStream_t stream) {
    xgr::masked_topk<xgr::topk::EarlyExit>(xgr::exec::cuda{stream}, problem_for(copy), result, limits, workspace);
    copy = (copy + 1) % copies;
  });
  const double host_paced_s = xgr::bench::time_median_s(timer.stream(), 30, [&](cudaStream_t stream) {
    xgr::masked_topk<xgr::topk::EarlyExit>(xgr::exec::cuda{stream}, problem_for(copy), result, limits, workspace);
    copy = (copy + 1) % copies;
  });
  const double full_sort_s = xgr::bench::time_median_s(timer.stream(), 10, [&](cudaStream_t stream) {
    xgr::masked_topk<xgr::topk::FullSort>(xgr::exec::cuda{stream}, problem_for(copy), baseline, limits, workspace);
    copy = (copy + 1) % copies;
  });
  const double read_bytes = mask_case == sparse_1 ? mask_bytes + static_cast<double>(columns.size() * sizeof(T))
                                                  : static_cast<double>(score_bytes) + mask_bytes;
  xgr::bench::report_floor(state, timer, read_bytes);
  state.counters["host_paced_us"] = host_paced_s * 1e6;
  state.counters["full_sort_us"] = full_sort_s * 1e6;
  state.counters["x_vs_sort"] = full_sort_s / timer.median_s();
}

void gr_shapes(benchmark::internal::Benchmark* benchmark) {
  benchmark->ArgNames({"req", "beams", "vocab", "mask"});
  for (const int vocab : {8192, 32768}) {
    for (const int requests : {1, 8, 32}) {
      for (const int beams : {128, 256, 512}) {
        for (const int mask : {no_mask, bitset_1, bitset_10, bitset_100, sparse_1}) benchmark->Args({requests, beams, vocab, mask});
      }
    }
  }
  benchmark->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(30);
}

void bf16_shapes(benchmark::internal::Benchmark* benchmark) {
  benchmark->ArgNames({"req", "beams", "vocab", "mask"});
  for (const int requests : {8, 32}) benchmark->Args({requests, 256, 8192, no_mask});
  benchmark->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(30);
}

}  // namespace

BENCHMARK(BM_MaskedTopK<float>)->Name("topk/f32")->Apply(gr_shapes);
BENCHMARK(BM_MaskedTopK<xgr::bfloat16>)->Name("topk/bf16")->Apply(bf16_shapes);
