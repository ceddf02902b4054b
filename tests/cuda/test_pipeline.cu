// StreamPipeline on the CUDA backend: events as edges, stream lanes, multi-round stages, CUDA graphs.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "support/pipeline_graphs.hpp"
#include "support/random.hpp"
#include "xgr/core/cuda.cuh"
#include "xgr/pipeline/cuda.cuh"

namespace {

using namespace std::chrono_literals;
using xgr::BatchInfo;
using xgr::test::run_bounded;

constexpr std::size_t graph_elements = 256;

struct ProducerList {
  int count = 0;
  int index[xgr::test::max_graph_stages] = {};
};

__device__ void spin_cycles(long long cycles) {
  const long long start = clock64();
  while (clock64() - start < cycles) {
  }
}

// Stage `stage` of a random graph, on the device. It waits first, so that a consumer enqueued
// without waiting for it would read its producers' old values and the check would see it.
__global__ void graph_stage_kernel(std::uint32_t* values, std::uint64_t sequence, int stage, ProducerList producers,
                                   long long delay_cycles) {
  spin_cycles(delay_cycles);
  for (std::size_t e = threadIdx.x; e < graph_elements; e += blockDim.x) {
    std::uint32_t value = xgr::test::stage_seed(sequence, static_cast<std::size_t>(stage), e);
    for (int p = 0; p < producers.count; ++p) {
      value = xgr::test::stage_fold(value, values[static_cast<std::size_t>(producers.index[p]) * graph_elements + e]);
    }
    values[static_cast<std::size_t>(stage) * graph_elements + e] = value;
  }
}

// Values live in pinned memory, which kernels read and write directly (unified addressing), so that
// host and device stages share them without copies.
struct GraphSlot {
  xgr::PinnedBuffer<std::uint32_t> values{xgr::test::max_graph_stages * graph_elements};
};

using CudaGraphPipeline = xgr::StreamPipeline<GraphSlot, xgr::exec::cuda>;

}  // namespace

TEST_CASE("random graphs of host and device stages on two stream lanes: every edge is honoured") {
  auto rng = xgr::test::make_rng(701);
  for (int trial = 0; trial < 12; ++trial) {
    const std::size_t stage_count = 2 + rng() % (xgr::test::max_graph_stages - 1);
    const auto graph = xgr::test::random_graph(rng, stage_count, 0.45, 0.6);
    const std::size_t slots = 1 + rng() % 4;
    const std::size_t shared_copy_streams = 1 + rng() % 2;
    const bool launcher_thread = rng() % 2 == 0;
    const std::uint64_t batches = 24;
    CAPTURE(trial);
    CAPTURE(stage_count);
    CAPTURE(slots);
    CAPTURE(launcher_thread);

    std::vector<long long> delay_cycles(stage_count);
    std::vector<std::size_t> lane(stage_count);
    for (std::size_t s = 0; s < stage_count; ++s) {
      delay_cycles[s] = static_cast<long long>(rng() % 40000);
      lane[s] = rng() % 2;
    }
    std::vector<std::uint64_t> completed;
    int wrong_values = 0;
    int errors = 0;
    xgr::PipelineStats stats;
    run_bounded(30s, "random device graph", [&] {
      // Lane 0: a stream per slot. Lane 1: one or two streams shared by all slots, so that batches of
      // different slots also meet on one stream.
      CudaGraphPipeline pipeline(xgr::PipelineOptions{.slots = slots,
                                                      .lanes = {{"compute", 0}, {"copy", shared_copy_streams}},
                                                      .launcher_thread = launcher_thread},
                                 [](std::size_t) { return GraphSlot{}; });
      std::vector<xgr::StageId> ids;
      for (std::size_t s = 0; s < stage_count; ++s) {
        ProducerList producers;
        for (std::size_t p : graph.producers[s]) producers.index[producers.count++] = static_cast<int>(p);
        const std::string name = "stage" + std::to_string(s);
        if (graph.device[s]) {
          ids.push_back(pipeline.add_device_stage(
              name,
              [s, producers, delay = delay_cycles[s]](GraphSlot& slot, const BatchInfo& info, xgr::exec::cuda exec) {
                graph_stage_kernel<<<1, 128, 0, exec.stream>>>(slot.values.data(), info.sequence, static_cast<int>(s),
                                                                producers, delay);
                XGR_CUDA_CHECK_LAUNCH();
              },
              {.lane = lane[s]}));
        } else {
          ids.push_back(pipeline.add_host_stage(name, [&graph, s](GraphSlot& slot, const BatchInfo& info) {
            for (std::size_t e = 0; e < graph_elements; ++e) {
              std::uint32_t value = xgr::test::stage_seed(info.sequence, s, e);
              for (std::size_t p : graph.producers[s]) value = xgr::test::stage_fold(value, slot.values[p * graph_elements + e]);
              slot.values[s * graph_elements + e] = value;
            }
          }));
        }
        for (std::size_t p : graph.producers[s]) pipeline.connect(ids[p], ids[s]);
      }
      pipeline.on_complete([&](GraphSlot& slot, const BatchInfo& info, std::exception_ptr error) {
        completed.push_back(info.sequence);
        if (error) ++errors;
        for (std::size_t e = 0; e < graph_elements; e += 17) {
          const auto expected = xgr::test::expected_values(graph, info.sequence, e);
          for (std::size_t s = 0; s < stage_count; ++s) wrong_values += slot.values[s * graph_elements + e] != expected[s];
        }
      });
      pipeline.start();
      for (std::uint64_t b = 0; b < batches; ++b) {
        pipeline.submit([](GraphSlot& slot, const BatchInfo&) {
          std::ranges::fill(slot.values.span(), xgr::test::poison_value);
        });
      }
      pipeline.drain();
      stats = pipeline.stats();
    });
    CHECK(errors == 0);
    CHECK(wrong_values == 0);
    CHECK(stats.completed == batches);
    REQUIRE(completed.size() == batches);
    for (std::uint64_t b = 0; b < batches; ++b) CHECK(completed[b] == b);
  }
}

namespace {

constexpr int decode_rounds = 4;
constexpr std::size_t decode_elements = 1000;

// Round r of a synthetic decode: everything it needs is on the device (the batch's seed was
// uploaded by an earlier stage), so a graph captured for one batch replays correctly for the next.
__global__ void decode_round_kernel(std::uint32_t* state, const std::uint32_t* seed, int round) {
  for (std::size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < decode_elements; i += gridDim.x * blockDim.x) {
    const std::uint32_t previous = round == 0 ? xgr::test::mix32(*seed + static_cast<std::uint32_t>(i)) : state[i];
    state[i] = xgr::test::mix32(previous * 3u + static_cast<std::uint32_t>(round));
  }
}

std::uint32_t expected_decode(std::uint32_t seed, std::size_t i) {
  std::uint32_t value = xgr::test::mix32(seed + static_cast<std::uint32_t>(i));
  for (int round = 0; round < decode_rounds; ++round) {
    value = xgr::test::mix32(value * 3u + static_cast<std::uint32_t>(round));
  }
  return value;
}

struct DecodeSlot {
  xgr::PinnedBuffer<std::uint32_t> seed_staging{1};
  xgr::DeviceBuffer<std::uint32_t> seed{1};
  xgr::DeviceBuffer<std::uint32_t> state{decode_elements};
  xgr::PinnedBuffer<std::uint32_t> result{decode_elements};
};

enum class SyncInDecode { none, checked, unchecked };

// pack (host) -> upload (copy lane) -> decode (4 rounds, graph) -> download (copy lane) -> check (host)
struct DecodeOutcome {
  int wrong = 0;
  int failed = 0;
  xgr::PipelineStats stats;
};

DecodeOutcome run_decode_pipeline(std::size_t slots, int batches, SyncInDecode sync, bool use_graph, bool launcher_thread) {
  DecodeOutcome outcome;
  xgr::StreamPipeline<DecodeSlot, xgr::exec::cuda> pipeline(
      xgr::PipelineOptions{.slots = slots, .lanes = {{"compute", 0}, {"copy", 0}}, .launcher_thread = launcher_thread},
      [](std::size_t) { return DecodeSlot{}; });
  auto pack = pipeline.add_host_stage("pack", [](DecodeSlot& slot, const BatchInfo& info) {
    slot.seed_staging[0] = static_cast<std::uint32_t>(info.sequence * 7919u + 13u);
  });
  auto upload = pipeline.add_device_stage(
      "upload",
      [](DecodeSlot& slot, const BatchInfo&, xgr::exec::cuda exec) {
        xgr::copy_async(slot.seed.span(), slot.seed_staging.span(), exec.stream);
      },
      {.lane = 1});
  xgr::DeviceStageOptions<DecodeSlot> decode_options{.lane = 0, .rounds = decode_rounds};
  if (use_graph) decode_options.graph_bucket = [](const DecodeSlot&) { return std::uint64_t{decode_elements}; };
  auto decode = pipeline.add_device_stage(
      "decode",
      [sync](DecodeSlot& slot, const BatchInfo& info, xgr::exec::cuda exec) {
        decode_round_kernel<<<4, 128, 0, exec.stream>>>(slot.state.data(), slot.seed.data(), info.round);
        XGR_CUDA_CHECK_LAUNCH();
        // Synchronising is not capturable: the stage must fall back to plain launches.
        if (sync == SyncInDecode::checked) XGR_CUDA_CHECK(cudaStreamSynchronize(exec.stream));
        if (sync == SyncInDecode::unchecked) (void)cudaStreamSynchronize(exec.stream);
      },
      decode_options);
  auto download = pipeline.add_device_stage(
      "download",
      [](DecodeSlot& slot, const BatchInfo&, xgr::exec::cuda exec) {
        xgr::copy_async(slot.result.span(), slot.state.span(), exec.stream);
      },
      {.lane = 1});
  auto check = pipeline.add_host_stage("check", [&outcome](DecodeSlot& slot, const BatchInfo& info) {
    const auto seed = static_cast<std::uint32_t>(info.sequence * 7919u + 13u);
    for (std::size_t i = 0; i < decode_elements; ++i) outcome.wrong += slot.result[i] != expected_decode(seed, i);
  });
  pipeline.connect(pack, upload);
  pipeline.connect(upload, decode);
  pipeline.connect(decode, download);
  pipeline.connect(download, check);
  pipeline.on_complete([&](DecodeSlot&, const BatchInfo&, std::exception_ptr error) { outcome.failed += error != nullptr; });
  pipeline.start();
  for (int b = 0; b < batches; ++b) {
    pipeline.submit([](DecodeSlot& slot, const BatchInfo&) {
      std::ranges::fill(slot.result.span(), xgr::test::poison_value);
    });
  }
  pipeline.drain();
  outcome.stats = pipeline.stats();
  return outcome;
}

}  // namespace

TEST_CASE("a graph-captured multi-round stage is captured once per slot and replays correctly") {
  DecodeOutcome outcome;
  run_bounded(30s, "graph decode", [&] { outcome = run_decode_pipeline(3, 20, SyncInDecode::none, true, false); });
  CHECK(outcome.failed == 0);
  CHECK(outcome.wrong == 0);
  CHECK(outcome.stats.graph_captures == 3);
  CHECK(outcome.stats.graph_launches == 20);
  CHECK(outcome.stats.graph_fallbacks == 0);
  CHECK(outcome.stats.device_launches == 20 * 2);  // upload and download, plain
}

TEST_CASE("graph capture and replay work from the launcher thread too") {
  DecodeOutcome outcome;
  run_bounded(30s, "graph decode, launcher", [&] { outcome = run_decode_pipeline(4, 20, SyncInDecode::none, true, true); });
  CHECK(outcome.failed == 0);
  CHECK(outcome.wrong == 0);
  CHECK(outcome.stats.graph_captures == 4);
  CHECK(outcome.stats.graph_launches == 20);
}

TEST_CASE("the same stage without graphs gives the same results") {
  DecodeOutcome outcome;
  run_bounded(30s, "plain decode", [&] { outcome = run_decode_pipeline(2, 12, SyncInDecode::none, false, true); });
  CHECK(outcome.failed == 0);
  CHECK(outcome.wrong == 0);
  CHECK(outcome.stats.graph_captures == 0);
  CHECK(outcome.stats.graph_launches == 0);
  CHECK(outcome.stats.device_launches == 12 * 3);
}

TEST_CASE("a stage that cannot be captured falls back to plain launches, once per slot and bucket") {
  for (const auto sync : {SyncInDecode::checked, SyncInDecode::unchecked}) {
    CAPTURE(static_cast<int>(sync));
    DecodeOutcome outcome;
    run_bounded(30s, "fallback decode", [&] { outcome = run_decode_pipeline(2, 10, sync, true, sync == SyncInDecode::checked); });
    CHECK(outcome.failed == 0);
    CHECK(outcome.wrong == 0);
    CHECK(outcome.stats.graph_captures == 0);
    CHECK(outcome.stats.graph_fallbacks == 2);
    CHECK(outcome.stats.graph_launches == 0);
    CHECK(outcome.stats.device_launches == 10 * 3);
  }
  // The device is still usable: the invalidated captures left no error behind.
  XGR_CUDA_CHECK(cudaDeviceSynchronize());
  XGR_CUDA_CHECK(cudaGetLastError());
}

namespace {

__global__ void wait_for_flag(const volatile std::uint32_t* flag) {
  while (*flag == 0) {
  }
}

__global__ void add_round(std::uint32_t* value, int round) { *value = *value * 10u + static_cast<std::uint32_t>(round); }

struct RoundsSlot {
  xgr::PinnedBuffer<std::uint32_t> flag{1};
  xgr::PinnedBuffer<std::uint32_t> value{1};
  int rounds_enqueued = 0;
};

}  // namespace

TEST_CASE("all rounds of a stage are enqueued before the first one runs: no host sync between rounds") {
  // Round 0 blocks on the device until the host sets a flag. The host sets it only after submit()
  // returned with every round enqueued; a pipeline that waited for round 0 before enqueueing round
  // 1 would never get there, and the watchdog fails the run.
  run_bounded(20s, "rounds without host sync", [&] {
    xgr::StreamPipeline<RoundsSlot, xgr::exec::cuda> pipeline(xgr::PipelineOptions{.slots = 1});
    pipeline.add_device_stage(
        "decode",
        [](RoundsSlot& slot, const BatchInfo& info, xgr::exec::cuda exec) {
          if (info.round == 0) wait_for_flag<<<1, 1, 0, exec.stream>>>(slot.flag.data());
          add_round<<<1, 1, 0, exec.stream>>>(slot.value.data(), info.round + 1);
          XGR_CUDA_CHECK_LAUNCH();
          ++slot.rounds_enqueued;
        },
        {.rounds = 3});
    std::uint32_t result = 0;
    pipeline.on_complete([&](RoundsSlot& slot, const BatchInfo&, std::exception_ptr error) {
      CHECK(error == nullptr);
      result = slot.value[0];
    });
    RoundsSlot* loaded = nullptr;
    pipeline.start();
    pipeline.submit([&](RoundsSlot& slot, const BatchInfo&) {
      slot.flag[0] = 0;
      slot.value[0] = 0;
      slot.rounds_enqueued = 0;
      loaded = &slot;
    });
    REQUIRE(loaded != nullptr);
    CHECK(loaded->rounds_enqueued == 3);
    std::this_thread::sleep_for(5ms);
    CHECK(pipeline.in_flight() == 1);  // still blocked on the flag
    std::atomic_thread_fence(std::memory_order_seq_cst);
    *static_cast<volatile std::uint32_t*>(loaded->flag.data()) = 1;
    pipeline.drain();
    CHECK(result == 123);
  });
}

namespace {

__global__ void never_launched() {}

}  // namespace

TEST_CASE("a failed launch fails its batch with Error(cuda); later batches run normally") {
  std::vector<std::string> outcomes;
  run_bounded(20s, "launch errors", [&] {
    xgr::StreamPipeline<RoundsSlot, xgr::exec::cuda> pipeline(xgr::PipelineOptions{.slots = 2});
    std::atomic<int> post_runs{0};
    auto compute = pipeline.add_device_stage("compute", [](RoundsSlot& slot, const BatchInfo& info, xgr::exec::cuda exec) {
      add_round<<<1, 1, 0, exec.stream>>>(slot.value.data(), 7);
      XGR_CUDA_CHECK_LAUNCH();
      if (info.sequence % 2 == 1) {
        never_launched<<<0, 1, 0, exec.stream>>>();  // an empty grid: a launch error
        XGR_CUDA_CHECK_LAUNCH();
      }
    });
    auto post = pipeline.add_host_stage("post", [&](RoundsSlot&, const BatchInfo&) { ++post_runs; });
    pipeline.connect(compute, post);
    pipeline.on_complete([&](RoundsSlot& slot, const BatchInfo&, std::exception_ptr error) {
      if (!error) {
        outcomes.push_back("ok " + std::to_string(slot.value[0]));
        return;
      }
      try {
        std::rethrow_exception(error);
      } catch (const xgr::Error& e) {
        // The CUDA runtime's name for an empty grid varies between releases; any cudaError is right.
        outcomes.push_back(std::string(xgr::to_string(e.kind())) + " " + e.reason().substr(0, 9));
      } catch (...) {
        outcomes.push_back("another exception");
      }
    });
    pipeline.start();
    for (int b = 0; b < 4; ++b) pipeline.submit([](RoundsSlot& slot, const BatchInfo&) { slot.value[0] = 1; });
    pipeline.drain();
    CHECK(post_runs == 2);
    CHECK(pipeline.stats().failed == 2);
  });
  REQUIRE(outcomes.size() == 4);
  CHECK(outcomes[0] == "ok 17");
  CHECK(outcomes[1] == "CUDA error cudaError");
  CHECK(outcomes[2] == "ok 17");
  CHECK(outcomes[3] == "CUDA error cudaError");
}
