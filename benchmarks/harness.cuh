// benchmarks/harness.cuh — what every xgr CUDA benchmark shares.
//
// * Device work is timed with CUDA events around the measured region (Google Benchmark's manual
//   time), never with host clocks around asynchronous launches.
// * Every row reports its floor next to its time: `floor_us` is the time to move the bytes the
//   operation must move at the copy bandwidth measured on this device at start-up, and `x_floor`
//   the ratio time / floor. A time without its limit says little.
// * Inputs are random (never zeros) and rotate over several copies when they would fit in L2, so
//   that timings are of HBM, not of the cache.
#pragma once

#include <benchmark/benchmark.h>

#include <cstddef>
#include <utility>

#include "xgr/core/cuda.cuh"

namespace xgr::bench {

// Device-to-device copy bandwidth in bytes/s, counting bytes read plus bytes written, measured once
// over 1 GiB (far beyond L2) and cached for the process.
inline double copy_bandwidth_bytes_per_s() {
  static const double bandwidth = [] {
    const std::size_t bytes = std::size_t{1} << 30;
    DeviceBuffer<std::byte> source(bytes);
    DeviceBuffer<std::byte> destination(bytes);
    XGR_CUDA_CHECK(cudaMemset(source.data(), 0x5a, bytes));
    Stream stream;
    Event start;
    Event stop;
    for (int warmup = 0; warmup < 3; ++warmup) {
      XGR_CUDA_CHECK(cudaMemcpyAsync(destination.data(), source.data(), bytes, cudaMemcpyDeviceToDevice, stream.get()));
    }
    const int repeats = 20;
    start.record(stream.get());
    for (int i = 0; i < repeats; ++i) {
      XGR_CUDA_CHECK(cudaMemcpyAsync(destination.data(), source.data(), bytes, cudaMemcpyDeviceToDevice, stream.get()));
    }
    stop.record(stream.get());
    stop.synchronize();
    const double seconds = Event::elapsed_ms(start, stop) * 1e-3 / repeats;
    return 2.0 * static_cast<double>(bytes) / seconds;
  }();
  return bandwidth;
}

// Times `body(stream)` once per benchmark iteration with events on a private stream.
class CudaTimer {
 public:
  template <class Body>
  void run(benchmark::State& state, Body&& body) {
    for (int warmup = 0; warmup < 3; ++warmup) body(stream_.get());
    XGR_CUDA_CHECK_LAUNCH();
    for (auto _ : state) {
      start_.record(stream_.get());
      body(stream_.get());
      stop_.record(stream_.get());
      stop_.synchronize();
      state.SetIterationTime(static_cast<double>(Event::elapsed_ms(start_, stop_)) * 1e-3);
    }
    XGR_CUDA_CHECK_LAUNCH();
  }
  [[nodiscard]] cudaStream_t stream() const noexcept { return stream_.get(); }

 private:
  Stream stream_;
  Event start_;
  Event stop_;
};

// Adds floor_us (bytes at the measured copy bandwidth), x_floor (measured / floor) and the
// achieved bandwidth to a benchmark's row. Call after the timing loop.
inline void report_floor(benchmark::State& state, double bytes_moved) {
  const double floor_s = bytes_moved / copy_bandwidth_bytes_per_s();
  state.counters["floor_us"] = benchmark::Counter(floor_s * 1e6);
  // floor * iterations / total time = floor / mean time; inverted: mean time / floor.
  state.counters["x_floor"] =
      benchmark::Counter(floor_s, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.counters["GB/s"] = benchmark::Counter(bytes_moved * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace xgr::bench
