// The bandwidth ceiling every xgr floor is measured against: a device-to-device copy, counting the
// bytes read plus the bytes written. Run this first on a new device; its GB/s is the "copy
// bandwidth" of docs/benchmarks.
#include <benchmark/benchmark.h>

#include "harness.cuh"

namespace {

void BM_DeviceCopy(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0)) << 20;
  xgr::DeviceBuffer<std::byte> source(bytes);
  xgr::DeviceBuffer<std::byte> destination(bytes);
  XGR_CUDA_CHECK(cudaMemset(source.data(), 0x3c, bytes));
  XGR_CUDA_CHECK(cudaStreamSynchronize(nullptr));  // the timer's non-blocking stream does not wait for it
  xgr::bench::CudaTimer timer;
  timer.run(state, [&](cudaStream_t stream) {
    XGR_CUDA_CHECK(cudaMemcpyAsync(destination.data(), source.data(), bytes, cudaMemcpyDeviceToDevice, stream));
  });
  xgr::bench::report_floor(state, timer, 2.0 * static_cast<double>(bytes));
}

}  // namespace

BENCHMARK(BM_DeviceCopy)->ArgName("MiB")->Arg(16)->Arg(64)->Arg(256)->Arg(1024)->UseManualTime()->Unit(benchmark::kMicrosecond);
