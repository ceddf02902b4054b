// examples/engine/load.hpp — an open-loop load generator and the group-forming server loop.
//
// Open loop: requests arrive at Poisson times (exponential gaps at `rate_per_s`) whether or not the
// server keeps up, as users do; a closed loop (send the next request when the last returns) would
// hide queueing, which is exactly what a fixed-step server trades for its throughput.
//
// The server loop hands every request waiting when the server is ready, up to `max_group`, to the
// server as one fixed-step group (engine.hpp). Two forms share that loop:
//   run_open_loop_async: the server takes a group when one of its slots is free and reports it
//     done later, possibly from another thread, so several groups may be in flight at once;
//   run_open_loop: a synchronous server that serves one group at a time and returns when it is done.
// Latency is completion minus arrival: queueing plus service. The report gives throughput,
// P50/P90/P99 latency, goodput (requests per second that met the latency SLO) and the most groups in
// flight at once.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <utility>
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
  std::size_t in_flight_max = 0;  // the most groups taken but not yet completed at once
};

// Nearest-rank percentile (p in [0, 100]) of an ascending list; 0 for an empty one.
[[nodiscard]] inline double percentile(std::span<const double> ascending, double p) {
  if (ascending.empty()) return 0.0;
  const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(ascending.size())));
  return ascending[std::clamp<std::size_t>(rank, 1, ascending.size()) - 1];
}

// A group handed to an asynchronous server: the requests it takes and their arrival times.
struct PendingGroup {
  std::vector<Request> requests;
  std::vector<std::chrono::steady_clock::time_point> arrived;  // one per request
};

// The callables run_open_loop_async passes to its server (see there).
using TakeGroup = std::function<PendingGroup()>;
using CompleteGroup = std::function<void(const PendingGroup&)>;

namespace detail {

// What the server loop, the arrival thread and the server's take/complete calls share. It lives in
// a shared_ptr owned by those calls too, so a server that still holds a group when
// run_open_loop_async has thrown can complete it later without touching freed memory.
struct OpenLoopState {
  using Clock = std::chrono::steady_clock;
  struct Arrival {
    Request request;
    Clock::time_point at;
  };

  std::mutex mutex;                       // guards everything below
  std::condition_variable work;           // arrival thread -> loop: a request arrived, or arrivals ended
  std::condition_variable settled;        // complete() -> loop: a group finished
  std::condition_variable stop_arriving;  // loop -> arrival thread: stop early (the server failed)

  // Arrivals.
  std::deque<Arrival> queue;
  bool done_arriving = false;
  bool stopping = false;
  std::size_t offered = 0;

  // The submit call in progress: its take() is valid only while its serial is the latest and the
  // call is still open (submit has not returned and take() has not been called).
  std::uint64_t submit_serial = 0;
  bool take_open = false;

  // Groups taken and completed.
  std::size_t taken_requests = 0;
  std::size_t in_flight = 0, in_flight_max = 0;
  std::size_t groups = 0;
  bool completed_too_often = false;  // complete() with no group in flight: a broken server
  std::vector<double> latencies_ms;
  Clock::time_point last_completion;
};

// Summarises a finished run; `latencies_ms` is sorted in place.
[[nodiscard]] inline LoadReport make_load_report(const LoadOptions& options, OpenLoopState& state, OpenLoopState::Clock::time_point start) {
  std::vector<double>& latencies_ms = state.latencies_ms;
  std::sort(latencies_ms.begin(), latencies_ms.end());
  LoadReport report;
  report.rate_per_s = options.rate_per_s;
  report.duration_s = options.duration_s;
  report.slo_ms = options.slo_ms;
  report.offered = state.offered;
  report.completed = latencies_ms.size();
  report.groups = state.groups;
  report.in_flight_max = state.in_flight_max;
  const double wall_s = std::max(std::chrono::duration<double>(state.last_completion - start).count(), options.duration_s);
  report.throughput_per_s = static_cast<double>(report.completed) / wall_s;
  const auto met = static_cast<std::size_t>(std::upper_bound(latencies_ms.begin(), latencies_ms.end(), options.slo_ms) - latencies_ms.begin());
  report.goodput_per_s = static_cast<double>(met) / wall_s;
  report.p50_ms = percentile(latencies_ms, 50);
  report.p90_ms = percentile(latencies_ms, 90);
  report.p99_ms = percentile(latencies_ms, 99);
  report.max_ms = latencies_ms.empty() ? 0.0 : latencies_ms.back();
  report.mean_group = state.groups ? static_cast<double>(report.completed) / static_cast<double>(state.groups) : 0.0;
  return report;
}

}  // namespace detail

// Runs one open-loop experiment against an asynchronous server. make_request(rng) draws a request
// (on the arrival thread). submit(take, complete) is called, on the calling thread, whenever requests
// are waiting; `take` is a const TakeGroup& and `complete` a const CompleteGroup&. The server must:
//   - call take() exactly once before submit returns, when it is ready to start a group (e.g. once
//     one of its slots is free: groups are formed as late as possible, so a group holds everything
//     that arrived while the server was busy). take() moves up to max_group waiting requests, at
//     least one, into a PendingGroup it returns; calling it twice, or after submit returned, throws.
//     submit may block until the server has room; requests keep arriving meanwhile.
//   - later, possibly from another thread, call complete(group) exactly once with that group after
//     serving it (copy `complete` to keep it: copies stay valid, even after this function returns).
// After arrivals end and the queue drains, this waits until every taken group has been completed:
// a server that never completes a group makes it wait forever. A submit that returns without taking
// a group, or a complete() without a group in flight, is reported as an invalid_argument Error.
// If submit throws, arrivals stop early, the arrival thread is joined and the error is rethrown;
// groups the server still holds may be completed later and are then ignored.
template <class MakeRequest, class Submit>
[[nodiscard]] LoadReport run_open_loop_async(const LoadOptions& options, MakeRequest&& make_request, Submit&& submit) {
  require_argument(options.rate_per_s > 0 && options.duration_s > 0 && options.max_group > 0 && options.slo_ms > 0, "run_open_loop_async",
                   "rate, duration, SLO and group size must be positive");
  using Clock = detail::OpenLoopState::Clock;
  const auto state = std::make_shared<detail::OpenLoopState>();
  const Clock::time_point start = Clock::now();
  state->last_completion = start;

  std::thread generator([&options, &make_request, state, start] {
    std::mt19937_64 rng(options.seed);
    std::exponential_distribution<double> gap(options.rate_per_s);
    for (double t = gap(rng); t < options.duration_s; t += gap(rng)) {
      Request request = make_request(rng);
      const Clock::time_point due = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(t));
      std::unique_lock lock(state->mutex);
      // Sleeps until the arrival time, like sleep_until, but wakes at once when the loop stops early.
      if (state->stop_arriving.wait_until(lock, due, [&] { return state->stopping; })) break;
      state->queue.push_back({std::move(request), Clock::now()});
      ++state->offered;
      lock.unlock();
      state->work.notify_one();
    }
    {
      const std::lock_guard lock(state->mutex);
      state->done_arriving = true;
    }
    state->work.notify_one();
  });

  const CompleteGroup complete = [state](const PendingGroup& group) {
    const Clock::time_point now = Clock::now();
    {
      const std::lock_guard lock(state->mutex);
      if (state->in_flight == 0) {
        state->completed_too_often = true;
      } else {
        for (const Clock::time_point at : group.arrived) state->latencies_ms.push_back(std::chrono::duration<double, std::milli>(now - at).count());
        --state->in_flight;
        ++state->groups;
        state->last_completion = std::max(state->last_completion, now);
      }
    }
    state->settled.notify_one();
  };

  try {
    for (;;) {
      std::uint64_t serial = 0;
      {
        std::unique_lock lock(state->mutex);
        state->work.wait(lock, [&] { return !state->queue.empty() || state->done_arriving; });
        if (state->queue.empty()) break;  // done arriving and drained
        serial = ++state->submit_serial;
        state->take_open = true;
      }
      // The queue is non-empty now and only take() removes from it, which this loop allows once per
      // submit, so the group take() forms is never empty even though arrivals go on meanwhile.
      const TakeGroup take = [state, serial, max_group = options.max_group] {
        PendingGroup group;
        const std::lock_guard lock(state->mutex);
        require_argument(serial == state->submit_serial && state->take_open, "run_open_loop_async: take",
                         "take() may be called once per submit, before submit returns");
        state->take_open = false;
        const std::size_t count = std::min(max_group, state->queue.size());
        require(count > 0, ErrorKind::internal, "run_open_loop_async: take", "no request waiting");
        group.requests.reserve(count);
        group.arrived.reserve(count);
        for (std::size_t i = 0; i < count; ++i) {
          group.requests.push_back(std::move(state->queue.front().request));
          group.arrived.push_back(state->queue.front().at);
          state->queue.pop_front();
        }
        state->taken_requests += count;
        state->in_flight_max = std::max(state->in_flight_max, ++state->in_flight);
        return group;
      };
      submit(take, complete);
      const std::lock_guard lock(state->mutex);
      const bool took = !state->take_open;
      state->take_open = false;  // a late take() from this submit now throws
      require_argument(took, "run_open_loop_async", "submit returned without calling take()");
    }
    // Every request has been taken; wait for the server to finish the groups it holds.
    std::unique_lock lock(state->mutex);
    state->settled.wait(lock, [&] { return state->in_flight == 0; });
  } catch (...) {
    {
      const std::lock_guard lock(state->mutex);
      state->take_open = false;
      state->stopping = true;
    }
    state->stop_arriving.notify_one();
    generator.join();
    throw;
  }
  generator.join();  // it has already set done_arriving

  // Nothing is in flight, so no complete() can race with the reading below, except a surplus one from
  // a broken server, which this check reports.
  const std::lock_guard lock(state->mutex);
  require_argument(!state->completed_too_often && state->latencies_ms.size() == state->taken_requests, "run_open_loop_async",
                   "complete() must be called exactly once per group taken, with that group");
  return detail::make_load_report(options, *state, start);
}

// Runs one open-loop experiment against a synchronous server. make_request(rng) draws a request;
// serve_group(span of requests) serves one group and returns when it is done (its results are not
// needed here). One group is in flight at a time; an error from serve_group is rethrown.
template <class MakeRequest, class ServeGroup>
[[nodiscard]] LoadReport run_open_loop(const LoadOptions& options, MakeRequest&& make_request, ServeGroup&& serve_group) {
  return run_open_loop_async(options, std::forward<MakeRequest>(make_request), [&serve_group](const TakeGroup& take, const CompleteGroup& complete) {
    const PendingGroup group = take();
    serve_group(std::span<const Request>(group.requests));
    complete(group);
  });
}

[[nodiscard]] inline std::string report_table_header() {
  return "| rate /s | offered | completed | groups | mean group | max in flight | throughput /s | P50 ms | P90 ms | P99 ms | goodput /s (SLO) |\n"
         "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
}

[[nodiscard]] inline std::string report_table_row(const LoadReport& r) {
  char line[384];
  std::snprintf(line, sizeof line, "| %.1f | %zu | %zu | %zu | %.2f | %zu | %.2f | %.2f | %.2f | %.2f | %.2f (%.0f ms) |\n", r.rate_per_s, r.offered,
                r.completed, r.groups, r.mean_group, r.in_flight_max, r.throughput_per_s, r.p50_ms, r.p90_ms, r.p99_ms, r.goodput_per_s,
                r.slo_ms);
  return line;
}

[[nodiscard]] inline std::string report_json(std::span<const LoadReport> reports) {
  std::string text = "[\n";
  for (std::size_t i = 0; i < reports.size(); ++i) {
    const LoadReport& r = reports[i];
    char line[640];
    std::snprintf(line, sizeof line,
                  "  {\"rate_per_s\": %.6g, \"duration_s\": %.6g, \"slo_ms\": %.6g, \"offered\": %zu, \"completed\": %zu, \"groups\": %zu, "
                  "\"mean_group\": %.6g, \"throughput_per_s\": %.6g, \"goodput_per_s\": %.6g, \"p50_ms\": %.6g, \"p90_ms\": %.6g, "
                  "\"p99_ms\": %.6g, \"max_ms\": %.6g, \"max_in_flight\": %zu}%s\n",
                  r.rate_per_s, r.duration_s, r.slo_ms, r.offered, r.completed, r.groups, r.mean_group, r.throughput_per_s, r.goodput_per_s,
                  r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms, r.in_flight_max, i + 1 < reports.size() ? "," : "");
    text += line;
  }
  return text + "]\n";
}

}  // namespace xgr::engine
