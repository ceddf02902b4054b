// Hot paths allocate nothing on the host: argument checks build their messages only on failure,
// and the host references run on their workspaces. The program's global operator new counts the
// allocations of the thread that measures.
#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <optional>
#include <span>
#include <vector>

#include "support/beam_inputs.hpp"
#include "support/random.hpp"
#include "support/topk_inputs.hpp"
#include "xgr/beam/host.hpp"
#include "xgr/core/view.hpp"
#include "xgr/kv/pool.hpp"
#include "xgr/pipeline/pipeline.hpp"
#include "xgr/topk/host.hpp"

namespace {
thread_local std::size_t allocations = 0;            // by this thread: doctest and other threads do not count
std::atomic<std::size_t> allocations_by_all_threads{0};  // by every thread (the pipeline's workers too)

// The allocations `work` makes on this thread.
template <class Work>
std::size_t allocations_during(Work&& work) {
  const std::size_t before = allocations;
  work();
  return allocations - before;
}
}  // namespace

// The replacements pair malloc with free; GCC, which knows operator new's usual pairing, warns.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(std::size_t bytes) {
  ++allocations;
  allocations_by_all_threads.fetch_add(1, std::memory_order_relaxed);
  if (void* memory = std::malloc(bytes == 0 ? 1 : bytes)) return memory;
  throw std::bad_alloc();
}
void* operator new[](std::size_t bytes) { return operator new(bytes); }
// The nothrow forms too (std::stable_sort's temporary buffer uses them): a sanitizer's own version
// would not pair with the replaced delete.
void* operator new(std::size_t bytes, const std::nothrow_t&) noexcept {
  ++allocations;
  allocations_by_all_threads.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(bytes == 0 ? 1 : bytes);
}
void* operator new[](std::size_t bytes, const std::nothrow_t& tag) noexcept { return operator new(bytes, tag); }
void operator delete(void* memory, const std::nothrow_t&) noexcept { std::free(memory); }
void operator delete[](void* memory, const std::nothrow_t&) noexcept { std::free(memory); }
void operator delete(void* memory) noexcept { std::free(memory); }
void operator delete[](void* memory) noexcept { std::free(memory); }
void operator delete(void* memory, std::size_t) noexcept { std::free(memory); }
void operator delete[](void* memory, std::size_t) noexcept { std::free(memory); }

TEST_CASE("the allocation counter sees an allocation") {
  // Without this, a counter that never counts would pass every check below.
  CHECK(allocations_during([] { std::vector<int> v(100); (void)v; }) == 1);
  CHECK(allocations_during([] { (void)xgr::matrix_view(static_cast<float*>(nullptr), 0, 0, 0); }) == 0);
}

TEST_CASE("a failing check builds its message, a passing one allocates nothing") {
  const std::size_t stride = 3;
  const std::size_t cols = 5;
  std::vector<float> storage(stride * 4);
  CHECK(allocations_during([&] { (void)xgr::matrix_view(std::span<float>(storage), 4, 3, 3); }) == 0);
  try {
    (void)xgr::matrix_view(storage.data(), 4, cols, stride);
    FAIL("a stride below cols must throw");
  } catch (const xgr::Error& error) {
    CHECK(error.kind() == xgr::ErrorKind::invalid_argument);
    CHECK(error.reason() == "row_stride 3 is smaller than cols 5");
  }
}

TEST_CASE("MaskedTopK's argument checks and host reference allocate nothing per call") {
  auto rng = xgr::test::make_rng(261);
  for (const xgr::MaskKind mask : {xgr::MaskKind::none, xgr::MaskKind::bitset, xgr::MaskKind::sparse}) {
    xgr::test::TopKCase spec;
    spec.groups = 3;
    spec.rows_per_group = 6;
    spec.vocab = 700;
    spec.k = 40;
    spec.mask = mask;
    spec.density = 0.3;
    spec.row_offsets = true;
    spec.variable_groups = true;
    const auto input = xgr::test::make_topk_input<float>(spec, rng);
    const xgr::TopKProblem<float> problem = input.problem();
    const xgr::TopKLimits limits = input.limits();
    xgr::test::TopKOutput out(problem.groups(), spec.k);
    const xgr::TopKResult result = out.result();
    xgr::HostWorkspace workspace(xgr::masked_topk_workspace_bytes(xgr::exec::host, limits));
    INFO(spec.describe());
    // The checks the CUDA path runs on the host before it launches anything.
    CHECK(allocations_during([&] {
            xgr::detail::validate_shape(problem, result, limits);
            (void)xgr::masked_topk_workspace_bytes(xgr::exec::host, limits);
          }) == 0);
    CHECK(allocations_during([&] { xgr::masked_topk(xgr::exec::host, problem, result, limits, workspace); }) == 0);
    std::string why;
    CHECK_MESSAGE(xgr::test::same_results(out, xgr::test::brute_force_topk(input), &why), why);
  }
}

TEST_CASE("the host BeamSearcher's begin and steps allocate nothing") {
  auto rng = xgr::test::make_rng(263);
  const xgr::ItemTable table = xgr::test::random_item_table(rng, 3, 12, 500);
  const xgr::ItemTrie trie = xgr::build_item_trie(table);
  xgr::BeamConfig config;
  config.max_requests = 3;
  config.max_beam_width = 16;
  config.vocab = 40;
  config.level_token_offsets = {2, 14, 26};
  const std::vector<std::uint32_t> widths{16, 5, 11};
  xgr::BeamSearcher searcher(xgr::exec::host, trie, config);
  xgr::test::HostLogits<float> logits(32, config.vocab, {xgr::test::HashModel{rng()}});
  for (int batch = 0; batch < 2; ++batch) {
    CHECK(allocations_during([&] { searcher.begin(xgr::exec::host, widths); }) == 0);
    for (std::size_t level = 0; level < 3; ++level) {
      const xgr::MatrixView<const float> level_logits = logits(searcher, level);
      CHECK(allocations_during([&] { searcher.step(xgr::exec::host, level_logits); }) == 0);
    }
  }
  // A batch refused by begin() leaves the searcher's row layout as it was.
  const std::vector<std::uint32_t> too_wide{16, 17};
  CHECK_THROWS_AS(searcher.begin(xgr::exec::host, too_wide), xgr::Error);
  CHECK(std::vector<std::uint32_t>(searcher.row_begin().begin(), searcher.row_begin().end()) == std::vector<std::uint32_t>{0, 16, 21, 32});
}

TEST_CASE("KvPool admission, batch descriptions and release allocate nothing") {
  using Pool = xgr::KvPool<float, xgr::kv::PageMajor, xgr::MemorySpace::host>;
  const xgr::KvShape shape{2, 2, 64};  // layers, kv heads, head_dim
  Pool pool(xgr::KvPoolConfig{shape, 64, 12, 4, 500, 8, 3});  // 12 pages of 64 tokens
  xgr::KvBatch<xgr::MemorySpace::host> batch(4);
  for (int round = 0; round < 3; ++round) {
    std::optional<xgr::KvRequest> first, second, third;
    CHECK(allocations_during([&] {
            first = pool.try_admit({300, 8});
            second = pool.try_admit({130, 2, first, 128});  // 1 page of its own, 2 shared with first's 5
            third = pool.try_admit({500, 1});               // refused: 8 pages wanted, 6 free
          }) == 0);
    REQUIRE(first.has_value());
    REQUIRE(second.has_value());
    CHECK_FALSE(third.has_value());
    const xgr::KvRequest requests[] = {*first, *second};
    CHECK(allocations_during([&] {
            pool.describe(xgr::exec::host, std::span<const xgr::KvRequest>(requests), batch);
            pool.release(*second);
            pool.release(*first);
          }) == 0);
    CHECK(batch.view().total_beams == 10);
    CHECK(pool.stats().active_requests == 0);
  }
}

TEST_CASE("StreamPipeline's batches allocate nothing once it runs, on any of its threads") {
  struct Slot {
    std::uint64_t value = 0;
  };
  xgr::StreamPipeline<Slot> pipeline(xgr::PipelineOptions{.slots = 2});
  const xgr::StageId load = pipeline.add_host_stage("double", [](Slot& slot, const xgr::BatchInfo&) { slot.value *= 2; });
  const xgr::StageId compute = pipeline.add_device_stage(
      "add", [](Slot& slot, const xgr::BatchInfo& info, xgr::exec::host_t) { slot.value += info.round; },
      xgr::DeviceStageOptions<Slot>{.rounds = 3});
  pipeline.connect(load, compute);
  std::atomic<std::uint64_t> total{0};
  pipeline.on_complete([&](Slot& slot, const xgr::BatchInfo&, std::exception_ptr) { total += slot.value; });
  pipeline.start();
  const auto submit = [&](std::uint64_t value) { pipeline.submit([value](Slot& slot, const xgr::BatchInfo&) { slot.value = value; }); };
  submit(1);  // the first batch may reserve what the workers keep (their scratch vectors)
  pipeline.drain();
  const std::size_t before = allocations_by_all_threads.load();
  for (std::uint64_t value = 2; value <= 20; ++value) submit(value);
  pipeline.drain();
  CHECK(allocations_by_all_threads.load() - before == 0);
  CHECK(total == 2 * (20 * 21 / 2) + 20 * 3);  // 2v + 0 + 1 + 2 for v = 1..20
}
