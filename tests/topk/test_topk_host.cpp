#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "support/errors.hpp"
#include "support/random.hpp"
#include "support/topk_inputs.hpp"
#include "xgr/topk/host.hpp"
#include "xgr/topk/sample_layout.hpp"

namespace {

using xgr::test::TopKCase;
using xgr::test::TopKInput;
using xgr::test::TopKOutput;

constexpr float inf = std::numeric_limits<float>::infinity();
constexpr float qnan = std::numeric_limits<float>::quiet_NaN();

std::uint32_t bits_of(float value) {
  std::uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

// Runs the host reference with a workspace sized exactly for `limits`.
template <class T>
TopKOutput run_host(const xgr::TopKProblem<T>& problem, const xgr::TopKLimits& limits, std::size_t groups) {
  xgr::HostWorkspace workspace(xgr::masked_topk_workspace_bytes(xgr::exec::host, limits));
  TopKOutput out(groups, problem.k);
  xgr::masked_topk(xgr::exec::host, problem, out.result(), limits, workspace);
  return out;
}

template <class T>
TopKOutput run_host(const TopKInput<T>& input) {
  return run_host(input.problem(), input.limits(), input.problem().groups());
}

// A hand-written problem: `groups` x `rows_per_group` rows of `vocab` scores, no mask.
template <class T = float>
TopKInput<T> hand_input(std::size_t groups, std::size_t rows_per_group, std::size_t vocab, std::size_t k,
                        const std::vector<float>& scores) {
  REQUIRE(scores.size() == groups * rows_per_group * vocab);
  TopKInput<T> input;
  input.spec.groups = groups;
  input.spec.rows_per_group = rows_per_group;
  input.spec.vocab = vocab;
  input.spec.k = k;
  input.rows = groups * rows_per_group;
  for (float score : scores) input.scores.push_back(xgr::from_float<T>(score));
  return input;
}

// Adds a bitset mask (and its sparse twin) to a hand-written input: allowed[r][c].
template <class T>
void set_mask(TopKInput<T>& input, xgr::MaskKind kind, const std::vector<std::vector<bool>>& allowed) {
  REQUIRE(allowed.size() == input.rows);
  input.spec.mask = kind;
  input.words_per_row = (input.spec.vocab + 31) / 32;
  input.bitset_words.assign(input.rows * input.words_per_row, 0u);
  input.row_ptr = {0};
  input.columns.clear();
  for (std::size_t r = 0; r < input.rows; ++r) {
    for (std::size_t c = 0; c < input.spec.vocab; ++c) {
      if (!allowed[r][c]) continue;
      input.bitset_words[r * input.words_per_row + c / 32] |= 1u << (c % 32);
      input.columns.push_back(static_cast<std::uint32_t>(c));
    }
    input.row_ptr.push_back(static_cast<std::uint32_t>(input.columns.size()));
  }
}

void check_group(const TopKOutput& out, std::size_t group, std::uint32_t count, const std::vector<float>& values,
                 const std::vector<std::uint32_t>& indices) {
  INFO("group " << group);
  CHECK(out.counts[group] == count);
  for (std::size_t slot = 0; slot < out.k; ++slot) {
    INFO("slot " << slot);
    if (slot < values.size()) {
      CHECK(bits_of(out.values[group * out.k + slot]) == bits_of(values[slot]));
      CHECK(out.indices[group * out.k + slot] == indices[slot]);
    } else {  // past the count: the documented filler
      CHECK(out.values[group * out.k + slot] == -inf);
      CHECK(out.indices[group * out.k + slot] == xgr::topk::empty_index);
    }
  }
}

using xgr::test::error_of;

const std::string& invalid_argument = xgr::test::invalid_argument_error;
const std::string& capacity = xgr::test::capacity_error;

}  // namespace

TEST_CASE("the brute-force oracle agrees with a hand-worked example") {
  // group 0: rows [3, NaN, 1] [-inf, 3, -0.0]; group 1: rows [0.0, 2, +inf] [2, -1, 2]
  auto input = hand_input(2, 2, 3, 4, {3, qnan, 1, -inf, 3, -0.0f, 0.0f, 2, inf, 2, -1, 2});
  const TopKOutput out = xgr::test::brute_force_topk(input);
  check_group(out, 0, 4, {3, 3, 1, 0.0f}, {0, 4, 2, 5});
  check_group(out, 1, 4, {inf, 2, 2, 2}, {2, 1, 3, 5});
  std::string why;
  CHECK(xgr::test::same_results(out, out, &why));
  TopKOutput other = out;
  other.values[1] = -0.0f;  // equal as floats, different bits
  CHECK_FALSE(xgr::test::same_results(out, other, &why));
  CHECK(why.find("slot 1") != std::string::npos);
}

TEST_CASE("generated inputs are consistent: both mask forms, padding, bounds, groups") {
  auto rng = xgr::test::make_rng(101);
  TopKCase spec;
  spec.groups = 5;
  spec.rows_per_group = 7;
  spec.vocab = 77;
  spec.k = 9;
  spec.row_stride = 80;
  spec.mask = xgr::MaskKind::sparse;
  spec.density = 0.4;
  spec.row_offsets = true;
  spec.row_bounds = true;
  spec.variable_groups = true;
  spec.distribution = xgr::test::ScoreDistribution::specials;
  const auto input = xgr::test::make_topk_input<float>(spec, rng);
  REQUIRE(input.group_row_offsets.size() == spec.groups + 1);
  CHECK(input.group_row_offsets.front() == 0);
  CHECK(input.group_row_offsets.back() == input.rows);
  for (std::size_t g = 0; g < spec.groups; ++g) {
    const std::size_t size = input.group_row_offsets[g + 1] - input.group_row_offsets[g];
    CHECK((size >= 1 && size <= spec.rows_per_group));
  }
  CHECK(input.scores.size() == input.rows * 80);
  REQUIRE(input.row_ptr.size() == input.rows + 1);
  for (std::size_t r = 0; r < input.rows; ++r) {
    for (std::size_t c = 77; c < 80; ++c) CHECK(std::isnan(input.scores[r * 80 + c]));
    std::vector<bool> listed(77, false);
    bool sorted = true;
    for (std::uint32_t e = input.row_ptr[r]; e < input.row_ptr[r + 1]; ++e) {
      const std::uint32_t column = input.columns[e];
      REQUIRE(column < 77);
      CHECK_FALSE(listed[column]);
      listed[column] = true;
      if (e > input.row_ptr[r] && input.columns[e - 1] > column) sorted = false;
    }
    if (input.row_ptr[r + 1] - input.row_ptr[r] > 12) CHECK_FALSE(sorted);  // shuffled, not sorted
    float bound = -inf;
    for (std::size_t c = 0; c < 77; ++c) {
      CHECK(listed[c] == (((input.bitset_words[r * input.words_per_row + c / 32] >> (c % 32)) & 1u) != 0));
      const float score = input.scores[r * 80 + c] + input.row_offsets[r];
      if (!std::isnan(score)) bound = std::max(bound, score);
    }
    CHECK(bits_of(input.row_bounds[r]) == bits_of(bound));
  }
  const xgr::TopKLimits limits = input.limits();
  CHECK(limits.max_groups == 5);
  CHECK(limits.max_rows == input.rows);
  CHECK(limits.max_sparse_entries == input.columns.size());
}

TEST_CASE("ties break by the lower flattened index") {
  SUBCASE("equal scores come out in index order, across rows of the group") {
    const auto out = run_host(hand_input(1, 3, 4, 5, std::vector<float>(12, 1.0f)));
    check_group(out, 0, 5, {1, 1, 1, 1, 1}, {0, 1, 2, 3, 4});
  }
  SUBCASE("row 0's last column (index 3) precedes row 1's first (index 4)") {
    const auto out = run_host(hand_input(1, 2, 4, 2, {0, 0, 0, 2, 2, 0, 0, 0}));
    check_group(out, 0, 2, {2, 2}, {3, 4});
  }
  SUBCASE("indices restart at 0 in every group") {
    const auto out = run_host(hand_input(2, 2, 2, 2, {5, 5, 1, 1, 0, 7, 7, 0}));
    check_group(out, 0, 2, {5, 5}, {0, 1});
    check_group(out, 1, 2, {7, 7}, {1, 2});
  }
  SUBCASE("-0.0 and +0.0 tie; the result is +0.0") {
    const auto out = run_host(hand_input(1, 1, 4, 3, {-1.0f, -0.0f, 0.0f, -0.0f}));
    check_group(out, 0, 3, {0.0f, 0.0f, 0.0f}, {1, 2, 3});
  }
  SUBCASE("-0.0 and +0.0 tie also when the sum stays -0.0 (offset -0.0)") {
    auto input = hand_input(1, 1, 4, 3, {-1.0f, 0.0f, -0.0f, 0.0f});
    input.spec.row_offsets = true;
    input.row_offsets = {-0.0f};
    check_group(run_host(input), 0, 3, {0.0f, 0.0f, 0.0f}, {1, 2, 3});
  }
  SUBCASE("ties are decided on the element type's value, not the float it came from") {
    // 1.0001f rounds to 1.0 in half and bfloat16, so index 0 wins there; float keeps it apart.
    const std::vector<float> scores = {1.0f, 1.0001f};
    check_group(run_host(hand_input<float>(1, 1, 2, 1, scores)), 0, 1, {1.0001f}, {1});
    check_group(run_host(hand_input<xgr::half>(1, 1, 2, 1, scores)), 0, 1, {1.0f}, {0});
    check_group(run_host(hand_input<xgr::bfloat16>(1, 1, 2, 1, scores)), 0, 1, {1.0f}, {0});
  }
  SUBCASE("+inf ties with +inf") {
    const auto out = run_host(hand_input(1, 2, 2, 3, {1, inf, inf, 2}));
    check_group(out, 0, 3, {inf, inf, 2}, {1, 2, 3});
  }
}

TEST_CASE_TEMPLATE("-inf and NaN are never selected", T, float, xgr::half, xgr::bfloat16) {
  const auto out = run_host(hand_input<T>(1, 1, 7, 7, {qnan, -inf, 3, inf, qnan, -1, -inf}));
  check_group(out, 0, 3, {inf, 3, -1}, {3, 2, 5});

  SUBCASE("a row of only NaN and -inf yields nothing") {
    const auto none = run_host(hand_input<T>(2, 1, 3, 2, {qnan, -inf, qnan, 1, qnan, -inf}));
    check_group(none, 0, 0, {}, {});
    check_group(none, 1, 1, {1}, {0});
  }
  SUBCASE("an offset of -inf removes the row; +inf + -inf is NaN and removed too") {
    auto input = hand_input<T>(1, 2, 2, 4, {inf, 1, 2, 3});
    input.spec.row_offsets = true;
    input.row_offsets = {-inf, 0.0f};
    check_group(run_host(input), 0, 2, {3, 2}, {3, 2});
  }
}

TEST_CASE("k above the valid count returns fewer, with the count and the filled tail") {
  auto input = hand_input(3, 1, 5, 8, {4, 3, 2, 1, 0, 1, -inf, 2, qnan, -inf, 9, 9, 9, 9, 9});
  const auto out = run_host(input);
  check_group(out, 0, 5, {4, 3, 2, 1, 0}, {0, 1, 2, 3, 4});
  check_group(out, 1, 2, {2, 1}, {2, 0});
  check_group(out, 2, 5, {9, 9, 9, 9, 9}, {0, 1, 2, 3, 4});
  CHECK(xgr::test::same_results(out, xgr::test::brute_force_topk(input), nullptr));

  SUBCASE("masked columns do not count as valid") {
    set_mask(input, xgr::MaskKind::bitset,
             {{true, false, false, false, true}, {false, false, true, false, false}, {false, false, false, false, false}});
    const auto masked = run_host(input);
    check_group(masked, 0, 2, {4, 0}, {0, 4});
    check_group(masked, 1, 1, {2}, {2});
    check_group(masked, 2, 0, {}, {});
  }
}

TEST_CASE("an all-masked group returns count 0 and only filler") {
  // 3 groups x 2 rows x 40 columns; group 1 allows nothing.
  auto rng = xgr::test::make_rng(102);
  std::normal_distribution<float> normal;
  std::vector<float> scores(3 * 2 * 40);
  for (float& score : scores) score = normal(rng);
  auto input = hand_input(3, 2, 40, 6, scores);
  std::vector<std::vector<bool>> allowed(6, std::vector<bool>(40, true));
  allowed[2].assign(40, false);
  allowed[3].assign(40, false);
  allowed[4][7] = false;
  for (xgr::MaskKind kind : {xgr::MaskKind::bitset, xgr::MaskKind::sparse}) {
    INFO("mask " << xgr::test::mask_name(kind));
    set_mask(input, kind, allowed);
    const auto out = run_host(input);
    check_group(out, 1, 0, {}, {});
    CHECK(out.counts[0] == 6);
    CHECK(out.counts[2] == 6);
    std::string why;
    CHECK_MESSAGE(xgr::test::same_results(out, xgr::test::brute_force_topk(input), &why), why);
  }
}

TEST_CASE("row offsets are added to every score of their row") {
  // Row 1's scores are lower, but its offset lifts it above row 0.
  auto input = hand_input(1, 2, 3, 4, {1.0f, 2.0f, 3.0f, 0.5f, 0.25f, 0.0f});
  input.spec.row_offsets = true;
  input.row_offsets = {-1.0f, 10.0f};
  check_group(run_host(input), 0, 4, {10.5f, 10.25f, 10.0f, 2.0f}, {3, 4, 5, 2});

  SUBCASE("the sum is formed in float, after converting the element") {
    auto half_input = hand_input<xgr::half>(1, 1, 2, 2, {1.0001f, 0.5f});
    half_input.spec.row_offsets = true;
    half_input.row_offsets = {0.0001f};
    check_group(run_host(half_input), 0, 2, {1.0f + 0.0001f, 0.5f + 0.0001f}, {0, 1});
  }
  SUBCASE("an offset can create ties across rows that break by index") {
    auto tie = hand_input(1, 2, 2, 2, {1.0f, 0.0f, 0.0f, 0.5f});
    tie.spec.row_offsets = true;
    tie.row_offsets = {0.0f, 1.0f};
    check_group(run_host(tie), 0, 2, {1.5f, 1.0f}, {3, 0});
  }
}

TEST_CASE("results honour output row strides and leave the padding alone") {
  auto input = hand_input(2, 1, 4, 2, {1, 2, 3, 4, 8, 7, 6, 5});
  const xgr::TopKLimits limits = input.limits();
  xgr::HostWorkspace workspace(xgr::masked_topk_workspace_bytes(xgr::exec::host, limits));
  std::vector<float> values(2 * 5, 12345.0f);
  std::vector<std::uint32_t> indices(2 * 3, 0xdeadbeefu);
  std::vector<std::uint32_t> counts(2, 0xdeadbeefu);
  const xgr::TopKResult result{xgr::matrix_view(std::span<float>(values), 2, 2, 5),
                               xgr::matrix_view(std::span<std::uint32_t>(indices), 2, 2, 3), std::span<std::uint32_t>(counts)};
  xgr::masked_topk(xgr::exec::host, input.problem(), result, limits, workspace);
  CHECK(values == std::vector<float>{4, 3, 12345, 12345, 12345, 8, 7, 12345, 12345, 12345});
  CHECK(indices == std::vector<std::uint32_t>{3, 2, 0xdeadbeefu, 0, 1, 0xdeadbeefu});
  CHECK(counts == std::vector<std::uint32_t>{2, 2});
}

TEST_CASE("every policy computes the same function on the host") {
  auto rng = xgr::test::make_rng(104);
  TopKCase spec;
  spec.groups = 3;
  spec.rows_per_group = 9;
  spec.vocab = 301;
  spec.k = 50;
  spec.mask = xgr::MaskKind::bitset;
  spec.density = 0.5;
  spec.distribution = xgr::test::ScoreDistribution::specials;
  const auto input = xgr::test::make_topk_input<float>(spec, rng);
  xgr::HostWorkspace workspace(xgr::masked_topk_workspace_bytes(xgr::exec::host, input.limits()));
  const TopKOutput expected = xgr::test::brute_force_topk(input);
  const auto run = [&](auto policy) {
    TopKOutput out(spec.groups, spec.k);
    xgr::masked_topk<decltype(policy)>(xgr::exec::host, input.problem(), out.result(), input.limits(), workspace);
    std::string why;
    CHECK_MESSAGE(xgr::test::same_results(out, expected, &why), why);
  };
  run(xgr::topk::EarlyExit{});
  run(xgr::topk::NoEarlyExit{});
  run(xgr::topk::FullSort{});
  run(xgr::topk::RowTopKThenMerge{});
}

TEST_CASE("a workspace sized for the largest limits serves many smaller calls") {
  xgr::TopKLimits largest;
  largest.max_groups = 8;
  largest.max_rows = 8 * 64;
  largest.max_rows_per_group = 64;
  largest.max_vocab = 1000;
  largest.max_k = 1024;
  largest.max_sparse_entries = 8 * 64 * 1000;
  xgr::HostWorkspace workspace(xgr::masked_topk_workspace_bytes(xgr::exec::host, largest));
  std::byte* const base = workspace.data();
  const std::size_t capacity_before = workspace.capacity_bytes();

  auto rng = xgr::test::make_rng(105);
  std::uniform_int_distribution<std::size_t> groups(1, 8), rows(1, 64), vocab(1, 1000), mask(0, 2);
  std::uniform_real_distribution<double> density(0.0, 1.0);
  std::bernoulli_distribution coin(0.5);
  for (int call = 0; call < 40; ++call) {
    TopKCase spec;
    spec.groups = groups(rng);
    spec.rows_per_group = rows(rng);
    spec.vocab = vocab(rng);
    spec.k = std::uniform_int_distribution<std::size_t>(1, 1024)(rng);
    spec.mask = static_cast<xgr::MaskKind>(mask(rng));
    spec.density = density(rng);
    spec.row_offsets = coin(rng);
    spec.variable_groups = coin(rng);
    spec.distribution = static_cast<xgr::test::ScoreDistribution>(call % 3);
    INFO("call " << call << ": " << spec.describe());
    std::string why;
    if (call % 2 == 0) {
      const auto input = xgr::test::make_topk_input<float>(spec, rng);
      TopKOutput out(input.problem().groups(), spec.k);
      xgr::masked_topk(xgr::exec::host, input.problem(), out.result(), largest, workspace);
      CHECK_MESSAGE(xgr::test::same_results(out, xgr::test::brute_force_topk(input), &why), why);
    } else {
      const auto input = xgr::test::make_topk_input<xgr::bfloat16>(spec, rng);
      TopKOutput out(input.problem().groups(), spec.k);
      xgr::masked_topk(xgr::exec::host, input.problem(), out.result(), largest, workspace);
      CHECK_MESSAGE(xgr::test::same_results(out, xgr::test::brute_force_topk(input), &why), why);
    }
  }
  CHECK(workspace.data() == base);  // nothing was reallocated
  CHECK(workspace.capacity_bytes() == capacity_before);
}

TEST_CASE("bad arguments throw xgr::Error(invalid_argument)") {
  auto rng = xgr::test::make_rng(106);
  TopKCase spec;
  spec.groups = 2;
  spec.rows_per_group = 3;
  spec.vocab = 40;
  spec.k = 5;
  spec.mask = xgr::MaskKind::sparse;
  spec.density = 0.5;
  auto input = xgr::test::make_topk_input<float>(spec, rng);
  // Make sure row 0 lists at least two columns, whatever the random draw.
  if (input.row_ptr[1] - input.row_ptr[0] < 2) {
    std::vector<std::vector<bool>> allowed(input.rows, std::vector<bool>(40, true));
    set_mask(input, xgr::MaskKind::sparse, allowed);
  }
  xgr::TopKLimits limits = input.limits();
  xgr::HostWorkspace workspace(xgr::masked_topk_workspace_bytes(xgr::exec::host, limits));
  TopKOutput out(2, 5);
  const auto call = [&](const xgr::TopKProblem<float>& problem, const xgr::TopKLimits& l, const xgr::TopKResult& result) {
    return error_of([&] { xgr::masked_topk(xgr::exec::host, problem, result, l, workspace); });
  };
  REQUIRE(call(input.problem(), limits, out.result()) == "no error");

  SUBCASE("k = 0") {
    auto problem = input.problem();
    problem.k = 0;
    CHECK(call(problem, limits, out.result()) == invalid_argument);
  }
  SUBCASE("row_score_hints of too few rows, or too many for a group") {
    auto problem = input.problem();
    const std::vector<float> hints(input.rows * 2, 1e30f);  // any values: the host ignores them
    problem.row_score_hints = xgr::MatrixView<const float>{hints.data(), input.rows - 1, 2, 2};
    CHECK(call(problem, limits, out.result()) == invalid_argument);
    problem.row_score_hints = xgr::MatrixView<const float>{hints.data(), input.rows, 2, 2};
    CHECK(call(problem, limits, out.result()) == "no error");
    std::string why;
    CHECK_MESSAGE(xgr::test::same_results(out, xgr::test::brute_force_topk(input), &why), why);
    xgr::TopKLimits wide = limits;
    wide.max_rows_per_group = xgr::max_group_score_hints;  // x 2 hints a row: too many for a group
    xgr::HostWorkspace wide_workspace(xgr::masked_topk_workspace_bytes(xgr::exec::host, wide));
    CHECK(error_of([&] { xgr::masked_topk(xgr::exec::host, problem, out.result(), wide, wide_workspace); }) == invalid_argument);
  }
  SUBCASE("k above the limits' max_k") {
    auto problem = input.problem();
    problem.k = 6;
    TopKOutput wide(2, 6);
    CHECK(call(problem, limits, wide.result()) == invalid_argument);
  }
  SUBCASE("k above 1024, even with max_k raised to match") {
    auto problem = input.problem();
    problem.k = 1025;
    xgr::TopKLimits raised = limits;
    raised.max_k = 1025;
    TopKOutput wide(2, 1025);
    CHECK(call(problem, raised, wide.result()) == invalid_argument);
    CHECK(error_of([&] { (void)xgr::masked_topk_workspace_bytes(xgr::exec::host, raised); }) == invalid_argument);
  }
  SUBCASE("a sparse column at or above vocab") {
    auto bad = input;
    bad.columns[bad.row_ptr[0]] = 40;
    CHECK(call(bad.problem(), limits, out.result()) == invalid_argument);
  }
  SUBCASE("a sparse column listed twice in a row") {
    auto bad = input;
    bad.columns[bad.row_ptr[0] + 1] = bad.columns[bad.row_ptr[0]];
    CHECK(call(bad.problem(), limits, out.result()) == invalid_argument);
  }
  SUBCASE("sparse row_ptr out of order") {
    auto bad = input;
    std::swap(bad.row_ptr[1], bad.row_ptr[2]);
    if (bad.row_ptr[1] == bad.row_ptr[2]) bad.row_ptr[1] = bad.row_ptr[2] + 1;
    CHECK(call(bad.problem(), limits, out.result()) == invalid_argument);
  }
  SUBCASE("decreasing group offsets") {
    auto bad = input;
    bad.spec.mask = xgr::MaskKind::none;
    bad.spec.variable_groups = true;
    bad.group_row_offsets = {0, 3, 2};
    CHECK(call(bad.problem(), limits, out.result()) == invalid_argument);
    bad.group_row_offsets = {2, 1, 6};
    CHECK(call(bad.problem(), limits, out.result()) == invalid_argument);
    bad.group_row_offsets = {0, 3, 7};  // past the last row
    CHECK(call(bad.problem(), limits, out.result()) == invalid_argument);
    bad.group_row_offsets = {0, 4, 6};  // a group larger than max_rows_per_group
    CHECK(call(bad.problem(), limits, out.result()) == invalid_argument);
  }
  SUBCASE("rows_per_group of 0 or above the limits' max_rows_per_group") {
    auto problem = input.problem();
    problem.rows_per_group = 0;
    CHECK(call(problem, limits, out.result()) == invalid_argument);
    problem.rows_per_group = limits.max_rows_per_group + 1;
    CHECK(call(problem, limits, out.result()) == invalid_argument);
  }
  SUBCASE("limits whose groups do not fit 32-bit flat indices") {
    xgr::TopKLimits huge = limits;
    huge.max_rows_per_group = 1u << 16;
    huge.max_vocab = 1u << 16;  // 2^32 candidates per group
    CHECK(error_of([&] { (void)xgr::masked_topk_workspace_bytes(xgr::exec::host, huge); }) == invalid_argument);
  }
  SUBCASE("rows not a multiple of rows_per_group") {
    auto problem = input.problem();
    problem.mask = xgr::TopKMask::all();
    problem.scores.rows = 5;
    CHECK(call(problem, limits, out.result()) == invalid_argument);
  }
  SUBCASE("a result too small for groups x k") {
    TopKOutput few_groups(1, 5);
    CHECK(call(input.problem(), limits, few_groups.result()) == invalid_argument);
    TopKOutput narrow(2, 4);
    CHECK(call(input.problem(), limits, narrow.result()) == invalid_argument);
    auto result = out.result();
    result.counts = result.counts.first(1);
    CHECK(call(input.problem(), limits, result) == invalid_argument);
  }
  SUBCASE("a problem beyond the limits the workspace was sized for") {
    xgr::TopKLimits small = limits;
    small.max_vocab = 39;
    CHECK(call(input.problem(), small, out.result()) == invalid_argument);
    small = limits;
    small.max_rows = 5;
    CHECK(call(input.problem(), small, out.result()) == invalid_argument);
    small = limits;
    small.max_groups = 1;
    CHECK(call(input.problem(), small, out.result()) == invalid_argument);
    small = limits;
    small.max_sparse_entries = input.columns.size() - 1;
    CHECK(call(input.problem(), small, out.result()) == invalid_argument);
  }
}

TEST_CASE("a workspace smaller than the limits need throws xgr::Error(capacity)") {
  auto input = hand_input(2, 4, 300, 10, std::vector<float>(2 * 4 * 300, 0.5f));
  const xgr::TopKLimits limits = input.limits();
  TopKOutput out(2, 10);
  xgr::HostWorkspace empty;
  CHECK(error_of([&] { xgr::masked_topk(xgr::exec::host, input.problem(), out.result(), limits, empty); }) == capacity);
  xgr::TopKLimits smaller = limits;
  smaller.max_rows_per_group = 1;
  xgr::HostWorkspace small(xgr::masked_topk_workspace_bytes(xgr::exec::host, smaller));
  CHECK(error_of([&] { xgr::masked_topk(xgr::exec::host, input.problem(), out.result(), limits, small); }) == capacity);
  CHECK(out.counts[0] == 0xdeadbeefu);  // nothing was written
}

TEST_CASE_TEMPLATE("bitset, sparse and unmasked-equivalent inputs agree", T, float, xgr::half, xgr::bfloat16) {
  auto rng = xgr::test::make_rng(103);
  for (double density : {0.0, 0.05, 0.3, 0.8, 1.0}) {
    for (std::size_t vocab : {std::size_t{1}, std::size_t{32}, std::size_t{95}, std::size_t{700}}) {
      TopKCase spec;
      spec.groups = 3;
      spec.rows_per_group = 5;
      spec.vocab = vocab;
      spec.k = 40;
      spec.mask = xgr::MaskKind::bitset;
      spec.density = density;
      spec.row_offsets = true;
      spec.distribution = xgr::test::ScoreDistribution::few_distinct;
      INFO(spec.describe());
      auto input = xgr::test::make_topk_input<T>(spec, rng);
      const TopKOutput bitset = run_host(input);

      // The same allowed set as CSR (make_topk_input writes both forms).
      input.spec.mask = xgr::MaskKind::sparse;
      const TopKOutput sparse = run_host(input);

      std::string why;
      CHECK_MESSAGE(xgr::test::same_results(bitset, sparse, &why), "bitset vs sparse: " << why);
      if (density == 1.0) {  // a full mask is no mask
        input.spec.mask = xgr::MaskKind::none;
        CHECK_MESSAGE(xgr::test::same_results(bitset, run_host(input), &why), "full bitset vs none: " << why);
      }

      // No mask, disallowed scores set to -inf.
      input.spec.mask = xgr::MaskKind::none;
      for (std::size_t r = 0; r < input.rows; ++r) {
        for (std::size_t c = 0; c < vocab; ++c) {
          if (((input.bitset_words[r * input.words_per_row + c / 32] >> (c % 32)) & 1u) == 0) {
            input.scores[r * vocab + c] = xgr::from_float<T>(-inf);
          }
        }
      }
      CHECK_MESSAGE(xgr::test::same_results(bitset, run_host(input), &why), "bitset vs -inf scores: " << why);
    }
  }
}

TEST_CASE_TEMPLATE("host masked_topk equals the brute-force oracle on the standard cases", T, float, xgr::half, xgr::bfloat16) {
  auto rng = xgr::test::make_rng(107);
  const std::vector<TopKCase> cases = xgr::test::standard_topk_cases(rng, 300);
  for (std::size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i << ": " << cases[i].describe());
    const auto input = xgr::test::make_topk_input<T>(cases[i], rng);
    const TopKOutput out = run_host(input);
    std::string why;
    CHECK_MESSAGE(xgr::test::same_results(out, xgr::test::brute_force_topk(input), &why), why);
  }
}

TEST_CASE("a sparse mask with no entries at all selects nothing (max_sparse_entries = 0)") {
  auto input = hand_input(2, 2, 50, 4, std::vector<float>(200, 1.0f));
  set_mask(input, xgr::MaskKind::sparse, std::vector<std::vector<bool>>(4, std::vector<bool>(50, false)));
  REQUIRE(input.limits().max_sparse_entries == 0);
  const auto out = run_host(input);
  check_group(out, 0, 0, {}, {});
  check_group(out, 1, 0, {}, {});
}
TEST_CASE("sampled runs stay inside the group, never overlap, and the bound rank stays in [1, k]") {
  namespace detail = xgr::topk::cuda_detail;
  auto rng = xgr::test::make_rng(233);
  for (int trial = 0; trial < 200; ++trial) {
    const std::uint64_t positions = std::uniform_int_distribution<std::uint64_t>(16, std::uint64_t{1} << 24)(rng);
    const std::uint64_t k = std::uniform_int_distribution<std::uint64_t>(1, 1024)(rng);
    const std::uint64_t runs = detail::sampled_runs(positions, detail::sample_slots(positions, k), k);
    REQUIRE(runs >= 1);
    std::uint64_t previous_end = 0;
    for (std::uint64_t run = 0; run < runs; ++run) {
      const std::uint64_t start = detail::sample_run_start(run, positions, runs);
      CHECK(start % detail::sample_run == 0);
      CHECK(start >= previous_end);
      previous_end = start + detail::sample_run;
    }
    CHECK(previous_end <= positions);
    const std::uint32_t rank = detail::bound_rank(k, runs, positions);
    CHECK(rank >= 1);
    CHECK(rank <= k);
    if (runs * detail::sample_run == positions) CHECK(rank == k);
  }
}

TEST_CASE("the sample's r-th best run is a bound on random inputs") {
  // What bound_kernel computes, without its per-warp truncation (which can only lower the bound):
  // the bound_rank-th best of the sampled runs' bests, over the sample layout the kernels use. At
  // least k candidates of the group must reach it, or the select falls back to the slow path.
  namespace detail = xgr::topk::cuda_detail;
  auto rng = xgr::test::make_rng(239);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  struct Shape {
    std::uint64_t positions, k;
  };
  const Shape shapes[] = {{256 * 8192, 256}, {128 * 8192, 128}, {512 * 4096, 512}, {50 * 4001, 64}, {8 * 8192, 1024}, {20000, 3}};
  for (const Shape& shape : shapes) {
    for (int trial = 0; trial < 3; ++trial) {
      std::vector<float> scores(shape.positions);
      for (float& score : scores) score = normal(rng);
      const std::uint64_t runs = detail::sampled_runs(shape.positions, detail::sample_slots(shape.positions, shape.k), shape.k);
      std::vector<float> bests(runs);
      for (std::uint64_t run = 0; run < runs; ++run) {
        const std::uint64_t start = detail::sample_run_start(run, shape.positions, runs);
        bests[run] = *std::max_element(scores.begin() + static_cast<std::ptrdiff_t>(start),
                                       scores.begin() + static_cast<std::ptrdiff_t>(start + detail::sample_run));
      }
      const std::uint32_t rank = detail::bound_rank(shape.k, runs, shape.positions);
      REQUIRE(rank >= 1);
      REQUIRE(rank <= runs);
      std::nth_element(bests.begin(), bests.begin() + (rank - 1), bests.end(), std::greater<>());
      const float bound = bests[rank - 1];
      const auto reaching = static_cast<std::uint64_t>(std::count_if(scores.begin(), scores.end(), [&](float s) { return s >= bound; }));
      CHECK_MESSAGE(reaching >= shape.k, "positions=" << shape.positions << " k=" << shape.k << " rank=" << rank << " reaching=" << reaching);
      // The point of r < k: far fewer survivors than the k-th best run would let through.
      if (rank < shape.k) CHECK(reaching < shape.k * shape.positions / (runs * detail::sample_run));
    }
  }
}

