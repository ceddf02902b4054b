// Uses the CUDA part of an installed (or vendored) xgr. Runs on machines without a GPU too: there it
// only reports that no device was found.
#include <xgr/xgr.cuh>

#include <cstdio>

__global__ void fill_iota(float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = static_cast<float>(i);
}

int main() {
  if (xgr::cuda_device_count() == 0) {
    std::printf("xgr CUDA consumer: built; no CUDA device here, nothing to run\n");
    return 0;
  }
  xgr::DeviceBuffer<float> device(256);
  fill_iota<<<1, 256>>>(device.data(), 256);
  XGR_CUDA_CHECK_LAUNCH();
  const xgr::HostBuffer<float> host = xgr::to_host<float>(device.span());
  std::printf("xgr CUDA consumer: last element %.1f\n", static_cast<double>(host[255]));
  return host[255] == 255.0f ? 0 : 1;
}
