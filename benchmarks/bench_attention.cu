// Staged decode attention (KvPool) against the copy-on-fork baseline, with both floors per row.
//
// Shape: one layer of a GR model with 16 query / 4 kv heads of 128 dims, bf16, decode step 2 of 3
// (every beam has 3 own tokens). For each (requests, beams, prompt):
//
//   kv_floor_us   the bytes attention must move — each request's prompt KV once, the beams' own
//                 tokens, q in and out — at the measured copy bandwidth
//   tc_floor_us   the tensor-core work — 4 * rows * prompt * head_dim flops per (request, query head)
//                 — at the bf16 GEMM rate cuBLAS reaches on this device (measured once)
//   median_us     the staged call in device time (launches back to back, as under a CUDA graph)
//   host_paced_us the same call timed from an idle stream (also counts the host enqueuing it)
//   x_floor       median / max(kv_floor, tc_floor)
//   per_beam_us   the copy-on-fork baseline on the same shape (every beam reads its own prompt copy),
//                 or 0 where its copies do not fit in device memory
//   mma_sync_us   the same call on the portable mma.sync kernel
//
// XGR_BENCH_STAGED_ONLY=1 in the environment skips the two baselines (mma_sync_us and per_beam_us
// read 0): for comparing builds of the staged kernels, where the baselines take most of the time.
// XGR_BENCH_MAX_SPLITS=N caps the prompt splits of small batches (DecodeLimits::max_splits; default 8),
// e.g. 1 to time a batch that would split as one fused launch.
//
// Also: prefill rows, and how many (P = 2048, B = 256) requests of an 8-layer model fit in 60 GiB of
// KV under each policy (real pools, admitted until full).
#include <benchmark/benchmark.h>
#include <cublas_v2.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "harness.cuh"
#include "random_logits.cuh"
#include "xgr/attention/cuda.cuh"
#include "xgr/kv/cuda.cuh"

namespace {

using xgr::bfloat16;
using xgr::MemorySpace;

constexpr std::size_t kv_heads = 4;
constexpr std::size_t q_heads = 16;
constexpr std::size_t head_dim = 128;
constexpr std::size_t steps = 3;
constexpr std::size_t timed_step = 2;
constexpr std::size_t page_tokens = 64;
constexpr int timed_iterations = 30;

#define XGR_CUBLAS_CHECK(expression)                                                                              \
  do {                                                                                                            \
    const cublasStatus_t status = (expression);                                                                   \
    if (status != CUBLAS_STATUS_SUCCESS) {                                                                        \
      throw xgr::Error(xgr::ErrorKind::cuda, #expression, "cuBLAS status " + std::to_string(static_cast<int>(status))); \
    }                                                                                                             \
  } while (0)

// bf16 tensor-core rate (flop/s) of an 8192^3 cuBLAS GEMM with fp32 accumulation: the ceiling the
// tc floors use, measured once per process like the copy bandwidth.
double tensor_core_flops_per_s() {
  static const double rate = [] {
    const int n = 8192;
    xgr::DeviceBuffer<bfloat16> a(std::size_t{1} * n * n), b(std::size_t{1} * n * n), c(std::size_t{1} * n * n);
    xgr::bench::fill_logits<<<1024, 256>>>(a.data(), a.size(), 1);
    xgr::bench::fill_logits<<<1024, 256>>>(b.data(), b.size(), 2);
    XGR_CUDA_CHECK_LAUNCH();
    XGR_CUDA_CHECK(cudaStreamSynchronize(nullptr));  // the GEMMs' non-blocking stream does not wait for the fills
    cublasHandle_t handle = nullptr;
    XGR_CUBLAS_CHECK(cublasCreate(&handle));
    xgr::Stream stream;
    XGR_CUBLAS_CHECK(cublasSetStream(handle, stream.get()));
    const float alpha = 1.0f, beta = 0.0f;
    auto gemm = [&](cudaStream_t) {
      XGR_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a.data(), CUDA_R_16BF, n, b.data(), CUDA_R_16BF, n,
                                    &beta, c.data(), CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    };
    const double seconds = xgr::bench::time_median_s(stream.get(), 10, gemm);
    cublasDestroy(handle);
    return 2.0 * n * double(n) * n / seconds;
  }();
  return rate;
}

void BM_TensorCoreCeiling(benchmark::State& state) {
  const double rate = tensor_core_flops_per_s();
  for (auto _ : state) state.SetIterationTime(1.0);
  state.counters["TFLOPS"] = rate * 1e-12;
}

struct Shape {
  std::size_t requests, beams, prompt;
};

double gib(std::size_t bytes) { return static_cast<double>(bytes) / double(std::size_t{1} << 30); }

// Parents for every timed step: each row picks a random row of its own request.
std::vector<std::uint32_t> random_parents(const Shape& shape, std::mt19937_64& rng) {
  std::vector<std::uint32_t> parents(shape.requests * shape.beams);
  std::uniform_int_distribution<std::uint32_t> pick(0, static_cast<std::uint32_t>(shape.beams - 1));
  for (std::size_t row = 0; row < parents.size(); ++row) parents[row] = static_cast<std::uint32_t>(row / shape.beams * shape.beams) + pick(rng);
  return parents;
}

template <class T>
void fill(std::span<T> data, std::uint64_t seed) {
  xgr::bench::fill_logits<<<4096, 256>>>(data.data(), data.size(), seed);
  XGR_CUDA_CHECK_LAUNCH();
}

bool staged_only() {
  static const bool value = [] {
    const char* setting = std::getenv("XGR_BENCH_STAGED_ONLY");
    return setting != nullptr && std::string(setting) == "1";
  }();
  return value;
}

std::size_t max_splits() {
  static const std::size_t value = [] {
    const char* setting = std::getenv("XGR_BENCH_MAX_SPLITS");
    const long parsed = setting != nullptr ? std::strtol(setting, nullptr, 10) : 0;
    return parsed > 0 ? static_cast<std::size_t>(parsed) : xgr::attention::DecodeLimits{}.max_splits;
  }();
  return value;
}

void decode(benchmark::State& state, const Shape& shape) {
  const xgr::KvShape kv_shape{1, kv_heads, head_dim};
  const xgr::exec::cuda exec{};
  const xgr::KvPoolConfig config{kv_shape,     page_tokens, shape.requests * ((shape.prompt + page_tokens - 1) / page_tokens),
                                 shape.requests, shape.prompt, shape.beams, steps};
  xgr::DeviceKvPool<bfloat16> pool(config);
  fill(pool.kv_storage(), 11);
  std::vector<xgr::KvRequest> requests;
  for (std::size_t i = 0; i < shape.requests; ++i) requests.push_back(pool.admit({shape.prompt, shape.beams}));
  pool.publish(exec);
  xgr::KvBatch<MemorySpace::device> batch(shape.requests);
  pool.describe(exec, std::span<const xgr::KvRequest>(requests), batch);

  const std::size_t rows = shape.requests * shape.beams;
  std::mt19937_64 rng(7);
  auto parents = random_parents(shape, rng);
  xgr::DeviceBuffer<std::uint32_t> device_parents = xgr::to_device<std::uint32_t>(std::span<const std::uint32_t>(parents));
  for (std::size_t s = 1; s <= timed_step; ++s) {
    xgr::kv::record_parents(exec, pool, batch, {std::span<const std::uint32_t>(device_parents.span()), s});
  }
  xgr::DeviceBuffer<bfloat16> q(rows * q_heads * head_dim), out(rows * q_heads * head_dim);
  fill(q.span(), 12);
  const xgr::attention::Options options{q_heads};
  const xgr::attention::DecodeLimits limits{rows, q_heads, head_dim, max_splits()};
  xgr::DeviceWorkspace workspace(xgr::attention::decode_workspace_bytes(limits));
  // The set-up ran on the legacy stream; the timer's stream does not wait for it on its own.
  XGR_CUDA_CHECK(cudaDeviceSynchronize());

  // Device time of the launches back to back, as a decode round replayed from a CUDA graph runs
  // them (see CudaTimer::Timing); the host-paced time, which also counts the device waiting for the
  // host to enqueue each launch, is reported next to it.
  xgr::bench::CudaTimer timer(xgr::bench::CudaTimer::Timing::device);
  timer.run(state, [&](cudaStream_t stream) {
    xgr::attention::decode(xgr::exec::cuda{stream}, pool, batch, 0, timed_step, options, std::span<const bfloat16>(q.span()), out.span(),
                           workspace, limits);
  });
  const double host_paced_s = xgr::bench::time_median_s(timer.stream(), 30, [&](cudaStream_t stream) {
    xgr::attention::decode(xgr::exec::cuda{stream}, pool, batch, 0, timed_step, options, std::span<const bfloat16>(q.span()), out.span(),
                           workspace, limits);
  });

  // The floors.
  const double token_bytes = 2.0 * kv_heads * head_dim * sizeof(bfloat16);
  const double bytes = shape.requests * shape.prompt * token_bytes + rows * (timed_step + 1) * token_bytes +
                       2.0 * rows * q_heads * head_dim * sizeof(bfloat16);
  const double flops = 4.0 * rows * q_heads * shape.prompt * head_dim;
  const double kv_floor_s = bytes / xgr::bench::copy_bandwidth_bytes_per_s();
  const double tc_floor_s = flops / tensor_core_flops_per_s();
  const double median_s = timer.median_s();
  state.counters["median_us"] = median_s * 1e6;
  state.counters["host_paced_us"] = host_paced_s * 1e6;
  state.counters["kv_floor_us"] = kv_floor_s * 1e6;
  state.counters["tc_floor_us"] = tc_floor_s * 1e6;
  state.counters["x_floor"] = median_s / std::max(kv_floor_s, tc_floor_s);
  state.counters["TFLOPS"] = flops / median_s * 1e-12;
  state.counters["splits"] = xgr::attention::decode_splits(batch.view(), kv_heads, q_heads / kv_heads, limits.max_splits);

  state.counters["wgmma"] = xgr::attention::detail::wgmma::available() ? 1.0 : 0.0;
  state.counters["mma_sync_us"] = 0.0;
  state.counters["per_beam_us"] = 0.0;
  if (staged_only()) return;

  // The portable mma.sync prefix kernel on the same step (the default takes wgmma on Hopper).
  xgr::attention::Options portable = options;
  portable.allow_wgmma = false;
  const double portable_s = xgr::bench::time_median_s(timer.stream(), 10, [&](cudaStream_t stream) {
    xgr::attention::decode(xgr::exec::cuda{stream}, pool, batch, 0, timed_step, portable, std::span<const bfloat16>(q.span()), out.span(),
                           workspace, limits);
  });
  state.counters["mma_sync_us"] = portable_s * 1e6;

  // The copy-on-fork baseline on the same shape, where its B copies of every prompt fit.
  const std::size_t cow_bytes = shape.requests * xgr::CopyOnForkKvCache<bfloat16>::request_bytes(kv_shape, page_tokens, shape.prompt,
                                                                                                   shape.beams, steps);
  state.counters["per_beam_GiB"] = gib(cow_bytes);
  if (cow_bytes <= (std::size_t{40} << 30)) {
    pool = xgr::DeviceKvPool<bfloat16>(xgr::KvPoolConfig{kv_shape, page_tokens, 1, 1, 64, 1, 1});  // free the staged pool first
    const std::size_t pages_per_beam = (shape.prompt + steps + page_tokens - 1) / page_tokens;
    xgr::CopyOnForkKvCache<bfloat16> cache(
        {kv_shape, page_tokens, shape.requests * shape.beams * pages_per_beam, shape.requests, shape.prompt, shape.beams, steps});
    fill(cache.kv_storage(), 13);
    std::vector<xgr::KvRequest> cow_requests;
    for (std::size_t i = 0; i < shape.requests; ++i) cow_requests.push_back(cache.admit({shape.prompt, shape.beams}));
    cache.publish(exec);
    xgr::KvBatch<MemorySpace::device> cow_batch(shape.requests);
    cache.describe(exec, std::span<const xgr::KvRequest>(cow_requests), cow_batch);
    XGR_CUDA_CHECK(cudaDeviceSynchronize());
    const double per_beam_s = xgr::bench::time_median_s(timer.stream(), 10, [&](cudaStream_t stream) {
      xgr::attention::decode(xgr::exec::cuda{stream}, cache, cow_batch, 0, timed_step, options, std::span<const bfloat16>(q.span()),
                             out.span());
    });
    state.counters["per_beam_us"] = per_beam_s * 1e6;
    state.counters["speedup"] = per_beam_s / median_s;
  }
}

void prefill(benchmark::State& state, std::size_t requests, std::size_t prompt) {
  const xgr::KvShape kv_shape{1, kv_heads, head_dim};
  const xgr::exec::cuda exec{};
  const std::size_t pages = (prompt + page_tokens - 1) / page_tokens;
  xgr::DeviceKvPool<bfloat16> pool({kv_shape, page_tokens, requests * pages, requests, prompt, 1, 1});
  std::vector<xgr::KvRequest> admitted;
  for (std::size_t i = 0; i < requests; ++i) admitted.push_back(pool.admit({prompt, 1}));
  pool.publish(exec);
  xgr::KvBatch<MemorySpace::device> batch(requests);
  pool.describe(exec, std::span<const xgr::KvRequest>(admitted), batch);
  const std::size_t tokens = requests * prompt;
  xgr::DeviceBuffer<bfloat16> q(tokens * q_heads * head_dim), k(tokens * kv_heads * head_dim), v(tokens * kv_heads * head_dim),
      out(tokens * q_heads * head_dim);
  fill(q.span(), 21);
  fill(k.span(), 22);
  fill(v.span(), 23);
  const xgr::attention::Options options{q_heads};
  XGR_CUDA_CHECK(cudaDeviceSynchronize());
  xgr::bench::CudaTimer timer;
  timer.run(state, [&](cudaStream_t stream) {
    xgr::attention::prefill(xgr::exec::cuda{stream}, pool, batch, 0, options, std::span<const bfloat16>(q.span()),
                            std::span<const bfloat16>(k.span()), std::span<const bfloat16>(v.span()), out.span());
  });
  // Causal: about half of the prompt x prompt score matrix per head.
  const double flops = 4.0 * requests * q_heads * head_dim * (double(prompt) * (prompt + 1) / 2.0);
  const double median_s = timer.median_s();
  state.counters["median_us"] = median_s * 1e6;
  state.counters["tc_floor_us"] = flops / tensor_core_flops_per_s() * 1e6;
  state.counters["x_floor"] = median_s / (flops / tensor_core_flops_per_s());
  state.counters["TFLOPS"] = flops / median_s * 1e-12;
}

// How many requests of (P, B, L) fit in `budget` bytes of KV, under each policy, counted by admitting
// into real pools until the first refusal.
void memory_capacity(benchmark::State& state, std::size_t budget_gib) {
  const xgr::KvShape shape{8, kv_heads, head_dim};
  const std::size_t prompt = 2048, beams = 256, budget = budget_gib << 30;
  std::size_t staged = 0, per_beam = 0;
  {
    xgr::DeviceKvPool<bfloat16> pool(xgr::DeviceKvPool<bfloat16>::plan(shape, budget, page_tokens, prompt, beams, steps));
    while (pool.try_admit({prompt, beams})) ++staged;
    state.counters["staged_GiB"] = gib(pool.stats().kv_bytes);
  }
  {
    const std::size_t page_bytes = page_tokens * 2 * shape.layers * kv_heads * head_dim * sizeof(bfloat16);
    // Room for one request more than the budget can hold, so that the budget, not the region count, stops admission.
    const std::size_t most = budget / xgr::CopyOnForkKvCache<bfloat16>::request_bytes(shape, page_tokens, prompt, beams, steps) + 1;
    xgr::CopyOnForkKvCache<bfloat16> cache({shape, page_tokens, budget / page_bytes, most, prompt, beams, steps});
    while (cache.try_admit({prompt, beams})) ++per_beam;
    state.counters["per_beam_GiB"] = gib(cache.kv_bytes());
  }
  for (auto _ : state) state.SetIterationTime(1.0);
  state.counters["staged_requests"] = static_cast<double>(staged);
  state.counters["per_beam_requests"] = static_cast<double>(per_beam);
  state.counters["ratio"] = per_beam > 0 ? double(staged) / per_beam : 0.0;
  state.counters["B_over_2"] = beams / 2.0;
}

template <class Fn>
void guarded(benchmark::State& state, Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& error) {
    state.SkipWithError(error.what());
  }
}

[[maybe_unused]] const bool registered = [] {
  benchmark::RegisterBenchmark("attention/tensor_core_ceiling", BM_TensorCoreCeiling)->UseManualTime()->Iterations(1);
  for (const std::size_t requests : {std::size_t{1}, std::size_t{8}, std::size_t{32}}) {
    for (const std::size_t beams : {std::size_t{128}, std::size_t{256}, std::size_t{512}}) {
      for (const std::size_t prompt : {std::size_t{1024}, std::size_t{2048}, std::size_t{4096}}) {
        const Shape shape{requests, beams, prompt};
        const std::string name = "attention/decode/req:" + std::to_string(requests) + "/beams:" + std::to_string(beams) +
                                 "/prompt:" + std::to_string(prompt);
        benchmark::RegisterBenchmark(name.c_str(), [shape](benchmark::State& state) { guarded(state, [&] { decode(state, shape); }); })
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond)
            ->Iterations(timed_iterations);
      }
    }
  }
  for (const std::size_t requests : {std::size_t{1}, std::size_t{8}}) {
    for (const std::size_t prompt : {std::size_t{1024}, std::size_t{4096}}) {
      const std::string name = "attention/prefill/req:" + std::to_string(requests) + "/prompt:" + std::to_string(prompt);
      benchmark::RegisterBenchmark(name.c_str(), [requests, prompt](benchmark::State& state) {
        guarded(state, [&] { prefill(state, requests, prompt); });
      })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond)
          ->Iterations(timed_iterations);
    }
  }
  benchmark::RegisterBenchmark("attention/memory/P:2048/B:256/budget_GiB:60", [](benchmark::State& state) {
    guarded(state, [&] { memory_capacity(state, 60); });
  })->UseManualTime()->Iterations(1);
  return true;
}();

}  // namespace
