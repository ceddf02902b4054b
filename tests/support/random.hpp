// Test inputs: fresh random data each run, reproducible from the printed seed.
//
// XGR_TEST_SEED=<n> replays a failing run; otherwise the seed comes from the clock and is printed
// once, so a failure on any input can be reproduced.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>

namespace xgr::test {

inline std::uint64_t base_seed() {
  static const std::uint64_t seed = [] {
    std::uint64_t value = 0;
    if (const char* text = std::getenv("XGR_TEST_SEED")) {
      value = std::strtoull(text, nullptr, 10);
    } else {
      value = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    }
    std::printf("xgr tests: XGR_TEST_SEED=%llu\n", static_cast<unsigned long long>(value));
    return value;
  }();
  return seed;
}

// A generator per test, decorrelated by a per-test salt.
inline std::mt19937_64 make_rng(std::uint64_t salt) { return std::mt19937_64(base_seed() ^ (salt * 0x9e3779b97f4a7c15ull)); }

}  // namespace xgr::test
