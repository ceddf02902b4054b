// examples/engine/load.hpp — an open-loop load generator and the group-forming server loop.
//
// Open loop: requests arrive at Poisson times (exponential gaps at `rate_per_s`) whether or not the
// server keeps up, as users do; a closed loop (send the next request when the last returns) would
// hide queueing, which is exactly what a fixed-step server trades for its throughput.
//
// The server loop takes every request waiting when it becomes free, up to `max_group`, and serves
// them as one fixed-step group (engine.hpp). Latency is completion minus arrival: queueing plus
// service. The report gives throughput, P50/P90/P99 latency and goodput (requests per second that
// met the latency SLO).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.hpp"
#include "xgr/core/error.hpp"

namespace xgr::engine {

struct LoadOptions {
  double rate_per_s = 10.0;   // mean arrival rate
  double duration_s = 2.0;    // arrivals stop after this long; the server then drains
  double slo_ms = 50.0;       // latency objective for goodput
  std::size_t max_group = 8;  // requests per fixed-step group
  std::uint64_t seed = 1;
};

struct LoadReport {
  double rate_per_s = 0, duration_s = 0, slo_ms = 0;
  std::size_t offered = 0, completed = 0, groups = 0;
  double throughput_per_s = 0, goodput_per_s = 0;
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, max_ms = 0, mean_group = 0;
};

// Nearest-rank percentile (p in [0, 100]) of an ascending list; 0 for an empty one.
[[nodiscard]] inline double percentile(std::span<const double> ascending, double p) {
  if (ascending.empty()) return 0.0;
  const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(ascending.size())));
  return ascending[std::clamp<std::size_t>(rank, 1, ascending.size()) - 1];
}

// Runs one open-loop experiment. make_request(rng) draws a request; serve_group(span of requests)
// serves one group and returns when it is done (its results are not needed here).
template <class MakeRequest, class ServeGroup>
[[nodiscard]] LoadReport run_open_loop(const LoadOptions& options, MakeRequest&& make_request, ServeGroup&& serve_group) {
  require_argument(options.rate_per_s > 0 && options.duration_s > 0 && options.max_group > 0 && options.slo_ms > 0, "run_open_loop",
                   "rate, duration, SLO and group size must be positive");
  using Clock = std::chrono::steady_clock;
  struct Arrival {
    Request request;
    Clock::time_point at;
  };
  std::mutex mutex;
  std::condition_variable arrived;
  std::deque<Arrival> queue;
  bool done_arriving = false;
  std::size_t offered = 0;

  const Clock::time_point start = Clock::now();
  std::thread generator([&] {
    std::mt19937_64 rng(options.seed);
    std::exponential_distribution<double> gap(options.rate_per_s);
    double t = gap(rng);
    while (t < options.duration_s) {
      Request request = make_request(rng);
      std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(t)));
      {
        const std::lock_guard lock(mutex);
        queue.push_back({std::move(request), Clock::now()});
        ++offered;
      }
      arrived.notify_one();
      t += gap(rng);
    }
    const std::lock_guard lock(mutex);
    done_arriving = true;
    arrived.notify_one();
  });

  std::vector<double> latencies_ms;
  std::size_t groups = 0;
  Clock::time_point last_completion = start;
  std::vector<Arrival> group;
  std::vector<Request> requests;
  try {
    for (;;) {
      group.clear();
      {
        std::unique_lock lock(mutex);
        arrived.wait(lock, [&] { return !queue.empty() || done_arriving; });
        if (queue.empty()) break;  // done arriving and drained
        while (!queue.empty() && group.size() < options.max_group) {
          group.push_back(std::move(queue.front()));
          queue.pop_front();
        }
      }
      requests.clear();
      for (Arrival& a : group) requests.push_back(std::move(a.request));
      serve_group(std::span<const Request>(requests));
      last_completion = Clock::now();
      for (const Arrival& a : group) latencies_ms.push_back(std::chrono::duration<double, std::milli>(last_completion - a.at).count());
      ++groups;
    }
  } catch (...) {
    generator.join();
    throw;
  }
  generator.join();

  std::sort(latencies_ms.begin(), latencies_ms.end());
  LoadReport report;
  report.rate_per_s = options.rate_per_s;
  report.duration_s = options.duration_s;
  report.slo_ms = options.slo_ms;
  report.offered = offered;
  report.completed = latencies_ms.size();
  report.groups = groups;
  const double wall_s = std::max(std::chrono::duration<double>(last_completion - start).count(), options.duration_s);
  report.throughput_per_s = static_cast<double>(report.completed) / wall_s;
  const auto met = static_cast<std::size_t>(std::upper_bound(latencies_ms.begin(), latencies_ms.end(), options.slo_ms) - latencies_ms.begin());
  report.goodput_per_s = static_cast<double>(met) / wall_s;
  report.p50_ms = percentile(latencies_ms, 50);
  report.p90_ms = percentile(latencies_ms, 90);
  report.p99_ms = percentile(latencies_ms, 99);
  report.max_ms = latencies_ms.empty() ? 0.0 : latencies_ms.back();
  report.mean_group = groups ? static_cast<double>(report.completed) / static_cast<double>(groups) : 0.0;
  return report;
}

[[nodiscard]] inline std::string report_table_header() {
  return "| rate /s | offered | completed | groups | mean group | throughput /s | P50 ms | P90 ms | P99 ms | goodput /s (SLO) |\n"
         "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
}

[[nodiscard]] inline std::string report_table_row(const LoadReport& r) {
  char line[320];
  std::snprintf(line, sizeof line, "| %.1f | %zu | %zu | %zu | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f (%.0f ms) |\n", r.rate_per_s, r.offered,
                r.completed, r.groups, r.mean_group, r.throughput_per_s, r.p50_ms, r.p90_ms, r.p99_ms, r.goodput_per_s, r.slo_ms);
  return line;
}

[[nodiscard]] inline std::string report_json(std::span<const LoadReport> reports) {
  std::string text = "[\n";
  for (std::size_t i = 0; i < reports.size(); ++i) {
    const LoadReport& r = reports[i];
    char line[512];
    std::snprintf(line, sizeof line,
                  "  {\"rate_per_s\": %.6g, \"duration_s\": %.6g, \"slo_ms\": %.6g, \"offered\": %zu, \"completed\": %zu, \"groups\": %zu, "
                  "\"mean_group\": %.6g, \"throughput_per_s\": %.6g, \"goodput_per_s\": %.6g, \"p50_ms\": %.6g, \"p90_ms\": %.6g, "
                  "\"p99_ms\": %.6g, \"max_ms\": %.6g}%s\n",
                  r.rate_per_s, r.duration_s, r.slo_ms, r.offered, r.completed, r.groups, r.mean_group, r.throughput_per_s, r.goodput_per_s,
                  r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms, i + 1 < reports.size() ? "," : "");
    text += line;
  }
  return text + "]\n";
}

}  // namespace xgr::engine
