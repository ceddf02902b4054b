#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "support/random.hpp"
#include "support/topk_inputs.hpp"
#include "xgr/topk/cuda.cuh"

namespace {

// The problem's arrays copied to the device, and a problem/limits pair pointing at them.
template <class T>
struct DeviceTopKInput {
  xgr::DeviceBuffer<T> scores;
  xgr::DeviceBuffer<std::uint32_t> group_row_offsets, bitset_words, row_ptr, columns;
  xgr::DeviceBuffer<float> row_offsets, row_bounds;
  xgr::TopKProblem<T> problem;

  explicit DeviceTopKInput(const xgr::test::TopKInput<T>& host) {
    const xgr::TopKProblem<T> h = host.problem();
    scores = xgr::to_device<T>(host.scores);
    group_row_offsets = xgr::to_device<std::uint32_t>(host.group_row_offsets);
    bitset_words = xgr::to_device<std::uint32_t>(host.bitset_words);
    row_ptr = xgr::to_device<std::uint32_t>(host.row_ptr);
    columns = xgr::to_device<std::uint32_t>(host.columns);
    row_offsets = xgr::to_device<float>(host.row_offsets);
    row_bounds = xgr::to_device<float>(host.row_bounds);
    problem = h;
    problem.scores.data = scores.data();
    problem.group_row_offsets = {group_row_offsets.data(), h.group_row_offsets.size()};
    problem.row_offsets = {row_offsets.data(), h.row_offsets.size()};
    problem.row_score_bounds = {row_bounds.data(), h.row_score_bounds.size()};
    problem.mask.bits.data = bitset_words.data();
    problem.mask.row_ptr = {row_ptr.data(), h.mask.row_ptr.size()};
    problem.mask.columns = {columns.data(), h.mask.columns.size()};
  }
};

struct DeviceOutput {
  xgr::DeviceBuffer<float> values;
  xgr::DeviceBuffer<std::uint32_t> indices, counts;
  std::size_t groups, k;
  DeviceOutput(std::size_t groups_, std::size_t k_) : values(groups_ * k_), indices(groups_ * k_), counts(groups_), groups(groups_), k(k_) {}
  // Poisoned so that an unwritten slot can never pass as a result. On the selection's stream: a plain
  // cudaMemcpy runs on the default stream, which a non-blocking stream does not wait for.
  void poison(cudaStream_t stream) {
    const xgr::test::TopKOutput poisoned(groups, k);
    XGR_CUDA_CHECK(cudaMemcpyAsync(values.data(), poisoned.values.data(), values.bytes(), cudaMemcpyHostToDevice, stream));
    XGR_CUDA_CHECK(cudaMemcpyAsync(indices.data(), poisoned.indices.data(), indices.bytes(), cudaMemcpyHostToDevice, stream));
    XGR_CUDA_CHECK(cudaMemcpyAsync(counts.data(), poisoned.counts.data(), counts.bytes(), cudaMemcpyHostToDevice, stream));
  }
  xgr::TopKResult result() {
    return {xgr::matrix_view(values.data(), groups, k), xgr::matrix_view(indices.data(), groups, k), counts.span()};
  }
  xgr::test::TopKOutput to_host() const {
    xgr::test::TopKOutput out(groups, k);
    XGR_CUDA_CHECK(cudaMemcpy(out.values.data(), values.data(), values.bytes(), cudaMemcpyDeviceToHost));
    XGR_CUDA_CHECK(cudaMemcpy(out.indices.data(), indices.data(), indices.bytes(), cudaMemcpyDeviceToHost));
    XGR_CUDA_CHECK(cudaMemcpy(out.counts.data(), counts.data(), counts.bytes(), cudaMemcpyDeviceToHost));
    return out;
  }
};

template <class Policy, class T>
xgr::test::TopKOutput run_cuda(const xgr::test::TopKInput<T>& host, xgr::DeviceWorkspace& workspace, cudaStream_t stream,
                               const xgr::topk::cuda_detail::CallOptions& options = {}) {
  DeviceTopKInput<T> device(host);
  DeviceOutput output(host.problem().groups(), host.spec.k);
  output.poison(stream);
  const xgr::TopKLimits limits = host.limits();
  workspace.reserve(xgr::masked_topk_workspace_bytes<Policy>(xgr::exec::cuda{}, limits));
  xgr::topk::cuda_detail::enqueue_masked_topk<Policy>(xgr::exec::cuda{stream}, device.problem, output.result(), limits, workspace, options);
  XGR_CUDA_CHECK(cudaStreamSynchronize(stream));
  return output.to_host();
}

template <class Policy, class T>
void check_policy_against_oracle(const char* policy_name, std::uint64_t salt, std::size_t random_cases) {
  auto rng = xgr::test::make_rng(salt);
  const auto cases = xgr::test::standard_topk_cases(rng, random_cases);
  xgr::Stream stream;
  xgr::DeviceWorkspace workspace;  // grows to the largest case, then is reused by all later ones
  for (const auto& spec : cases) {
    const auto input = xgr::test::make_topk_input<T>(spec, rng);
    const auto expected = xgr::test::brute_force_topk(input);
    const auto actual = run_cuda<Policy>(input, workspace, stream.get());
    std::string why;
    if (!xgr::test::same_results(actual, expected, &why)) {
      FAIL_CHECK(policy_name << " " << xgr::dtype_traits<T>::name << " " << spec.describe() << ": " << why);
    }
  }
}

// Two groups of 50 rows x 4001 columns of random scores, with the sampled runs the kernels use for
// them: the fallback cases below plant scores in those runs so that the sample misleads the bound.
struct SampledRunsCase {
  xgr::test::TopKCase spec;
  xgr::test::TopKInput<float> input;
  std::size_t positions;  // per group
  std::size_t runs;       // sampled runs per group

  SampledRunsCase(std::uint64_t seed, std::size_t k, bool row_offsets) {
    namespace detail = xgr::topk::cuda_detail;
    auto rng = xgr::test::make_rng(seed);
    spec.groups = 2;
    spec.rows_per_group = 50;
    spec.vocab = 4001;
    spec.k = k;
    spec.row_offsets = row_offsets;
    input = xgr::test::make_topk_input<float>(spec, rng);
    positions = spec.rows_per_group * spec.vocab;
    runs = detail::sampled_runs(positions, detail::sample_slots(positions, spec.k), spec.k);
  }
  // The score at a group's position (row-major over the group's rows).
  float& score(std::size_t group, std::size_t position) {
    const std::size_t row = group * spec.rows_per_group + position / spec.vocab;
    return input.scores[row * spec.vocab + position % spec.vocab];
  }
  // EarlyExit on the GPU must still return the exact top k, with the sample and the bound in one
  // kernel or in two.
  void check_exact() {
    xgr::Stream stream;
    xgr::DeviceWorkspace workspace;
    const auto expected = xgr::test::brute_force_topk(input);
    for (const bool fused : {true, false}) {
      const auto actual = run_cuda<xgr::topk::EarlyExit>(input, workspace, stream.get(), {.fuse_sample_bound = fused});
      std::string why;
      CHECK_MESSAGE(xgr::test::same_results(actual, expected, &why), (fused ? "one kernel: " : "two kernels: ") << why);
    }
  }
};

}  // namespace

TEST_CASE("CUDA EarlyExit equals the brute-force oracle on random problems (f32, f16, bf16)") {
  check_policy_against_oracle<xgr::topk::EarlyExit, float>("EarlyExit", 201, 200);
  check_policy_against_oracle<xgr::topk::EarlyExit, xgr::half>("EarlyExit", 202, 60);
  check_policy_against_oracle<xgr::topk::EarlyExit, xgr::bfloat16>("EarlyExit", 203, 60);
}

TEST_CASE("the sample and the bound in one cluster kernel or in two kernels: the same exact results") {
  // Groups sampled by at most max_sample_cluster_blocks blocks take sample_bound_kernel; larger
  // ones, and calls that turn it off, take sample_kernel and bound_kernel.
  namespace detail = xgr::topk::cuda_detail;
  auto rng = xgr::test::make_rng(207);
  xgr::Stream stream;
  xgr::DeviceWorkspace workspace;
  const auto check = [&](const xgr::test::TopKInput<float>& input, const detail::CallOptions& options, const char* path) {
    const auto actual = run_cuda<xgr::topk::EarlyExit>(input, workspace, stream.get(), options);
    std::string why;
    if (!xgr::test::same_results(actual, xgr::test::brute_force_topk(input), &why)) {
      FAIL_CHECK(path << " " << input.spec.describe() << ": " << why);
    }
  };
  for (const auto& spec : xgr::test::standard_topk_cases(rng, 60)) {
    const auto input = xgr::test::make_topk_input<float>(spec, rng);
    check(input, {.fuse_sample_bound = true}, "one kernel");
    check(input, {.fuse_sample_bound = false}, "two kernels");
  }
  // Groups of exactly the largest cluster's sample, and of more: 256 x 8,192 positions take 8
  // sample blocks, 288 x 8,192 take 9 (the two-kernel path whatever the option).
  for (const std::size_t rows : {std::size_t{256}, std::size_t{288}}) {
    xgr::test::TopKCase spec;
    spec.groups = 2;
    spec.rows_per_group = rows;
    spec.vocab = 8192;
    spec.k = 256;
    spec.row_offsets = true;
    const std::uint64_t blocks = detail::sample_slots(rows * spec.vocab, spec.k) / detail::sample_threads;
    REQUIRE(blocks == (rows == 256 ? detail::max_sample_cluster_blocks : detail::max_sample_cluster_blocks + 1));
    const auto input = xgr::test::make_topk_input<float>(spec, rng);
    check(input, {}, rows == 256 ? "one kernel (8 blocks)" : "two kernels (9 blocks)");
  }
}

TEST_CASE("CUDA baselines compute the same function as the default") {
  check_policy_against_oracle<xgr::topk::NoEarlyExit, float>("NoEarlyExit", 211, 60);
  check_policy_against_oracle<xgr::topk::FullSort, float>("FullSort", 212, 60);
  check_policy_against_oracle<xgr::topk::RowTopKThenMerge, float>("RowTopKThenMerge", 213, 60);
  check_policy_against_oracle<xgr::topk::FullSort, xgr::bfloat16>("FullSort", 214, 20);
}

TEST_CASE("CUDA and host implementations agree bit for bit") {
  auto rng = xgr::test::make_rng(221);
  xgr::Stream stream;
  xgr::DeviceWorkspace device_workspace;
  for (const auto& spec : xgr::test::standard_topk_cases(rng, 40)) {
    const auto input = xgr::test::make_topk_input<xgr::bfloat16>(spec, rng);
    xgr::test::TopKOutput host_output(input.problem().groups(), spec.k);
    xgr::HostWorkspace host_workspace(xgr::masked_topk_workspace_bytes(xgr::exec::host, input.limits()));
    xgr::masked_topk(xgr::exec::host, input.problem(), host_output.result(), input.limits(), host_workspace);
    const auto device_output = run_cuda<xgr::topk::EarlyExit>(input, device_workspace, stream.get());
    std::string why;
    CHECK_MESSAGE(xgr::test::same_results(device_output, host_output, &why), spec.describe() << ": " << why);
  }
}

TEST_CASE("score hints replace the sample: exact results whether the hints are true, loose, too high or missing") {
  // EarlyExit takes the k-th best of a group's row_score_hints as its bound. True hints (scores of
  // different candidates) give a bound k candidates reach; anything else must still give exact
  // results: a bound fewer than k candidates reach falls back to a selection over the input.
  auto rng = xgr::test::make_rng(255);
  xgr::Stream stream;
  xgr::DeviceWorkspace workspace;
  std::uniform_real_distribution<float> anywhere(-20.0f, 20.0f);
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::size_t case_index = 0;
  for (const auto& spec : xgr::test::standard_topk_cases(rng, 60)) {
    const auto input = xgr::test::make_topk_input<float>(spec, rng);
    const auto expected = xgr::test::brute_force_topk(input);
    const xgr::TopKProblem<float> host_problem = input.problem();
    const std::size_t groups = host_problem.groups();
    const std::size_t rows = input.rows;
    const std::size_t per_row = std::max<std::size_t>(1, std::min<std::size_t>(8, xgr::max_group_score_hints / spec.rows_per_group));
    // Each row's best selectable candidate scores, best first: true hints.
    std::vector<std::vector<float>> row_best(rows);
    for (std::size_t group = 0; group < groups; ++group) {
      const std::size_t first = spec.variable_groups ? input.group_row_offsets[group] : group * spec.rows_per_group;
      const std::size_t end = spec.variable_groups ? input.group_row_offsets[group + 1] : first + spec.rows_per_group;
      for (std::size_t row = first; row < end; ++row) {
        auto& best = row_best[row];
        for (std::size_t column = 0; column < spec.vocab; ++column) {
          const float score = input.scores[row * input.row_stride() + column] + (input.row_offsets.empty() ? 0.0f : input.row_offsets[row]);
          bool allowed = true;
          if (spec.mask == xgr::MaskKind::bitset) allowed = (input.bitset_words[row * input.words_per_row + column / 32] >> (column % 32)) & 1u;
          if (spec.mask == xgr::MaskKind::sparse) {
            allowed = std::find(input.columns.begin() + input.row_ptr[row], input.columns.begin() + input.row_ptr[row + 1], column) !=
                      input.columns.begin() + input.row_ptr[row + 1];
          }
          if (allowed && xgr::topk::is_selectable(score)) best.push_back(score);
        }
        std::sort(best.begin(), best.end(), std::greater<>());
      }
    }
    // With a sparse mask and row bounds, hints take the fused kernel by default, on clusters of
    // 1 to 8 blocks a group, with each entry's score gathered from its row or read beside its
    // column (as the beam step writes them); the beam step turns it off for wide levels of few
    // requests (the general path with the hints' bound).
    xgr::DeviceBuffer<float> device_column_scores;
    if (spec.mask == xgr::MaskKind::sparse) {
      std::vector<float> column_scores(input.columns.size());
      for (std::size_t row = 0; row < rows; ++row) {
        for (std::uint32_t entry = input.row_ptr[row]; entry < input.row_ptr[row + 1]; ++entry) {
          column_scores[entry] = input.scores[row * input.row_stride() + input.columns[entry]] +
                                 (input.row_offsets.empty() ? 0.0f : input.row_offsets[row]);  // as the kernel forms it
        }
      }
      device_column_scores = xgr::to_device<float>(column_scores);
    }
    for (int kind = 0; kind < 5; ++kind) {
      std::vector<float> hints(rows * per_row, -inf);
      for (std::size_t row = 0; row < rows; ++row) {
        for (std::size_t h = 0; h < per_row; ++h) {
          const bool has = h < row_best[row].size();
          switch (kind) {
            case 0: hints[row * per_row + h] = has ? row_best[row][h] : -inf; break;          // true: the row's best scores
            case 1: hints[row * per_row + h] = has ? row_best[row][h] - 3.0f : -inf; break;   // loose
            case 2: hints[row * per_row + h] = has ? row_best[row][0] + 1.0f : inf; break;    // too high: no candidate reaches
            case 3: hints[row * per_row + h] = h % 2 == 0 ? nan : -inf; break;                // none
            default: hints[row * per_row + h] = anywhere(rng); break;                         // anything
          }
        }
      }
      DeviceTopKInput<float> device(input);
      const xgr::DeviceBuffer<float> device_hints = xgr::to_device<float>(hints);
      device.problem.row_score_hints = xgr::MatrixView<const float>{device_hints.data(), rows, per_row, per_row};
      const xgr::TopKLimits limits = input.limits();
      workspace.reserve(xgr::masked_topk_workspace_bytes<xgr::topk::EarlyExit>(xgr::exec::cuda{}, limits));
      struct Path {
        xgr::topk::cuda_detail::CallOptions options;
        const char* name;
      };
      const Path paths[] = {{{.fuse_hinted = true}, "fused"},
                            {{.fuse_hinted = true, .hinted_blocks_per_group = 1}, "fused, one block a group"},
                            {{.fuse_hinted = true,
                              .column_scores = device_column_scores.data(),
                              .hinted_blocks_per_group = xgr::topk::cuda_detail::max_hinted_cluster_blocks},
                             "fused, 8 blocks a group, scores beside the columns"},
                            {{.fuse_hinted = false}, "general"}};
      for (const Path& path : paths) {
        DeviceOutput output(groups, spec.k);
        output.poison(stream.get());
        xgr::topk::cuda_detail::enqueue_masked_topk<xgr::topk::EarlyExit>(xgr::exec::cuda{stream.get()}, device.problem, output.result(),
                                                                          limits, workspace, path.options);
        XGR_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
        std::string why;
        if (!xgr::test::same_results(output.to_host(), expected, &why)) {
          FAIL_CHECK("case " << case_index << " hint kind " << kind << ", " << path.name << ", " << spec.describe() << ": " << why);
        }
      }
    }
    ++case_index;
  }
}

TEST_CASE("hints with a sparse mask and row bounds: survivors in shared memory, spilled to the workspace, and past both") {
  // With hints, a sparse mask and row score bounds one kernel (a cluster per group) bounds, gathers
  // and selects. Hints all equal to the group's t-th best score put the bound there, so that t
  // candidates survive (a few more where scores tie): fewer than k (the hints overreach), a
  // shared-memory buffer's worth or less, more (spilled to the workspace's survivor buffer), and more
  // than both hold (a selection over the input). Every result must be exact. The second shape's
  // groups have more rows than a block takes at once (the gather walks them in chunks).
  namespace detail = xgr::topk::cuda_detail;
  auto rng = xgr::test::make_rng(259);
  xgr::Stream stream;
  xgr::DeviceWorkspace workspace;
  const float inf = std::numeric_limits<float>::infinity();
  for (const auto& [rows_per_group, vocab] : {std::pair<std::size_t, std::size_t>{48, 3000}, {1100, 240}}) {
    xgr::test::TopKCase spec;
    spec.groups = 2;
    spec.rows_per_group = rows_per_group;
    spec.vocab = vocab;
    spec.k = 40;
    spec.mask = xgr::MaskKind::sparse;
    spec.density = 0.9;
    spec.row_offsets = true;
    spec.row_bounds = true;
    const auto input = xgr::test::make_topk_input<float>(spec, rng);
    const auto expected = xgr::test::brute_force_topk(input);
    const std::size_t staged = detail::hinted_staged_capacity;
    const std::size_t spill = detail::survivor_capacity(input.limits());
    const std::size_t per_row = std::min<std::size_t>(8, xgr::max_group_score_hints / rows_per_group);
    REQUIRE(rows_per_group * per_row >= spec.k);

    // Each group's selectable candidate scores, best first.
    std::vector<std::vector<float>> group_scores(spec.groups);
    for (std::size_t row = 0; row < input.rows; ++row) {
      for (std::uint32_t entry = input.row_ptr[row]; entry < input.row_ptr[row + 1]; ++entry) {
        const float score = input.scores[row * input.row_stride() + input.columns[entry]] + input.row_offsets[row];
        if (xgr::topk::is_selectable(score)) group_scores[row / rows_per_group].push_back(score);
      }
    }
    for (auto& scores : group_scores) {
      std::sort(scores.begin(), scores.end(), std::greater<>());
      REQUIRE(scores.size() > staged + spill + 1000);
    }

    workspace.reserve(xgr::masked_topk_workspace_bytes(xgr::exec::cuda{}, input.limits()));
    for (const std::size_t survivors : {spec.k / 2, spec.k, spec.k + 1, staged / 2, staged, staged + 1, staged + spill / 2,
                                        staged + spill, staged + spill + 1000}) {
      std::vector<float> hints(input.rows * per_row, -inf);
      for (std::size_t row = 0; row < input.rows; ++row) {
        const auto& scores = group_scores[row / rows_per_group];
        for (std::size_t h = 0; h < per_row; ++h) hints[row * per_row + h] = scores[survivors - 1];
      }
      DeviceTopKInput<float> device(input);
      const xgr::DeviceBuffer<float> device_hints = xgr::to_device<float>(hints);
      device.problem.row_score_hints = xgr::MatrixView<const float>{device_hints.data(), input.rows, per_row, per_row};
      for (const unsigned blocks : {detail::hinted_cluster_blocks, detail::max_hinted_cluster_blocks}) {
        DeviceOutput output(spec.groups, spec.k);
        output.poison(stream.get());
        detail::enqueue_masked_topk<xgr::topk::EarlyExit>(xgr::exec::cuda{stream.get()}, device.problem, output.result(), input.limits(),
                                                          workspace, {.hinted_blocks_per_group = blocks});
        XGR_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
        std::string why;
        CHECK_MESSAGE(xgr::test::same_results(output.to_host(), expected, &why),
                      spec.describe() << ", " << survivors << " survivors, " << blocks << " blocks a group: " << why);
      }
      if (survivors == spec.k) {  // more blocks than a portable cluster holds: refused before any launch
        DeviceOutput output(spec.groups, spec.k);
        CHECK_THROWS_AS(detail::enqueue_masked_topk<xgr::topk::EarlyExit>(xgr::exec::cuda{stream.get()}, device.problem, output.result(),
                                                                          input.limits(), workspace,
                                                                          {.hinted_blocks_per_group = detail::max_hinted_cluster_blocks + 1}),
                        xgr::Error);
      }
    }
  }
}

TEST_CASE("tied best scores crowding one bin of the select: ranked within the bin or selected as before") {
  // The select ranks staged survivors by equal-width bins of their key range and compares keys only
  // within a bin (write_binned_top_k); when a bin that can hold a winner holds more than
  // max_binned_crowd keys it selects as before. Tied best scores at consecutive columns crowd one bin
  // (their keys differ in the index bits only), a few at a time or far past the limit, as the best
  // k or around the k-th. Each case runs through the sampled path (streamed filter, select kernel)
  // and through the one kernel of hints, a sparse mask and row bounds; every result must be exact.
  namespace detail = xgr::topk::cuda_detail;
  auto rng = xgr::test::make_rng(263);
  xgr::Stream stream;
  xgr::DeviceWorkspace workspace;
  constexpr std::size_t first_tied_column = 1000;
  for (const std::size_t crowd : {std::size_t{2}, std::size_t{100}, std::size_t{detail::max_binned_crowd},
                                  std::size_t{detail::max_binned_crowd} + 1, std::size_t{600}}) {
    for (const std::size_t k : {1, 64, 300}) {
      for (const bool hinted : {false, true}) {
        xgr::test::TopKCase spec;
        spec.groups = 2;
        spec.rows_per_group = 64;
        spec.vocab = 8192;
        spec.k = k;
        if (hinted) {
          spec.mask = xgr::MaskKind::sparse;
          spec.density = 1.0;
          spec.row_bounds = true;
        }
        auto input = xgr::test::make_topk_input<float>(spec, rng);
        const std::size_t tied_row_in_group = 5;
        for (std::size_t group = 0; group < spec.groups; ++group) {
          const std::size_t first = group * spec.rows_per_group;
          float best = -std::numeric_limits<float>::infinity();
          for (std::size_t i = first * spec.vocab; i < (first + spec.rows_per_group) * spec.vocab; ++i) best = std::max(best, input.scores[i]);
          // The best `crowd` scores when k <= crowd (the k-th among them), else just below the best
          // (all winners, the k-th elsewhere).
          const float tied = k <= crowd ? best + 1.0f : best - 0.25f;
          const std::size_t row = first + tied_row_in_group;
          for (std::size_t c = first_tied_column; c < first_tied_column + crowd; ++c) input.scores[row * spec.vocab + c] = tied;
          if (hinted) input.row_bounds[row] = std::max(input.row_bounds[row], tied);
        }
        const auto expected = xgr::test::brute_force_topk(input);
        DeviceTopKInput<float> device(input);
        xgr::DeviceBuffer<float> device_hints;
        if (hinted) {
          // Each row's 8 best scores: true hints (scores of different candidates).
          constexpr std::size_t per_row = 8;
          std::vector<float> hints(input.rows * per_row);
          for (std::size_t row = 0; row < input.rows; ++row) {
            std::vector<float> scores(input.scores.begin() + static_cast<std::ptrdiff_t>(row * spec.vocab),
                                      input.scores.begin() + static_cast<std::ptrdiff_t>((row + 1) * spec.vocab));
            std::partial_sort(scores.begin(), scores.begin() + per_row, scores.end(), std::greater<>());
            std::copy_n(scores.begin(), per_row, hints.begin() + static_cast<std::ptrdiff_t>(row * per_row));
          }
          device_hints = xgr::to_device<float>(hints);
          device.problem.row_score_hints = xgr::MatrixView<const float>{device_hints.data(), input.rows, per_row, per_row};
        }
        DeviceOutput output(spec.groups, spec.k);
        output.poison(stream.get());
        workspace.reserve(xgr::masked_topk_workspace_bytes(xgr::exec::cuda{}, input.limits()));
        xgr::masked_topk<xgr::topk::EarlyExit>(xgr::exec::cuda{stream.get()}, device.problem, output.result(), input.limits(), workspace);
        XGR_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
        std::string why;
        CHECK_MESSAGE(xgr::test::same_results(output.to_host(), expected, &why),
                      spec.describe() << ", " << crowd << " tied" << (hinted ? ", hinted" : "") << ": " << why);
      }
    }
  }
}

TEST_CASE("survivor overflow falls back to an exact selection over the input") {
  // The sampled runs hold the lowest scores of the group, so the sample's bound lets almost every
  // candidate through and the survivor buffer overflows; the result must still be exact.
  namespace detail = xgr::topk::cuda_detail;
  SampledRunsCase c(231, 8, false);
  REQUIRE(c.runs * detail::sample_run < c.positions);
  for (std::size_t group = 0; group < c.spec.groups; ++group) {
    for (std::size_t run = 0; run < c.runs; ++run) {
      const std::size_t start = detail::sample_run_start(run, c.positions, c.runs);
      for (std::size_t p = start; p < start + detail::sample_run; ++p) c.score(group, p) = -1000.0f - static_cast<float>(p % 7);
    }
  }
  REQUIRE(c.positions - c.runs * detail::sample_run > detail::survivor_capacity(c.input.limits()));
  c.check_exact();
}

TEST_CASE("a sample holding more than its share of the best falls back to an exact selection") {
  // Thirty sampled runs each hold one outstanding score, and nothing else comes near. The bound is
  // taken at the sample's r-th best run (r < 30 < k), which only r candidates reach: fewer than k,
  // so the select must notice and select over the input.
  namespace detail = xgr::topk::cuda_detail;
  SampledRunsCase c(237, 64, true);
  constexpr std::size_t outstanding = 30;
  REQUIRE(detail::bound_rank(c.spec.k, c.runs, c.positions) < outstanding);
  for (std::size_t group = 0; group < c.spec.groups; ++group) {
    for (std::size_t i = 0; i < outstanding; ++i) {
      c.score(group, detail::sample_run_start(i * c.runs / outstanding, c.positions, c.runs) + 5) = 1000.0f + static_cast<float>(i);
    }
  }
  c.check_exact();
}

TEST_CASE("a mask allowing only sampled positions: a bound above 1 that fewer than k reach, selected over the input") {
  // The mask allows one position in each of k - 1 sampled runs and nothing else. The sample finds
  // more than bound_rank runs holding a candidate, so the bound is one of them, yet the group has
  // only k - 1 candidates: fewer than k survive, and the select must take them all from the input.
  namespace detail = xgr::topk::cuda_detail;
  SampledRunsCase c(239, 64, true);
  const std::size_t allowed = c.spec.k - 1;
  REQUIRE(detail::bound_rank(c.spec.k, c.runs, c.positions) < allowed);
  REQUIRE(c.runs >= allowed);
  auto& input = c.input;
  input.spec.mask = xgr::MaskKind::bitset;
  input.words_per_row = (input.spec.vocab + 31) / 32;
  input.bitset_words.assign(input.rows * input.words_per_row, 0u);
  for (std::size_t group = 0; group < c.spec.groups; ++group) {
    for (std::size_t i = 0; i < allowed; ++i) {
      const std::size_t position = detail::sample_run_start(i * c.runs / allowed, c.positions, c.runs) + 3;
      const std::size_t row = group * c.spec.rows_per_group + position / c.spec.vocab;
      const std::size_t column = position % c.spec.vocab;
      input.bitset_words[row * input.words_per_row + column / 32] |= 1u << (column % 32);
    }
  }
  c.check_exact();
}

TEST_CASE("the sparse filter, a block or a warp a row: the same exact results, with and without hints") {
  // The general path filters a sparse mask's rows with a block each or a warp each (8 rows a
  // block), sparse_batch entries a thread at a time. Both layouts on the standard sparse cases and
  // on rows many enough for the beam step to pick warps: short and long rows,
  // empty rows, rows of other lengths than a batch, row bounds that skip rows, variable groups,
  // offsets, ties and special values, and survivors past the workspace's buffer (loose hints).
  namespace detail = xgr::topk::cuda_detail;
  auto rng = xgr::test::make_rng(263);
  std::vector<xgr::test::TopKCase> cases;
  for (const auto& spec : xgr::test::standard_topk_cases(rng, 80)) {
    if (spec.mask == xgr::MaskKind::sparse) cases.push_back(spec);
  }
  const std::size_t many_rows = 8 * static_cast<std::size_t>(xgr::detail::multiprocessor_count()) + 5;
  const auto sparse_case = [](std::size_t groups, std::size_t rows_per_group, std::size_t vocab, double density, std::size_t k) {
    xgr::test::TopKCase c;
    c.groups = groups;
    c.rows_per_group = rows_per_group;
    c.vocab = vocab;
    c.k = k;
    c.mask = xgr::MaskKind::sparse;
    c.density = density;
    return c;
  };
  {
    auto c = sparse_case(3, (many_rows + 2) / 3, 8192, 0.01, 256);  // about 82 entries a row
    cases.push_back(c);
    c.row_offsets = true;
    c.row_bounds = true;
    cases.push_back(c);
    c = sparse_case(4, many_rows / 2, 1100, 0.55, 512);  // about 600 entries a row: several batches
    c.row_offsets = true;
    c.row_bounds = true;
    c.variable_groups = true;
    cases.push_back(c);
    c = sparse_case(2, many_rows / 2, 700, 0.5, 64);
    c.distribution = xgr::test::ScoreDistribution::specials;
    c.row_offsets = true;
    cases.push_back(c);
    c = sparse_case(2, many_rows / 2, 300, 0.3, 100);
    c.distribution = xgr::test::ScoreDistribution::few_distinct;
    cases.push_back(c);
    c = sparse_case(1, many_rows, 64, 0.03, 1024);  // most rows empty
    cases.push_back(c);
    c = sparse_case(2, 20, 6000, 0.9, 1000);  // few long rows
    c.row_bounds = true;
    cases.push_back(c);
  }
  xgr::Stream stream;
  xgr::DeviceWorkspace workspace;
  const detail::SparseRows layouts[] = {detail::SparseRows::block, detail::SparseRows::warp};
  const char* layout_names[] = {"a block a row", "a warp a row"};
  std::size_t case_index = 0;
  for (const auto& spec : cases) {
    const auto input = xgr::test::make_topk_input<float>(spec, rng);
    const auto expected = xgr::test::brute_force_topk(input);
    // Hints that every row's best candidate reaches (its score bound, or a score just below the
    // row's best), or far below it: a tight bound and a loose one through the hints' bound kernel.
    std::vector<std::vector<float>> hint_sets(2, std::vector<float>(input.rows, -std::numeric_limits<float>::infinity()));
    for (std::size_t row = 0; row < input.rows; ++row) {
      float best = -std::numeric_limits<float>::infinity();
      for (std::uint32_t entry = input.row_ptr[row]; entry < input.row_ptr[row + 1]; ++entry) {
        const float score =
            input.scores[row * input.row_stride() + input.columns[entry]] + (input.row_offsets.empty() ? 0.0f : input.row_offsets[row]);
        if (xgr::topk::is_selectable(score) && score > best) best = score;
      }
      hint_sets[0][row] = best;
      hint_sets[1][row] = best - 50.0f;
    }
    for (int hints = -1; hints < 2; ++hints) {
      DeviceTopKInput<float> device(input);
      xgr::DeviceBuffer<float> device_hints;
      if (hints >= 0) {
        device_hints = xgr::to_device<float>(hint_sets[static_cast<std::size_t>(hints)]);
        device.problem.row_score_hints = xgr::MatrixView<const float>{device_hints.data(), input.rows, 1, 1};
      }
      const xgr::TopKLimits limits = input.limits();
      workspace.reserve(xgr::masked_topk_workspace_bytes<xgr::topk::EarlyExit>(xgr::exec::cuda{}, limits));
      for (int layout = 0; layout < 2; ++layout) {
        DeviceOutput output(input.problem().groups(), spec.k);
        output.poison(stream.get());
        xgr::topk::cuda_detail::enqueue_masked_topk<xgr::topk::EarlyExit>(xgr::exec::cuda{stream.get()}, device.problem, output.result(),
                                                                          limits, workspace,
                                                                          {.fuse_hinted = false, .sparse_rows = layouts[layout]});
        XGR_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
        std::string why;
        if (!xgr::test::same_results(output.to_host(), expected, &why)) {
          FAIL_CHECK("case " << case_index << " (" << (hints < 0 ? "sampled" : hints == 0 ? "tight hints" : "loose hints") << ", "
                             << layout_names[layout] << ") " << spec.describe() << ": " << why);
        }
      }
    }
    ++case_index;
  }
  CHECK(case_index >= 20);
  // What the beam step picks: warps where rows are short or many, blocks where a few rows are long.
  CHECK(detail::sparse_warp_rows_pay(16384, 82, 132));
  CHECK(detail::sparse_warp_rows_pay(16384, 600, 132));
  CHECK_FALSE(detail::sparse_warp_rows_pay(32, 1024, 132));
  CHECK_FALSE(detail::sparse_warp_rows_pay(2048, 600, 132));
}

TEST_CASE("the streamed filter: more tiles than its first ring, staged and unstaged masks, rows of no group") {
  // Calls of more tiles than the streamed filter's blocks hold in their first rings, so that stages
  // are refilled and blocks span groups. A bitset is bulk-copied with its tile when the vocabulary
  // is a multiple of 128 columns (16,384), and read from global memory otherwise (16,388).
  namespace detail = xgr::topk::cuda_detail;
  const int multiprocessors = xgr::detail::multiprocessor_count();
  const std::size_t first_rings = std::size_t{detail::stream_stages<float>} * detail::stream_blocks_per_sm * static_cast<std::size_t>(multiprocessors);
  auto rng = xgr::test::make_rng(245);
  xgr::Stream stream;
  xgr::DeviceWorkspace workspace;
  const auto check = [&](const xgr::test::TopKInput<float>& input) {
    const std::size_t tiles = input.rows * ((input.spec.vocab + detail::filter_tile - 1) / detail::filter_tile);
    REQUIRE_MESSAGE(tiles > first_rings, tiles << " tiles fit the first rings (" << first_rings << " tiles)");
    const auto expected = xgr::test::brute_force_topk(input);
    for (const bool flags : {true, false}) {
      const auto actual = run_cuda<xgr::topk::EarlyExit>(input, workspace, stream.get(), {.group_flags = flags});
      std::string why;
      CHECK_MESSAGE(xgr::test::same_results(actual, expected, &why),
                    input.spec.describe() << (flags ? ", group flags: " : ", grid waits: ") << why);
    }
  };
  const std::size_t rows = first_rings / 2 + 64;  // two tiles a row: rows x 2 tiles > first_rings
  for (const std::size_t vocab : {std::size_t{16384}, std::size_t{16388}}) {
    xgr::test::TopKCase spec;
    spec.groups = 2;
    spec.rows_per_group = rows / 2;
    spec.vocab = vocab;
    spec.k = 256;
    check(xgr::test::make_topk_input<float>(spec, rng));
    spec.mask = xgr::MaskKind::bitset;
    spec.density = 0.05;
    spec.row_offsets = true;
    check(xgr::test::make_topk_input<float>(spec, rng));
  }
  // Rows before the first group and after the last belong to no group: their tiles are skipped.
  // Group sizes are random: inputs are drawn until they span more tiles than the first rings.
  xgr::test::TopKCase spec;
  spec.groups = 5;
  spec.rows_per_group = rows / 2;
  spec.vocab = 16384;
  spec.k = 100;
  spec.variable_groups = true;
  spec.mask = xgr::MaskKind::bitset;
  spec.density = 0.5;
  auto input = xgr::test::make_topk_input<float>(spec, rng);
  const std::size_t tiles_per_row = (spec.vocab + detail::filter_tile - 1) / detail::filter_tile;
  for (int draw = 0; draw < 100 && input.rows * tiles_per_row <= first_rings; ++draw) input = xgr::test::make_topk_input<float>(spec, rng);
  input.group_row_offsets[0] = std::min<std::uint32_t>(input.group_row_offsets[1], 37);
  input.group_row_offsets.pop_back();
  REQUIRE(input.group_row_offsets.back() < input.rows);
  check(input);
}

TEST_CASE("the streamed filter under looser bounds: warp buffers flushed, tiles past a warp's buffer, groups past its runs") {
  // Hints all equal to a group's t-th best score put its bound there, so that about t candidates
  // survive (a few more where scores tie). Each warp of the streamed filter takes 1,024 elements of
  // a tile and buffers up to 128 survivors in up to 16 runs of one group: bounds at t from k to the
  // whole group make warps flush their buffer mid-block when it fills, send a tile's survivors past
  // it when they outnumber it, and, with groups of one row (a block's tiles span over 20 groups), run
  // out of runs before keys. Survivors past the survivor buffer (t above its capacity) fall back to
  // an exact selection over the input. Every result must be exact.
  namespace detail = xgr::topk::cuda_detail;
  auto rng = xgr::test::make_rng(263);
  xgr::Stream stream;
  xgr::DeviceWorkspace workspace;
  const auto check = [&](const xgr::test::TopKInput<float>& input, const std::vector<std::size_t>& survivor_counts) {
    const auto expected = xgr::test::brute_force_topk(input);
    const std::size_t rows_per_group = input.spec.rows_per_group;
    const std::size_t groups = input.rows / rows_per_group;
    const std::size_t per_row = std::min<std::size_t>(8, xgr::max_group_score_hints / rows_per_group);
    // Each group's selectable candidate scores, best first.
    std::vector<std::vector<float>> group_scores(groups);
    for (std::size_t row = 0; row < input.rows; ++row) {
      for (std::size_t column = 0; column < input.spec.vocab; ++column) {
        if (input.spec.mask == xgr::MaskKind::bitset && ((input.bitset_words[row * input.words_per_row + column / 32] >> (column % 32)) & 1u) == 0) {
          continue;
        }
        const float score = input.scores[row * input.row_stride() + column] + (input.row_offsets.empty() ? 0.0f : input.row_offsets[row]);
        if (xgr::topk::is_selectable(score)) group_scores[row / rows_per_group].push_back(score);
      }
    }
    for (auto& scores : group_scores) std::sort(scores.begin(), scores.end(), std::greater<>());
    workspace.reserve(xgr::masked_topk_workspace_bytes(xgr::exec::cuda{}, input.limits()));
    DeviceTopKInput<float> device(input);
    for (const std::size_t survivors : survivor_counts) {
      std::vector<float> hints(input.rows * per_row);
      for (std::size_t row = 0; row < input.rows; ++row) {
        const auto& scores = group_scores[row / rows_per_group];
        REQUIRE(scores.size() >= input.spec.k);
        for (std::size_t h = 0; h < per_row; ++h) hints[row * per_row + h] = scores[std::min(survivors, scores.size()) - 1];
      }
      const xgr::DeviceBuffer<float> device_hints = xgr::to_device<float>(hints);
      device.problem.row_score_hints = xgr::MatrixView<const float>{device_hints.data(), input.rows, per_row, per_row};
      DeviceOutput output(groups, input.spec.k);
      output.poison(stream.get());
      xgr::masked_topk<xgr::topk::EarlyExit>(xgr::exec::cuda{stream.get()}, device.problem, output.result(), input.limits(), workspace);
      XGR_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
      std::string why;
      CHECK_MESSAGE(xgr::test::same_results(output.to_host(), expected, &why), input.spec.describe() << ", about " << survivors
                                                                                                     << " survivors per group: " << why);
    }
  };
  // Two groups of 256 rows x 16,384: survivors within the survivor buffer and past it.
  for (const xgr::MaskKind mask : {xgr::MaskKind::none, xgr::MaskKind::bitset}) {
    xgr::test::TopKCase spec;
    spec.groups = 2;
    spec.rows_per_group = 256;
    spec.vocab = 16384;
    spec.k = 1024;
    spec.mask = mask;
    spec.density = 0.5;
    spec.row_offsets = true;
    const auto input = xgr::test::make_topk_input<float>(spec, rng);
    const std::size_t capacity = detail::survivor_capacity(input.limits());
    const std::size_t group_size = spec.rows_per_group * spec.vocab;
    REQUIRE(capacity < group_size / 4);
    check(input, {spec.k, 15 * std::size_t{1024}, capacity / 2, capacity, capacity + 1, group_size / 4, group_size});
  }
  // 6,000 groups of one row x 8,192 (a tile): about 4, 12, 256 and 1,024 survivors per warp and tile.
  xgr::test::TopKCase spec;
  spec.groups = 6000;
  spec.rows_per_group = 1;
  spec.vocab = 8192;
  spec.k = 32;
  spec.row_offsets = true;
  const auto input = xgr::test::make_topk_input<float>(spec, rng);
  check(input, {spec.k, 100, 2048, spec.vocab});
}

TEST_CASE("group flags: the streamed filter and the select take each group as it is ready, on every shape") {
  // Random shapes of the path that hands bounds and survivors on by flags (fp32, dense or bitset,
  // rows of a tile or more, groups of at most 8 sample blocks): one group or many, groups of one
  // row (a filter block spans many), of random sizes, some empty, and rows of no group before the
  // first and after the last; each checked with the flags and with the grid-wide waits.
  namespace detail = xgr::topk::cuda_detail;
  auto rng = xgr::test::make_rng(271);
  xgr::Stream stream;
  xgr::DeviceWorkspace workspace;
  const auto pick = [&](std::initializer_list<std::size_t> values) {
    return *(values.begin() + std::uniform_int_distribution<std::size_t>(0, values.size() - 1)(rng));
  };
  for (int draw = 0; draw < 40; ++draw) {
    xgr::test::TopKCase spec;
    spec.groups = pick({1, 2, 3, 8, 17});
    spec.rows_per_group = pick({1, 2, 7, 40});
    spec.vocab = pick({8192, 8196, 16384, 24572});
    spec.k = std::min<std::size_t>(pick({1, 17, 256, 1024}), spec.rows_per_group * spec.vocab);
    spec.mask = draw % 3 == 0 ? xgr::MaskKind::bitset : xgr::MaskKind::none;
    spec.density = pick({1, 10, 60}) / 100.0;
    spec.row_offsets = draw % 2 == 0;
    spec.variable_groups = draw % 4 == 1;
    spec.distribution = draw % 5 == 2 ? xgr::test::ScoreDistribution::specials : xgr::test::ScoreDistribution::normal;
    auto input = xgr::test::make_topk_input<float>(spec, rng);
    if (spec.variable_groups && spec.groups > 2) {
      // Rows before the first group and after the last, and an empty group in the middle (the
      // group after it takes its rows; the limits follow).
      auto& offsets = input.group_row_offsets;
      offsets[0] = std::min<std::uint32_t>(offsets[1], 1);
      offsets[2] = offsets[1];
      offsets.back() -= std::min<std::uint32_t>(1, offsets.back() - offsets[offsets.size() - 2]);
      for (std::size_t g = 0; g + 1 < offsets.size(); ++g) {
        input.spec.rows_per_group = std::max<std::size_t>(input.spec.rows_per_group, offsets[g + 1] - offsets[g]);
      }
    }
    const auto expected = xgr::test::brute_force_topk(input);
    for (const bool flags : {true, false}) {
      const auto actual = run_cuda<xgr::topk::EarlyExit>(input, workspace, stream.get(), {.group_flags = flags});
      std::string why;
      if (!xgr::test::same_results(actual, expected, &why)) {
        FAIL_CHECK(input.spec.describe() << (flags ? ", group flags: " : ", grid waits: ") << why);
      }
    }
  }
  CHECK(detail::filter_tile == 8192);  // the vocabularies above are a tile or more
}

TEST_CASE("group flags: a call over a workspace full of garbage, and replayed from a CUDA graph on fresh scores") {
  // The flags live in the workspace, which other calls (other shapes, other policies) write over
  // between calls: every call must clear them before any kernel reads them. All bytes 0xff make a
  // stale flag read as "bound ready" and "every tile filtered". A CUDA graph replays the same
  // launches with the same arguments, so each replay must clear and set them anew.
  auto rng = xgr::test::make_rng(277);
  xgr::test::TopKCase spec;
  spec.groups = 8;
  spec.rows_per_group = 48;
  spec.vocab = 8192;
  spec.k = 256;
  spec.row_offsets = true;
  auto input = xgr::test::make_topk_input<float>(spec, rng);
  const xgr::TopKLimits limits = input.limits();
  xgr::Stream stream;
  xgr::DeviceWorkspace workspace(xgr::masked_topk_workspace_bytes(xgr::exec::cuda{}, limits));
  DeviceTopKInput<float> device(input);
  DeviceOutput output(spec.groups, spec.k);
  const auto enqueue = [&](cudaStream_t on) {
    xgr::topk::cuda_detail::enqueue_masked_topk<xgr::topk::EarlyExit>(xgr::exec::cuda{on}, device.problem, output.result(), limits,
                                                                      workspace, {.group_flags = true});
  };
  const auto check = [&](const char* what) {
    XGR_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
    std::string why;
    CHECK_MESSAGE(xgr::test::same_results(output.to_host(), xgr::test::brute_force_topk(input), &why), what << ": " << why);
  };
  for (int call = 0; call < 3; ++call) {
    XGR_CUDA_CHECK(cudaMemsetAsync(workspace.data(), 0xff, workspace.capacity_bytes(), stream.get()));
    output.poison(stream.get());
    enqueue(stream.get());
    check("over a workspace of 0xff bytes");
  }
  cudaGraph_t graph = nullptr;
  XGR_CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
  enqueue(stream.get());
  XGR_CUDA_CHECK(cudaStreamEndCapture(stream.get(), &graph));
  cudaGraphExec_t replay = nullptr;
  XGR_CUDA_CHECK(cudaGraphInstantiate(&replay, graph, 0));
  for (int round = 0; round < 4; ++round) {
    input = xgr::test::make_topk_input<float>(spec, rng);  // fresh scores and offsets, same shape
    XGR_CUDA_CHECK(cudaMemcpyAsync(device.scores.data(), input.scores.data(), device.scores.bytes(), cudaMemcpyHostToDevice, stream.get()));
    XGR_CUDA_CHECK(
        cudaMemcpyAsync(device.row_offsets.data(), input.row_offsets.data(), device.row_offsets.bytes(), cudaMemcpyHostToDevice, stream.get()));
    if (round % 2 == 1) XGR_CUDA_CHECK(cudaMemsetAsync(workspace.data(), 0xff, workspace.capacity_bytes(), stream.get()));
    output.poison(stream.get());
    XGR_CUDA_CHECK(cudaGraphLaunch(replay, stream.get()));
    check(round % 2 == 1 ? "a replay over a workspace of 0xff bytes" : "a replay");
  }
  XGR_CUDA_CHECK(cudaGraphExecDestroy(replay));
  XGR_CUDA_CHECK(cudaGraphDestroy(graph));
}

TEST_CASE("the CUDA path rejects bad arguments before launching anything") {
  auto rng = xgr::test::make_rng(241);
  xgr::test::TopKCase spec;
  spec.rows_per_group = 4;
  spec.vocab = 100;
  spec.k = 5;
  const auto input = xgr::test::make_topk_input<float>(spec, rng);
  DeviceTopKInput<float> device(input);
  DeviceOutput output(1, spec.k);
  xgr::DeviceWorkspace workspace(xgr::masked_topk_workspace_bytes(xgr::exec::cuda{}, input.limits()));

  auto problem = device.problem;
  problem.k = 0;
  CHECK_THROWS_AS(xgr::masked_topk(xgr::exec::cuda{}, problem, output.result(), input.limits(), workspace), xgr::Error);
  problem.k = 6;  // above the limits' max_k
  CHECK_THROWS_AS(xgr::masked_topk(xgr::exec::cuda{}, problem, output.result(), input.limits(), workspace), xgr::Error);

  auto limits = input.limits();
  limits.max_k = 1025;
  CHECK_THROWS_AS((void)xgr::masked_topk_workspace_bytes(xgr::exec::cuda{}, limits), xgr::Error);

  xgr::DeviceWorkspace too_small(256);
  try {
    xgr::masked_topk(xgr::exec::cuda{}, device.problem, output.result(), input.limits(), too_small);
    FAIL("a too-small workspace was accepted");
  } catch (const xgr::Error& error) {
    CHECK(error.kind() == xgr::ErrorKind::capacity);
  }
}
