// Random stage graphs for the StreamPipeline tests, and a watchdog for tests that could hang.
//
// Every stage of a random graph computes, per batch, a value from the batch's sequence number, its
// own index and its producers' values (stage_value). A stage that ran before one of its producers
// read a stale value (the previous batch's in that slot, or the poison written at load), so the
// completion check `value == expected` catches every missing or broken dependency.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "xgr/core/config.hpp"

namespace xgr::test {

inline constexpr std::size_t max_graph_stages = 8;

struct RandomGraph {
  std::size_t stages = 0;
  std::vector<bool> device;                       // per stage: device stage (else host)
  std::vector<std::vector<std::size_t>> producers;  // per stage, all < the stage's index (acyclic)
};

// Edges only go from lower to higher indices, so the graph is acyclic; each possible edge exists
// with probability edge_probability.
inline RandomGraph random_graph(std::mt19937_64& rng, std::size_t stages, double edge_probability, double device_probability) {
  RandomGraph graph;
  graph.stages = stages;
  std::bernoulli_distribution edge(edge_probability);
  std::bernoulli_distribution device(device_probability);
  graph.producers.resize(stages);
  for (std::size_t s = 0; s < stages; ++s) {
    graph.device.push_back(device(rng));
    for (std::size_t p = 0; p < s; ++p) {
      if (edge(rng)) graph.producers[s].push_back(p);
    }
  }
  return graph;
}

// A value no stage computes for a live batch, written into a slot when a batch is loaded.
inline constexpr std::uint32_t poison_value = 0xdeadbeefu;

XGR_HOST_DEVICE inline std::uint32_t mix32(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

// What stage `stage` computes for element `element` of batch `sequence`, from its producers' values.
XGR_HOST_DEVICE inline std::uint32_t stage_seed(std::uint64_t sequence, std::size_t stage, std::size_t element) {
  return mix32(static_cast<std::uint32_t>(sequence) * 0x9e3779b9u + static_cast<std::uint32_t>(stage) * 0x85ebca6bu +
               static_cast<std::uint32_t>(element));
}
XGR_HOST_DEVICE inline std::uint32_t stage_fold(std::uint32_t value, std::uint32_t producer_value) {
  return mix32(value ^ (producer_value + 0x632be5abu));
}

// The value every stage must hold once batch `sequence` completed, computed in topological order.
inline std::vector<std::uint32_t> expected_values(const RandomGraph& graph, std::uint64_t sequence, std::size_t element) {
  std::vector<std::uint32_t> values(graph.stages);
  for (std::size_t s = 0; s < graph.stages; ++s) {
    std::uint32_t value = stage_seed(sequence, s, element);
    for (std::size_t p : graph.producers[s]) value = stage_fold(value, values[p]);
    values[s] = value;
  }
  return values;
}

// XGR_TEST_TIME_SCALE=<n> multiplies every watchdog limit by n (default 1): a run slowed a
// hundredfold by a tool such as compute-sanitizer must not be taken for a deadlock.
inline long long watchdog_scale() {
  const char* text = std::getenv("XGR_TEST_TIME_SCALE");
  const long long scale = text != nullptr ? std::atoll(text) : 1;
  return scale >= 1 ? scale : 1;
}

// Runs `body` on its own thread and fails the whole test binary if it has not returned within
// `limit` (times XGR_TEST_TIME_SCALE): a deadlock must fail, not hang the CI job. (A thread cannot
// be cancelled, so the process exits.)
template <class Body>
void run_bounded(std::chrono::milliseconds limit, const char* what, Body&& body) {
  limit *= watchdog_scale();
  struct Shared {
    std::atomic<bool> done{false};
  };
  auto shared = std::make_shared<Shared>();
  std::exception_ptr error;
  std::thread runner([&, shared] {
    try {
      body();
    } catch (...) {
      error = std::current_exception();
    }
    shared->done = true;
  });
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!shared->done && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!shared->done) {
    std::fprintf(stderr, "FATAL: '%s' did not finish within %lld ms (deadlock?)\n", what,
                 static_cast<long long>(limit.count()));
    std::fflush(stderr);
    std::_Exit(3);
  }
  runner.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace xgr::test
