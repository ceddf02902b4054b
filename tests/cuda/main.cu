// CUDA test runner. Where no CUDA device is usable it runs nothing and exits 77, which CTest reports
// as "Skipped": a machine without a GPU must never count these tests as passed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "xgr/core/cuda.cuh"

int main(int argc, char** argv) {
  if (xgr::cuda_device_count() == 0) {
    std::printf("xgr CUDA tests: SKIPPED (no CUDA device or driver on this machine)\n");
    return 77;
  }
  cudaDeviceProp properties{};
  XGR_CUDA_CHECK(cudaGetDeviceProperties(&properties, 0));
  std::printf("xgr CUDA tests on %s (sm_%d%d, %d SMs)\n", properties.name, properties.major, properties.minor,
              properties.multiProcessorCount);
  doctest::Context context(argc, argv);
  return context.run();
}
