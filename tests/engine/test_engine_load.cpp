// The load generator: percentiles, and an open-loop run against a stand-in server whose service
// time is known.
#include <doctest/doctest.h>

#include <chrono>
#include <cstddef>
#include <random>
#include <span>
#include <thread>
#include <vector>

#include "engine/load.hpp"
#include "support/errors.hpp"

TEST_CASE("percentile is the nearest rank of an ascending list") {
  const std::vector<double> values{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  CHECK(xgr::engine::percentile(values, 50) == 5);
  CHECK(xgr::engine::percentile(values, 90) == 9);
  CHECK(xgr::engine::percentile(values, 99) == 10);
  CHECK(xgr::engine::percentile(values, 100) == 10);
  CHECK(xgr::engine::percentile(values, 0) == 1);
  CHECK(xgr::engine::percentile(std::vector<double>{}, 50) == 0);
  CHECK(xgr::engine::percentile(std::vector<double>{7}, 99) == 7);
}

TEST_CASE("an open-loop run serves every arrival once, in groups of at most max_group, and reports consistent numbers") {
  // A stand-in server: 4 ms per group whatever its size, so a fast stream forms large groups.
  std::size_t served = 0, largest = 0, calls = 0;
  auto serve = [&](std::span<const xgr::engine::Request> group) {
    std::this_thread::sleep_for(std::chrono::milliseconds(4));
    served += group.size();
    largest = std::max(largest, group.size());
    ++calls;
    for (const auto& request : group) CHECK(request.beams == 3);
  };
  auto make = [](std::mt19937_64& rng) { return xgr::engine::Request{{static_cast<std::uint32_t>(rng() % 7)}, 3}; };
  const xgr::engine::LoadReport report = xgr::engine::run_open_loop({1000.0, 0.3, 1000.0, 5, 42}, make, serve);
  CHECK(report.offered > 100);  // about 300 expected
  CHECK(report.completed == report.offered);
  CHECK(served == report.offered);
  CHECK(report.groups == calls);
  CHECK(largest <= 5);
  CHECK(largest == 5);  // 1000/s against 4 ms groups: about 4 arrivals per group on average, so some group fills
  CHECK(report.mean_group == doctest::Approx(static_cast<double>(report.completed) / static_cast<double>(report.groups)));
  CHECK(report.p50_ms >= 4.0);  // at least the service time
  CHECK(report.p50_ms <= report.p90_ms);
  CHECK(report.p90_ms <= report.p99_ms);
  CHECK(report.p99_ms <= report.max_ms);
  CHECK(report.goodput_per_s <= report.throughput_per_s);
  // An SLO below the service time is met by nobody.
  const xgr::engine::LoadReport strict = xgr::engine::run_open_loop({200.0, 0.1, 1.0, 5, 43}, make, serve);
  CHECK(strict.completed == strict.offered);
  CHECK(strict.goodput_per_s == 0.0);
}

TEST_CASE("the load generator rejects non-positive settings and passes server errors through") {
  auto make = [](std::mt19937_64&) { return xgr::engine::Request{{1}, 1}; };
  auto serve = [](std::span<const xgr::engine::Request>) {};
  CHECK(xgr::test::error_of([&] { (void)xgr::engine::run_open_loop({0.0, 1.0, 50.0, 8, 1}, make, serve); }) ==
        xgr::test::invalid_argument_error);
  CHECK(xgr::test::error_of([&] { (void)xgr::engine::run_open_loop({10.0, 1.0, 50.0, 0, 1}, make, serve); }) ==
        xgr::test::invalid_argument_error);
  auto failing = [](std::span<const xgr::engine::Request>) { throw xgr::Error(xgr::ErrorKind::internal, "serve", "broken"); };
  CHECK_THROWS_AS((void)xgr::engine::run_open_loop({500.0, 0.05, 50.0, 8, 1}, make, failing), xgr::Error);
}
