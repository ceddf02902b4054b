// Random MaskedTopK problems and an independent brute-force oracle, shared by host and CUDA tests.
//
// make_topk_input builds one problem in host vectors (scores with NaN-filled row padding, both a
// bitset and a sparse form of the same random allowed set, row offsets, correct row bounds, group
// offsets); TopKInput::problem() views it. brute_force_topk answers it with a plain std::sort and
// shares no code with xgr/topk/keys.hpp, so it checks the key encoding as well as the selection.
// standard_topk_cases lists the edge cases every implementation must get right, then random ones.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "xgr/core/dtype.hpp"
#include "xgr/core/view.hpp"
#include "xgr/topk/topk.hpp"

namespace xgr::test {

enum class ScoreDistribution {
  normal,        // N(0, 4^2)
  few_distinct,  // values from a set of ~5: many ties
  specials,      // normal plus some NaN, -inf, +inf, -0.0f, +0.0f
};

inline const char* to_string(ScoreDistribution distribution) {
  switch (distribution) {
    case ScoreDistribution::normal: return "normal";
    case ScoreDistribution::few_distinct: return "few_distinct";
    case ScoreDistribution::specials: return "specials";
  }
  return "?";
}

inline const char* mask_name(xgr::MaskKind kind) {
  switch (kind) {
    case xgr::MaskKind::none: return "none";
    case xgr::MaskKind::bitset: return "bitset";
    case xgr::MaskKind::sparse: return "sparse";
  }
  return "?";
}

struct TopKCase {
  std::size_t groups = 1, rows_per_group = 1, vocab = 1, k = 1;
  std::size_t row_stride = 0;  // 0: = vocab
  xgr::MaskKind mask = xgr::MaskKind::none;
  double density = 1.0;        // fraction of allowed columns for masks
  bool row_offsets = false;
  // Correct upper bounds: max score of the row incl. offset, or +inf when the row contains +inf.
  bool row_bounds = false;
  // Groups get different row counts in [1, rows_per_group], described by group_row_offsets.
  bool variable_groups = false;
  ScoreDistribution distribution = ScoreDistribution::normal;

  [[nodiscard]] std::string describe() const {
    std::string text = "groups=" + std::to_string(groups) + " rows_per_group=" + std::to_string(rows_per_group) +
                       " vocab=" + std::to_string(vocab) + " k=" + std::to_string(k) +
                       " row_stride=" + std::to_string(row_stride == 0 ? vocab : row_stride) + " mask=" + mask_name(mask);
    if (mask != xgr::MaskKind::none) text += " density=" + std::to_string(density);
    text += std::string(" distribution=") + to_string(distribution);
    if (row_offsets) text += " row_offsets";
    if (row_bounds) text += " row_bounds";
    if (variable_groups) text += " variable_groups";
    return text;
  }
};

template <class T>
struct TopKInput {
  TopKCase spec;
  std::vector<T> scores;                         // rows x row_stride, padding = NaN
  std::vector<std::uint32_t> group_row_offsets;  // variable_groups only: groups + 1 entries
  std::vector<float> row_offsets, row_bounds;    // empty unless requested
  std::vector<std::uint32_t> bitset_words;       // rows x words_per_row (masks only)
  std::vector<std::uint32_t> row_ptr, columns;   // sparse form of the same allowed set (masks only)
  std::size_t rows = 0, words_per_row = 0;

  [[nodiscard]] std::size_t vocab() const noexcept { return spec.vocab; }
  [[nodiscard]] std::size_t row_stride() const noexcept { return spec.row_stride == 0 ? spec.vocab : spec.row_stride; }

  // Views over the host vectors above.
  [[nodiscard]] xgr::TopKProblem<T> problem() const {
    xgr::TopKProblem<T> p;
    p.scores = xgr::MatrixView<const T>{scores.data(), rows, spec.vocab, row_stride()};
    p.k = spec.k;
    p.group_row_offsets = std::span<const std::uint32_t>(group_row_offsets);
    p.rows_per_group = spec.rows_per_group;
    p.row_offsets = std::span<const float>(row_offsets);
    p.row_score_bounds = std::span<const float>(row_bounds);
    switch (spec.mask) {
      case xgr::MaskKind::none: p.mask = xgr::TopKMask::all(); break;
      case xgr::MaskKind::bitset:
        p.mask = xgr::TopKMask::bitset(
            xgr::MatrixView<const std::uint32_t>{bitset_words.data(), rows, words_per_row, words_per_row});
        break;
      case xgr::MaskKind::sparse:
        p.mask = xgr::TopKMask::sparse(std::span<const std::uint32_t>(row_ptr), std::span<const std::uint32_t>(columns));
        break;
    }
    return p;
  }

  [[nodiscard]] xgr::TopKLimits limits() const {
    xgr::TopKLimits l;
    l.max_groups = spec.groups;
    l.max_rows = rows;
    l.max_rows_per_group = spec.rows_per_group;
    l.max_vocab = spec.vocab;
    l.max_k = spec.k;
    l.max_sparse_entries = columns.size();
    return l;
  }
};

namespace detail {

template <class T>
T to_element(float value) {
  if constexpr (std::is_same_v<T, float>) {
    return value;
  } else {
    return T(value);
  }
}

inline float quiet_nan() { return std::numeric_limits<float>::quiet_NaN(); }
inline float infinity() { return std::numeric_limits<float>::infinity(); }

inline bool is_allowed_bit(const std::vector<std::uint32_t>& words, std::size_t words_per_row, std::size_t row,
                           std::size_t column) {
  return ((words[row * words_per_row + column / 32] >> (column % 32)) & 1u) != 0;
}

}  // namespace detail

// T in {float, xgr::half, xgr::bfloat16}.
template <class T>
TopKInput<T> make_topk_input(const TopKCase& spec, std::mt19937_64& rng) {
  TopKInput<T> input;
  input.spec = spec;
  const std::size_t vocab = spec.vocab;
  const std::size_t stride = input.row_stride();

  // Rows and groups.
  if (spec.variable_groups) {
    std::uniform_int_distribution<std::size_t> rows_of_group(1, std::max<std::size_t>(spec.rows_per_group, 1));
    input.group_row_offsets.push_back(0);
    for (std::size_t g = 0; g < spec.groups; ++g) {
      input.rows += rows_of_group(rng);
      input.group_row_offsets.push_back(static_cast<std::uint32_t>(input.rows));
    }
  } else {
    input.rows = spec.groups * spec.rows_per_group;
  }
  const std::size_t rows = input.rows;

  // Scores, row-major with padding that reads as NaN.
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<float> distinct;
  if (spec.distribution == ScoreDistribution::few_distinct) {
    // Quarter steps are exact in float, half and bfloat16, so ties survive the conversion.
    std::uniform_int_distribution<int> quarter(-16, 16);
    for (int i = 0; i < 5; ++i) distinct.push_back(static_cast<float>(quarter(rng)) * 0.25f);
  }
  const float specials[] = {detail::quiet_nan(), -detail::infinity(), detail::infinity(), -0.0f, 0.0f};
  std::uniform_int_distribution<std::size_t> pick_distinct(0, distinct.empty() ? 0 : distinct.size() - 1);
  std::uniform_int_distribution<std::size_t> pick_special(0, 4);

  input.scores.assign(rows == 0 ? 0 : rows * stride, detail::to_element<T>(detail::quiet_nan()));
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t c = 0; c < vocab; ++c) {
      float value = 0.0f;
      switch (spec.distribution) {
        case ScoreDistribution::normal: value = normal(rng); break;
        case ScoreDistribution::few_distinct: value = distinct[pick_distinct(rng)]; break;
        case ScoreDistribution::specials: value = unit(rng) < 0.15 ? specials[pick_special(rng)] : normal(rng); break;
      }
      input.scores[r * stride + c] = detail::to_element<T>(value);
    }
  }

  if (spec.row_offsets) {
    input.row_offsets.resize(rows);
    const float few[] = {-1.0f, 0.0f, 0.5f, 1.0f};
    std::uniform_int_distribution<std::size_t> pick_few(0, 3);
    for (float& offset : input.row_offsets) {
      switch (spec.distribution) {
        case ScoreDistribution::normal: offset = normal(rng); break;
        case ScoreDistribution::few_distinct: offset = few[pick_few(rng)]; break;
        // Signed zero offsets keep -0.0 scores negative: -0.0f + -0.0f == -0.0f.
        case ScoreDistribution::specials: offset = unit(rng) < 0.3 ? (unit(rng) < 0.5 ? -0.0f : 0.0f) : normal(rng); break;
      }
    }
  }

  // Masks: one random allowed set per row, written both as bitset words and as shuffled CSR.
  if (spec.mask != xgr::MaskKind::none) {
    input.words_per_row = (vocab + 31) / 32;
    input.bitset_words.assign(rows * input.words_per_row, 0u);
    input.row_ptr.push_back(0);
    const double density = std::clamp(spec.density, 0.0, 1.0);
    std::binomial_distribution<std::size_t> allowed_count(vocab, density);
    std::vector<std::uint32_t> order(vocab);
    for (std::size_t r = 0; r < rows; ++r) {
      const std::size_t count = allowed_count(rng);
      std::iota(order.begin(), order.end(), 0u);
      // Partial Fisher-Yates: the first `count` entries are a uniform random subset in random order.
      for (std::size_t i = 0; i < count; ++i) {
        std::uniform_int_distribution<std::size_t> pick(i, vocab - 1);
        std::swap(order[i], order[pick(rng)]);
      }
      for (std::size_t i = 0; i < count; ++i) {
        const std::uint32_t column = order[i];
        input.bitset_words[r * input.words_per_row + column / 32] |= 1u << (column % 32);
        input.columns.push_back(column);
      }
      input.row_ptr.push_back(static_cast<std::uint32_t>(input.columns.size()));
    }
  }

  // Row bounds: exactly the largest score of the row (offset included, computed as the
  // implementation computes it), over all columns, allowed or not; -inf for a row of NaN / -inf.
  if (spec.row_bounds) {
    input.row_bounds.resize(rows);
    for (std::size_t r = 0; r < rows; ++r) {
      const float offset = input.row_offsets.empty() ? 0.0f : input.row_offsets[r];
      float bound = -detail::infinity();
      for (std::size_t c = 0; c < vocab; ++c) {
        const float score = static_cast<float>(input.scores[r * stride + c]) + offset;
        if (!std::isnan(score)) bound = std::max(bound, score);
      }
      input.row_bounds[r] = bound;
    }
  }
  return input;
}

struct TopKOutput {
  std::size_t groups, k;
  std::vector<float> values;
  std::vector<std::uint32_t> indices, counts;

  // Poisoned, so that a slot the implementation forgets to write shows.
  explicit TopKOutput(std::size_t groups_, std::size_t k_)
      : groups(groups_),
        k(k_),
        values(groups_ * k_, 12345.0f),
        indices(groups_ * k_, 0xdeadbeefu),
        counts(groups_, 0xdeadbeefu) {}

  [[nodiscard]] xgr::TopKResult result() {
    return {xgr::MatrixView<float>{values.data(), groups, k, k}, xgr::MatrixView<std::uint32_t>{indices.data(), groups, k, k},
            std::span<std::uint32_t>(counts)};
  }
};

// The contract, written as plainly as possible: list, sort, take.
template <class T>
TopKOutput brute_force_topk(const TopKInput<T>& input) {
  struct Candidate {
    float score;
    std::uint32_t index;
  };
  const TopKCase& spec = input.spec;
  const std::size_t vocab = spec.vocab;
  const std::size_t stride = input.row_stride();
  const std::size_t groups = spec.variable_groups ? input.group_row_offsets.size() - 1 : spec.groups;
  TopKOutput out(groups, spec.k);
  std::vector<Candidate> candidates;
  for (std::size_t g = 0; g < groups; ++g) {
    const std::size_t first = spec.variable_groups ? input.group_row_offsets[g] : g * spec.rows_per_group;
    const std::size_t end = spec.variable_groups ? input.group_row_offsets[g + 1] : first + spec.rows_per_group;
    candidates.clear();
    for (std::size_t r = first; r < end; ++r) {
      const float offset = input.row_offsets.empty() ? 0.0f : input.row_offsets[r];
      const auto add = [&](std::size_t c) {
        const float score = static_cast<float>(input.scores[r * stride + c]) + offset;
        if (std::isnan(score) || score == -detail::infinity()) return;
        candidates.push_back({score, static_cast<std::uint32_t>((r - first) * vocab + c)});
      };
      switch (spec.mask) {
        case xgr::MaskKind::none:
          for (std::size_t c = 0; c < vocab; ++c) add(c);
          break;
        case xgr::MaskKind::bitset:
          for (std::size_t c = 0; c < vocab; ++c) {
            if (detail::is_allowed_bit(input.bitset_words, input.words_per_row, r, c)) add(c);
          }
          break;
        case xgr::MaskKind::sparse:
          for (std::uint32_t e = input.row_ptr[r]; e < input.row_ptr[r + 1]; ++e) add(input.columns[e]);
          break;
      }
    }
    // -0.0 == +0.0 under operator==, so the two zeros tie and fall back to the index.
    std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
      if (a.score != b.score) return a.score > b.score;
      return a.index < b.index;
    });
    const std::size_t taken = std::min(spec.k, candidates.size());
    for (std::size_t s = 0; s < spec.k; ++s) {
      if (s < taken) {
        out.values[g * spec.k + s] = candidates[s].score == 0.0f ? 0.0f : candidates[s].score;
        out.indices[g * spec.k + s] = candidates[s].index;
      } else {
        out.values[g * spec.k + s] = -detail::infinity();
        out.indices[g * spec.k + s] = xgr::topk::empty_index;
      }
    }
    out.counts[g] = static_cast<std::uint32_t>(taken);
  }
  return out;
}

// Nine significant digits: enough to tell any two floats apart (and -0 from 0).
inline std::string format_float(float value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", static_cast<double>(value));
  return text;
}

// Counts, values (bitwise: NaN is never expected) and indices of every group x k slot.
inline bool same_results(const TopKOutput& a, const TopKOutput& b, std::string* why) {
  const auto say = [&](const std::string& text) {
    if (why != nullptr) *why = text;
    return false;
  };
  if (a.groups != b.groups || a.k != b.k) {
    return say("shapes differ: " + std::to_string(a.groups) + " x " + std::to_string(a.k) + " vs " +
               std::to_string(b.groups) + " x " + std::to_string(b.k));
  }
  for (std::size_t g = 0; g < a.groups; ++g) {
    if (a.counts[g] != b.counts[g]) {
      return say("group " + std::to_string(g) + ": count " + std::to_string(a.counts[g]) + " vs " + std::to_string(b.counts[g]));
    }
    for (std::size_t s = 0; s < a.k; ++s) {
      const std::size_t i = g * a.k + s;
      std::uint32_t bits_a = 0, bits_b = 0;
      std::memcpy(&bits_a, &a.values[i], sizeof(float));
      std::memcpy(&bits_b, &b.values[i], sizeof(float));
      if (bits_a != bits_b || a.indices[i] != b.indices[i]) {
        return say("group " + std::to_string(g) + " slot " + std::to_string(s) + ": (" + format_float(a.values[i]) + ", index " +
                   std::to_string(a.indices[i]) + ") vs (" + format_float(b.values[i]) + ", index " + std::to_string(b.indices[i]) + ")");
      }
    }
  }
  if (why != nullptr) why->clear();
  return true;
}

// Deterministic edge cases, then `random_count` random ones; every case is small enough
// (rows x vocab <= ~300k) that the whole list runs in seconds on a CPU.
inline std::vector<TopKCase> standard_topk_cases(std::mt19937_64& rng, std::size_t random_count) {
  using xgr::MaskKind;
  using SD = ScoreDistribution;
  std::vector<TopKCase> cases;
  const auto add = [&](TopKCase c) { cases.push_back(c); };
  const auto make = [](std::size_t groups, std::size_t rows_per_group, std::size_t vocab, std::size_t k) {
    TopKCase c;
    c.groups = groups;
    c.rows_per_group = rows_per_group;
    c.vocab = vocab;
    c.k = k;
    return c;
  };

  // k = 1, k = vocab, k > valid count.
  add(make(1, 1, 100, 1));
  add(make(3, 4, 100, 1));
  add(make(1, 1, 50, 50));
  add(make(2, 3, 17, 51));  // k = the whole group
  add(make(1, 1, 10, 20));
  add(make(4, 2, 10, 1024));
  {
    TopKCase c = make(3, 2, 40, 60);
    c.mask = MaskKind::bitset;
    c.density = 0.3;
    add(c);
    c.mask = MaskKind::sparse;
    add(c);
  }
  // vocab = 1.
  add(make(1, 1, 1, 1));
  add(make(5, 3, 1, 1));
  add(make(2, 3, 1, 5));
  // Odd vocabularies around word and warp boundaries.
  for (std::size_t vocab : {std::size_t{1}, std::size_t{31}, std::size_t{33}, std::size_t{1000}, std::size_t{8191}}) {
    add(make(2, 2, vocab, std::min<std::size_t>(vocab, 7)));
    TopKCase c = make(2, 2, vocab, 16);
    c.mask = MaskKind::bitset;
    c.density = 0.5;
    add(c);
    c.mask = MaskKind::sparse;
    add(c);
  }
  // All-masked rows and groups (density 0) under both mask kinds.
  for (MaskKind mask : {MaskKind::bitset, MaskKind::sparse}) {
    TopKCase c = make(3, 4, 100, 8);
    c.mask = mask;
    c.density = 0.0;
    add(c);
    c.density = 0.02;  // many rows empty, some groups too
    c.vocab = 40;
    add(c);
  }
  // Ties.
  {
    TopKCase c = make(4, 8, 300, 100);
    c.distribution = SD::few_distinct;
    add(c);
    c.mask = MaskKind::bitset;
    c.density = 0.5;
    add(c);
    c.row_offsets = true;
    add(c);
    c = make(1, 64, 1000, 1024);
    c.distribution = SD::few_distinct;
    add(c);
  }
  // NaN, infinities, signed zeros.
  {
    TopKCase c = make(4, 4, 200, 50);
    c.distribution = SD::specials;
    add(c);
    c.row_offsets = true;
    add(c);
    c.row_bounds = true;
    add(c);
    c.mask = MaskKind::sparse;
    c.density = 0.7;
    add(c);
    c = make(2, 2, 20, 100);  // k above the valid count with specials
    c.distribution = SD::specials;
    add(c);
  }
  // Row stride above vocab (padding is NaN and must never be read).
  {
    TopKCase c = make(3, 5, 100, 10);
    c.row_stride = 128;
    add(c);
    c.vocab = 33;
    c.row_stride = 35;
    c.mask = MaskKind::bitset;
    c.density = 0.6;
    add(c);
    c.vocab = 1;
    c.row_stride = 7;
    c.mask = MaskKind::none;
    add(c);
  }
  // Variable group sizes.
  {
    TopKCase c = make(6, 16, 100, 20);
    c.variable_groups = true;
    add(c);
    c.mask = MaskKind::sparse;
    c.density = 0.2;
    add(c);
    c.k = 1024;
    add(c);
  }
  // Each mask kind on the same shape.
  for (MaskKind mask : {MaskKind::none, MaskKind::bitset, MaskKind::sparse}) {
    TopKCase c = make(4, 8, 512, 64);
    c.mask = mask;
    c.density = 0.25;
    add(c);
    c.density = 1.0;
    add(c);
  }
  // Row offsets and row bounds.
  {
    TopKCase c = make(4, 16, 256, 32);
    c.row_offsets = true;
    add(c);
    c.row_bounds = true;
    add(c);
    c.row_offsets = false;
    add(c);
    c.mask = MaskKind::bitset;
    c.density = 0.1;
    c.row_offsets = true;
    add(c);
  }
  // The largest k the kernels accept.
  {
    TopKCase c = make(2, 4, 4096, 1024);
    add(c);
    c.mask = MaskKind::bitset;
    c.density = 0.2;
    c.row_bounds = true;
    add(c);
    c = make(1, 1, 4096, 1024);
    add(c);
  }
  // Rows of several filter tiles (8,192 columns each): whole, partial by one 16-byte vector, and
  // partial by an odd count (the CUDA path streams the first two through shared memory when there
  // are no row bounds); with offsets, a mask and row bounds.
  for (std::size_t vocab : {std::size_t{16384}, std::size_t{16388}, std::size_t{20001}}) {
    TopKCase c = make(3, 3, vocab, 100);
    add(c);
    c.row_offsets = true;
    add(c);
    c.mask = MaskKind::bitset;
    c.density = 0.3;
    add(c);
    c.row_bounds = true;
    add(c);
  }
  // Everything at once.
  {
    TopKCase c = make(5, 12, 333, 77);
    c.row_stride = 340;
    c.mask = MaskKind::sparse;
    c.density = 0.4;
    c.row_offsets = true;
    c.row_bounds = true;
    c.variable_groups = true;
    c.distribution = SD::specials;
    add(c);
  }

  // Random cases.
  std::uniform_int_distribution<std::size_t> groups_dist(1, 8), rows_dist(1, 64), mask_dist(0, 2), distribution_dist(0, 2);
  std::uniform_int_distribution<std::size_t> density_choice(0, 6), extra_stride(0, 40);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::bernoulli_distribution coin(0.5), rarely(0.25);
  constexpr std::size_t max_elements = 300000;
  for (std::size_t i = 0; i < random_count; ++i) {
    TopKCase c;
    c.groups = groups_dist(rng);
    // Log-uniform vocabulary in [1, 5000]: small and large both common.
    c.vocab = std::clamp<std::size_t>(static_cast<std::size_t>(std::exp(unit(rng) * std::log(5000.0))), 1, 5000);
    c.rows_per_group = rows_dist(rng);
    c.rows_per_group = std::max<std::size_t>(1, std::min(c.rows_per_group, max_elements / (c.groups * c.vocab)));
    const std::size_t k_cap = std::min<std::size_t>(xgr::max_topk_k, c.rows_per_group * c.vocab + 10);
    c.k = coin(rng) ? std::uniform_int_distribution<std::size_t>(1, std::min<std::size_t>(k_cap, 64))(rng)
                    : std::uniform_int_distribution<std::size_t>(1, k_cap)(rng);
    c.row_stride = rarely(rng) ? c.vocab + extra_stride(rng) : 0;
    c.mask = static_cast<MaskKind>(mask_dist(rng));
    switch (density_choice(rng)) {
      case 0: c.density = 0.0; break;
      case 1: c.density = 0.01; break;
      case 2: c.density = 0.1; break;
      case 3: c.density = 0.5; break;
      case 4: c.density = 0.9; break;
      case 5: c.density = 1.0; break;
      default: c.density = unit(rng); break;
    }
    c.row_offsets = coin(rng);
    c.row_bounds = coin(rng);
    c.variable_groups = rarely(rng);
    c.distribution = static_cast<SD>(distribution_dist(rng));
    cases.push_back(c);
  }
  return cases;
}

}  // namespace xgr::test
