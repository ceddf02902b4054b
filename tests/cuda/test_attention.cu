// CUDA KvPool + attention against the host reference on fresh random inputs.
//
// Every scenario builds a host pool and a device pool with the same config and the same admission
// sequence (so pages land in the same places), fills both KV allocations with NaN first (a kernel
// that reads a page row past a prompt's end, or a beam slot nobody wrote, then shows as NaN), and
// compares the outputs by relative error ||out - ref|| / ||ref||.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "support/random.hpp"
#include "xgr/xgr.cuh"

namespace {

using xgr::MemorySpace;

// The worst relative errors seen, printed at the end of each case for the GPU record.
double worst_prefill = 0.0, worst_staged = 0.0, worst_portable = 0.0, worst_per_beam = 0.0;

void report_worst(const char* label) {
  std::printf("%s: worst relative error prefill %.2e, staged decode %.2e (mma.sync kernel %.2e), per-beam decode %.2e; wgmma %s\n",
              label, worst_prefill, worst_staged, worst_portable, worst_per_beam,
              xgr::attention::detail::wgmma::available() ? "available" : "not available");
  worst_prefill = worst_staged = worst_portable = worst_per_beam = 0.0;
}

struct Scenario {
  std::size_t layers = 2, kv_heads = 2, head_dim = 128, group = 4, page_tokens = 64, steps = 3;
  std::vector<std::size_t> prompts;
  std::vector<std::size_t> beams;
  std::size_t max_splits = 8;
  float softmax_scale = 0.0f;  // Options::softmax_scale: 0 takes 1 / sqrt(head_dim)
};

template <class T>
std::vector<T> random_vector(std::size_t n, std::mt19937_64& rng, float spread = 1.0f) {
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<T> v(n);
  for (T& x : v) x = T(normal(rng));
  return v;
}

template <class T>
double relative_error(std::span<const T> out, std::span<const T> ref, std::size_t* nan_count) {
  double diff = 0.0, norm = 0.0;
  *nan_count = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double o = static_cast<float>(out[i]);
    const double r = static_cast<float>(ref[i]);
    if (std::isnan(o)) ++*nan_count;
    diff += (o - r) * (o - r);
    norm += r * r;
  }
  return std::sqrt(diff / norm);
}

// All-ones bits: NaN in bf16, fp16 and float alike (what poison() writes on the device).
template <class T>
T all_ones_nan() {
  if constexpr (std::is_same_v<T, float>) {
    return std::numeric_limits<float>::quiet_NaN();
  } else {
    return T::from_bits(0xffff);
  }
}

template <class T>
void poison(std::span<T> device_span) {
  XGR_CUDA_CHECK(cudaMemset(device_span.data(), 0xff, device_span.size_bytes()));  // all-ones bf16/fp16 is NaN
}

template <class T>
std::vector<T> download(std::span<const T> device_span) {
  std::vector<T> host(device_span.size());
  XGR_CUDA_CHECK(cudaMemcpy(host.data(), device_span.data(), device_span.size_bytes(), cudaMemcpyDeviceToHost));
  return host;
}

template <class T>
xgr::DeviceBuffer<T> upload(const std::vector<T>& host) {
  return xgr::to_device<T>(std::span<const T>(host));
}

template <class T, class Layout>
struct Pools {
  xgr::KvPoolConfig config;
  xgr::CopyOnForkConfig cow_config;
  xgr::KvPool<T, Layout, MemorySpace::host> host;
  xgr::KvPool<T, Layout, MemorySpace::device> device;
  xgr::CopyOnForkKvCache<T, MemorySpace::host> host_cow;
  xgr::CopyOnForkKvCache<T, MemorySpace::device> device_cow;
  xgr::KvBatch<MemorySpace::host> host_batch;
  xgr::KvBatch<MemorySpace::device> device_batch;
  xgr::KvBatch<MemorySpace::host> host_cow_batch;
  xgr::KvBatch<MemorySpace::device> device_cow_batch;

  static xgr::KvPoolConfig pool_config(const Scenario& s) {
    std::size_t max_prompt = 1, max_beams = 1, pages = 0;
    for (std::size_t i = 0; i < s.prompts.size(); ++i) {
      max_prompt = std::max(max_prompt, s.prompts[i]);
      max_beams = std::max(max_beams, s.beams[i]);
      pages += (s.prompts[i] + s.page_tokens - 1) / s.page_tokens;
    }
    return {{s.layers, s.kv_heads, s.head_dim}, s.page_tokens, pages + 3, s.prompts.size() + 1, max_prompt, max_beams, s.steps};
  }
  static xgr::CopyOnForkConfig cow_config_of(const Scenario& s, const xgr::KvPoolConfig& c) {
    std::size_t pages = 0;
    for (std::size_t i = 0; i < s.prompts.size(); ++i) pages += s.beams[i] * ((s.prompts[i] + s.steps + s.page_tokens - 1) / s.page_tokens);
    return {c.shape, c.page_tokens, pages, c.max_requests, c.max_prompt_tokens, c.max_beams, c.max_steps};
  }

  explicit Pools(const Scenario& s)
      : config(pool_config(s)), cow_config(cow_config_of(s, config)), host(config), device(config), host_cow(cow_config),
        device_cow(cow_config), host_batch(config.max_requests), device_batch(config.max_requests), host_cow_batch(config.max_requests),
        device_cow_batch(config.max_requests) {
    // Same NaN poison on both sides: pages and slots nobody writes must never be read.
    std::fill(host.kv_storage().begin(), host.kv_storage().end(), all_ones_nan<T>());
    poison(device.kv_storage());
    std::fill(host_cow.kv_storage().begin(), host_cow.kv_storage().end(), all_ones_nan<T>());
    poison(device_cow.kv_storage());
    std::vector<xgr::KvRequest> requests, device_requests, cow_requests, device_cow_requests;
    for (std::size_t i = 0; i < s.prompts.size(); ++i) {
      const xgr::KvAdmission admission{s.prompts[i], s.beams[i]};
      requests.push_back(host.admit(admission));
      device_requests.push_back(device.admit(admission));
      cow_requests.push_back(host_cow.admit(admission));
      device_cow_requests.push_back(device_cow.admit(admission));
      REQUIRE(requests.back() == device_requests.back());
    }
    const xgr::exec::cuda exec{};
    device.publish(exec);
    device_cow.publish(exec);
    host.describe(xgr::exec::host, std::span<const xgr::KvRequest>(requests), host_batch);
    device.describe(exec, std::span<const xgr::KvRequest>(device_requests), device_batch);
    host_cow.describe(xgr::exec::host, std::span<const xgr::KvRequest>(cow_requests), host_cow_batch);
    device_cow.describe(exec, std::span<const xgr::KvRequest>(device_cow_requests), device_cow_batch);
  }
};

std::string describe(const Scenario& s) {
  std::string text = "layers " + std::to_string(s.layers) + " kv_heads " + std::to_string(s.kv_heads) + " group " +
                     std::to_string(s.group) + " d " + std::to_string(s.head_dim) + " page " + std::to_string(s.page_tokens) +
                     " splits<=" + std::to_string(s.max_splits) + " requests";
  for (std::size_t i = 0; i < s.prompts.size(); ++i) text += " (P " + std::to_string(s.prompts[i]) + ", B " + std::to_string(s.beams[i]) + ")";
  text += " steps " + std::to_string(s.steps) + " scale " + std::to_string(s.softmax_scale);
  return text;
}

// Prefill every layer on all four caches, check the prefill output of the pool against the host, then
// run `steps` decode steps with random reorders and check staged and per-beam decode against the host.
template <class T, class Layout>
void run_scenario(const Scenario& s, std::mt19937_64& rng, double tolerance) {
  CAPTURE(describe(s));
  Pools<T, Layout> pools(s);
  const xgr::exec::cuda exec{};
  const std::size_t q_heads = s.kv_heads * s.group;
  xgr::attention::Options options{q_heads};
  options.softmax_scale = s.softmax_scale;
  const std::size_t tokens = pools.host_batch.view().total_tokens;
  const std::size_t rows = pools.host_batch.view().total_beams;

  for (std::size_t layer = 0; layer < s.layers; ++layer) {
    const auto q = random_vector<T>(tokens * q_heads * s.head_dim, rng);
    const auto k = random_vector<T>(tokens * s.kv_heads * s.head_dim, rng);
    const auto v = random_vector<T>(tokens * s.kv_heads * s.head_dim, rng);
    std::vector<T> reference(q.size());
    xgr::attention::prefill(xgr::exec::host, pools.host, pools.host_batch, layer, options, std::span<const T>(q), std::span<const T>(k),
                            std::span<const T>(v), std::span<T>(reference));
    xgr::kv::write_prompt(xgr::exec::host, pools.host_cow, pools.host_cow_batch, layer, std::span<const T>(k), std::span<const T>(v));
    auto dq = upload(q), dk = upload(k), dv = upload(v);
    xgr::DeviceBuffer<T> out(q.size());
    poison(out.span());
    xgr::attention::prefill(exec, pools.device, pools.device_batch, layer, options, std::span<const T>(dq.span()),
                            std::span<const T>(dk.span()), std::span<const T>(dv.span()), out.span());
    // The baseline's prefill writes beam 0's private pages and attends over them.
    xgr::DeviceBuffer<T> cow_out(q.size());
    poison(cow_out.span());
    xgr::attention::prefill(exec, pools.device_cow, pools.device_cow_batch, layer, options, std::span<const T>(dq.span()),
                            std::span<const T>(dk.span()), std::span<const T>(dv.span()), cow_out.span());
    CAPTURE(layer);
    for (const xgr::DeviceBuffer<T>* result : {&out, &cow_out}) {
      const auto got = download(std::span<const T>(result->span()));
      std::size_t nans = 0;
      const double error = relative_error(std::span<const T>(got), std::span<const T>(reference), &nans);
      CHECK(nans == 0);
      CHECK(error < tolerance);
      worst_prefill = std::max(worst_prefill, error);
    }
  }
  xgr::kv::fork(xgr::exec::host, pools.host_cow, pools.host_cow_batch);
  xgr::kv::fork(exec, pools.device_cow, pools.device_cow_batch);

  const xgr::attention::DecodeLimits limits{rows, q_heads, s.head_dim, s.max_splits};
  xgr::DeviceWorkspace workspace(xgr::attention::decode_workspace_bytes(limits));
  const auto beam_begin = pools.host_batch.beam_begin();
  for (std::size_t step = 0; step < s.steps; ++step) {
    // Parents: step 0 forks from each request's single prefill beam; later steps pick random rows of
    // the same request (repeats included, as beam search does).
    std::vector<std::uint32_t> parents(rows);
    for (std::size_t i = 0; i + 1 < beam_begin.size(); ++i) {
      std::uniform_int_distribution<std::uint32_t> pick(beam_begin[i], beam_begin[i + 1] - 1);
      for (std::uint32_t row = beam_begin[i]; row < beam_begin[i + 1]; ++row) parents[row] = step == 0 ? beam_begin[i] : pick(rng);
    }
    auto device_parents = upload(parents);
    const xgr::BeamParents host_reorder{std::span<const std::uint32_t>(parents), step};
    const xgr::BeamParents device_reorder{std::span<const std::uint32_t>(device_parents.span()), step};
    xgr::kv::record_parents(xgr::exec::host, pools.host, pools.host_batch, host_reorder);
    xgr::kv::record_parents(exec, pools.device, pools.device_batch, device_reorder);
    xgr::kv::reorder(xgr::exec::host, pools.host_cow, pools.host_cow_batch, host_reorder);
    xgr::kv::reorder(exec, pools.device_cow, pools.device_cow_batch, device_reorder);
    for (std::size_t layer = 0; layer < s.layers; ++layer) {
      CAPTURE(step);
      CAPTURE(layer);
      const auto q = random_vector<T>(rows * q_heads * s.head_dim, rng);
      const auto k = random_vector<T>(rows * s.kv_heads * s.head_dim, rng);
      const auto v = random_vector<T>(rows * s.kv_heads * s.head_dim, rng);
      auto dq = upload(q), dk = upload(k), dv = upload(v);
      xgr::kv::write_step(xgr::exec::host, pools.host, pools.host_batch, layer, step, std::span<const T>(k), std::span<const T>(v));
      xgr::kv::write_step(xgr::exec::host, pools.host_cow, pools.host_cow_batch, layer, step, std::span<const T>(k), std::span<const T>(v));
      xgr::kv::write_step(exec, pools.device, pools.device_batch, layer, step, std::span<const T>(dk.span()), std::span<const T>(dv.span()));
      xgr::kv::write_step(exec, pools.device_cow, pools.device_cow_batch, layer, step, std::span<const T>(dk.span()),
                          std::span<const T>(dv.span()));
      std::vector<T> reference(q.size()), cow_reference(q.size());
      xgr::attention::decode(xgr::exec::host, pools.host, pools.host_batch, layer, step, options, std::span<const T>(q),
                             std::span<T>(reference));
      xgr::attention::decode(xgr::exec::host, pools.host_cow, pools.host_cow_batch, layer, step, options, std::span<const T>(q),
                             std::span<T>(cow_reference));
      // The host staged view and the physically reordered copies hold the same KV: equal to rounding.
      std::size_t nans = 0;
      CHECK(relative_error(std::span<const T>(cow_reference), std::span<const T>(reference), &nans) < 1e-6);

      xgr::DeviceBuffer<T> staged(q.size()), per_beam(q.size());
      poison(staged.span());
      poison(per_beam.span());
      xgr::attention::decode(exec, pools.device, pools.device_batch, layer, step, options, std::span<const T>(dq.span()), staged.span(),
                             workspace, limits);
      xgr::attention::decode(exec, pools.device_cow, pools.device_cow_batch, layer, step, options, std::span<const T>(dq.span()),
                             per_beam.span());
      const auto staged_host = download(std::span<const T>(staged.span()));
      const auto per_beam_host = download(std::span<const T>(per_beam.span()));
      const double staged_error = relative_error(std::span<const T>(staged_host), std::span<const T>(reference), &nans);
      CHECK(nans == 0);
      CHECK(staged_error < tolerance);
      worst_staged = std::max(worst_staged, staged_error);
      // The same step on the portable mma.sync prefix kernel (the default above takes the Hopper
      // wgmma kernel where the device has it and head_dim is 128).
      xgr::attention::Options portable = options;
      portable.allow_wgmma = false;
      poison(staged.span());
      xgr::attention::decode(exec, pools.device, pools.device_batch, layer, step, portable, std::span<const T>(dq.span()), staged.span(),
                             workspace, limits);
      const auto portable_host = download(std::span<const T>(staged.span()));
      const double portable_error = relative_error(std::span<const T>(portable_host), std::span<const T>(reference), &nans);
      CHECK(nans == 0);
      CHECK(portable_error < tolerance);
      worst_portable = std::max(worst_portable, portable_error);
      const double per_beam_error = relative_error(std::span<const T>(per_beam_host), std::span<const T>(reference), &nans);
      CHECK(nans == 0);
      CHECK(per_beam_error < tolerance);
      worst_per_beam = std::max(worst_per_beam, per_beam_error);
    }
  }
  XGR_CUDA_CHECK(cudaDeviceSynchronize());
}

Scenario random_scenario(std::mt19937_64& rng) {
  auto pick = [&](std::initializer_list<std::size_t> options) {
    std::uniform_int_distribution<std::size_t> index(0, options.size() - 1);
    return *(options.begin() + index(rng));
  };
  Scenario s;
  s.layers = pick({1, 2});
  s.kv_heads = pick({1, 2, 4});
  s.group = pick({1, 2, 4, 8});
  s.head_dim = pick({64, 128});
  s.page_tokens = pick({64, 128});
  s.steps = pick({1, 3, 4});
  s.max_splits = pick({1, 3, 8});
  const std::size_t requests = pick({1, 2, 4});
  std::uniform_int_distribution<std::size_t> prompt(1, 400), beams(1, 48);
  for (std::size_t i = 0; i < requests; ++i) {
    s.prompts.push_back(prompt(rng));
    s.beams.push_back(beams(rng));
  }
  return s;
}

}  // namespace

TEST_CASE("prefill and staged decode match the host reference on random shapes (bf16)") {
  auto rng = xgr::test::make_rng(501);
  for (int trial = 0; trial < 12; ++trial) {
    const Scenario s = random_scenario(rng);
    if (trial % 2 == 0) {
      run_scenario<xgr::bfloat16, xgr::kv::PageMajor>(s, rng, 1e-2);
    } else {
      run_scenario<xgr::bfloat16, xgr::kv::LayerMajor>(s, rng, 1e-2);
    }
  }
  report_worst("bf16 random shapes");
}

TEST_CASE("fp16 operands give fp16-level error") {
  auto rng = xgr::test::make_rng(502);
  for (int trial = 0; trial < 4; ++trial) run_scenario<xgr::half, xgr::kv::PageMajor>(random_scenario(rng), rng, 3e-3);
  report_worst("fp16 random shapes");
}

TEST_CASE("float KV runs on the CUDA cores at float-level error, on random and edge shapes") {
  auto rng = xgr::test::make_rng(504);
  for (int trial = 0; trial < 6; ++trial) {
    const Scenario s = random_scenario(rng);
    if (trial % 2 == 0) {
      run_scenario<float, xgr::kv::PageMajor>(s, rng, 1e-5);
    } else {
      run_scenario<float, xgr::kv::LayerMajor>(s, rng, 1e-5);
    }
  }
  run_scenario<float, xgr::kv::PageMajor>({1, 1, 128, 1, 64, 1, {1}, {1}, 8}, rng, 1e-5);
  run_scenario<float, xgr::kv::PageMajor>({2, 2, 64, 4, 128, 4, {127, 128, 129, 256}, {7, 1, 32, 33}, 3}, rng, 1e-5);
  report_worst("float KV");
}

TEST_CASE("edge shapes: one token, one beam, page and tile boundaries, max beams, wide GQA") {
  auto rng = xgr::test::make_rng(503);
  const std::vector<Scenario> scenarios = {
      {1, 1, 128, 1, 64, 1, {1}, {1}, 8},
      {1, 1, 64, 16, 64, 2, {63, 64, 65}, {1, 2, 3}, 8},
      {2, 2, 128, 4, 128, 3, {127, 128, 129, 256}, {7, 1, 32, 33}, 3},
      {1, 4, 128, 4, 64, 3, {1000}, {256}, 8},
      {1, 1, 128, 32, 64, 2, {300}, {9}, 1},
      // Groups that do not divide a block's 128 rows: a block's rows end inside a beam, and the next
      // block starts inside it. One split (own tokens merged in the prefix kernel) and several.
      {1, 2, 128, 3, 64, 4, {200, 70}, {50, 43}, 1},
      {1, 1, 64, 6, 64, 3, {150}, {45}, 8},
      // 130 beams of one query head: a block holds 128 beams, so its own tokens come one step at a
      // time (nine chunks: in the fused epilogue, or as masked tiles shared by both warpgroups on
      // Hopper), and the last block holds two beams. Groups of 4 and up with at most 4 steps take
      // one narrow tile per warpgroup on Hopper; groups of 1 to 3 with 3 or more steps, shared tiles.
      {1, 1, 128, 1, 64, 9, {100}, {130}, 1},
      {1, 1, 64, 1, 128, 9, {100}, {130}, 1},
      // 400 beams over 9 steps: the fused Hopper kernel stages the parent links of steps 1..7 in
      // shared memory (up to 12 KiB) and walks device memory at step 8 (3,200 links).
      {1, 1, 128, 4, 64, 9, {100}, {400}, 1},
  };
  for (const Scenario& s : scenarios) run_scenario<xgr::bfloat16, xgr::kv::PageMajor>(s, rng, 1e-2);
  report_worst("bf16 edge shapes");
}

TEST_CASE("decode grids of more blocks than multiprocessors, split and unsplit") {
  // The shapes above are small: most launch fewer blocks than an H100 has multiprocessors (132).
  // These launch more, so that blocks share multiprocessors: 16 x 4 x 3 = 192 blocks of one split
  // (own tokens fused), and 10 x 4 blocks split in 4 = 160 (partials and the merge kernel).
  auto rng = xgr::test::make_rng(505);  // the seed of the recorded H100 run
  run_scenario<xgr::bfloat16, xgr::kv::PageMajor>({1, 4, 128, 4, 64, 3, {300, 129, 65}, {512, 512, 512}, 1}, rng, 1e-2);
  run_scenario<xgr::bfloat16, xgr::kv::PageMajor>({1, 4, 128, 4, 64, 2, {1024}, {320}, 8}, rng, 1e-2);
  report_worst("bf16 grids of more blocks than multiprocessors");
}

TEST_CASE("a custom softmax scale, positive or negative, reaches every kernel") {
  auto rng = xgr::test::make_rng(505);
  for (const float scale : {0.02f, 0.3f, -0.05f}) {
    Scenario s{1, 2, 128, 4, 64, 3, {190, 64}, {24, 40}, 1, scale};
    run_scenario<xgr::bfloat16, xgr::kv::PageMajor>(s, rng, 1e-2);  // one split: own tokens in the prefix kernel
    s.max_splits = 4;
    run_scenario<xgr::bfloat16, xgr::kv::PageMajor>(s, rng, 1e-2);  // split partials and the merge kernel
    s.head_dim = 64;
    run_scenario<xgr::half, xgr::kv::LayerMajor>(s, rng, 3e-3);
    run_scenario<float, xgr::kv::PageMajor>(s, rng, 1e-5);
  }
  report_worst("custom softmax scales");
}

TEST_CASE("decode rejects a workspace sized for a smaller batch") {
  const Scenario s{1, 1, 64, 1, 64, 1, {10}, {8}, 1};
  Pools<xgr::bfloat16, xgr::kv::PageMajor> pools(s);
  const xgr::attention::DecodeLimits small{4, 1, 64, 1};
  xgr::DeviceWorkspace workspace(xgr::attention::decode_workspace_bytes(small));
  xgr::DeviceBuffer<xgr::bfloat16> q(8 * 64), out(8 * 64);
  CHECK_THROWS_AS(xgr::attention::decode(xgr::exec::cuda{}, pools.device, pools.device_batch, 0, 0, xgr::attention::Options{1},
                                         std::span<const xgr::bfloat16>(q.span()), out.span(), workspace, small),
                  xgr::Error);
  const xgr::attention::DecodeLimits fits{8, 1, 64, 1};
  xgr::DeviceWorkspace tiny(16);
  CHECK_THROWS_AS(xgr::attention::decode(xgr::exec::cuda{}, pools.device, pools.device_batch, 0, 0, xgr::attention::Options{1},
                                         std::span<const xgr::bfloat16>(q.span()), out.span(), tiny, fits),
                  xgr::Error);
  CHECK_THROWS_AS(xgr::attention::decode(xgr::exec::cuda{}, pools.device, pools.device_batch, 0, 0, xgr::attention::Options{0},
                                         std::span<const xgr::bfloat16>(q.span()), out.span(), workspace, fits),
                  xgr::Error);
}
