#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "support/errors.hpp"
#include "support/beam_inputs.hpp"
#include "support/random.hpp"
#include "xgr/beam/host.hpp"
#include "xgr/items/io.hpp"

namespace {

using xgr::test::BeamOutput;
using xgr::test::ExpectedBeam;
using xgr::test::HashModel;
using xgr::test::SearchSpec;

constexpr float inf = std::numeric_limits<float>::infinity();
constexpr float qnan = std::numeric_limits<float>::quiet_NaN();

// A searcher of the given policy run over one batch with the shared driver.
template <class Normalize = xgr::beam::FullVocabLogSoftmax, class T = float, class Model = HashModel>
BeamOutput search(const xgr::ItemTrie& trie, const xgr::BeamConfig& config, const std::vector<std::uint32_t>& widths,
                  std::vector<Model> models, std::size_t row_stride = 0) {
  xgr::BeamSearcher<xgr::exec::host_t, Normalize> searcher(xgr::exec::host, trie, config);
  return xgr::test::run_host_search<T>(searcher, widths, std::move(models), row_stride);
}

SearchSpec spec_of(const xgr::BeamConfig& config, std::size_t beam_width, bool whole_row = true) {
  return {config.vocab, config.level_token_offsets, whole_row, config.top_k_per_beam, beam_width};
}

// A random search problem: catalogue, trie, token layout, and a beam width for which the search is
// exhaustive (nothing pruned before the last step), so the brute force over the catalogue applies.
struct Problem {
  xgr::ItemTable table;
  xgr::ItemTrie trie;
  xgr::BeamConfig config;
  std::uint32_t width = 1;

  [[nodiscard]] std::string describe() const {
    std::ostringstream text;
    text << "codebooks";
    for (std::uint32_t size : table.codebook_sizes) text << ' ' << size;
    text << ", " << table.size() << " items (" << trie.leaf_count() << " tuples), offsets";
    for (std::uint32_t offset : config.level_token_offsets) text << ' ' << offset;
    text << ", vocab " << config.vocab << ", width " << width << ", top_k_per_beam " << config.top_k_per_beam;
    return text.str();
  }
};

Problem random_problem(std::mt19937_64& rng, std::size_t levels) {
  Problem p;
  std::vector<std::uint32_t> codebooks(levels);
  for (auto& size : codebooks) {
    size = levels == 1 ? std::uniform_int_distribution<std::uint32_t>(1, 700)(rng) : std::uniform_int_distribution<std::uint32_t>(1, 12)(rng);
  }
  const std::size_t items = std::uniform_int_distribution<std::size_t>(1, 400)(rng);
  const double duplicates = std::bernoulli_distribution(0.3)(rng) ? 0.1 : 0.0;
  p.table = xgr::test::random_item_table(rng, codebooks, items, duplicates);
  p.trie = xgr::build_item_trie(p.table);

  // Token layout: all levels from token 0, disjoint consecutive slices, or random (overlapping) offsets.
  std::vector<std::uint32_t> offsets(levels, 0);
  switch (std::uniform_int_distribution<int>(0, 2)(rng)) {
    case 0: break;
    case 1:
      for (std::size_t level = 1; level < levels; ++level) offsets[level] = offsets[level - 1] + codebooks[level - 1];
      break;
    default:
      for (auto& offset : offsets) offset = std::uniform_int_distribution<std::uint32_t>(0, 40)(rng);
      break;
  }
  std::size_t vocab = 0;
  for (std::size_t level = 0; level < levels; ++level) vocab = std::max<std::size_t>(vocab, offsets[level] + codebooks[level]);
  if (std::bernoulli_distribution(0.6)(rng)) vocab += std::uniform_int_distribution<std::size_t>(1, 100)(rng);
  p.config.max_requests = std::uniform_int_distribution<std::size_t>(1, 3)(rng);
  p.config.vocab = vocab;
  p.config.level_token_offsets = offsets;

  // Width: exactly exhaustive, between that and the tuple count (the last step prunes), or above it.
  const std::size_t least = xgr::test::exhaustive_width(p.trie);
  const std::size_t leaves = std::max<std::size_t>(p.trie.leaf_count(), least);
  std::size_t width = least;
  switch (std::uniform_int_distribution<int>(0, 2)(rng)) {
    case 0: break;
    case 1: width = std::uniform_int_distribution<std::size_t>(least, leaves)(rng); break;
    default: width = leaves + std::uniform_int_distribution<std::size_t>(0, 30)(rng); break;
  }
  p.width = static_cast<std::uint32_t>(std::clamp<std::size_t>(width, 1, xgr::max_topk_k));
  p.config.max_beam_width = p.width + std::uniform_int_distribution<std::size_t>(0, 5)(rng);
  return p;
}

// Checks one request's results against the brute force of its model.
template <class T = float, class Model>
void check_against_brute_force(const Problem& p, const BeamOutput& out, std::size_t request, const Model& model,
                               bool whole_row = true) {
  const std::vector<ExpectedBeam> want = xgr::test::brute_force_beams<T>(p.table, model, spec_of(p.config, p.width, whole_row));
  std::string why;
  INFO(p.describe());
  CHECK_MESSAGE(xgr::test::same_beams(out.beams(request), want, &why), why);
  CHECK_MESSAGE(xgr::test::padding_is_clean(out, request, &why), why);
}

// A model whose every logit is the same value: all candidates of a step tie.
struct ConstantModel {
  float value = 0.5f;
  void operator()(std::span<const std::uint32_t>, std::span<float> row) const { std::fill(row.begin(), row.end(), value); }
};

// Explicit rows: rows_by_prefix[prefix] when present, else `fallback` (for every prefix of that length).
struct TableModel {
  std::vector<std::pair<std::vector<std::uint32_t>, std::vector<float>>> rows;
  HashModel fallback;
  void operator()(std::span<const std::uint32_t> prefix, std::span<float> row) const {
    for (const auto& [key, values] : rows) {
      if (key.size() == prefix.size() && std::equal(key.begin(), key.end(), prefix.begin())) {
        std::copy(values.begin(), values.end(), row.begin());
        return;
      }
    }
    fallback(prefix, row);
  }
};

using xgr::test::error_of;

const std::string& invalid_argument = xgr::test::invalid_argument_error;

}  // namespace

// ---- log_softmax.hpp ------------------------------------------------------------------------------

TEST_CASE("exp_fixed is exp scaled by 2^43: exact at 0, zero below -30 and for NaN") {
  CHECK(xgr::beam::exp_fixed(0.0f) == std::uint64_t{1} << 43);
  CHECK(xgr::beam::exp_fixed(-0.0f) == std::uint64_t{1} << 43);
  CHECK(xgr::beam::exp_fixed(-30.5f) == 0);
  CHECK(xgr::beam::exp_fixed(-inf) == 0);
  CHECK(xgr::beam::exp_fixed(qnan) == 0);
  CHECK(xgr::beam::exp_fixed(-29.0f) == 2);  // e^-29 x 2^43 = 2.2, truncated
  for (float x = -29.0f; x <= 0.0f; x += 0.37f) {
    INFO("x = " << x);
    const double want = std::exp(static_cast<double>(x)) * 0x1p43;
    CHECK(std::abs(static_cast<double>(xgr::beam::exp_fixed(x)) - want) <= 1e-6 * want + 1.0);
  }
}

TEST_CASE("exp_fixed's conversion-free steps equal the conversions they replace") {
  std::mt19937_64 rng = xgr::test::make_rng(103);
  // round_to_integer == nearbyint (ties to even) over the range exp_fixed uses, ties included.
  std::vector<float> values{-43.5f, -42.5f, -0.5f, -1.5f, 0.5f, -0.0f, 0.0f, -44.0f, -0.49999997f};
  std::uniform_real_distribution<float> range(-44.0f, 1.0f);
  for (int i = 0; i < 100000; ++i) values.push_back(range(rng));
  for (float v : values) {
    INFO("v = " << v);
    const xgr::beam::detail::RoundedInteger rounded = xgr::beam::detail::round_to_integer(v);
    CHECK(rounded.value == std::nearbyint(v));
    CHECK(rounded.integer == static_cast<int>(std::nearbyint(v)));
  }
  // scaled_to_integer == truncating the exact product, for e in [0.5, 2) and powers 0..44.
  std::uniform_real_distribution<float> significand(0.5f, 2.0f);
  for (int i = 0; i < 100000; ++i) {
    const float e = i == 0 ? 0.5f : i == 1 ? std::nextafter(2.0f, 0.0f) : significand(rng);
    const int power = static_cast<int>(rng() % 45);
    INFO("e = " << e << ", power = " << power);
    CHECK(xgr::beam::detail::scaled_to_integer(e, power) == static_cast<std::uint64_t>(std::ldexp(static_cast<double>(e), power)));
  }
}

TEST_CASE("exp_fixed is monotone on [-30, 0]") {
  std::mt19937_64 rng = xgr::test::make_rng(101);
  std::vector<float> xs;
  std::uniform_real_distribution<float> anywhere(-30.0f, 0.0f);
  for (int i = 0; i < 20000; ++i) xs.push_back(anywhere(rng));
  // Runs of adjacent floats, where a polynomial's rounding would show first.
  for (float start : {-30.0f, -20.5f, -0.3465736f, -0.3465735f, -1e-3f, -1e-7f}) {
    float x = start;
    for (int i = 0; i < 300; ++i, x = std::nextafter(x, 1.0f)) xs.push_back(std::min(x, 0.0f));
  }
  std::sort(xs.begin(), xs.end());
  for (std::size_t i = 1; i < xs.size(); ++i) {
    if (xgr::beam::exp_fixed(xs[i - 1]) > xgr::beam::exp_fixed(xs[i])) {
      FAIL("exp_fixed(" << xs[i - 1] << ") > exp_fixed(" << xs[i] << ")");
    }
  }
}

TEST_CASE("log_sum_exp matches a double-precision reference on random rows") {
  std::mt19937_64 rng = xgr::test::make_rng(102);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::uniform_real_distribution<float> wide(-40.0f, 40.0f);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int trial = 0; trial < 400; ++trial) {
    const std::size_t length = std::uniform_int_distribution<std::size_t>(1, trial % 10 == 0 ? 60000 : 3000)(rng);
    const bool specials = trial % 3 == 0;
    std::vector<float> row(length);
    for (float& value : row) {
      value = trial % 2 == 0 ? normal(rng) : wide(rng);
      if (specials && unit(rng) < 0.2) value = unit(rng) < 0.5 ? -inf : qnan;
    }
    float row_max = -inf;
    for (float value : row) row_max = xgr::beam::max_ignoring_nan(row_max, value);
    std::uint64_t fixed_sum = 0;
    for (float value : row) fixed_sum += xgr::beam::exp_fixed(value - row_max);
    const float got = xgr::beam::log_sum_exp(row_max, fixed_sum);

    double max_double = -std::numeric_limits<double>::infinity();
    for (float value : row) {
      if (!std::isnan(value)) max_double = std::max(max_double, static_cast<double>(value));
    }
    if (max_double == -std::numeric_limits<double>::infinity()) {
      CHECK(got == -inf);
      continue;
    }
    double sum = 0.0;
    for (float value : row) {
      if (!std::isnan(value)) sum += std::exp(static_cast<double>(value) - max_double);
    }
    const double want = max_double + std::log(sum);
    const double error = std::abs(static_cast<double>(got) - want) / std::max(1.0, std::abs(want));
    INFO("trial " << trial << ", length " << length << ": got " << got << ", want " << want);
    CHECK(error <= 4e-6);
  }
}

TEST_CASE("log_sum_exp of a single element is that element, and of an all -inf row is -inf") {
  for (float value : {-7.25f, 0.0f, 3.5f, 1e6f}) CHECK(xgr::beam::log_sum_exp(value, xgr::beam::exp_fixed(0.0f)) == value);
  // An all -inf (or all NaN) row: the NaN-ignoring max stays -inf and so does the log-sum-exp.
  float row_max = -inf;
  for (float value : {-inf, qnan, -inf}) row_max = xgr::beam::max_ignoring_nan(row_max, value);
  CHECK(row_max == -inf);
  CHECK(xgr::beam::log_sum_exp(row_max, 0) == -inf);
  CHECK(xgr::beam::log_sum_exp(inf, 0) == inf);
  CHECK(xgr::beam::max_ignoring_nan(qnan, 2.0f) == 2.0f);
  CHECK(xgr::beam::max_ignoring_nan(2.0f, qnan) == 2.0f);
}

// ---- Search results against the brute force ------------------------------------------------------

TEST_CASE("exhaustive beam search returns the brute-force top-B of the whole catalogue") {
  std::mt19937_64 rng = xgr::test::make_rng(201);
  for (std::size_t levels = 1; levels <= 4; ++levels) {
    for (int trial = 0; trial < 25; ++trial) {
      const Problem p = random_problem(rng, levels);
      const HashModel model{rng()};
      const BeamOutput out = search(p.trie, p.config, {p.width}, std::vector<HashModel>{model});
      check_against_brute_force(p, out, 0, model);
      // Fewer valid tuples than the width: all of them, counted; otherwise exactly the width.
      CHECK(out.counts[0] == std::min<std::size_t>(p.width, p.trie.leaf_count()));
    }
  }
}

TEST_CASE("ties break by lower flattened index: the better parent's child first, whatever its token") {
  // Items (0,0) (0,1) (1,0) (1,1); tokens: level 0 codes at 0..1, level 1 codes at 2..3; vocab 4.
  const xgr::ItemTable table = xgr::test::complete_item_table(std::vector<std::uint32_t>{2, 2});
  const xgr::ItemTrie trie = xgr::build_item_trie(table);
  xgr::BeamConfig config;
  config.max_beam_width = 4;
  config.vocab = 4;
  config.level_token_offsets = {0, 2};
  // Rows: level 0 [0, 1, -inf, -inf]; level 1, after either code, [-inf, -inf, 1, 0]. Both rows have
  // the same log-sum-exp L = log(1 + e). Level 0 ranks code 1 first (slot 0, score 1 - L, exact)
  // and code 0 second (slot 1, score -L). At level 1:
  //   (1,0) = 1 + ((1 - L) - L)    (1,1) = 0 + ((1 - L) - L)    (0,0) = 1 + (-L - L)    (0,1) = 0 + (-L - L)
  // (1,1) and (0,0) tie exactly: both are 1 - 2L rounded once. The tie goes to the lower flat index:
  // (1,1) is slot 0's token 3 (index 3), (0,0) is slot 1's token 2 (index 4 + 2) - so the parent's
  // rank decides, not the token (which would put (0,0) first) nor the tuple order.
  TableModel model;
  model.rows = {{{}, {0.0f, 1.0f, -inf, -inf}}, {{0}, {-inf, -inf, 1.0f, 0.0f}}, {{1}, {-inf, -inf, 1.0f, 0.0f}}};
  const BeamOutput out = search(trie, config, {4}, std::vector<TableModel>{model});
  const float lse = xgr::beam::log_sum_exp(1.0f, xgr::beam::exp_fixed(0.0f) + xgr::beam::exp_fixed(-1.0f));
  CHECK(std::abs(lse - 1.3132616f) < 1e-6f);
  const float best_parent = 1.0f + (0.0f - lse);
  const float other_parent = 0.0f + (0.0f - lse);
  const std::vector<ExpectedBeam> want = {{{1, 0}, 1.0f + (best_parent - lse), 2, 1},
                                          {{1, 1}, 0.0f + (best_parent - lse), 3, 1},
                                          {{0, 0}, 1.0f + (other_parent - lse), 0, 1},
                                          {{0, 1}, 0.0f + (other_parent - lse), 1, 1}};
  REQUIRE(want[1].score == want[2].score);
  std::string why;
  CHECK_MESSAGE(xgr::test::same_beams(out.beams(0), want, &why), why);
  // The brute force's tie order is the same.
  CHECK_MESSAGE(xgr::test::same_beams(xgr::test::brute_force_beams<float>(table, model, spec_of(config, 4)), want, &why), why);
}

TEST_CASE("ties break by lower flattened index: with all scores equal, tuples come in lexicographic order") {
  std::mt19937_64 rng = xgr::test::make_rng(202);
  for (int trial = 0; trial < 12; ++trial) {
    const std::size_t levels = 1 + static_cast<std::size_t>(trial % 4);
    const std::vector<std::uint32_t> codebooks(levels, 5);
    const xgr::ItemTable table = xgr::test::random_item_table(rng, codebooks, 60);
    const xgr::ItemTrie trie = xgr::build_item_trie(table);
    std::vector<std::vector<std::uint32_t>> tuples;
    for (std::size_t item = 0; item < table.size(); ++item) {
      tuples.emplace_back(table.codes.begin() + static_cast<std::ptrdiff_t>(item * levels),
                          table.codes.begin() + static_cast<std::ptrdiff_t>((item + 1) * levels));
    }
    std::sort(tuples.begin(), tuples.end());
    tuples.erase(std::unique(tuples.begin(), tuples.end()), tuples.end());
    // Any width, exhaustive or not: with every candidate tied, each step keeps the lowest flat
    // indices, i.e. the lexicographically smallest prefixes.
    const std::uint32_t width = std::uniform_int_distribution<std::uint32_t>(1, 70)(rng);
    xgr::BeamConfig config;
    config.max_beam_width = width;
    config.vocab = 5;
    const BeamOutput out = search(trie, config, {width}, std::vector<ConstantModel>{ConstantModel{}});
    INFO("levels " << levels << ", width " << width);
    REQUIRE(out.counts[0] == std::min<std::size_t>(width, tuples.size()));
    for (std::size_t slot = 0; slot < out.counts[0]; ++slot) {
      CHECK(out.beams(0)[slot].codes == tuples[slot]);
      CHECK(out.scores[slot] == out.scores[0]);
    }
  }
}

TEST_CASE("tied scores across parents follow the parents' ranks, as the brute force orders them") {
  // Rows that ignore the prefix and logits on a 0.5 grid: different parents see the same row, so
  // their children tie exactly whenever the parents' scores differ by a grid step.
  std::mt19937_64 rng = xgr::test::make_rng(203);
  std::size_t tied_pairs = 0;
  for (int trial = 0; trial < 30; ++trial) {
    Problem p = random_problem(rng, 2 + static_cast<std::size_t>(trial % 3));
    HashModel model{rng()};
    model.tie_step = 0.5f;
    model.prefix_blind = trial % 2 == 0;
    const BeamOutput out = search(p.trie, p.config, {p.width}, std::vector<HashModel>{model});
    check_against_brute_force(p, out, 0, model);
    for (std::size_t slot = 1; slot < out.counts[0]; ++slot) tied_pairs += out.scores[slot] == out.scores[slot - 1] ? 1 : 0;
  }
  CHECK(tied_pairs > 0);  // the inputs did exercise ties
}

TEST_CASE("NaN, -inf and dead rows in random logits give the brute-force result") {
  std::mt19937_64 rng = xgr::test::make_rng(204);
  for (int trial = 0; trial < 40; ++trial) {
    const Problem p = random_problem(rng, 1 + static_cast<std::size_t>(trial % 4));
    HashModel model{rng()};
    model.nan_fraction = 0.1;
    model.minus_inf_fraction = 0.15;
    model.dead_row_fraction = 0.2;
    const BeamOutput out = search(p.trie, p.config, {p.width}, std::vector<HashModel>{model});
    check_against_brute_force(p, out, 0, model);
  }
}

TEST_CASE("half and bfloat16 logits are scored as their float values") {
  std::mt19937_64 rng = xgr::test::make_rng(205);
  for (int trial = 0; trial < 30; ++trial) {
    const Problem p = random_problem(rng, 1 + static_cast<std::size_t>(trial % 4));
    HashModel model{rng()};
    model.minus_inf_fraction = trial % 3 == 0 ? 0.1 : 0.0;
    const BeamOutput half_out = search<xgr::beam::FullVocabLogSoftmax, xgr::half>(p.trie, p.config, {p.width}, std::vector<HashModel>{model});
    check_against_brute_force<xgr::half>(p, half_out, 0, model);
    const BeamOutput bf16_out =
        search<xgr::beam::FullVocabLogSoftmax, xgr::bfloat16>(p.trie, p.config, {p.width}, std::vector<HashModel>{model});
    check_against_brute_force<xgr::bfloat16>(p, bf16_out, 0, model);
  }
  // The element type is part of the function: rounding to bfloat16 changes scores.
  std::vector<std::uint32_t> codebooks{50};
  const xgr::ItemTable table = xgr::test::complete_item_table(codebooks);
  const xgr::ItemTrie trie = xgr::build_item_trie(table);
  xgr::BeamConfig config;
  config.max_beam_width = 50;
  config.vocab = 50;
  const BeamOutput as_float = search(trie, config, {50}, std::vector<HashModel>{HashModel{7}});
  const BeamOutput as_bf16 = search<xgr::beam::FullVocabLogSoftmax, xgr::bfloat16>(trie, config, {50}, std::vector<HashModel>{HashModel{7}});
  CHECK(as_float.scores != as_bf16.scores);
}

TEST_CASE("a beam width above the valid set returns fewer results, counted, with clean padding") {
  const xgr::ItemTable table{{4, 4}, {70, 71, 72, 73, 74}, {0, 1, 0, 3, 2, 2, 3, 0, 3, 1}};
  const xgr::ItemTrie trie = xgr::build_item_trie(table);
  xgr::BeamConfig config;
  config.max_beam_width = 16;
  config.vocab = 9;
  config.level_token_offsets = {1, 5};
  const HashModel model{99};
  const BeamOutput out = search(trie, config, {16}, std::vector<HashModel>{model});
  CHECK(out.counts[0] == 5);
  std::string why;
  CHECK_MESSAGE(xgr::test::padding_is_clean(out, 0, &why), why);
  std::vector<std::vector<std::uint32_t>> found;
  for (const ExpectedBeam& beam : out.beams(0)) found.push_back(beam.codes);
  std::sort(found.begin(), found.end());
  CHECK(found == std::vector<std::vector<std::uint32_t>>{{0, 1}, {0, 3}, {2, 2}, {3, 0}, {3, 1}});
  // Scores are log-probabilities of whole tuples: negative, best first.
  for (std::size_t slot = 0; slot < 5; ++slot) {
    CHECK(out.scores[slot] < 0.0f);
    if (slot > 0) CHECK(out.scores[slot] <= out.scores[slot - 1]);
  }
}

TEST_CASE("duplicate tuples report their first item in table order and how many share them") {
  // Items 500 and 501 share (1, 2), 502 and 503 and 504 share (0, 0).
  const xgr::ItemTable table{{3, 3}, {502, 500, 9, 503, 501, 504}, {0, 0, 1, 2, 2, 1, 0, 0, 1, 2, 0, 0}};
  const xgr::ItemTrie trie = xgr::build_item_trie(table);
  xgr::BeamConfig config;
  config.max_beam_width = 8;
  config.vocab = 3;
  const BeamOutput out = search(trie, config, {8}, std::vector<HashModel>{HashModel{3}});
  REQUIRE(out.counts[0] == 3);
  for (const ExpectedBeam& beam : out.beams(0)) {
    if (beam.codes == std::vector<std::uint32_t>{1, 2}) CHECK((beam.first_item == 500 && beam.item_count == 2));
    if (beam.codes == std::vector<std::uint32_t>{0, 0}) CHECK((beam.first_item == 502 && beam.item_count == 3));
    if (beam.codes == std::vector<std::uint32_t>{2, 1}) CHECK((beam.first_item == 9 && beam.item_count == 1));
  }
}

TEST_CASE("requests of different beam widths in one batch each equal the request run alone") {
  std::mt19937_64 rng = xgr::test::make_rng(206);
  for (int trial = 0; trial < 12; ++trial) {
    const std::size_t levels = 1 + static_cast<std::size_t>(trial % 4);
    const std::vector<std::uint32_t> codebooks(levels, levels == 1 ? 300u : 9u);
    const xgr::ItemTable table = xgr::test::random_item_table(rng, codebooks, 500, 0.05);
    const xgr::ItemTrie trie = xgr::build_item_trie(table);
    const std::size_t requests = std::uniform_int_distribution<std::size_t>(2, 6)(rng);
    xgr::BeamConfig config;
    config.max_requests = requests + trial % 2;
    config.max_beam_width = 96;
    config.vocab = 300 + levels * 9;
    config.level_token_offsets.resize(levels);
    for (std::size_t level = 0; level < levels; ++level) config.level_token_offsets[level] = static_cast<std::uint32_t>(level * 9);
    std::vector<std::uint32_t> widths;
    std::vector<HashModel> models;
    for (std::size_t request = 0; request < requests; ++request) {
      widths.push_back(std::uniform_int_distribution<std::uint32_t>(1, 96)(rng));  // mostly not exhaustive
      models.push_back(HashModel{rng()});
    }
    const BeamOutput batch = search(trie, config, widths, models);
    for (std::size_t request = 0; request < requests; ++request) {
      xgr::BeamConfig alone_config = config;
      alone_config.max_requests = 1;
      const BeamOutput alone = search(trie, alone_config, {widths[request]}, std::vector<HashModel>{models[request]});
      INFO("trial " << trial << ", request " << request << " of width " << widths[request]);
      std::string why;
      CHECK_MESSAGE(xgr::test::same_beams(batch.beams(request), alone.beams(0), &why), why);
      CHECK_MESSAGE(xgr::test::padding_is_clean(batch, request, &why), why);
      CHECK(batch.counts[request] == alone.counts[0]);
    }
  }
}

TEST_CASE("one searcher runs batch after batch, each as a fresh searcher would") {
  std::mt19937_64 rng = xgr::test::make_rng(207);
  const xgr::ItemTable table = xgr::test::random_item_table(rng, 3, 8, 300);
  const xgr::ItemTrie trie = xgr::build_item_trie(table);
  xgr::BeamConfig config;
  config.max_requests = 4;
  config.max_beam_width = 64;
  config.vocab = 24;
  config.level_token_offsets = {0, 8, 16};
  xgr::BeamSearcher searcher(xgr::exec::host, trie, config);
  for (int batch = 0; batch < 4; ++batch) {
    std::vector<std::uint32_t> widths;
    std::vector<HashModel> models;
    const std::size_t requests = std::uniform_int_distribution<std::size_t>(1, 4)(rng);
    for (std::size_t r = 0; r < requests; ++r) {
      widths.push_back(std::uniform_int_distribution<std::uint32_t>(1, 64)(rng));
      models.push_back(HashModel{rng()});
    }
    const BeamOutput reused = xgr::test::run_host_search(searcher, widths, models);
    const BeamOutput fresh = search(trie, config, widths, models);
    for (std::size_t r = 0; r < requests; ++r) {
      std::string why;
      CHECK_MESSAGE(xgr::test::same_beams(reused.beams(r), fresh.beams(r), &why), why);
    }
  }
}

TEST_CASE("padding columns past vocab and the rows of dead slots are never read") {
  std::mt19937_64 rng = xgr::test::make_rng(208);
  for (int trial = 0; trial < 8; ++trial) {
    const Problem p = random_problem(rng, 1 + static_cast<std::size_t>(trial % 4));
    const HashModel model{rng()};
    // HostLogits fills padding columns and dead slots' rows with NaN: any read of them would poison
    // a row's log-sum-exp and change the result.
    const BeamOutput strided = search(p.trie, p.config, {p.width}, std::vector<HashModel>{model}, p.config.vocab + 13);
    check_against_brute_force(p, strided, 0, model);
  }
}

TEST_CASE("policies that change only the cost give identical results on the host") {
  std::mt19937_64 rng = xgr::test::make_rng(209);
  for (int trial = 0; trial < 6; ++trial) {
    const Problem p = random_problem(rng, 3);
    const HashModel model{rng()};
    const BeamOutput standard = search(p.trie, p.config, {p.width}, std::vector<HashModel>{model});
    xgr::BeamSearcher<xgr::exec::host_t, xgr::beam::FullVocabLogSoftmax, xgr::beam::FullSortSelect, xgr::beam::DenseMaskFilter>
        baseline(xgr::exec::host, p.trie, p.config);
    const std::vector<std::uint32_t> widths{p.width};
    const BeamOutput other = xgr::test::run_host_search(baseline, widths, std::vector<HashModel>{model});
    std::string why;
    CHECK_MESSAGE(xgr::test::same_beams(standard.beams(0), other.beams(0), &why), why);
  }
}

// ---- Dead ends ------------------------------------------------------------------------------------

TEST_CASE("a beam whose allowed tokens all score -inf or NaN yields no candidates") {
  // All nine tuples of two levels of 3 codes; level 0 at tokens 0..2, level 1 at tokens 3..5.
  const xgr::ItemTable table = xgr::test::complete_item_table(std::vector<std::uint32_t>{3, 3});
  const xgr::ItemTrie trie = xgr::build_item_trie(table);
  xgr::BeamConfig config;
  config.max_beam_width = 9;
  config.vocab = 6;
  config.level_token_offsets = {0, 3};
  // Code 0 is the best first code, but after it the allowed tokens are -inf / NaN (the other
  // columns are finite, so the row's log-sum-exp is finite: the candidates themselves are dead).
  TableModel model;
  model.fallback = HashModel{5};
  model.rows = {{{}, {4.0f, 1.0f, 0.0f, 2.0f, 2.0f, 2.0f}}, {{0}, {1.0f, 2.0f, 3.0f, -inf, qnan, -inf}}};
  xgr::BeamSearcher searcher(xgr::exec::host, trie, config);
  const std::vector<std::uint32_t> widths{9};
  xgr::test::HostLogits<float, TableModel> logits(9, 6, {model});
  searcher.begin(xgr::exec::host, widths);
  searcher.step(xgr::exec::host, logits(searcher, 0));
  CHECK(searcher.live_beams()[0] == 3);
  CHECK(searcher.tokens()(0, 0) == 0);  // the dead end ranks first after level 0
  searcher.step(xgr::exec::host, logits(searcher, 1));
  CHECK(searcher.live_beams()[0] == 6);
  BeamOutput out(9, 2, 1);
  searcher.finalize(xgr::exec::host, out.results());
  out.row_begin = {0, 9};
  REQUIRE(out.counts[0] == 6);
  for (const ExpectedBeam& beam : out.beams(0)) CHECK(beam.codes[0] != 0);
  std::string why;
  CHECK_MESSAGE(xgr::test::same_beams(out.beams(0), xgr::test::brute_force_beams<float>(table, model, spec_of(config, 9)), &why), why);
  CHECK_MESSAGE(xgr::test::padding_is_clean(out, 0, &why), why);
}

TEST_CASE("a request whose every beam is a dead end reports count 0; its batch neighbours are unaffected") {
  const xgr::ItemTable table = xgr::test::complete_item_table(std::vector<std::uint32_t>{3, 4});
  const xgr::ItemTrie trie = xgr::build_item_trie(table);
  xgr::BeamConfig config;
  config.max_requests = 2;
  config.max_beam_width = 12;
  config.vocab = 7;
  config.level_token_offsets = {0, 3};
  HashModel dead{11};
  dead.dead_row_fraction = 1.0;  // every row after the root is all -inf / NaN
  const HashModel alive{12};
  const BeamOutput out = search(trie, config, {5, 12}, std::vector<HashModel>{dead, alive});
  CHECK(out.counts[0] == 0);
  CHECK(out.counts[1] == 12);
  std::string why;
  CHECK_MESSAGE(xgr::test::padding_is_clean(out, 0, &why), why);
  CHECK_MESSAGE(xgr::test::same_beams(out.beams(1), xgr::test::brute_force_beams<float>(table, alive, spec_of(config, 12)), &why), why);
}

TEST_CASE("an empty catalogue yields count 0 after every level") {
  const std::vector<std::uint32_t> codebooks{4, 4, 4};
  const xgr::ItemTrie trie = xgr::ItemTrie::build(codebooks, xgr::MatrixView<const std::uint32_t>{nullptr, 0, 3, 3});
  xgr::BeamConfig config;
  config.max_requests = 2;
  config.max_beam_width = 8;
  config.vocab = 12;
  config.level_token_offsets = {0, 4, 8};
  const BeamOutput out = search(trie, config, {8, 3}, std::vector<HashModel>{HashModel{1}});
  for (std::size_t request = 0; request < 2; ++request) {
    CHECK(out.counts[request] == 0);
    std::string why;
    CHECK_MESSAGE(xgr::test::padding_is_clean(out, request, &why), why);
  }
}

// ---- The per-beam cap -----------------------------------------------------------------------------

TEST_CASE("a per-beam cap K >= B changes nothing") {
  std::mt19937_64 rng = xgr::test::make_rng(210);
  for (int trial = 0; trial < 20; ++trial) {
    Problem p = random_problem(rng, 1 + static_cast<std::size_t>(trial % 4));
    // Also a width that is not exhaustive: the statement holds for any beam search.
    if (trial % 2 == 1) p.width = std::max<std::uint32_t>(1, p.width / 3);
    const HashModel model{rng()};
    const BeamOutput uncapped = search(p.trie, p.config, {p.width}, std::vector<HashModel>{model});
    for (std::size_t cap : {std::size_t{p.width}, std::min<std::size_t>(p.width + 3, xgr::max_topk_k), xgr::max_topk_k}) {
      xgr::BeamConfig capped_config = p.config;
      capped_config.top_k_per_beam = cap;
      const BeamOutput capped = search(p.trie, capped_config, {p.width}, std::vector<HashModel>{model});
      std::string why;
      INFO(p.describe() << ", cap " << cap);
      CHECK_MESSAGE(xgr::test::same_beams(capped.beams(0), uncapped.beams(0), &why), why);
    }
  }
}

TEST_CASE("a per-beam cap K < B keeps only each beam's K best candidates, as the brute force does") {
  std::mt19937_64 rng = xgr::test::make_rng(211);
  std::size_t changed = 0;
  for (int trial = 0; trial < 40; ++trial) {
    Problem p = random_problem(rng, 1 + static_cast<std::size_t>(trial % 4));
    if (p.width < 2) continue;
    p.config.top_k_per_beam = std::uniform_int_distribution<std::size_t>(1, std::min<std::size_t>(p.width - 1, 6))(rng);
    HashModel model{rng()};
    model.tie_step = trial % 3 == 0 ? 0.5f : 0.0f;
    model.minus_inf_fraction = trial % 5 == 0 ? 0.2 : 0.0;
    const BeamOutput out = search(p.trie, p.config, {p.width}, std::vector<HashModel>{model});
    check_against_brute_force(p, out, 0, model);
    xgr::BeamConfig uncapped_config = p.config;
    uncapped_config.top_k_per_beam = 0;
    const BeamOutput uncapped = search(p.trie, uncapped_config, {p.width}, std::vector<HashModel>{model});
    changed += out.counts[0] != uncapped.counts[0] || out.codes != uncapped.codes ? 1 : 0;
  }
  CHECK(changed > 0);  // the cap did bite on some inputs
}

TEST_CASE("a per-beam cap applies only to requests wider than K") {
  std::mt19937_64 rng = xgr::test::make_rng(212);
  const xgr::ItemTable table = xgr::test::random_item_table(rng, 3, 6, 150);
  const xgr::ItemTrie trie = xgr::build_item_trie(table);
  xgr::BeamConfig config;
  config.max_requests = 3;
  config.max_beam_width = 40;
  config.vocab = 18;
  config.level_token_offsets = {0, 6, 12};
  config.top_k_per_beam = 4;
  const std::vector<std::uint32_t> widths{3, 4, 40};
  const std::vector<HashModel> models{HashModel{rng()}, HashModel{rng()}, HashModel{rng()}};
  const BeamOutput out = search(trie, config, widths, models);
  for (std::size_t request = 0; request < 3; ++request) {
    xgr::BeamConfig alone = config;
    alone.max_requests = 1;
    if (widths[request] <= 4) alone.top_k_per_beam = 0;
    const BeamOutput single = search(trie, alone, {widths[request]}, std::vector<HashModel>{models[request]});
    std::string why;
    INFO("request " << request);
    CHECK_MESSAGE(xgr::test::same_beams(out.beams(request), single.beams(0), &why), why);
  }
}

// ---- Normalisation --------------------------------------------------------------------------------

TEST_CASE("level-slice normalisation scores tuples by the slice's log-softmax, full vocab by the row's") {
  // The whole catalogue of codebooks 4 x 3 x 5 at disjoint token slices, plus 20 tokens that no
  // level uses. Under slice normalisation every step is a distribution over the level's codes, so
  // the probabilities of all 60 tuples sum to 1; under full-vocab normalisation the unused tokens
  // take their share.
  const std::vector<std::uint32_t> codebooks{4, 3, 5};
  const xgr::ItemTable table = xgr::test::complete_item_table(codebooks);
  const xgr::ItemTrie trie = xgr::build_item_trie(table);
  xgr::BeamConfig config;
  config.max_beam_width = 64;
  config.vocab = 32;
  config.level_token_offsets = {0, 4, 7};
  std::mt19937_64 rng = xgr::test::make_rng(213);
  for (int trial = 0; trial < 5; ++trial) {
    const HashModel model{rng()};
    const BeamOutput full = search(trie, config, {64}, std::vector<HashModel>{model});
    const BeamOutput slice = search<xgr::beam::LevelSliceLogSoftmax>(trie, config, {64}, std::vector<HashModel>{model});
    REQUIRE(full.counts[0] == 60);
    REQUIRE(slice.counts[0] == 60);
    Problem p;
    p.table = table;
    p.config = config;
    p.width = 64;
    check_against_brute_force(p, full, 0, model, true);
    check_against_brute_force(p, slice, 0, model, false);
    double slice_mass = 0.0, full_mass = 0.0;
    for (std::size_t slot = 0; slot < 60; ++slot) {
      slice_mass += std::exp(static_cast<double>(slice.scores[slot]));
      full_mass += std::exp(static_cast<double>(full.scores[slot]));
    }
    CHECK(std::abs(slice_mass - 1.0) < 1e-5);
    CHECK(full_mass < 0.95);
    // Per tuple: a slice excludes mass, so its log-probabilities are higher.
    for (const ExpectedBeam& beam : slice.beams(0)) {
      for (const ExpectedBeam& other : full.beams(0)) {
        if (other.codes == beam.codes) CHECK(beam.score > other.score);
      }
    }
  }
}

TEST_CASE("level-slice and full-vocab normalisation agree bit for bit when the slice is the whole row") {
  std::mt19937_64 rng = xgr::test::make_rng(214);
  const xgr::ItemTable table = xgr::test::random_item_table(rng, 3, 16, 400);
  const xgr::ItemTrie trie = xgr::build_item_trie(table);
  xgr::BeamConfig config;
  config.max_beam_width = 100;
  config.vocab = 16;
  const HashModel model{rng()};
  const BeamOutput full = search(trie, config, {100}, std::vector<HashModel>{model});
  const BeamOutput slice = search<xgr::beam::LevelSliceLogSoftmax>(trie, config, {100}, std::vector<HashModel>{model});
  std::string why;
  CHECK_MESSAGE(xgr::test::same_beams(full.beams(0), slice.beams(0), &why), why);
}

// ---- Beam bookkeeping -----------------------------------------------------------------------------

TEST_CASE("ancestry gives each slot's parent row, and token histories and trie nodes follow it") {
  std::mt19937_64 rng = xgr::test::make_rng(215);
  const std::size_t levels = 4;
  const xgr::ItemTable table = xgr::test::random_item_table(rng, levels, 6, 600);
  const xgr::ItemTrie trie = xgr::build_item_trie(table);
  xgr::BeamConfig config;
  config.max_requests = 3;
  config.max_beam_width = 32;
  config.vocab = 30;
  config.level_token_offsets = {0, 6, 3, 20};  // overlapping slices
  const std::vector<std::uint32_t> widths{32, 7, 19};
  xgr::BeamSearcher searcher(xgr::exec::host, trie, config);
  HashModel model{rng()};
  model.minus_inf_fraction = 0.3;  // some dead slots along the way
  xgr::test::HostLogits<float> logits(58, config.vocab, {model});
  searcher.begin(xgr::exec::host, widths);
  const std::span<const std::uint32_t> row_begin = searcher.row_begin();
  CHECK(std::vector<std::uint32_t>(row_begin.begin(), row_begin.end()) == std::vector<std::uint32_t>{0, 32, 39, 58});
  CHECK(error_of([&] { (void)searcher.ancestry(0); }) == invalid_argument);

  std::vector<std::vector<std::uint32_t>> token_history;  // tokens() after each level
  for (std::size_t level = 0; level < levels; ++level) {
    const std::vector<std::uint32_t> live_before(searcher.live_beams().begin(), searcher.live_beams().end());
    const std::vector<float> scores_before(searcher.beam_scores().begin(), searcher.beam_scores().end());
    const xgr::MatrixView<const std::uint32_t> tokens_view = searcher.tokens();
    const std::vector<std::uint32_t> tokens_before(tokens_view.data, tokens_view.data + tokens_view.size());
    searcher.step(xgr::exec::host, logits(searcher, level));
    const std::span<const std::uint32_t> ancestry = searcher.ancestry(level);
    const xgr::MatrixView<const std::uint32_t> tokens = searcher.tokens();
    token_history.emplace_back(tokens.data, tokens.data + tokens.size());
    for (std::size_t request = 0; request < widths.size(); ++request) {
      const std::uint32_t live = searcher.live_beams()[request];
      CHECK(live <= widths[request]);
      for (std::uint32_t slot = 0; slot < widths[request]; ++slot) {
        const std::uint32_t row = row_begin[request] + slot;
        INFO("level " << level << ", request " << request << ", slot " << slot);
        if (slot >= live) {
          CHECK(ancestry[row] == xgr::no_trie_node);
          CHECK(searcher.trie_nodes()[row] == xgr::no_trie_node);
          CHECK(searcher.beam_scores()[row] == -inf);
          continue;
        }
        const std::uint32_t parent = ancestry[row];
        REQUIRE(parent >= row_begin[request]);
        REQUIRE(parent < row_begin[request] + live_before[request]);  // a live slot of the same request
        for (std::size_t earlier = 0; earlier < level; ++earlier) {
          CHECK(tokens(row, earlier) == tokens_before[parent * levels + earlier]);
        }
        // The trie node is the prefix's node, reached through the codes of its tokens.
        std::uint32_t node = 0;
        for (std::size_t l = 0; l <= level; ++l) node = trie.view().child(node, tokens(row, l) - config.level_token_offsets[l]);
        CHECK(searcher.trie_nodes()[row] == node);
        CHECK(node != xgr::no_trie_node);
        // A log-probability was added: the score cannot rise (up to the float roundings).
        CHECK(searcher.beam_scores()[row] <= scores_before[parent] + 1e-6f * (1.0f + std::abs(scores_before[parent])));
        if (slot > 0) CHECK(searcher.beam_scores()[row] <= searcher.beam_scores()[row - 1]);
      }
    }
  }
  CHECK(searcher.steps_done() == levels);
  BeamOutput out(58, levels, 3);
  searcher.finalize(xgr::exec::host, out.results());
  out.row_begin.assign(row_begin.begin(), row_begin.end());
  // Walking the ancestry back from a final slot meets, at every level, the token it decoded there.
  for (std::size_t request = 0; request < widths.size(); ++request) {
    for (std::uint32_t slot = 0; slot < out.counts[request]; ++slot) {
      std::uint32_t row = row_begin[request] + slot;
      for (std::size_t level = levels; level-- > 0;) {
        CHECK(out.codes[(row_begin[request] + slot) * levels + level] + config.level_token_offsets[level] ==
              token_history[level][row * levels + level]);
        row = searcher.ancestry(level)[row];
      }
      CHECK(row == row_begin[request]);  // level 0's parent is the request's root beam
    }
  }
}

// ---- Bad arguments --------------------------------------------------------------------------------

TEST_CASE("bad configurations throw invalid_argument") {
  const xgr::ItemTable table = xgr::test::complete_item_table(std::vector<std::uint32_t>{4, 4});
  const xgr::ItemTrie trie = xgr::build_item_trie(table);
  const auto construct = [&](const xgr::BeamConfig& config) {
    return error_of([&] { xgr::BeamSearcher searcher(xgr::exec::host, trie, config); });
  };
  xgr::BeamConfig good;
  good.max_requests = 2;
  good.max_beam_width = 8;
  good.vocab = 8;
  good.level_token_offsets = {0, 4};
  CHECK(construct(good) == "no error");
  auto config = good;
  config.vocab = 0;
  CHECK(construct(config) == invalid_argument);
  config = good;
  config.vocab = 7;  // level 1's tokens [4, 8) do not fit
  CHECK(construct(config) == invalid_argument);
  config = good;
  config.level_token_offsets = {0, 5};
  CHECK(construct(config) == invalid_argument);
  config.level_token_offsets = {0, 4, 0};  // one offset too many
  CHECK(construct(config) == invalid_argument);
  config = good;
  config.level_token_offsets = {};
  config.vocab = 3;  // offsets all 0: codebook 4 needs vocab 4
  CHECK(construct(config) == invalid_argument);
  config.vocab = 4;
  CHECK(construct(config) == "no error");
  config = good;
  config.max_beam_width = 0;
  CHECK(construct(config) == invalid_argument);
  config.max_beam_width = 1025;
  CHECK(construct(config) == invalid_argument);
  config.max_beam_width = 1024;
  CHECK(construct(config) == "no error");
  config = good;
  config.max_requests = 0;
  CHECK(construct(config) == invalid_argument);
  config = good;
  config.top_k_per_beam = 1025;
  CHECK(construct(config) == invalid_argument);
  config = good;
  config.vocab = (std::size_t{1} << 20) + 1;
  CHECK(construct(config) == invalid_argument);
  // A trie without levels (default-constructed, never built).
  const xgr::ItemTrie unbuilt;
  CHECK(error_of([&] { xgr::BeamSearcher searcher(xgr::exec::host, unbuilt, good); }) == invalid_argument);
}

TEST_CASE("bad batches, logits and call orders throw invalid_argument") {
  const xgr::ItemTable table = xgr::test::complete_item_table(std::vector<std::uint32_t>{4, 4});
  const xgr::ItemTrie trie = xgr::build_item_trie(table);
  xgr::BeamConfig config;
  config.max_requests = 2;
  config.max_beam_width = 8;
  config.vocab = 8;
  config.level_token_offsets = {0, 4};
  xgr::BeamSearcher searcher(xgr::exec::host, trie, config);
  std::vector<float> storage(16 * 9, 0.0f);
  const auto logits = [&](std::size_t rows, std::size_t cols, std::size_t stride = 0) {
    return xgr::MatrixView<const float>{storage.data(), rows, cols, stride == 0 ? cols : stride};
  };
  BeamOutput out(16, 2, 2);
  const auto begin = [&](std::vector<std::uint32_t> widths) {
    return error_of([&] { searcher.begin(xgr::exec::host, widths); });
  };

  // Before any begin(): no batch to step or finalize.
  CHECK(error_of([&] { searcher.step(xgr::exec::host, logits(8, 8)); }) == invalid_argument);
  CHECK(error_of([&] { searcher.finalize(xgr::exec::host, out.results()); }) == invalid_argument);

  CHECK(begin({}) == invalid_argument);         // no requests
  CHECK(begin({4, 4, 4}) == invalid_argument);  // above max_requests
  CHECK(begin({0, 4}) == invalid_argument);     // width 0
  CHECK(begin({4, 9}) == invalid_argument);     // above max_beam_width
  CHECK(begin({8, 5}) == "no error");           // 13 slots

  CHECK(error_of([&] { searcher.finalize(xgr::exec::host, out.results()); }) == invalid_argument);  // nothing decoded
  CHECK(error_of([&] { searcher.step(xgr::exec::host, logits(12, 8)); }) == invalid_argument);     // a row short
  CHECK(error_of([&] { searcher.step(xgr::exec::host, logits(13, 7)); }) == invalid_argument);     // a column short
  CHECK(error_of([&] { searcher.step(xgr::exec::host, logits(13, 9)); }) == invalid_argument);     // a column too many
  CHECK(error_of([&] { searcher.step(xgr::exec::host, logits(13, 8, 7)); }) == invalid_argument);  // stride below cols
  CHECK(error_of([&] { searcher.step(xgr::exec::host, xgr::MatrixView<const float>{nullptr, 13, 8, 8}); }) == invalid_argument);
  CHECK(error_of([&] { searcher.step(xgr::exec::host, logits(13, 8)); }) == "no error");
  CHECK(error_of([&] { searcher.step(xgr::exec::host, logits(16, 8, 9)); }) == "no error");  // more rows and a wider stride are fine
  CHECK(error_of([&] { searcher.step(xgr::exec::host, logits(13, 8)); }) == invalid_argument);  // all levels done

  BeamOutput small(12, 2, 2);
  CHECK(error_of([&] { searcher.finalize(xgr::exec::host, small.results()); }) == invalid_argument);  // 13 slots needed
  BeamOutput one_level(13, 1, 2);
  CHECK(error_of([&] { searcher.finalize(xgr::exec::host, one_level.results()); }) == invalid_argument);
  BeamOutput one_request(13, 2, 1);
  CHECK(error_of([&] { searcher.finalize(xgr::exec::host, one_request.results()); }) == invalid_argument);
  for (int shortened = 0; shortened < 3; ++shortened) {  // codes fit, one per-slot output is a slot short
    xgr::BeamResults results = out.results();
    if (shortened == 0) results.scores = results.scores.first(12);
    if (shortened == 1) results.item_ids = results.item_ids.first(12);
    if (shortened == 2) results.item_counts = results.item_counts.first(12);
    CHECK(error_of([&] { searcher.finalize(xgr::exec::host, results); }) == invalid_argument);
  }
  CHECK(error_of([&] { searcher.finalize(xgr::exec::host, out.results()); }) == "no error");
  CHECK(error_of([&] { (void)searcher.ancestry(2); }) == invalid_argument);

  // A failed begin() leaves the previous batch intact; a new begin() starts over.
  CHECK(begin({9}) == invalid_argument);
  CHECK(searcher.slot_count() == 13);
  CHECK(begin({3}) == "no error");
  CHECK(searcher.steps_done() == 0);
  CHECK(searcher.slot_count() == 3);
  CHECK(error_of([&] { searcher.finalize(xgr::exec::host, out.results()); }) == invalid_argument);
}
