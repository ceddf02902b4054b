// StreamPipeline on a synthetic GR-like chain, and what CUDA graphs save per decode step.
//
// pipeline/chain: per batch
//   prep  (host)    busy for prep_us (scheduling, input packing), writes the pinned input
//   h2d   (device)  1 MiB pinned -> device, on the copy-in lane
//   kernels         `kernels` memory-bound kernels over the slot's 16 MiB working set (~11 us each
//                   at 3 TB/s), one per round of a multi-round stage
//   d2h   (device)  256 KiB device -> pinned, on the copy-out lane
//   post  (host)    busy for post_us, reads the pinned output
// in four modes:
//   serial            1 slot, every lane one stream: nothing overlaps (the baseline)
//   overlap           6 slots; copy lanes with a stream per slot, one compute stream; device stages
//                     enqueued inline by the host thread that finished their input (prep pays for
//                     the launches)
//   overlap_launcher  overlap, with device stages enqueued by the launcher thread
//   overlap_graph     overlap_launcher, with the kernels stage captured once as a CUDA graph
//  Each row reports throughput and per-batch latency (submit -> completion), and the ideal:
// with perfect overlap a batch leaves every max(stage time), so ideal throughput is
// 1 / max(prep, h2d, kernels, d2h, post), with each stage timed alone (events for device stages,
// the stage's own clock for host stages); `x_ideal` = throughput / ideal. Wall time, not events:
// host stages are half of what is overlapped.
//
// pipeline/launch: a decode stage of `rounds` rounds of `kernels` tiny kernels each (one block,
// a few instructions: what a decode step's bookkeeping kernels cost to launch), submitted for many
// batches at once. `enqueue_us` is the host time per step spent in submit (the inline enqueue of
// rounds x kernels launches, or one graph launch); `step_us` the wall time per step until all
// completed (device-bound when launches are cheap).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "harness.cuh"
#include "xgr/pipeline/cuda.cuh"

namespace {

using Clock = std::chrono::steady_clock;

void busy_wait(double microseconds) {
  const auto until = Clock::now() + std::chrono::duration<double, std::micro>(microseconds);
  while (Clock::now() < until) {
  }
}

double elapsed_us(Clock::time_point since) { return std::chrono::duration<double, std::micro>(Clock::now() - since).count(); }

constexpr std::size_t input_bytes = std::size_t{1} << 20;
constexpr std::size_t work_floats = std::size_t{4} << 20;  // 16 MiB
constexpr std::size_t output_bytes = std::size_t{256} << 10;
constexpr double post_us = 50.0;

__global__ void work_kernel(const float* __restrict__ in, float* __restrict__ out, const float* __restrict__ input,
                            std::size_t n, int round) {
  const std::size_t input_floats = input_bytes / sizeof(float);
  for (std::size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x) {
    const float x = round == 0 ? input[i % input_floats] : in[i];
    out[i] = x * 1.0001f + 0.5f;
  }
}

struct ChainSlot {
  xgr::PinnedBuffer<float> staged_input{input_bytes / sizeof(float)};
  xgr::DeviceBuffer<float> input{input_bytes / sizeof(float)};
  xgr::DeviceBuffer<float> work_a{work_floats};
  xgr::DeviceBuffer<float> work_b{work_floats};
  xgr::PinnedBuffer<float> output{output_bytes / sizeof(float)};
  Clock::time_point submitted;
  float checksum = 0;
};

void enqueue_kernel_round(ChainSlot& slot, int round, cudaStream_t stream, int blocks) {
  const float* in = round % 2 == 0 ? slot.work_b.data() : slot.work_a.data();
  float* out = round % 2 == 0 ? slot.work_a.data() : slot.work_b.data();
  work_kernel<<<blocks, 512, 0, stream>>>(in, out, slot.input.data(), work_floats, round);
  XGR_CUDA_CHECK_LAUNCH();
}

float* last_output(ChainSlot& slot, int kernels) { return (kernels - 1) % 2 == 0 ? slot.work_a.data() : slot.work_b.data(); }

int device_blocks() {
  cudaDeviceProp properties{};
  XGR_CUDA_CHECK(cudaGetDeviceProperties(&properties, 0));
  return properties.multiProcessorCount * 4;
}

struct StageTimes {
  double h2d_us = 0;
  double kernels_us = 0;
  double d2h_us = 0;
};

// Each device stage alone on one stream, event-timed (median of 20): the stage times of the ideal.
// Successive runs rotate over as many slots as the overlapped pipelines have, so that a stage finds
// its data where it does in the pipeline (in HBM, the previous batch having used other slots'
// buffers) and not still in the 50 MB L2.
StageTimes time_device_stages(std::vector<ChainSlot>& slots, int kernels, int blocks) {
  xgr::Stream stream;
  StageTimes times;
  std::size_t next = 0;
  const auto rotate = [&]() -> ChainSlot& { return slots[next++ % slots.size()]; };
  times.h2d_us = 1e6 * xgr::bench::time_median_s(stream.get(), 20, [&](cudaStream_t s) {
    ChainSlot& slot = rotate();
    xgr::copy_async(slot.input.span(), slot.staged_input.span(), s);
  });
  times.kernels_us = 1e6 * xgr::bench::time_median_s(stream.get(), 20, [&](cudaStream_t s) {
    ChainSlot& slot = rotate();
    for (int round = 0; round < kernels; ++round) enqueue_kernel_round(slot, round, s, blocks);
  });
  times.d2h_us = 1e6 * xgr::bench::time_median_s(stream.get(), 20, [&](cudaStream_t s) {
    ChainSlot& slot = rotate();
    XGR_CUDA_CHECK(cudaMemcpyAsync(slot.output.data(), last_output(slot, kernels), output_bytes, cudaMemcpyDeviceToHost, s));
  });
  return times;
}

constexpr std::size_t overlapped_slots = 6;

double percentile(std::vector<double> values, double fraction) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const auto index = static_cast<std::size_t>(fraction * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

enum class ChainMode { serial, overlap, overlap_launcher, overlap_graph };

void BM_PipelineChain(benchmark::State& state, ChainMode mode, double prep_us, int kernels) {
  const int blocks = device_blocks();
  const int batches_per_iteration = 300;

  xgr::PipelineOptions options;
  if (mode == ChainMode::serial) {
    options.slots = 1;
    options.lanes = {{"compute", 1}, {"copy_in", 1}, {"copy_out", 1}};
  } else {
    // Enough batches in flight to cover a batch's latency (about the serial sum of its stages plus
    // queueing) at the bottleneck's rate: Little's law, latency / bottleneck ~ 4-5 here.
    options.slots = overlapped_slots;
    // One compute stream, copies and host work per slot. Each kernel here fills the GPU and is
    // memory-bound: kernels of two batches running side by side gain nothing and evict each
    // other's working set from L2 (measured: 0.73 of ideal with a compute stream per slot against
    // 1.00 with one, at prep 50 us / 8 kernels).
    options.lanes = {{"compute", 1}, {"copy_in", 0}, {"copy_out", 0}};
    options.launcher_thread = mode != ChainMode::overlap;
  }
  xgr::StreamPipeline<ChainSlot, xgr::exec::cuda> pipeline(options, [](std::size_t) { return ChainSlot{}; });

  std::vector<double> prep_times_us;
  std::vector<double> post_times_us;
  std::vector<double> latencies_us;
  prep_times_us.reserve(8 * batches_per_iteration);
  post_times_us.reserve(8 * batches_per_iteration);
  latencies_us.reserve(8 * batches_per_iteration);

  auto prep = pipeline.add_host_stage("prep", [&](ChainSlot& slot, const xgr::BatchInfo& info) {
    const auto begin = Clock::now();
    busy_wait(prep_us);
    for (std::size_t i = 0; i < slot.staged_input.size(); i += 1024) slot.staged_input[i] = static_cast<float>(info.sequence + i);
    prep_times_us.push_back(elapsed_us(begin));
  });
  auto h2d = pipeline.add_device_stage(
      "h2d",
      [](ChainSlot& slot, const xgr::BatchInfo&, xgr::exec::cuda exec) {
        xgr::copy_async(slot.input.span(), slot.staged_input.span(), exec.stream);
      },
      {.lane = 1});
  xgr::DeviceStageOptions<ChainSlot> kernel_options{.lane = 0, .rounds = kernels};
  if (mode == ChainMode::overlap_graph) kernel_options.graph_bucket = [](const ChainSlot&) { return std::uint64_t{0}; };
  auto compute = pipeline.add_device_stage(
      "kernels",
      [blocks](ChainSlot& slot, const xgr::BatchInfo& info, xgr::exec::cuda exec) {
        enqueue_kernel_round(slot, info.round, exec.stream, blocks);
      },
      kernel_options);
  auto d2h = pipeline.add_device_stage(
      "d2h",
      [kernels](ChainSlot& slot, const xgr::BatchInfo&, xgr::exec::cuda exec) {
        XGR_CUDA_CHECK(cudaMemcpyAsync(slot.output.data(), last_output(slot, kernels), output_bytes, cudaMemcpyDeviceToHost,
                                       exec.stream));
      },
      {.lane = 2});
  auto post = pipeline.add_host_stage("post", [&](ChainSlot& slot, const xgr::BatchInfo&) {
    const auto begin = Clock::now();
    busy_wait(post_us);
    float sum = 0;
    for (std::size_t i = 0; i < slot.output.size(); i += 1024) sum += slot.output[i];
    slot.checksum = sum;
    post_times_us.push_back(elapsed_us(begin));
  });
  pipeline.connect(prep, h2d);
  pipeline.connect(h2d, compute);
  pipeline.connect(compute, d2h);
  pipeline.connect(d2h, post);
  std::uint64_t failed = 0;
  pipeline.on_complete([&](ChainSlot& slot, const xgr::BatchInfo&, std::exception_ptr error) {
    latencies_us.push_back(elapsed_us(slot.submitted));
    failed += error != nullptr;
  });
  pipeline.start();

  const auto submit_all = [&](int batches) {
    for (int b = 0; b < batches; ++b) {
      pipeline.submit([](ChainSlot& slot, const xgr::BatchInfo&) { slot.submitted = Clock::now(); });
    }
    pipeline.drain();
  };
  submit_all(20);  // warm-up (and the graph captures)
  prep_times_us.clear();
  post_times_us.clear();
  latencies_us.clear();

  double total_s = 0;
  std::int64_t total_batches = 0;
  for (auto _ : state) {
    const auto begin = Clock::now();
    submit_all(batches_per_iteration);
    const double seconds = elapsed_us(begin) * 1e-6;
    state.SetIterationTime(seconds);
    total_s += seconds;
    total_batches += batches_per_iteration;
  }
  if (failed != 0) state.SkipWithError("batches failed");

  std::vector<ChainSlot> probes(overlapped_slots);
  const StageTimes device = time_device_stages(probes, kernels, blocks);
  const double prep_mean = percentile(prep_times_us, 0.5);
  const double post_mean = percentile(post_times_us, 0.5);
  const double bottleneck_us = std::max({prep_mean, post_mean, device.h2d_us, device.kernels_us, device.d2h_us});
  const double serial_us = prep_mean + post_mean + device.h2d_us + device.kernels_us + device.d2h_us;
  const double throughput = static_cast<double>(total_batches) / total_s;
  state.counters["batches_per_s"] = throughput;
  state.counters["us_per_batch"] = 1e6 / throughput;
  state.counters["p50_latency_us"] = percentile(latencies_us, 0.5);
  state.counters["p99_latency_us"] = percentile(latencies_us, 0.99);
  state.counters["prep_us"] = prep_mean;
  state.counters["h2d_us"] = device.h2d_us;
  state.counters["kernels_us"] = device.kernels_us;
  state.counters["d2h_us"] = device.d2h_us;
  state.counters["post_us"] = post_mean;
  state.counters["serial_sum_us"] = serial_us;
  state.counters["ideal_us"] = bottleneck_us;
  state.counters["x_ideal"] = throughput * bottleneck_us * 1e-6;
  const auto stats = pipeline.stats();
  state.counters["graph_launches"] = static_cast<double>(stats.graph_launches);
}

__global__ void tiny_kernel(std::uint32_t* counter) { *counter += 1; }

struct LaunchSlot {
  xgr::DeviceBuffer<std::uint32_t> counter{1};
};

void BM_PipelineLaunch(benchmark::State& state, bool use_graph, int kernels, int rounds) {
  const std::size_t slots = 64;  // enough that submit never waits for a slot within one iteration
  xgr::StreamPipeline<LaunchSlot, xgr::exec::cuda> pipeline(xgr::PipelineOptions{.slots = slots, .lanes = {{"compute", 1}}},
                                                            [](std::size_t) { return LaunchSlot{}; });
  xgr::DeviceStageOptions<LaunchSlot> options{.lane = 0, .rounds = rounds};
  if (use_graph) options.graph_bucket = [](const LaunchSlot&) { return std::uint64_t{0}; };
  pipeline.add_device_stage(
      "decode",
      [kernels](LaunchSlot& slot, const xgr::BatchInfo&, xgr::exec::cuda exec) {
        for (int k = 0; k < kernels; ++k) tiny_kernel<<<1, 32, 0, exec.stream>>>(slot.counter.data());
        XGR_CUDA_CHECK_LAUNCH();
      },
      options);
  pipeline.start();
  const auto submit_all = [&] {
    const auto begin = Clock::now();
    for (std::size_t b = 0; b < slots; ++b) pipeline.submit([](LaunchSlot&, const xgr::BatchInfo&) {});
    const double enqueue_us = elapsed_us(begin);
    pipeline.drain();
    return std::pair{enqueue_us, elapsed_us(begin)};
  };
  submit_all();  // warm-up: captures one graph per slot
  std::vector<double> enqueue_us;
  std::vector<double> step_us;
  for (auto _ : state) {
    const auto [enqueue, total] = submit_all();
    state.SetIterationTime(total * 1e-6);
    enqueue_us.push_back(enqueue / static_cast<double>(slots));
    step_us.push_back(total / static_cast<double>(slots));
  }
  state.counters["launches_per_step"] = use_graph ? 1.0 : static_cast<double>(kernels * rounds);
  state.counters["enqueue_us"] = percentile(enqueue_us, 0.5);
  state.counters["step_us"] = percentile(step_us, 0.5);
}

void register_pipeline_benchmarks() {
  const std::pair<const char*, ChainMode> modes[] = {
      {"serial", ChainMode::serial},
      {"overlap", ChainMode::overlap},
      {"overlap_launcher", ChainMode::overlap_launcher},
      {"overlap_graph", ChainMode::overlap_graph}};
  for (const long prep : {50L, 100L, 200L}) {
    for (const long kernels : {3L, 8L}) {
      for (const auto& [name, mode] : modes) {
        const std::string row = "pipeline/chain/prep_us:" + std::to_string(prep) + "/kernels:" + std::to_string(kernels) +
                                "/mode:" + name;
        benchmark::RegisterBenchmark(row.c_str(), BM_PipelineChain, mode, static_cast<double>(prep), static_cast<int>(kernels))
            ->Iterations(4)
            ->Repetitions(3)  // host threads share the machine: the median of three runs, not one run
            ->ReportAggregatesOnly(true)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  for (const bool graph : {false, true}) {
    const std::string row = std::string("pipeline/launch/kernels:8/rounds:3/mode:") + (graph ? "graph" : "plain");
    benchmark::RegisterBenchmark(row.c_str(), BM_PipelineLaunch, graph, 8, 3)
        ->Iterations(20)
        ->Repetitions(3)
        ->ReportAggregatesOnly(true)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
}

[[maybe_unused]] const bool registered = (register_pipeline_benchmarks(), true);

}  // namespace
