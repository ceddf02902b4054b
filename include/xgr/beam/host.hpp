// xgr/beam/host.hpp — the reference BeamSearcher (see beam.hpp for the contract).
//
// Written to be read: per request, gather every allowed candidate's key, sort, keep the best B_r,
// copy the parents' histories. The CUDA searcher must reproduce its selections bit for bit.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <vector>

#include "xgr/beam/beam.hpp"
#include "xgr/core/dtype.hpp"
#include "xgr/core/exec.hpp"
#include "xgr/items/trie.hpp"
#include "xgr/topk/keys.hpp"

namespace xgr {

template <class Normalize, class Select, class Filter>
class BeamSearcher<exec::host_t, Normalize, Select, Filter> {
 public:
  // The trie must outlive the searcher. Everything a batch needs is allocated here, once.
  BeamSearcher(exec::host_t, const ItemTrie& trie, const BeamConfig& config)
      : trie_(trie.view()),
        codebook_sizes_(trie.codebook_sizes().begin(), trie.codebook_sizes().end()),
        config_(config),
        level_offsets_(beam::detail::validate_config(config, trie.codebook_sizes())) {
    const std::size_t slots = config.max_requests * config.max_beam_width;
    const std::size_t levels = codebook_sizes_.size();
    for (auto& state : state_) {
      state.scores.resize(slots);
      state.nodes.resize(slots);
      state.tokens.resize(slots * levels);
    }
    ancestry_.resize(levels * slots);
    live_.resize(config.max_requests);
    row_begin_.reserve(config.max_requests + 1);
    std::size_t most_children = trie.max_children(0);
    for (std::size_t depth = 1; depth < levels; ++depth) {
      most_children = std::max(most_children, config.max_beam_width * trie.max_children(depth));
    }
    candidates_.reserve(most_children);
  }

  // Starts a batch: request r decodes with beam_widths[r] beams, starting from one live beam at the
  // trie root with score 0.
  void begin(exec::host_t, std::span<const std::uint32_t> beam_widths) {
    beam::detail::plan_rows(config_, beam_widths, row_begin_);
    step_ = 0;
    parity_ = 0;
    State& state = state_[0];
    std::fill(state.nodes.begin(), state.nodes.end(), no_trie_node);
    std::fill(state.scores.begin(), state.scores.end(), -std::numeric_limits<float>::infinity());
    std::fill(ancestry_.begin(), ancestry_.end(), no_trie_node);
    for (std::size_t request = 0; request < request_count(); ++request) {
      state.nodes[row_begin_[request]] = 0;
      state.scores[row_begin_[request]] = 0.0f;
      live_[request] = 1;
    }
  }

  // One decoding step: logits holds slot_count() rows of vocab columns (rows of dead slots unread).
  template <Element T>
  void step(exec::host_t, MatrixView<const T> logits) {
    beam::detail::validate_logits(logits, slot_count(), config_.vocab, step_, levels());
    const std::size_t level = step_;
    const std::uint32_t token_offset = level_offsets_[level];
    const auto [norm_begin, norm_end] =
        beam::detail::normalized_columns<Normalize>(config_.vocab, token_offset, codebook_sizes_[level]);
    const State& now = state_[parity_];
    State& next = state_[parity_ ^ 1];

    for (std::size_t request = 0; request < request_count(); ++request) {
      const std::uint32_t first_row = row_begin_[request];
      const std::uint32_t width = row_begin_[request + 1] - first_row;
      candidates_.clear();
      for (std::uint32_t slot = 0; slot < live_[request]; ++slot) {
        const std::size_t row = first_row + slot;
        // offset_b = s_b - lse_b, then score = logit + offset_b: the contract's two roundings.
        float row_max = -std::numeric_limits<float>::infinity();
        for (std::size_t column = norm_begin; column < norm_end; ++column) {
          row_max = beam::max_ignoring_nan(row_max, to_float(logits(row, column)));
        }
        std::uint64_t fixed_sum = 0;
        for (std::size_t column = norm_begin; column < norm_end; ++column) {
          fixed_sum += beam::exp_fixed(to_float(logits(row, column)) - row_max);
        }
        const float offset = now.scores[row] - beam::log_sum_exp(row_max, fixed_sum);

        const std::size_t row_candidates_begin = candidates_.size();
        const std::uint32_t node = now.nodes[row];
        for (std::uint32_t child = trie_.children_begin(node); child < trie_.children_end(node); ++child) {
          const std::uint32_t token = token_offset + trie_.node_code[child];
          const float score = to_float(logits(row, token)) + offset;
          if (!topk::is_selectable(score)) continue;
          candidates_.push_back(topk::make_key(score, static_cast<std::uint32_t>(slot * config_.vocab + token)));
        }
        // The per-beam cap: only this beam's top_k_per_beam candidates enter the request's pool.
        const std::size_t cap = config_.top_k_per_beam;
        if (cap != 0 && cap < width && candidates_.size() - row_candidates_begin > cap) {
          const auto row_begin = candidates_.begin() + static_cast<std::ptrdiff_t>(row_candidates_begin);
          std::partial_sort(row_begin, row_begin + static_cast<std::ptrdiff_t>(cap), candidates_.end(),
                            std::greater<topk::CandidateKey>());
          candidates_.resize(row_candidates_begin + cap);
        }
      }

      const std::size_t kept = std::min<std::size_t>(width, candidates_.size());
      std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(kept), candidates_.end(),
                        std::greater<topk::CandidateKey>());
      for (std::uint32_t slot = 0; slot < width; ++slot) {
        const std::size_t row = first_row + slot;
        if (slot >= kept) {
          next.nodes[row] = no_trie_node;
          next.scores[row] = -std::numeric_limits<float>::infinity();
          ancestry_[level * max_slots() + row] = no_trie_node;
          continue;
        }
        const std::uint32_t flat = topk::key_index(candidates_[slot]);
        const std::uint32_t parent_row = first_row + flat / static_cast<std::uint32_t>(config_.vocab);
        const std::uint32_t token = flat % static_cast<std::uint32_t>(config_.vocab);
        next.scores[row] = topk::key_score(candidates_[slot]);
        next.nodes[row] = trie_.child(now.nodes[parent_row], token - token_offset);
        std::copy_n(now.tokens.begin() + static_cast<std::ptrdiff_t>(parent_row * levels()), level,
                    next.tokens.begin() + static_cast<std::ptrdiff_t>(row * levels()));
        next.tokens[row * levels() + level] = token;
        ancestry_[level * max_slots() + row] = parent_row;
      }
      live_[request] = static_cast<std::uint32_t>(kept);
    }
    parity_ ^= 1;
    ++step_;
  }

  // Writes every request's results (all levels must be decoded). Host memory.
  void finalize(exec::host_t, const BeamResults& out) const {
    beam::detail::validate_results(out, slot_count(), request_count(), levels(), step_);
    const State& now = state_[parity_];
    for (std::size_t request = 0; request < request_count(); ++request) {
      out.counts[request] = live_[request];
      for (std::uint32_t row = row_begin_[request]; row < row_begin_[request + 1]; ++row) {
        const bool live = row - row_begin_[request] < live_[request];
        for (std::size_t level = 0; level < levels(); ++level) {
          out.codes(row, level) = live ? now.tokens[row * levels() + level] - level_offsets_[level] : no_code;
        }
        out.scores[row] = now.scores[row];
        const std::uint32_t leaf = live ? now.nodes[row] - trie_.first_leaf() : 0;
        out.item_ids[row] = live ? trie_.item_ids[trie_.leaf_item_begin[leaf]] : ItemId{0};
        out.item_counts[row] = live ? trie_.leaf_item_begin[leaf + 1] - trie_.leaf_item_begin[leaf] : 0;
      }
    }
  }

  [[nodiscard]] std::size_t levels() const noexcept { return codebook_sizes_.size(); }
  [[nodiscard]] std::size_t steps_done() const noexcept { return step_; }
  [[nodiscard]] std::size_t request_count() const noexcept { return row_begin_.empty() ? 0 : row_begin_.size() - 1; }
  [[nodiscard]] std::size_t slot_count() const noexcept { return row_begin_.empty() ? 0 : row_begin_.back(); }
  [[nodiscard]] std::size_t max_slots() const noexcept { return config_.max_requests * config_.max_beam_width; }
  [[nodiscard]] const BeamConfig& config() const noexcept { return config_; }
  [[nodiscard]] std::span<const std::uint32_t> level_token_offsets() const noexcept { return level_offsets_; }
  [[nodiscard]] std::span<const std::uint32_t> row_begin() const noexcept { return row_begin_; }
  [[nodiscard]] std::span<const std::uint32_t> live_beams() const noexcept { return {live_.data(), request_count()}; }
  // Per slot: score, trie node (no_trie_node when dead), and the tokens decoded so far (slots x levels).
  [[nodiscard]] std::span<const float> beam_scores() const noexcept { return {state_[parity_].scores.data(), slot_count()}; }
  [[nodiscard]] std::span<const std::uint32_t> trie_nodes() const noexcept { return {state_[parity_].nodes.data(), slot_count()}; }
  [[nodiscard]] MatrixView<const std::uint32_t> tokens() const noexcept {
    return {state_[parity_].tokens.data(), slot_count(), levels(), levels()};
  }
  // The parent row of each slot chosen at `level` (no_trie_node for slots left dead).
  [[nodiscard]] std::span<const std::uint32_t> ancestry(std::size_t level) const {
    require_argument(level < step_, "BeamSearcher::ancestry",
                     [&] { return "level " + std::to_string(level) + " is not decoded yet"; });
    return {ancestry_.data() + level * max_slots(), slot_count()};
  }
  // The same row as the reorder a KV cache consumes (kv::record_parents, kv::reorder).
  [[nodiscard]] BeamParents parents(std::size_t level) const { return {ancestry(level), level}; }

 private:
  struct State {
    std::vector<float> scores;
    std::vector<std::uint32_t> nodes;
    std::vector<std::uint32_t> tokens;  // slots x levels
  };

  ItemTrieView trie_;
  std::vector<std::uint32_t> codebook_sizes_;
  BeamConfig config_;
  std::vector<std::uint32_t> level_offsets_;
  State state_[2];
  int parity_ = 0;
  std::size_t step_ = 0;
  std::vector<std::uint32_t> row_begin_;
  std::vector<std::uint32_t> live_;
  std::vector<std::uint32_t> ancestry_;  // levels x max slots
  std::vector<topk::CandidateKey> candidates_;
};

BeamSearcher(exec::host_t, const ItemTrie&, const BeamConfig&) -> BeamSearcher<exec::host_t>;

}  // namespace xgr
