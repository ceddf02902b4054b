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

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

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
    XGR_CUDA_CHECK(cudaStreamSynchronize(nullptr));  // the non-blocking stream below does not wait for it
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

// Spins until the host writes a non-zero `release` (or about a second passes, so that a lost
// release can never hang the device).
// (A template so that the header can be included by several translation units.)
template <class Flag = int>
__global__ void hold_stream_kernel(const volatile Flag* release) {
  const long long start = clock64();
  while (*release == 0 && clock64() - start < (1ll << 31)) {
  }
}

// Times `body(stream)` once per benchmark iteration with events on a private stream, and keeps the
// per-iteration times so that rows can report the median (robust against the odd slow iteration).
//
// Timing::host_paced (the default) records the start event on an idle stream, so the interval
// includes any time the device waits for the host to enqueue the body's launches. Timing::device
// first enqueues a kernel that holds the stream until the whole body is enqueued (nvbench's
// blocking-kernel method): the interval is then the device executing the body's work back to
// back, as under a CUDA graph or a host that runs ahead.
class CudaTimer {
 public:
  enum class Timing { host_paced, device };
  explicit CudaTimer(Timing timing = Timing::host_paced) : timing_(timing) {
    if (timing_ == Timing::device) {
      XGR_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&release_), sizeof(int), cudaHostAllocMapped));
      XGR_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&device_release_), release_, 0));
      set_release(1);
    }
  }
  CudaTimer(const CudaTimer&) = delete;
  CudaTimer& operator=(const CudaTimer&) = delete;
  ~CudaTimer() {
    if (release_ != nullptr) (void)cudaFreeHost(release_);
  }

  template <class Body>
  void run(benchmark::State& state, Body&& body) {
    run(state, [](cudaStream_t) {}, std::forward<Body>(body));
  }

  // Like run(state, body), but every iteration (warm-ups too) first enqueues `setup(stream)` on the
  // same stream, before the start event: work the timed region needs but must not count (the
  // earlier steps of a beam search, an L2 flush). Events complete in stream order, so the setup's
  // device time stays outside the measurement.
  template <class Setup, class Body>
  void run(benchmark::State& state, Setup&& setup, Body&& body) {
    for (int warmup = 0; warmup < 3; ++warmup) {
      setup(stream_.get());
      body(stream_.get());
    }
    XGR_CUDA_CHECK_LAUNCH();
    times_s_.clear();
    times_s_.reserve(static_cast<std::size_t>(state.max_iterations));
    for (auto _ : state) {
      setup(stream_.get());
      hold();
      start_.record(stream_.get());
      body(stream_.get());
      stop_.record(stream_.get());
      release();
      stop_.synchronize();
      const double seconds = static_cast<double>(Event::elapsed_ms(start_, stop_)) * 1e-3;
      state.SetIterationTime(seconds);
      times_s_.push_back(seconds);
    }
    XGR_CUDA_CHECK_LAUNCH();
  }

  [[nodiscard]] cudaStream_t stream() const noexcept { return stream_.get(); }

  [[nodiscard]] double median_s() const {
    if (times_s_.empty()) return 0.0;
    std::vector<double> sorted = times_s_;
    std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(sorted.size() / 2), sorted.end());
    return sorted[sorted.size() / 2];
  }

 private:
  void hold() {
    if (timing_ != Timing::device) return;
    set_release(0);
    hold_stream_kernel<<<1, 1, 0, stream_.get()>>>(device_release_);
    XGR_CUDA_CHECK_LAUNCH();
  }
  void release() {
    if (timing_ == Timing::device) set_release(1);
  }
  void set_release(int value) { *static_cast<volatile int*>(release_) = value; }

  Timing timing_;
  int* release_ = nullptr;         // pinned, mapped: written by the host, polled by the hold kernel
  int* device_release_ = nullptr;
  Stream stream_;
  Event start_;
  Event stop_;
  std::vector<double> times_s_;
};

// Median time of `repeats` event-timed runs of `body(stream)` after one warm-up, each after an
// untimed `setup(stream)` on the same stream (as CudaTimer::run): for baselines and host-paced
// times measured inside another benchmark's row. The device may still be running setup's work while
// `body` is enqueued, which hides the enqueueing: a host-paced time synchronizes in `setup`.
template <class Setup, class Body>
double time_median_s(cudaStream_t stream, int repeats, Setup&& setup, Body&& body) {
  Event start;
  Event stop;
  setup(stream);
  body(stream);
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    setup(stream);
    start.record(stream);
    body(stream);
    stop.record(stream);
    stop.synchronize();
    times.push_back(static_cast<double>(Event::elapsed_ms(start, stop)) * 1e-3);
  }
  std::nth_element(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(times.size() / 2), times.end());
  return times[times.size() / 2];
}

template <class Body>
double time_median_s(cudaStream_t stream, int repeats, Body&& body) {
  return time_median_s(stream, repeats, [](cudaStream_t) {}, std::forward<Body>(body));
}

// Adds the row's median time, its floor (the bytes the operation must move, at the copy bandwidth
// measured on this device), their ratio and the achieved bandwidth. Call after timer.run().
inline void report_floor(benchmark::State& state, const CudaTimer& timer, double bytes_moved) {
  const double median_s = timer.median_s();
  const double floor_s = bytes_moved / copy_bandwidth_bytes_per_s();
  state.counters["median_us"] = median_s * 1e6;
  state.counters["floor_us"] = floor_s * 1e6;
  state.counters["x_floor"] = median_s > 0 ? median_s / floor_s : 0.0;
  state.counters["GB/s"] = median_s > 0 ? bytes_moved / median_s * 1e-9 : 0.0;
}

}  // namespace xgr::bench
