// The load generator: percentiles, open-loop runs against stand-in servers whose service time is
// known (a synchronous one, and an asynchronous one with worker slots), and the report's formats.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/load.hpp"
#include "support/errors.hpp"

namespace {

// A stand-in asynchronous server: `slots` worker threads, each serving one group at a time by
// sleeping `service` and then completing it. submit blocks until a slot is idle and only then takes a
// group, so groups form as late as possible. It records what it served (requests are numbered by
// their first prompt token) so a test can check the loop's report against it. The destructor serves
// any group still handed over, then joins the workers.
class SlotServer {
 public:
  SlotServer(std::size_t slots, std::chrono::microseconds service) : idle_(slots), service_(service) {
    for (std::size_t i = 0; i < slots; ++i) workers_.emplace_back([this] { work(); });
  }
  SlotServer(const SlotServer&) = delete;
  SlotServer& operator=(const SlotServer&) = delete;
  ~SlotServer() {
    {
      const std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    job_ready_.notify_all();
    for (std::thread& worker : workers_) worker.join();
  }

  void submit(const xgr::engine::TakeGroup& take, const xgr::engine::CompleteGroup& complete) {
    {
      std::unique_lock lock(mutex_);
      slot_free_.wait(lock, [&] { return idle_ > 0; });
      --idle_;
    }
    xgr::engine::PendingGroup group = take();  // outside mutex_: take() locks the loop's own mutex
    {
      const std::lock_guard lock(mutex_);
      jobs_.push_back({std::move(group), complete});
    }
    job_ready_.notify_one();
  }

  // Read these once the run has returned and every group has been completed.
  std::vector<int> times_served;  // by request number
  std::size_t groups = 0, largest_group = 0;
  bool arrivals_consistent = true;  // one arrival time per request, none after the group was served

 private:
  struct Job {
    xgr::engine::PendingGroup group;
    xgr::engine::CompleteGroup complete;
  };

  void work() {
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mutex_);
        job_ready_.wait(lock, [&] { return !jobs_.empty() || stopping_; });
        if (jobs_.empty()) return;  // stopping, and nothing left to serve
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      std::this_thread::sleep_for(service_);
      {
        const std::lock_guard lock(mutex_);
        ++groups;
        largest_group = std::max(largest_group, job.group.requests.size());
        const auto now = std::chrono::steady_clock::now();
        arrivals_consistent = arrivals_consistent && job.group.arrived.size() == job.group.requests.size() &&
                              std::all_of(job.group.arrived.begin(), job.group.arrived.end(), [&](auto at) { return at <= now; });
        for (const xgr::engine::Request& request : job.group.requests) {
          const std::uint32_t number = request.prompt_tokens.at(0);
          if (number >= times_served.size()) times_served.resize(number + 1, 0);
          ++times_served[number];
        }
      }
      // Complete before freeing the slot, so a group is never taken for a slot still in flight.
      job.complete(job.group);
      {
        const std::lock_guard lock(mutex_);
        ++idle_;
      }
      slot_free_.notify_one();
    }
  }

  std::mutex mutex_;
  std::condition_variable slot_free_, job_ready_;
  std::deque<Job> jobs_;
  std::size_t idle_;
  bool stopping_ = false;
  std::chrono::microseconds service_;
  std::vector<std::thread> workers_;
};

// Requests numbered 0, 1, 2, ... in arrival order (make_request runs on the arrival thread only).
auto numbered_requests() {
  return [next = std::uint32_t{0}](std::mt19937_64&) mutable { return xgr::engine::Request{{next++}, 2}; };
}

}  // namespace

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
  CHECK(report.in_flight_max == 1);  // a synchronous server holds one group at a time
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

TEST_CASE("an asynchronous open-loop run completes every arrival once, with several groups in flight") {
  // 2000 arrivals/s against groups of at most 4 that take 3 ms: one slot serves at most about
  // 1333/s, so requests arrive while a slot is busy (about 6 per service time) and the second slot
  // is used; two slots serve about 2666/s, so the queue stays short and the run drains quickly.
  constexpr std::size_t slots = 2, max_group = 4;
  SlotServer server(slots, std::chrono::microseconds(3000));
  const xgr::engine::LoadReport report = xgr::engine::run_open_loop_async({2000.0, 0.3, 1000.0, max_group, 7}, numbered_requests(),
                                            [&](const xgr::engine::TakeGroup& take, const xgr::engine::CompleteGroup& complete) {
                                              server.submit(take, complete);
                                            });
  // The run returns only once every group has been completed, so the server's records are final.
  CHECK(report.offered > 400);  // about 600 expected
  CHECK(report.completed == report.offered);
  CHECK(server.times_served.size() == report.offered);
  CHECK(std::all_of(server.times_served.begin(), server.times_served.end(), [](int times) { return times == 1; }));
  CHECK(server.arrivals_consistent);
  CHECK(report.groups == server.groups);
  CHECK(server.largest_group <= max_group);
  CHECK(server.largest_group == max_group);  // about 3 arrivals per group on average: some group fills
  CHECK(report.in_flight_max <= slots);
  CHECK(report.in_flight_max >= 2);
  CHECK(report.mean_group == doctest::Approx(static_cast<double>(report.completed) / static_cast<double>(report.groups)));
  CHECK(report.p50_ms >= 3.0);  // at least the service time
  CHECK(report.p50_ms <= report.p90_ms);
  CHECK(report.p90_ms <= report.p99_ms);
  CHECK(report.p99_ms <= report.max_ms);
  CHECK(report.goodput_per_s <= report.throughput_per_s);
  CHECK(report.throughput_per_s > 0.0);
}

TEST_CASE("an asynchronous open-loop run passes submit errors through and stops arriving at once") {
  using Clock = std::chrono::steady_clock;
  const xgr::engine::LoadOptions options{1000.0, 1.0, 1000.0, 4, 11};  // a full run would take 1 s
  // The server fails on its 5th submit, after taking that group; the groups before it are still on
  // the workers and are completed after the run has thrown (the server's destructor waits for them).
  SUBCASE("after taking a group") {
    SlotServer server(2, std::chrono::microseconds(2000));
    int calls = 0;
    const Clock::time_point start = Clock::now();
    CHECK_THROWS_AS((void)xgr::engine::run_open_loop_async(options, numbered_requests(),
                                                           [&](const xgr::engine::TakeGroup& take, const xgr::engine::CompleteGroup& complete) {
                                                             if (++calls == 5) {
                                                               (void)take();
                                                               throw xgr::Error(xgr::ErrorKind::internal, "submit", "broken");
                                                             }
                                                             server.submit(take, complete);
                                                           }),
                    xgr::Error);
    CHECK(calls == 5);
    CHECK(std::chrono::duration<double>(Clock::now() - start).count() < 0.5);  // arrivals stopped early
  }
  SUBCASE("before taking one") {
    const Clock::time_point start = Clock::now();
    CHECK(xgr::test::error_of([&] {
            (void)xgr::engine::run_open_loop_async(options, numbered_requests(),
                                                   [](const xgr::engine::TakeGroup&, const xgr::engine::CompleteGroup&) {
                                                     throw xgr::Error(xgr::ErrorKind::capacity, "submit", "full");
                                                   });
          }) == xgr::test::capacity_error);
    CHECK(std::chrono::duration<double>(Clock::now() - start).count() < 0.5);
  }
}

TEST_CASE("an asynchronous open-loop run rejects a server that breaks the take/complete contract") {
  using xgr::engine::CompleteGroup;
  using xgr::engine::TakeGroup;
  const xgr::engine::LoadOptions options{500.0, 0.05, 1000.0, 4, 13};
  auto run = [&](auto submit) { return xgr::test::error_of([&] { (void)xgr::engine::run_open_loop_async(options, numbered_requests(), submit); }); };
  // A well-behaved synchronous server, as a control: the same run succeeds.
  CHECK(run([](const TakeGroup& take, const CompleteGroup& complete) { complete(take()); }) == "no error");
  // submit returns without taking a group.
  CHECK(run([](const TakeGroup&, const CompleteGroup&) {}) == xgr::test::invalid_argument_error);
  // take() called twice in one submit.
  CHECK(run([](const TakeGroup& take, const CompleteGroup& complete) {
          const xgr::engine::PendingGroup group = take();
          (void)take();
          complete(group);
        }) == xgr::test::invalid_argument_error);
  // A take() kept from the first submit and called, instead of their own, by later ones.
  TakeGroup kept;
  CHECK(run([&](const TakeGroup& take, const CompleteGroup& complete) {
          if (!kept) kept = take;
          complete(kept());
        }) == xgr::test::invalid_argument_error);
  // complete() called twice for one group.
  CHECK(run([](const TakeGroup& take, const CompleteGroup& complete) {
          const xgr::engine::PendingGroup group = take();
          complete(group);
          complete(group);
        }) == xgr::test::invalid_argument_error);
}

TEST_CASE("the load report's table row matches its header and the JSON carries every field") {
  xgr::engine::LoadReport report;
  report.rate_per_s = 100;
  report.offered = 200;
  report.completed = 199;
  report.groups = 50;
  report.in_flight_max = 3;
  const std::string header = xgr::engine::report_table_header();
  const std::string row = xgr::engine::report_table_row(report);
  const std::string title = header.substr(0, header.find('\n') + 1);
  const std::string rule = header.substr(title.size());
  CHECK(std::count(title.begin(), title.end(), '|') == std::count(row.begin(), row.end(), '|'));
  CHECK(std::count(rule.begin(), rule.end(), '|') == std::count(row.begin(), row.end(), '|'));
  CHECK(title.find("| max in flight |") != std::string::npos);
  CHECK(row.find("| 3 |") != std::string::npos);
  const std::vector<xgr::engine::LoadReport> reports{report, report};
  const std::string json = xgr::engine::report_json(reports);
  CHECK(json.find("\"max_in_flight\": 3}") != std::string::npos);
  CHECK(json.find("\"completed\": 199") != std::string::npos);
  CHECK(json.front() == '[');
  CHECK(json.find("},\n") != std::string::npos);  // records are separated
}
