// StreamPipeline on the host backend: the same graph semantics the CUDA backend has, checked in CI.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/errors.hpp"
#include "support/pipeline_graphs.hpp"
#include "support/random.hpp"
#include "xgr/pipeline/pipeline.hpp"

namespace {

using namespace std::chrono_literals;
using xgr::BatchInfo;
using xgr::test::run_bounded;

constexpr std::size_t elements = 4;

struct GraphSlot {
  std::uint64_t owner = ~std::uint64_t{0};
  std::vector<std::uint32_t> values;  // stage-major: values[stage * elements + element]
};

using GraphPipeline = xgr::StreamPipeline<GraphSlot>;

// Builds `graph` into `pipeline`: stage s computes its values from its producers' (stage_value).
// Every stage also checks that the slot holds the batch it runs for, logs the sequence numbers it
// saw, and sleeps a random 0-300 us so that schedules vary from run to run.
struct GraphHarness {
  const xgr::test::RandomGraph& graph;
  std::vector<std::vector<std::uint64_t>> seen;  // per stage, written by that stage's worker only
  std::vector<std::mt19937_64> jitter;           // per stage, likewise
  std::atomic<int> wrong_slot{0};

  GraphHarness(const xgr::test::RandomGraph& g, std::uint64_t salt) : graph(g), seen(g.stages) {
    for (std::size_t s = 0; s < g.stages; ++s) jitter.push_back(xgr::test::make_rng(salt * 131 + s));
  }

  void compute(std::size_t stage, GraphSlot& slot, const BatchInfo& info) {
    if (slot.owner != info.sequence) ++wrong_slot;
    seen[stage].push_back(info.sequence);
    std::this_thread::sleep_for(std::chrono::microseconds(jitter[stage]() % 300));
    for (std::size_t e = 0; e < elements; ++e) {
      std::uint32_t value = xgr::test::stage_seed(info.sequence, stage, e);
      for (std::size_t p : graph.producers[stage]) value = xgr::test::stage_fold(value, slot.values[p * elements + e]);
      slot.values[stage * elements + e] = value;
    }
  }

  void build(GraphPipeline& pipeline) {
    std::vector<xgr::StageId> ids;
    for (std::size_t s = 0; s < graph.stages; ++s) {
      const std::string name = "stage" + std::to_string(s);
      if (graph.device[s]) {
        ids.push_back(pipeline.add_device_stage(name, [this, s](GraphSlot& slot, const BatchInfo& info, xgr::exec::host_t) {
          compute(s, slot, info);
        }));
      } else {
        ids.push_back(pipeline.add_host_stage(name, [this, s](GraphSlot& slot, const BatchInfo& info) { compute(s, slot, info); }));
      }
      for (std::size_t p : graph.producers[s]) pipeline.connect(ids[p], ids[s]);
    }
  }
};

void load_batch(GraphSlot& slot, const BatchInfo& info) {
  slot.owner = info.sequence;
  std::fill(slot.values.begin(), slot.values.end(), xgr::test::poison_value);
}

}  // namespace

TEST_CASE("random stage graphs: every stage sees its producers' results, in sequence order, in its own slot") {
  auto rng = xgr::test::make_rng(601);
  for (int trial = 0; trial < 16; ++trial) {
    const std::size_t stage_count = 1 + rng() % xgr::test::max_graph_stages;
    const auto graph = xgr::test::random_graph(rng, stage_count, 0.4, 0.5);
    const std::size_t slots = std::size_t{1} + rng() % 5;
    const std::uint64_t batches = 30;
    CAPTURE(trial);
    CAPTURE(stage_count);
    CAPTURE(slots);

    GraphHarness harness(graph, static_cast<std::uint64_t>(trial));
    std::vector<std::uint64_t> completed;
    int wrong_values = 0;
    int errors = 0;
    run_bounded(20s, "random graph", [&] {
      GraphPipeline pipeline(xgr::PipelineOptions{.slots = slots}, [&](std::size_t) {
        GraphSlot slot;
        slot.values.assign(stage_count * elements, 0);
        return slot;
      });
      harness.build(pipeline);
      pipeline.on_complete([&](GraphSlot& slot, const BatchInfo& info, std::exception_ptr error) {
        completed.push_back(info.sequence);
        if (error) ++errors;
        for (std::size_t e = 0; e < elements; ++e) {
          const auto expected = xgr::test::expected_values(graph, info.sequence, e);
          for (std::size_t s = 0; s < stage_count; ++s) wrong_values += slot.values[s * elements + e] != expected[s];
        }
      });
      pipeline.start();
      for (std::uint64_t b = 0; b < batches; ++b) CHECK(pipeline.submit(load_batch) == b);
      pipeline.drain();
      const auto stats = pipeline.stats();
      CHECK(stats.submitted == batches);
      CHECK(stats.completed == batches);
      CHECK(stats.failed == 0);
    });

    CHECK(errors == 0);
    CHECK(wrong_values == 0);
    CHECK(harness.wrong_slot == 0);
    REQUIRE(completed.size() == batches);
    for (std::uint64_t b = 0; b < batches; ++b) CHECK(completed[b] == b);
    for (std::size_t s = 0; s < stage_count; ++s) {
      REQUIRE(harness.seen[s].size() == batches);
      for (std::uint64_t b = 0; b < batches; ++b) CHECK(harness.seen[s][b] == b);
    }
  }
}

TEST_CASE("several threads submitting at once: every batch completes exactly once") {
  auto rng = xgr::test::make_rng(602);
  const auto graph = xgr::test::random_graph(rng, 5, 0.5, 0.5);
  GraphHarness harness(graph, 602);
  std::vector<int> completions(200, 0);
  int wrong_values = 0;
  run_bounded(20s, "concurrent submitters", [&] {
    GraphPipeline pipeline(xgr::PipelineOptions{.slots = 3}, [&](std::size_t) {
      GraphSlot slot;
      slot.values.assign(graph.stages * elements, 0);
      return slot;
    });
    harness.build(pipeline);
    pipeline.on_complete([&](GraphSlot& slot, const BatchInfo& info, std::exception_ptr) {
      ++completions.at(info.sequence);
      const auto expected = xgr::test::expected_values(graph, info.sequence, 0);
      for (std::size_t s = 0; s < graph.stages; ++s) wrong_values += slot.values[s * elements] != expected[s];
    });
    pipeline.start();
    std::vector<std::thread> submitters;
    for (int t = 0; t < 4; ++t) {
      submitters.emplace_back([&] {
        for (int b = 0; b < 50; ++b) pipeline.submit(load_batch);
      });
    }
    for (auto& submitter : submitters) submitter.join();
    pipeline.drain();
  });
  CHECK(wrong_values == 0);
  CHECK(harness.wrong_slot == 0);
  for (int count : completions) CHECK(count == 1);
}

namespace {

struct CounterSlot {
  std::uint64_t value = 0;
  std::vector<int> rounds_seen;
};

}  // namespace

TEST_CASE("a multi-round device stage runs its rounds back to back, in order") {
  std::vector<std::uint64_t> results;
  run_bounded(10s, "rounds", [&] {
    xgr::StreamPipeline<CounterSlot> pipeline(xgr::PipelineOptions{.slots = 2});
    auto load = pipeline.add_host_stage("load", [](CounterSlot& slot, const BatchInfo& info) {
      slot.value = info.sequence;
      slot.rounds_seen.clear();
    });
    auto decode = pipeline.add_device_stage(
        "decode",
        [](CounterSlot& slot, const BatchInfo& info, xgr::exec::host_t) {
          slot.value = slot.value * 31 + static_cast<std::uint64_t>(info.round);
          slot.rounds_seen.push_back(info.round);
        },
        {.rounds = 3});
    pipeline.connect(load, decode);
    pipeline.on_complete([&](CounterSlot& slot, const BatchInfo&, std::exception_ptr error) {
      CHECK(error == nullptr);
      CHECK(slot.rounds_seen == std::vector<int>{0, 1, 2});
      results.push_back(slot.value);
    });
    pipeline.start();
    for (int b = 0; b < 6; ++b) pipeline.submit([](CounterSlot&, const BatchInfo&) {});
    pipeline.drain();
    CHECK(pipeline.stats().device_launches == 6 * 3);
  });
  REQUIRE(results.size() == 6);
  for (std::uint64_t b = 0; b < 6; ++b) CHECK(results[b] == ((b * 31 + 0) * 31 + 1) * 31 + 2);
}

TEST_CASE("a stage that throws fails its batch, skips the batch's later stages, and the pipeline goes on") {
  std::atomic<int> post_runs{0};
  std::vector<std::string> outcomes;
  run_bounded(10s, "errors", [&] {
    xgr::StreamPipeline<CounterSlot> pipeline(xgr::PipelineOptions{.slots = 2});
    auto prepare = pipeline.add_host_stage("prepare", [](CounterSlot& slot, const BatchInfo& info) {
      slot.value = info.sequence;
      if (info.sequence % 3 == 1) throw std::runtime_error("bad batch " + std::to_string(info.sequence));
    });
    auto compute = pipeline.add_device_stage("compute", [](CounterSlot& slot, const BatchInfo& info, xgr::exec::host_t) {
      if (info.sequence % 3 == 2) {
        throw xgr::Error(xgr::ErrorKind::capacity, "compute", "batch " + std::to_string(info.sequence) + " too large");
      }
      slot.value += 100;
    });
    auto post = pipeline.add_host_stage("post", [&](CounterSlot&, const BatchInfo&) { ++post_runs; });
    pipeline.connect(prepare, compute);
    pipeline.connect(compute, post);
    pipeline.on_complete([&](CounterSlot& slot, const BatchInfo& info, std::exception_ptr error) {
      if (!error) {
        outcomes.push_back("ok " + std::to_string(slot.value));
        return;
      }
      try {
        std::rethrow_exception(error);
      } catch (const xgr::Error& e) {
        outcomes.push_back(std::string("xgr ") + e.what());
      } catch (const std::exception& e) {
        outcomes.push_back(std::string("std ") + e.what());
      }
      (void)info;
    });
    pipeline.start();
    for (int b = 0; b < 6; ++b) pipeline.submit([](CounterSlot&, const BatchInfo&) {});
    pipeline.drain();
    const auto stats = pipeline.stats();
    CHECK(stats.completed == 6);
    CHECK(stats.failed == 4);
  });
  CHECK(post_runs == 2);
  REQUIRE(outcomes.size() == 6);
  CHECK(outcomes[0] == "ok 100");
  CHECK(outcomes[1] == "std bad batch 1");
  CHECK(outcomes[2] == "xgr xgr: compute: capacity exceeded: batch 2 too large");
  CHECK(outcomes[3] == "ok 103");
  CHECK(outcomes[4] == "std bad batch 4");
  CHECK(outcomes[5] == "xgr xgr: compute: capacity exceeded: batch 5 too large");
}

TEST_CASE("a load that throws is rethrown by submit, and its batch still completes (as failed)") {
  std::vector<std::pair<std::uint64_t, bool>> completions;
  run_bounded(10s, "load errors", [&] {
    xgr::StreamPipeline<CounterSlot> pipeline(xgr::PipelineOptions{.slots = 1});
    std::atomic<int> runs{0};
    pipeline.add_host_stage("work", [&](CounterSlot&, const BatchInfo&) { ++runs; });
    pipeline.on_complete([&](CounterSlot&, const BatchInfo& info, std::exception_ptr error) {
      completions.emplace_back(info.sequence, error != nullptr);
    });
    pipeline.start();
    CHECK(pipeline.submit([](CounterSlot&, const BatchInfo&) {}) == 0);
    CHECK_THROWS_WITH_AS(pipeline.submit([](CounterSlot&, const BatchInfo&) { throw std::runtime_error("no input"); }),
                         "no input", std::runtime_error);
    CHECK(pipeline.submit([](CounterSlot&, const BatchInfo&) {}) == 2);
    pipeline.drain();
    CHECK(runs == 2);
  });
  REQUIRE(completions.size() == 3);
  CHECK(completions[0] == std::pair<std::uint64_t, bool>{0, false});
  CHECK(completions[1] == std::pair<std::uint64_t, bool>{1, true});
  CHECK(completions[2] == std::pair<std::uint64_t, bool>{2, false});
}

TEST_CASE("a completion callback that throws is counted and dropped; the batch and the pipeline go on") {
  std::vector<std::uint64_t> completed;
  xgr::PipelineStats stats{};
  run_bounded(10s, "completion errors", [&] {
    xgr::StreamPipeline<CounterSlot> pipeline(xgr::PipelineOptions{.slots = 2});
    pipeline.add_host_stage("work", [](CounterSlot&, const BatchInfo&) {});
    pipeline.on_complete([&](CounterSlot&, const BatchInfo& info, std::exception_ptr) {
      completed.push_back(info.sequence);
      if (info.sequence % 2 == 1) throw std::runtime_error("the callback failed");
    });
    pipeline.start();
    for (int batch = 0; batch < 6; ++batch) pipeline.submit([](CounterSlot&, const BatchInfo&) {});
    pipeline.drain();
    stats = pipeline.stats();
  });
  CHECK(completed == std::vector<std::uint64_t>{0, 1, 2, 3, 4, 5});
  CHECK(stats.completed == 6);
  CHECK(stats.failed == 0);
  CHECK(stats.completion_errors == 3);
}

TEST_CASE("back-pressure: try_submit reports busy and submit waits while every slot is in flight") {
  run_bounded(10s, "back-pressure", [&] {
    std::mutex gate_mutex;
    std::condition_variable gate_changed;
    bool gate_open = false;
    xgr::StreamPipeline<CounterSlot> pipeline(xgr::PipelineOptions{.slots = 2});
    pipeline.add_host_stage("gated", [&](CounterSlot&, const BatchInfo&) {
      std::unique_lock lock(gate_mutex);
      gate_changed.wait(lock, [&] { return gate_open; });
    });
    pipeline.start();
    const auto nothing = [](CounterSlot&, const BatchInfo&) {};
    CHECK(pipeline.try_submit(nothing) == std::optional<std::uint64_t>{0});
    CHECK(pipeline.try_submit(nothing) == std::optional<std::uint64_t>{1});
    CHECK(pipeline.in_flight() == 2);
    CHECK(pipeline.try_submit(nothing) == std::nullopt);

    std::atomic<bool> third_submitted{false};
    std::thread submitter([&] {
      pipeline.submit(nothing);
      third_submitted = true;
    });
    std::this_thread::sleep_for(50ms);
    CHECK_FALSE(third_submitted.load());  // blocked: no slot is free
    {
      std::lock_guard lock(gate_mutex);
      gate_open = true;
    }
    gate_changed.notify_all();
    submitter.join();
    CHECK(third_submitted.load());
    pipeline.drain();
    CHECK(pipeline.stats().completed == 3);
  });
}

TEST_CASE("shutdown with work in flight completes every batch, then refuses new ones") {
  std::atomic<int> completed{0};
  run_bounded(20s, "shutdown", [&] {
    xgr::StreamPipeline<CounterSlot> pipeline(xgr::PipelineOptions{.slots = 4});
    auto first = pipeline.add_host_stage("slow", [](CounterSlot&, const BatchInfo&) { std::this_thread::sleep_for(2ms); });
    auto second = pipeline.add_device_stage("slower", [](CounterSlot&, const BatchInfo&, xgr::exec::host_t) {
      std::this_thread::sleep_for(3ms);
    });
    pipeline.connect(first, second);
    pipeline.on_complete([&](CounterSlot&, const BatchInfo&, std::exception_ptr error) {
      CHECK(error == nullptr);
      ++completed;
    });
    pipeline.start();
    for (int b = 0; b < 12; ++b) pipeline.submit([](CounterSlot&, const BatchInfo&) {});
    pipeline.shutdown();
    CHECK(completed == 12);
    CHECK(xgr::test::error_of([&] { pipeline.submit([](CounterSlot&, const BatchInfo&) {}); }) ==
          xgr::test::invalid_argument_error);
    CHECK(xgr::test::error_of([&] { (void)pipeline.try_submit([](CounterSlot&, const BatchInfo&) {}); }) ==
          xgr::test::invalid_argument_error);
    pipeline.shutdown();  // idempotent
  });
  CHECK(completed == 12);
}

TEST_CASE("a submitter blocked on back-pressure is released with an error by shutdown") {
  run_bounded(10s, "shutdown releases submitters", [&] {
    xgr::StreamPipeline<CounterSlot> pipeline(xgr::PipelineOptions{.slots = 1});
    std::atomic<bool> release{false};
    pipeline.add_host_stage("wait", [&](CounterSlot&, const BatchInfo&) {
      while (!release) std::this_thread::sleep_for(1ms);
    });
    pipeline.start();
    pipeline.submit([](CounterSlot&, const BatchInfo&) {});
    std::string blocked_outcome;
    std::thread blocked([&] { blocked_outcome = xgr::test::error_of([&] { pipeline.submit([](CounterSlot&, const BatchInfo&) {}); }); });
    std::this_thread::sleep_for(20ms);
    std::thread stopper([&] { pipeline.shutdown(); });
    std::this_thread::sleep_for(20ms);
    release = true;
    stopper.join();
    blocked.join();
    CHECK(blocked_outcome == xgr::test::invalid_argument_error);
    CHECK(pipeline.stats().completed == 1);
  });
}

TEST_CASE("stages of different batches overlap: throughput approaches the slowest stage, not the sum") {
  // Three stages of 3 ms each (sleeps, so the test does not depend on free cores). One slot runs
  // them one after another: 9 ms per batch. Three slots keep each stage busy: about 3 ms per batch.
  const int batches = 16;
  const auto run = [&](std::size_t slots) {
    xgr::StreamPipeline<CounterSlot> pipeline(xgr::PipelineOptions{.slots = slots});
    const auto sleep_3ms = [](CounterSlot&, const BatchInfo&) { std::this_thread::sleep_for(3ms); };
    auto a = pipeline.add_host_stage("a", sleep_3ms);
    auto b = pipeline.add_device_stage("b", [](CounterSlot&, const BatchInfo&, xgr::exec::host_t) { std::this_thread::sleep_for(3ms); });
    auto c = pipeline.add_host_stage("c", sleep_3ms);
    pipeline.connect(a, b);
    pipeline.connect(b, c);
    pipeline.start();
    const auto begin = std::chrono::steady_clock::now();
    for (int i = 0; i < batches; ++i) pipeline.submit([](CounterSlot&, const BatchInfo&) {});
    pipeline.drain();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  };
  double serial_s = 0;
  double overlapped_s = 0;
  run_bounded(20s, "overlap", [&] {
    serial_s = run(1);
    overlapped_s = run(3);
  });
  MESSAGE("16 batches of 3 x 3 ms: 1 slot " << serial_s * 1e3 << " ms, 3 slots " << overlapped_s * 1e3 << " ms");
  CHECK(serial_s >= batches * 9e-3 * 0.95);
  CHECK(overlapped_s < serial_s * 0.6);  // ideal: (16 + 2) * 3 ms = 54 ms against 144 ms
}

TEST_CASE("bad graphs and misuse are clear errors") {
  using xgr::test::error_of;
  using xgr::test::invalid_argument_error;
  const auto nothing = [](CounterSlot&, const BatchInfo&) {};
  const auto device_nothing = [](CounterSlot&, const BatchInfo&, xgr::exec::host_t) {};

  CHECK(error_of([] { xgr::StreamPipeline<CounterSlot> p(xgr::PipelineOptions{.slots = 0}); }) == invalid_argument_error);
  CHECK(error_of([] { xgr::StreamPipeline<CounterSlot> p(xgr::PipelineOptions{.slots = 1, .lanes = {}}); }) ==
        invalid_argument_error);

  xgr::StreamPipeline<CounterSlot> empty(xgr::PipelineOptions{});
  CHECK(error_of([&] { empty.start(); }) == invalid_argument_error);
  CHECK(error_of([&] { empty.submit(nothing); }) == invalid_argument_error);

  xgr::StreamPipeline<CounterSlot> cyclic(xgr::PipelineOptions{});
  auto a = cyclic.add_host_stage("a", nothing);
  auto b = cyclic.add_device_stage("b", device_nothing);
  auto c = cyclic.add_host_stage("c", nothing);
  cyclic.connect(a, b);
  cyclic.connect(b, c);
  cyclic.connect(c, b);
  try {
    cyclic.start();
    FAIL("a cyclic graph started");
  } catch (const xgr::Error& error) {
    CHECK(error.kind() == xgr::ErrorKind::invalid_argument);
    CHECK(error.reason() == "the stage graph has a cycle through 'b', 'c'");
  }

  xgr::StreamPipeline<CounterSlot> pipeline(xgr::PipelineOptions{});
  auto only = pipeline.add_host_stage("only", nothing);
  CHECK(error_of([&] { pipeline.connect(only, only); }) == invalid_argument_error);
  CHECK(error_of([&] { pipeline.connect(only, xgr::StageId{7}); }) == invalid_argument_error);
  CHECK(error_of([&] { pipeline.add_host_stage("null", {}); }) == invalid_argument_error);
  CHECK(error_of([&] { pipeline.add_device_stage("no rounds", device_nothing, {.rounds = 0}); }) == invalid_argument_error);
  CHECK(error_of([&] { pipeline.add_device_stage("no lane", device_nothing, {.lane = 1}); }) == invalid_argument_error);
  CHECK(error_of([&] { pipeline.submit(nothing); }) == invalid_argument_error);  // not started
  pipeline.start();
  CHECK(error_of([&] { pipeline.add_host_stage("late", nothing); }) == invalid_argument_error);
  CHECK(error_of([&] { pipeline.start(); }) == invalid_argument_error);
  CHECK(pipeline.stage_name(only) == "only");
  CHECK(pipeline.submit(nothing) == 0);
  pipeline.drain();
}
