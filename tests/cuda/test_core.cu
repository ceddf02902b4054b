#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "support/random.hpp"
#include "xgr/xgr.cuh"

namespace {

__global__ void widen_all_16_bit_patterns(float* half_out, float* bf16_out) {
  const unsigned bits = blockIdx.x * blockDim.x + threadIdx.x;
  if (bits < 65536u) {
    half_out[bits] = xgr::to_float(xgr::half::from_bits(static_cast<std::uint16_t>(bits)));
    bf16_out[bits] = xgr::to_float(xgr::bfloat16::from_bits(static_cast<std::uint16_t>(bits)));
  }
}

__global__ void narrow(const float* in, std::uint16_t* half_out, std::uint16_t* bf16_out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    half_out[i] = xgr::half(in[i]).bits;
    bf16_out[i] = xgr::bfloat16(in[i]).bits;
  }
}

__global__ void scale(float* data, float factor, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) data[i] *= factor;
}

__global__ void spin(long long cycles) {
  const long long start = clock64();
  while (clock64() - start < cycles) {
  }
}

bool same_float(float a, float b) { return (std::isnan(a) && std::isnan(b)) || std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); }

}  // namespace

TEST_CASE("device buffers round-trip random data through the device") {
  auto rng = xgr::test::make_rng(101);
  std::uniform_real_distribution<float> uniform(-1000.0f, 1000.0f);
  for (const std::size_t n : {std::size_t{1}, std::size_t{1000}, std::size_t{1} << 20}) {
    std::vector<float> host(n);
    for (float& x : host) x = uniform(rng);
    xgr::DeviceBuffer<float> device = xgr::to_device<float>(host);
    REQUIRE(device.size() == n);
    scale<<<static_cast<unsigned>((n + 255) / 256), 256>>>(device.data(), 2.0f, static_cast<int>(n));
    XGR_CUDA_CHECK_LAUNCH();
    const xgr::HostBuffer<float> back = xgr::to_host<float>(device.span());
    for (std::size_t i = 0; i < n; ++i) REQUIRE(back[i] == host[i] * 2.0f);
  }
}

TEST_CASE("a device allocation that cannot succeed is out_of_memory and leaves the device usable") {
  try {
    xgr::DeviceBuffer<std::byte> impossible(std::size_t{1} << 50);  // 1 PiB
    FAIL("cudaMalloc of 1 PiB succeeded");
  } catch (const xgr::Error& error) {
    CHECK(error.kind() == xgr::ErrorKind::out_of_memory);
    CHECK(error.reason().find("cudaErrorMemoryAllocation") != std::string::npos);
  }
  CHECK(cudaGetLastError() == cudaSuccess);  // the failure was consumed, not left to poison the next check
  xgr::DeviceBuffer<int> fine(16);
  CHECK(fine.data() != nullptr);
}

TEST_CASE("a failed launch surfaces as Error(cuda) through XGR_CUDA_CHECK_LAUNCH") {
  xgr::DeviceBuffer<float> data(4);
  scale<<<1, 4096>>>(data.data(), 1.0f, 4);  // more threads per block than any GPU allows
  try {
    XGR_CUDA_CHECK_LAUNCH();
    FAIL("an invalid launch configuration was not reported");
  } catch (const xgr::Error& error) {
    INFO(error.what());
    CHECK(error.kind() == xgr::ErrorKind::cuda);
    CHECK(error.reason().find("cudaError") == 0);
  }
  scale<<<1, 4>>>(data.data(), 1.0f, 4);
  CHECK_NOTHROW(XGR_CUDA_CHECK_LAUNCH());
}

TEST_CASE("XGR_CUDA_CHECK names the failing call") {
  try {
    XGR_CUDA_CHECK(cudaSetDevice(1 << 20));
    FAIL("cudaSetDevice to a device that does not exist succeeded");
  } catch (const xgr::Error& error) {
    CHECK(error.operation().find("cudaSetDevice") != std::string::npos);
    CHECK(error.kind() == xgr::ErrorKind::cuda);
  }
}

TEST_CASE("events time device work on a stream and report readiness") {
  xgr::Stream stream;
  xgr::Event start;
  xgr::Event stop;
  start.record(stream.get());
  spin<<<1, 1, 0, stream.get()>>>(20'000'000);  // ~10 ms at ~2 GHz
  XGR_CUDA_CHECK_LAUNCH();
  stop.record(stream.get());
  stop.synchronize();
  CHECK(stop.ready());
  const float ms = xgr::Event::elapsed_ms(start, stop);
  CHECK(ms > 1.0f);
  CHECK(ms < 1000.0f);

  xgr::Stream moved = std::move(stream);
  CHECK(moved.get() != nullptr);
  CHECK(stream.get() == nullptr);  // NOLINT(bugprone-use-after-move)
}

TEST_CASE("an event orders work across streams without blocking the host") {
  xgr::Stream producer;
  xgr::Stream consumer;
  xgr::Event produced(cudaEventDisableTiming);
  const int n = 1 << 20;
  std::vector<float> ones(n, 1.0f);
  xgr::PinnedBuffer<float> pinned(n);
  xgr::DeviceBuffer<float> device(n);
  for (int i = 0; i < n; ++i) pinned[i] = ones[i];
  spin<<<1, 1, 0, producer.get()>>>(2'000'000);  // make a race visible if the edge were missing
  xgr::copy_async(device.span(), pinned.span(), producer.get());
  produced.record(producer.get());
  produced.wait_on(consumer.get());
  scale<<<(n + 255) / 256, 256, 0, consumer.get()>>>(device.data(), 3.0f, n);
  XGR_CUDA_CHECK_LAUNCH();
  xgr::copy_async(pinned.span(), device.span(), consumer.get());
  consumer.synchronize();
  for (int i = 0; i < n; ++i) REQUIRE(pinned[i] == 3.0f);
}

TEST_CASE("copy_async rejects spans of different sizes") {
  xgr::DeviceBuffer<int> a(4);
  xgr::DeviceBuffer<int> b(5);
  CHECK_THROWS_AS(xgr::copy_async(a.span(), b.span(), nullptr), xgr::Error);
}

TEST_CASE("device and host widen all 65,536 half and bfloat16 patterns identically") {
  xgr::DeviceBuffer<float> half_out(65536);
  xgr::DeviceBuffer<float> bf16_out(65536);
  widen_all_16_bit_patterns<<<256, 256>>>(half_out.data(), bf16_out.data());
  XGR_CUDA_CHECK_LAUNCH();
  const auto half_host = xgr::to_host<float>(half_out.span());
  const auto bf16_host = xgr::to_host<float>(bf16_out.span());
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    REQUIRE(same_float(half_host[b], xgr::to_float(xgr::half::from_bits(bits))));
    REQUIRE(same_float(bf16_host[b], xgr::to_float(xgr::bfloat16::from_bits(bits))));
  }
}

TEST_CASE("device and host narrow random and special floats to identical bits") {
  auto rng = xgr::test::make_rng(102);
  std::uniform_int_distribution<std::uint32_t> any_bits;
  std::uniform_real_distribution<float> exponent(-30.0f, 20.0f);
  std::vector<float> inputs = {0.0f, -0.0f, 1.0f, 65504.0f, 65520.0f, std::ldexp(1.0f, -25), std::ldexp(3.0f, -26),
                               std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::max()};
  for (int i = 0; i < 1 << 20; ++i) {
    float value = std::bit_cast<float>(any_bits(rng));
    if (i % 2 == 1) value = std::copysign(std::exp2(exponent(rng)), value);
    if (!std::isnan(value)) inputs.push_back(value);
  }
  const int n = static_cast<int>(inputs.size());
  const auto device_in = xgr::to_device<float>(inputs);
  xgr::DeviceBuffer<std::uint16_t> half_bits(inputs.size());
  xgr::DeviceBuffer<std::uint16_t> bf16_bits(inputs.size());
  narrow<<<(n + 255) / 256, 256>>>(device_in.data(), half_bits.data(), bf16_bits.data(), n);
  XGR_CUDA_CHECK_LAUNCH();
  const auto half_host = xgr::to_host<std::uint16_t>(half_bits.span());
  const auto bf16_host = xgr::to_host<std::uint16_t>(bf16_bits.span());
  for (int i = 0; i < n; ++i) {
    REQUIRE(half_host[i] == xgr::half(inputs[i]).bits);
    REQUIRE(bf16_host[i] == xgr::bfloat16(inputs[i]).bits);
  }
}

TEST_CASE("a device workspace is carved once and reused by kernels of several shapes") {
  const auto carve = [](xgr::WorkspaceArena& arena, std::size_t n) {
    return std::pair{arena.take<float>(n), arena.take<int>(n)};
  };
  const std::size_t largest = 100'000;
  xgr::DeviceWorkspace workspace(xgr::workspace_bytes_of([&](xgr::WorkspaceArena& a) { (void)carve(a, largest); }));
  for (const std::size_t n : {std::size_t{10}, largest, std::size_t{4097}}) {
    xgr::WorkspaceArena arena = workspace.arena();
    const auto [values, indices] = carve(arena, n);
    std::vector<float> host(n, 0.25f);
    XGR_CUDA_CHECK(cudaMemcpy(values, host.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    scale<<<static_cast<unsigned>((n + 255) / 256), 256>>>(values, 4.0f, static_cast<int>(n));
    XGR_CUDA_CHECK_LAUNCH();
    XGR_CUDA_CHECK(cudaMemcpy(host.data(), values, n * sizeof(float), cudaMemcpyDeviceToHost));
    for (const float x : host) REQUIRE(x == 1.0f);
    CHECK(reinterpret_cast<std::byte*>(indices) > reinterpret_cast<std::byte*>(values));
  }
}
