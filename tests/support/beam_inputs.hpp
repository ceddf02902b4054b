// Beam-search test inputs shared by host and CUDA tests: random catalogues, a deterministic "model",
// an independent brute-force oracle and a driver. Host code only (no CUDA headers), so that it
// compiles with g++ and with nvcc alike.
//
//   random_item_table   a catalogue with unique random 64-bit item ids and, when asked, items that
//                       share a code tuple (duplicates).
//   HashModel           logits as a pure function of a beam's prefix tokens: the row of a beam
//                       depends on nothing but the tokens it decoded so far (and the model's seed),
//                       so a brute force over the catalogue can recompute every row a search reads.
//   fill_logits         writes the rows of a step from the searcher's tokens() and live_beams()
//                       (host copies); rows of dead slots get a poison value, never to be read.
//   brute_force_beams   enumerates every item, scores it step by step as beam.hpp's contract says
//                       (using only xgr::beam's exp_fixed / log_sum_exp, not the searcher) and sorts
//                       by score with the beam search's tie order. It equals the beam search whenever
//                       that search cannot prune before its last step (see exhaustive_width).
//   run_search          begin(), then for every level ask a logits source for the step's logits and
//                       step(), then finalize(): the source is the only part that differs between
//                       host and device runs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <span>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "xgr/beam/beam.hpp"
#include "xgr/beam/log_softmax.hpp"
#include "xgr/core/dtype.hpp"
#include "xgr/core/view.hpp"
#include "xgr/items/io.hpp"
#include "xgr/items/trie.hpp"

namespace xgr::test {

// ---- Catalogues -----------------------------------------------------------------------------------

// `items` items over the given codebooks. About duplicate_fraction of them (at least one when the
// fraction is positive and there are two items or more) repeat an earlier item's tuple; the others
// have distinct tuples, uniform over the tuple space (fewer distinct ones when the space is smaller
// than asked: the rest become duplicates). Item ids are distinct random 64-bit values; rows are in
// random order.
inline ItemTable random_item_table(std::mt19937_64& rng, std::span<const std::uint32_t> codebook_sizes, std::size_t items,
                                   double duplicate_fraction = 0.0) {
  ItemTable table;
  table.codebook_sizes.assign(codebook_sizes.begin(), codebook_sizes.end());
  const std::size_t levels = table.levels();
  if (levels == 0 || items == 0) return table;

  std::size_t duplicates = 0;
  if (duplicate_fraction > 0.0 && items >= 2) {
    duplicates = std::clamp<std::size_t>(static_cast<std::size_t>(std::llround(duplicate_fraction * static_cast<double>(items))), 1,
                                         items - 1);
  }
  // Tuple space, saturated well above anything a test asks for.
  std::uint64_t space = 1;
  for (std::uint32_t size : codebook_sizes) space = std::min<std::uint64_t>(space * size, std::uint64_t{1} << 40);
  const std::size_t distinct = static_cast<std::size_t>(std::min<std::uint64_t>(items - duplicates, space));

  std::vector<std::vector<std::uint32_t>> tuples;
  tuples.reserve(items);
  const auto decode = [&](std::uint64_t index) {
    std::vector<std::uint32_t> tuple(levels);
    for (std::size_t level = levels; level-- > 0;) {
      tuple[level] = static_cast<std::uint32_t>(index % codebook_sizes[level]);
      index /= codebook_sizes[level];
    }
    return tuple;
  };
  if (space <= 4 * std::uint64_t{distinct}) {
    // Dense: a random subset of the whole (small) space.
    std::vector<std::uint64_t> all(space);
    std::iota(all.begin(), all.end(), std::uint64_t{0});
    for (std::size_t i = 0; i < distinct; ++i) {
      std::uniform_int_distribution<std::size_t> pick(i, all.size() - 1);
      std::swap(all[i], all[pick(rng)]);
      tuples.push_back(decode(all[i]));
    }
  } else {
    std::set<std::vector<std::uint32_t>> seen;
    std::vector<std::uint32_t> tuple(levels);
    while (tuples.size() < distinct) {
      for (std::size_t level = 0; level < levels; ++level) {
        tuple[level] = std::uniform_int_distribution<std::uint32_t>(0, codebook_sizes[level] - 1)(rng);
      }
      if (seen.insert(tuple).second) tuples.push_back(tuple);
    }
  }
  while (tuples.size() < items) {
    std::vector<std::uint32_t> copy = tuples[std::uniform_int_distribution<std::size_t>(0, distinct - 1)(rng)];
    tuples.push_back(std::move(copy));
  }
  std::shuffle(tuples.begin(), tuples.end(), rng);

  std::unordered_set<ItemId> ids;
  while (ids.size() < items) ids.insert(rng());
  table.item_ids.assign(ids.begin(), ids.end());
  std::shuffle(table.item_ids.begin(), table.item_ids.end(), rng);
  for (const auto& row : tuples) table.codes.insert(table.codes.end(), row.begin(), row.end());
  return table;
}

// The same codebook size at every level.
inline ItemTable random_item_table(std::mt19937_64& rng, std::size_t levels, std::uint32_t codebook_size, std::size_t items,
                                   double duplicate_fraction = 0.0) {
  const std::vector<std::uint32_t> sizes(levels, codebook_size);
  return random_item_table(rng, sizes, items, duplicate_fraction);
}

// Every tuple of the codebooks exactly once (ids 0, 1, ... in lexicographic tuple order).
inline ItemTable complete_item_table(std::span<const std::uint32_t> codebook_sizes) {
  ItemTable table;
  table.codebook_sizes.assign(codebook_sizes.begin(), codebook_sizes.end());
  std::size_t count = 1;
  for (std::uint32_t size : codebook_sizes) count *= size;
  for (std::size_t index = 0; index < count; ++index) {
    table.item_ids.push_back(index);
    std::vector<std::uint32_t> tuple(codebook_sizes.size());
    std::size_t rest = index;
    for (std::size_t level = codebook_sizes.size(); level-- > 0;) {
      tuple[level] = static_cast<std::uint32_t>(rest % codebook_sizes[level]);
      rest /= codebook_sizes[level];
    }
    table.codes.insert(table.codes.end(), tuple.begin(), tuple.end());
  }
  return table;
}

// ---- The deterministic model ----------------------------------------------------------------------

inline std::uint64_t mix64(std::uint64_t x) {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A uniform value in [0, 1) from 24 bits of a hash (exact in float).
inline float unit_float(std::uint64_t hash) { return static_cast<float>(hash >> 40) * 0x1p-24f; }

// A model is anything with `void operator()(std::span<const std::uint32_t> prefix_tokens,
// std::span<float> row) const` that writes a whole row of vocab logits as a function of the prefix.
// HashModel hashes (seed, prefix, column) into [-8, 8).
struct HashModel {
  std::uint64_t seed = 0;
  float tie_step = 0.0f;            // > 0: logits rounded to multiples of tie_step (exact ties)
  double minus_inf_fraction = 0.0;  // share of logits that are -inf
  double nan_fraction = 0.0;        // share of logits that are NaN
  double dead_row_fraction = 0.0;   // share of non-empty prefixes whose whole row is -inf / NaN
  bool prefix_blind = false;        // rows depend on the prefix length only: different parents, same row

  void operator()(std::span<const std::uint32_t> prefix, std::span<float> row) const {
    std::uint64_t hash = mix64(seed ^ 0x5851f42d4c957f2dull);
    if (prefix_blind) {
      hash = mix64(hash + prefix.size());
    } else {
      for (std::uint32_t token : prefix) hash = mix64(hash ^ (std::uint64_t{token} + 0x632be59bd9b4e019ull));
    }
    const bool dead = !prefix.empty() && unit_float(mix64(hash ^ 0xdeadull)) < dead_row_fraction;
    for (std::size_t column = 0; column < row.size(); ++column) {
      const std::uint64_t h = mix64(hash + column * 0x9e3779b97f4a7c15ull);
      const float special = static_cast<float>(h & 0xffffffu) * 0x1p-24f;
      float value = -8.0f + 16.0f * unit_float(h);
      if (tie_step > 0.0f) value = std::round(value / tie_step) * tie_step;
      if (dead) {
        value = special < 0.5f ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
      } else if (special < nan_fraction) {
        value = std::numeric_limits<float>::quiet_NaN();
      } else if (special < nan_fraction + minus_inf_fraction) {
        value = -std::numeric_limits<float>::infinity();
      }
      row[column] = value;
    }
  }
};

// The logits of one step. Row `row` of a live slot (request r, slot < live_beams[r]) holds the model's
// row for the slot's first `steps_done` tokens, converted to T; rows of dead slots hold `dead_value`.
// `models` holds one model per request, or one for all. Every view is host memory.
template <Element T, class Model>
void fill_logits(MatrixView<T> logits, MatrixView<const std::uint32_t> tokens, std::size_t steps_done,
                 std::span<const std::uint32_t> row_begin, std::span<const std::uint32_t> live_beams,
                 std::span<const Model> models, float dead_value = std::numeric_limits<float>::quiet_NaN()) {
  std::vector<float> row(logits.cols);
  for (std::size_t request = 0; request + 1 < row_begin.size(); ++request) {
    const Model& model = models[models.size() == 1 ? 0 : request];
    for (std::uint32_t slot_row = row_begin[request]; slot_row < row_begin[request + 1]; ++slot_row) {
      if (slot_row - row_begin[request] < live_beams[request]) {
        model(std::span<const std::uint32_t>(tokens.row(slot_row), steps_done), std::span<float>(row));
      } else {
        std::fill(row.begin(), row.end(), dead_value);
      }
      for (std::size_t column = 0; column < logits.cols; ++column) logits(slot_row, column) = from_float<T>(row[column]);
    }
  }
}

// ---- The brute-force oracle -----------------------------------------------------------------------

// What the oracle needs to know about a search: BeamConfig's meaning plus the Normalize policy.
struct SearchSpec {
  std::size_t vocab = 0;
  std::vector<std::uint32_t> level_token_offsets;  // empty = all 0
  bool whole_row = true;                           // Normalize::whole_row
  std::size_t top_k_per_beam = 0;
  std::size_t beam_width = 1;

  [[nodiscard]] std::uint32_t offset(std::size_t level) const {
    return level_token_offsets.empty() ? 0u : level_token_offsets[level];
  }
};

// One result row: a complete tuple with its score and items.
struct ExpectedBeam {
  std::vector<std::uint32_t> codes;
  float score = 0.0f;
  ItemId first_item = 0;
  std::uint32_t item_count = 0;
};

// The smallest beam width for which beam search over `trie` is exhaustive: every valid prefix of
// the levels before the last survives (B >= nodes at every depth 1 .. L-1), so only the last step
// prunes and the result is the top B of the whole catalogue.
inline std::size_t exhaustive_width(const ItemTrie& trie) {
  std::size_t width = 1;
  for (std::size_t depth = 1; depth < trie.levels(); ++depth) width = std::max(width, trie.nodes_at_depth(depth));
  return width;
}

namespace detail {

inline bool selectable(float score) { return !std::isnan(score) && score != -std::numeric_limits<float>::infinity(); }

}  // namespace detail

// The top spec.beam_width complete tuples of `table` under `model` with logits of type T, best first.
//
// Score of a tuple (c_0 .. c_{L-1}) with tokens t_l = offset_l + c_l, as beam.hpp defines it:
//   s_0 = 0;  s_{l+1} = float(T(row_l[t_l])) + (s_l - lse(row_l over the normalized columns))
// where row_l is the model's row for the prefix (t_0 .. t_{l-1}). A tuple any of whose s_l is NaN or
// -inf is no result. With top_k_per_beam = K < B, a prefix survives only among its parent's K best
// children (score desc, token asc).
//
// Tie order. Beam search breaks ties at each step by the lower flat index (slot * vocab + token),
// where slot is the parent's rank after the previous step. When nothing is pruned before the last
// step, ranks follow the recursive order "score desc, then the parents' order, then the token": two
// tuples whose prefixes first differ at level c compare by s_L, s_{L-1}, ..., s_{c+1} (the first
// unequal one decides, higher first) and then by the code at level c. Valid when
// spec.beam_width >= exhaustive_width(trie).
template <Element T, class Model>
std::vector<ExpectedBeam> brute_force_beams(const ItemTable& table, const Model& model, const SearchSpec& spec) {
  const std::size_t levels = table.levels();
  struct Tuple {
    std::vector<std::uint32_t> codes;
    ItemId first_item = 0;
    std::uint32_t item_count = 0;
    std::vector<float> scores;  // s_1 .. s_L, up to the first one that is not selectable
    std::size_t reach = 0;      // depths whose prefix is a live beam: selectable (and kept by the cap)
  };
  // Distinct tuples; the first item in table order names each.
  std::vector<Tuple> tuples;
  {
    std::map<std::vector<std::uint32_t>, std::size_t> index_of;
    for (std::size_t item = 0; item < table.size(); ++item) {
      std::vector<std::uint32_t> codes(table.codes.begin() + static_cast<std::ptrdiff_t>(item * levels),
                                       table.codes.begin() + static_cast<std::ptrdiff_t>((item + 1) * levels));
      const auto [where, inserted] = index_of.emplace(codes, tuples.size());
      if (inserted) tuples.push_back({codes, table.item_ids[item], 0, {}, 0});
      ++tuples[where->second].item_count;
    }
  }

  // Rows and log-sum-exps per prefix (of tokens), computed once each.
  struct PrefixRow {
    std::vector<float> logits;  // as the searcher reads them: float(T(model value))
    float lse = 0.0f;
  };
  std::map<std::vector<std::uint32_t>, PrefixRow> rows;
  std::vector<float> model_row(spec.vocab);
  const auto row_of = [&](const std::vector<std::uint32_t>& prefix, std::size_t level) -> const PrefixRow& {
    auto found = rows.find(prefix);
    if (found != rows.end()) return found->second;
    model(std::span<const std::uint32_t>(prefix), std::span<float>(model_row));
    PrefixRow row;
    row.logits.resize(spec.vocab);
    for (std::size_t column = 0; column < spec.vocab; ++column) row.logits[column] = to_float(from_float<T>(model_row[column]));
    const std::size_t begin = spec.whole_row ? 0 : spec.offset(level);
    const std::size_t end = spec.whole_row ? spec.vocab : spec.offset(level) + table.codebook_sizes[level];
    float row_max = -std::numeric_limits<float>::infinity();
    for (std::size_t column = begin; column < end; ++column) {
      if (row.logits[column] > row_max) row_max = row.logits[column];  // NaN never compares greater
    }
    std::uint64_t fixed_sum = 0;
    for (std::size_t column = begin; column < end; ++column) fixed_sum += beam::exp_fixed(row.logits[column] - row_max);
    row.lse = beam::log_sum_exp(row_max, fixed_sum);
    return rows.emplace(prefix, std::move(row)).first->second;
  };

  for (Tuple& tuple : tuples) {
    float score = 0.0f;
    std::vector<std::uint32_t> prefix;
    for (std::size_t level = 0; level < levels; ++level) {
      const PrefixRow& row = row_of(prefix, level);
      const std::uint32_t token = spec.offset(level) + tuple.codes[level];
      const float offset = score - row.lse;
      score = row.logits[token] + offset;
      if (score == 0.0f) score = 0.0f;  // -0 and +0 tie; the searcher keeps +0
      tuple.scores.push_back(score);
      if (!detail::selectable(score)) break;
      tuple.reach = level + 1;
      prefix.push_back(token);
    }
  }

  // The per-beam cap, depth by depth: a depth-d prefix stays a beam only among its parent's K best
  // children. A child counts against its parent's K even when all its own descendants die later.
  if (spec.top_k_per_beam != 0 && spec.top_k_per_beam < spec.beam_width) {
    using Prefix = std::vector<std::uint32_t>;
    const auto prefix_of = [](const Tuple& tuple, std::size_t depth) {
      return Prefix(tuple.codes.begin(), tuple.codes.begin() + static_cast<std::ptrdiff_t>(depth));
    };
    for (std::size_t depth = 1; depth <= levels; ++depth) {
      std::map<Prefix, std::map<Prefix, float>> children;  // parent -> child -> score
      for (const Tuple& tuple : tuples) {
        if (tuple.reach < depth) continue;
        const Prefix child = prefix_of(tuple, depth);
        children[Prefix(child.begin(), child.end() - 1)][child] = tuple.scores[depth - 1];
      }
      std::set<Prefix> kept;
      for (const auto& [parent, scored] : children) {
        std::vector<std::pair<float, Prefix>> ranked;
        for (const auto& [child, score] : scored) ranked.emplace_back(score, child);
        // Children come in code order; a stable sort by score keeps the lower token first on ties.
        std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
        for (std::size_t i = 0; i < ranked.size() && i < spec.top_k_per_beam; ++i) kept.insert(ranked[i].second);
      }
      for (Tuple& tuple : tuples) {
        if (tuple.reach >= depth && kept.count(prefix_of(tuple, depth)) == 0) tuple.reach = depth - 1;
      }
    }
  }

  std::vector<const Tuple*> alive;
  for (const Tuple& tuple : tuples) {
    if (tuple.reach == levels) alive.push_back(&tuple);
  }
  std::sort(alive.begin(), alive.end(), [levels](const Tuple* a, const Tuple* b) {
    std::size_t common = 0;
    while (a->codes[common] == b->codes[common]) ++common;  // distinct tuples: stops before levels
    for (std::size_t depth = levels; depth > common; --depth) {
      if (a->scores[depth - 1] != b->scores[depth - 1]) return a->scores[depth - 1] > b->scores[depth - 1];
    }
    return a->codes[common] < b->codes[common];
  });
  std::vector<ExpectedBeam> result;
  for (std::size_t i = 0; i < alive.size() && i < spec.beam_width; ++i) {
    result.push_back({alive[i]->codes, alive[i]->scores.back(), alive[i]->first_item, alive[i]->item_count});
  }
  return result;
}

// ---- Results --------------------------------------------------------------------------------------

// Host storage for BeamResults, poisoned so that a slot the implementation forgets to write shows.
struct BeamOutput {
  std::size_t slots = 0, levels = 0;
  std::vector<std::uint32_t> row_begin;  // the batch's layout (requests + 1), filled by the driver
  std::vector<std::uint32_t> codes;      // slots x levels
  std::vector<float> scores;
  std::vector<ItemId> item_ids;
  std::vector<std::uint32_t> item_counts, counts;

  BeamOutput(std::size_t slots_, std::size_t levels_, std::size_t requests)
      : slots(slots_),
        levels(levels_),
        codes(slots_ * levels_, 0xdeadbeefu),
        scores(slots_, 12345.0f),
        item_ids(slots_, 0xdeadbeefdeadbeefull),
        item_counts(slots_, 0xdeadbeefu),
        counts(requests, 0xdeadbeefu) {}

  [[nodiscard]] BeamResults results() {
    return {MatrixView<std::uint32_t>{codes.data(), slots, levels, levels}, std::span<float>(scores),
            std::span<ItemId>(item_ids), std::span<std::uint32_t>(item_counts), std::span<std::uint32_t>(counts)};
  }

  [[nodiscard]] std::size_t requests() const noexcept { return counts.size(); }

  // Request r's results, best first (its first counts[r] slots).
  [[nodiscard]] std::vector<ExpectedBeam> beams(std::size_t request) const {
    std::vector<ExpectedBeam> result;
    const std::size_t first = row_begin.at(request);
    const std::size_t width = row_begin.at(request + 1) - first;
    for (std::size_t slot = 0; slot < counts[request] && slot < width; ++slot) {
      const std::size_t row = first + slot;
      result.push_back({std::vector<std::uint32_t>(codes.begin() + static_cast<std::ptrdiff_t>(row * levels),
                                                   codes.begin() + static_cast<std::ptrdiff_t>((row + 1) * levels)),
                        scores[row], item_ids[row], item_counts[row]});
    }
    return result;
  }
};

// Nine significant digits: enough to tell any two floats apart (and -0 from 0).
inline std::string float_text(float value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", static_cast<double>(value));
  return text;
}

inline std::string tuple_text(const std::vector<std::uint32_t>& codes) {
  std::string text = "(";
  for (std::size_t i = 0; i < codes.size(); ++i) {
    if (i != 0) text += ' ';
    text += std::to_string(codes[i]);
  }
  text += ')';
  return text;
}

inline std::uint32_t float_bits(float value) {
  std::uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

// Same tuples, scores (bit for bit), first items and item counts, in the same order.
inline bool same_beams(const std::vector<ExpectedBeam>& got, const std::vector<ExpectedBeam>& want, std::string* why) {
  const auto say = [&](const std::string& text) {
    if (why != nullptr) *why = text;
    return false;
  };
  if (got.size() != want.size()) {
    std::string text = "count " + std::to_string(got.size()) + " vs " + std::to_string(want.size());
    for (std::size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
      if (got[i].codes != want[i].codes) {
        text += "; first difference at rank " + std::to_string(i) + ": " + tuple_text(got[i].codes) + " vs " + tuple_text(want[i].codes);
        break;
      }
    }
    return say(text);
  }
  for (std::size_t i = 0; i < got.size(); ++i) {
    const ExpectedBeam& a = got[i];
    const ExpectedBeam& b = want[i];
    if (a.codes != b.codes || float_bits(a.score) != float_bits(b.score) || a.first_item != b.first_item ||
        a.item_count != b.item_count) {
      return say("rank " + std::to_string(i) + ": " + tuple_text(a.codes) + " score " + float_text(a.score) + " item " +
                 std::to_string(a.first_item) + " x" + std::to_string(a.item_count) + " vs " + tuple_text(b.codes) + " score " +
                 float_text(b.score) + " item " + std::to_string(b.first_item) + " x" + std::to_string(b.item_count));
    }
  }
  if (why != nullptr) why->clear();
  return true;
}

// Slots past a request's count hold the documented filler: codes no_code, score -inf, item 0, count 0.
inline bool padding_is_clean(const BeamOutput& out, std::size_t request, std::string* why) {
  const std::size_t first = out.row_begin.at(request);
  const std::size_t end = out.row_begin.at(request + 1);
  for (std::size_t row = first + out.counts[request]; row < end; ++row) {
    bool clean = out.scores[row] == -std::numeric_limits<float>::infinity() && out.item_ids[row] == 0 && out.item_counts[row] == 0;
    for (std::size_t level = 0; level < out.levels; ++level) clean = clean && out.codes[row * out.levels + level] == no_code;
    if (!clean) {
      if (why != nullptr) *why = "request " + std::to_string(request) + " slot " + std::to_string(row - first) + " is not padding";
      return false;
    }
  }
  if (why != nullptr) why->clear();
  return true;
}

// ---- The driver -----------------------------------------------------------------------------------

// Runs one batch: begin(), then per level `logits_for_step(searcher, level)` (which returns the view
// the searcher's step() takes: host or device memory) and step(), then finalize(out).
template <class Searcher, class Exec, class LogitsForStep>
void run_search(Searcher& searcher, Exec exec, std::span<const std::uint32_t> beam_widths, LogitsForStep&& logits_for_step,
                const BeamResults& out) {
  searcher.begin(exec, beam_widths);
  for (std::size_t level = 0; level < searcher.levels(); ++level) {
    const Searcher& state = searcher;
    searcher.step(exec, logits_for_step(state, level));
  }
  searcher.finalize(exec, out);
}

// A host logits source: one buffer of max_slots x row_stride, refilled before every step from the
// searcher's (host) tokens and live beams. Padding columns past vocab hold NaN and must never be read.
template <Element T, class Model = HashModel>
class HostLogits {
 public:
  HostLogits(std::size_t max_slots, std::size_t vocab, std::vector<Model> models, std::size_t row_stride = 0)
      : vocab_(vocab),
        row_stride_(row_stride == 0 ? vocab : row_stride),
        storage_(max_slots * row_stride_, from_float<T>(std::numeric_limits<float>::quiet_NaN())),
        models_(std::move(models)) {}

  template <class Searcher>
  MatrixView<const T> operator()(const Searcher& searcher, std::size_t level) {
    const MatrixView<T> logits{storage_.data(), searcher.slot_count(), vocab_, row_stride_};
    fill_logits(logits, searcher.tokens(), level, searcher.row_begin(), searcher.live_beams(), std::span<const Model>(models_));
    return logits;
  }

 private:
  std::size_t vocab_, row_stride_;
  std::vector<T> storage_;
  std::vector<Model> models_;
};

// One host batch, start to end: `models` holds one model per request (or one for all).
template <Element T = float, class Searcher, class Model>
BeamOutput run_host_search(Searcher& searcher, std::span<const std::uint32_t> beam_widths, std::vector<Model> models,
                           std::size_t row_stride = 0) {
  const std::size_t slots = std::accumulate(beam_widths.begin(), beam_widths.end(), std::size_t{0});
  BeamOutput out(slots, searcher.levels(), beam_widths.size());
  HostLogits<T, Model> logits(slots, searcher.config().vocab, std::move(models), row_stride);
  run_search(searcher, exec::host, beam_widths, logits, out.results());
  out.row_begin.assign(searcher.row_begin().begin(), searcher.row_begin().end());
  return out;
}

}  // namespace xgr::test
