// pipeline_example — a selection service as a StreamPipeline: pack on the host, select on the
// device, report on the host, with three batches in flight.
//
//   pack   (host stage)    the batch's scores arrive (here: random) in the slot's staging buffer
//   select (device stage)  upload, MaskedTopK of each request's beams x vocab, download the results
//   report (host stage)    read the results out of the slot
//
// The graph is declared once and runs on the host backend (StreamPipeline<Slot, exec::host_t>,
// every stage on host threads) and, built as CUDA where a GPU exists, on the CUDA backend too
// (StreamPipeline<Slot, exec::cuda>: the select stage on a stream per slot, edges as events). The
// select stage is one generic lambda: it calls masked_topk with whichever execution tag the backend
// hands it. Both runs must report the same selections.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <random>
#include <span>
#include <vector>

#include <xgr/pipeline/pipeline.hpp>
#include <xgr/topk/host.hpp>
#include <xgr/xgr.hpp>
#if defined(__CUDACC__)
#include <xgr/pipeline/cuda.cuh>
#include <xgr/topk/cuda.cuh>
#include <xgr/xgr.cuh>
#endif

namespace {

constexpr std::size_t requests = 2, beams = 32, vocab = 2048, k = beams, rows = requests * beams;
constexpr int batches = 8;
const xgr::TopKLimits limits{requests, rows, beams, vocab, k, 0};

// Where each backend keeps a slot's data: the host backend needs nothing but host memory; the CUDA
// backend stages in pinned memory (asynchronous copies) and computes in device memory.
template <class Exec>
struct Memory {
  static constexpr xgr::MemorySpace staging = xgr::MemorySpace::host;
  static constexpr xgr::MemorySpace compute = xgr::MemorySpace::host;
};
#if defined(__CUDACC__)
template <>
struct Memory<xgr::exec::cuda> {
  static constexpr xgr::MemorySpace staging = xgr::MemorySpace::pinned;
  static constexpr xgr::MemorySpace compute = xgr::MemorySpace::device;
};
#endif

template <class T>
void copy(xgr::exec::host_t, std::span<T> destination, std::span<const T> source) {
  std::copy(source.begin(), source.end(), destination.begin());
}
#if defined(__CUDACC__)
template <class T>
void copy(xgr::exec::cuda exec, std::span<T> destination, std::span<const T> source) {
  xgr::copy_async(destination, source, exec.stream);
}
#endif

// Everything one batch needs, allocated once per slot.
template <class Exec>
struct Slot {
  static constexpr auto staging = Memory<Exec>::staging;
  static constexpr auto compute = Memory<Exec>::compute;
  xgr::Buffer<float, staging> staged_scores{rows * vocab};
  xgr::Buffer<float, compute> scores{rows * vocab};
  xgr::Buffer<float, compute> values{requests * k};
  xgr::Buffer<std::uint32_t, compute> indices{requests * k};
  xgr::Buffer<std::uint32_t, compute> counts{requests};
  xgr::Buffer<std::uint32_t, staging> staged_indices{requests * k};
  xgr::Workspace<compute> workspace;

  Slot() : workspace(xgr::masked_topk_workspace_bytes(Exec{}, limits)) {}
};

// One line per batch: its sequence number and each request's best flattened candidate.
template <class Exec>
std::vector<std::uint32_t> serve(const char* backend) {
  using Pipeline = xgr::StreamPipeline<Slot<Exec>, Exec>;
  // Three batches in flight: one being packed, one selecting, one reporting.
  Pipeline pipeline(xgr::PipelineOptions{.slots = 3});

  auto pack = pipeline.add_host_stage("pack", [](Slot<Exec>& slot, const xgr::BatchInfo& info) {
    std::mt19937 rng(static_cast<std::uint32_t>(1000 + info.sequence));  // the batch's scores "arrive"
    std::normal_distribution<float> logit(0.0f, 2.0f);
    for (float& score : slot.staged_scores.span()) score = logit(rng);
  });
  auto select = pipeline.add_device_stage("select", [](Slot<Exec>& slot, const xgr::BatchInfo&, Exec exec) {
    copy(exec, slot.scores.span(), std::span<const float>(slot.staged_scores.span()));
    xgr::TopKProblem<float> problem;
    problem.scores = xgr::matrix_view<const float>(std::span<const float>(slot.scores.span()), rows, vocab);
    problem.k = k;
    problem.rows_per_group = beams;
    const xgr::TopKResult result{xgr::matrix_view(slot.values.data(), requests, k),
                                 xgr::matrix_view(slot.indices.data(), requests, k), slot.counts.span()};
    xgr::masked_topk(exec, problem, result, limits, slot.workspace);
    copy(exec, slot.staged_indices.span(), std::span<const std::uint32_t>(slot.indices.span()));
  });
  std::vector<std::uint32_t> best(batches * requests);
  auto report = pipeline.add_host_stage("report", [&best](Slot<Exec>& slot, const xgr::BatchInfo& info) {
    for (std::size_t r = 0; r < requests; ++r) best[info.sequence * requests + r] = slot.staged_indices[r * k];
  });
  pipeline.connect(pack, select);
  pipeline.connect(select, report);
  pipeline.on_complete([](Slot<Exec>&, const xgr::BatchInfo& info, std::exception_ptr error) {
    if (error) std::printf("batch %llu failed\n", static_cast<unsigned long long>(info.sequence));
  });
  pipeline.start();
  for (int b = 0; b < batches; ++b) pipeline.submit([](Slot<Exec>&, const xgr::BatchInfo&) {});
  pipeline.drain();

  const xgr::PipelineStats stats = pipeline.stats();
  std::printf("%s backend: %llu batches completed, %llu failed; best (beam, token) per request:\n", backend,
              static_cast<unsigned long long>(stats.completed), static_cast<unsigned long long>(stats.failed));
  for (int b = 0; b < batches; ++b) {
    std::printf("  batch %d:", b);
    for (std::size_t r = 0; r < requests; ++r) {
      const std::uint32_t flat = best[static_cast<std::size_t>(b) * requests + r];
      std::printf("  (%2u, %4u)", static_cast<unsigned>(flat / vocab), static_cast<unsigned>(flat % vocab));
    }
    std::printf("\n");
  }
  return best;
}

}  // namespace

int main() {
  const auto host = serve<xgr::exec::host_t>("host");
#if defined(__CUDACC__)
  if (xgr::cuda_device_count() == 0) {
    std::printf("CUDA backend: built, but no CUDA device here\n");
    return 0;
  }
  const auto cuda = serve<xgr::exec::cuda>("CUDA");
  std::printf("CUDA backend: %s\n", cuda == host ? "identical selections" : "DIFFERENT selections");
  return cuda == host ? 0 : 1;
#else
  return 0;
#endif
}
