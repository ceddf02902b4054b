// Random benchmark inputs generated on the device: reproducible from a seed, never zeros.
#pragma once

#include <cstddef>
#include <cstdint>

#include "xgr/core/dtype.hpp"

namespace xgr::bench {

// SplitMix64's finaliser: a cheap, well-mixed hash of a counter.
__host__ __device__ inline std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Normal(0, 2) logits from a hash (Box-Muller).
template <class T>
__global__ void fill_logits(T* out, std::size_t n, std::uint64_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x) {
    const std::uint64_t h = mix(seed ^ mix(i));
    const float u1 = (static_cast<float>(h >> 40) + 1.0f) * 0x1.0p-24f;
    const float u2 = static_cast<float>((h >> 16) & 0xffffff) * 0x1.0p-24f;
    out[i] = xgr::from_float<T>(2.0f * sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2));
  }
}

}  // namespace xgr::bench
