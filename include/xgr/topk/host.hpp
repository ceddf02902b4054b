// xgr/topk/host.hpp — the reference implementation of MaskedTopK (see topk.hpp for the contract).
//
// Deliberately plain: for each group, form the key of every selectable candidate, partially sort
// the keys, keep the first k. It validates everything it reads (group offsets, sparse columns), so
// it doubles as the checker for inputs that the CUDA path trusts.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>

#include "xgr/core/exec.hpp"
#include "xgr/core/workspace.hpp"
#include "xgr/topk/keys.hpp"
#include "xgr/topk/policies.hpp"
#include "xgr/topk/topk.hpp"

namespace xgr {
namespace topk::detail {

struct HostScratch {
  CandidateKey* keys;        // one group's candidates
  std::uint32_t* seen_bits;  // sparse masks: duplicate detection, one bit per column
};

template <class Arena>
HostScratch carve_host(Arena& arena, const TopKLimits& limits) {
  return {arena.template take<CandidateKey>(limits.max_rows_per_group * limits.max_vocab),
          arena.template take<std::uint32_t>((limits.max_vocab + 31) / 32)};
}

template <class T>
std::size_t group_begin(const TopKProblem<T>& problem, std::size_t group) {
  return problem.group_row_offsets.empty() ? group * problem.rows_per_group : problem.group_row_offsets[group];
}

}  // namespace topk::detail

[[nodiscard]] inline std::size_t masked_topk_workspace_bytes(exec::host_t, const TopKLimits& limits) {
  detail::validate_limits(limits);
  return workspace_bytes_of([&](WorkspaceArena& arena) { (void)topk::detail::carve_host(arena, limits); });
}

// Policies do not change the function, so the reference accepts (and ignores) any of them.
template <class Policy = topk::EarlyExit, Element T>
void masked_topk(exec::host_t, const TopKProblem<T>& problem, const TopKResult& result, const TopKLimits& limits,
                 HostWorkspace& workspace) {
  using topk::CandidateKey;
  const char* op = "masked_topk(host)";
  detail::validate_shape(problem, result, limits);
  workspace.require(masked_topk_workspace_bytes(exec::host, limits), op);
  WorkspaceArena arena = workspace.arena();
  const topk::detail::HostScratch scratch = topk::detail::carve_host(arena, limits);

  const std::size_t vocab = problem.vocab();
  const std::size_t groups = problem.groups();
  // Validate every group before writing any result, so a bad call leaves the outputs untouched.
  for (std::size_t group = 0; group < groups; ++group) {
    const std::size_t first_row = topk::detail::group_begin(problem, group);
    const std::size_t end_row = topk::detail::group_begin(problem, group + 1);
    require_argument(first_row <= end_row && end_row <= problem.rows(), op,
                     "group_row_offsets must be non-decreasing and end at most at the row count");
    require_argument(end_row - first_row <= limits.max_rows_per_group, op,
                     [&] { return "group " + std::to_string(group) + " has " + std::to_string(end_row - first_row) +
                                      " rows, more than max_rows_per_group = " + std::to_string(limits.max_rows_per_group); });
  }
  for (std::size_t group = 0; group < groups; ++group) {
    const std::size_t first_row = topk::detail::group_begin(problem, group);
    const std::size_t end_row = topk::detail::group_begin(problem, group + 1);

    std::size_t count = 0;
    const auto consider = [&](std::size_t row, std::size_t column) {
      const float offset = problem.row_offsets.empty() ? 0.0f : problem.row_offsets[row];
      const float score = to_float(problem.scores(row, column)) + offset;
      if (!topk::is_selectable(score)) return;
      const auto flat_index = static_cast<std::uint32_t>((row - first_row) * vocab + column);
      scratch.keys[count++] = topk::make_key(score, flat_index);
    };

    for (std::size_t row = first_row; row < end_row; ++row) {
      switch (problem.mask.kind) {
        case MaskKind::none:
          for (std::size_t column = 0; column < vocab; ++column) consider(row, column);
          break;
        case MaskKind::bitset:
          for (std::size_t column = 0; column < vocab; ++column) {
            if ((problem.mask.bits(row, column / 32) >> (column % 32)) & 1u) consider(row, column);
          }
          break;
        case MaskKind::sparse: {
          const std::uint32_t begin = problem.mask.row_ptr[row];
          const std::uint32_t end = problem.mask.row_ptr[row + 1];
          require_argument(begin <= end && end <= problem.mask.columns.size(), op,
                           [&] { return "sparse mask row_ptr of row " + std::to_string(row) +
                                            " is out of order or out of range"; });
          std::fill_n(scratch.seen_bits, (vocab + 31) / 32, 0u);
          for (std::uint32_t entry = begin; entry < end; ++entry) {
            const std::uint32_t column = problem.mask.columns[entry];
            require_argument(column < vocab, op,
                             [&] { return "sparse mask column " + std::to_string(column) + " of row " + std::to_string(row) +
                                              " is not below vocab = " + std::to_string(vocab); });
            std::uint32_t& word = scratch.seen_bits[column / 32];
            require_argument(((word >> (column % 32)) & 1u) == 0, op,
                             [&] { return "sparse mask lists column " + std::to_string(column) + " twice in row " +
                                              std::to_string(row); });
            word |= 1u << (column % 32);
            consider(row, column);
          }
          break;
        }
      }
    }

    const std::size_t selected = std::min(problem.k, count);
    std::partial_sort(scratch.keys, scratch.keys + selected, scratch.keys + count, std::greater<CandidateKey>());
    for (std::size_t slot = 0; slot < problem.k; ++slot) {
      const bool filled = slot < selected;
      result.values(group, slot) = filled ? topk::key_score(scratch.keys[slot]) : -std::numeric_limits<float>::infinity();
      result.indices(group, slot) = filled ? topk::key_index(scratch.keys[slot]) : topk::empty_index;
    }
    result.counts[group] = static_cast<std::uint32_t>(selected);
  }
}

}  // namespace xgr
