// Benchmark runner: Google Benchmark with xgr's defaults (tabular counters, JSON next to the
// console table). Exits 77 ("Skipped" in CTest) where no CUDA device exists.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>
#include <vector>

#include "harness.cuh"

int main(int argc, char** argv) {
  if (xgr::cuda_device_count() == 0) {
    std::printf("xgr benchmarks: SKIPPED (no CUDA device or driver on this machine)\n");
    return 77;
  }
  cudaDeviceProp properties{};
  XGR_CUDA_CHECK(cudaGetDeviceProperties(&properties, 0));
  std::printf("device: %s, %d SMs, %.0f MB L2; measured copy bandwidth %.2f TB/s (read + write)\n", properties.name,
              properties.multiProcessorCount, properties.l2CacheSize / 1e6, xgr::bench::copy_bandwidth_bytes_per_s() * 1e-12);

  std::vector<char*> arguments(argv, argv + argc);
  std::string out_flag = "--benchmark_out=xgr_benchmarks.json";
  std::string format_flag = "--benchmark_out_format=json";
  std::string tabular_flag = "--benchmark_counters_tabular=true";
  bool has_out = false;
  for (int i = 1; i < argc; ++i) has_out = has_out || std::string(argv[i]).rfind("--benchmark_out=", 0) == 0;
  if (!has_out) {
    arguments.push_back(out_flag.data());
    arguments.push_back(format_flag.data());
  }
  arguments.push_back(tabular_flag.data());
  int count = static_cast<int>(arguments.size());
  benchmark::Initialize(&count, arguments.data());
  if (benchmark::ReportUnrecognizedArguments(count, arguments.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
